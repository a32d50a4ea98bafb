package ui_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/app/ui"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
)

// xss is what a hostile task writes into its error and output.
const xss = `<script>alert(1)</script>`

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func builtins(t *testing.T) *core.Registry {
	t.Helper()
	reg := core.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	return reg
}

// fastLauncher makes launched runs write their record often, so tests see
// their steps change quickly.
func fastLauncher(cfg *config.Config) {
	cfg.Launcher.HeartbeatInterval = 100 * time.Millisecond
	cfg.Launcher.StaleAfter = 3 * time.Second
	cfg.Worker.ShutdownTimeout = time.Second
	cfg.Executor.CancelWait = 5 * time.Second
	cfg.Worker.DeadLetterSweep = 0 // a sweep holds dead letters for a moment: the lists would miss them
}

// memRuntime is a memory runtime with a step worker and a run worker in
// this process, stopped and closed when the test ends.
func memRuntime(t *testing.T, change ...func(*config.Config)) *app.Runtime {
	t.Helper()
	cfg := config.Default()
	fastLauncher(&cfg)
	for _, c := range change {
		c(&cfg)
	}
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	startWorkers(t, rt)
	t.Cleanup(rt.Close)
	return rt
}

// startWorkers serves rt's task and run queues until the test ends.
func startWorkers(t *testing.T, rt *app.Runtime) {
	t.Helper()
	pool, err := rt.StartWorkers(context.Background(), 1)
	require.NoError(t, err)
	runs, err := rt.StartRunWorkers(context.Background(), 1)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = runs.Stop()
		_ = pool.Stop()
	})
}

func newServer(t *testing.T, o ui.Options) *ui.Server {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet()
	}
	s, err := ui.New(o)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// req is a request to the console as a browser on this machine sends it.
type req struct {
	method, path string
	form         url.Values
	header       map[string]string
	host         string
}

func do(t *testing.T, h http.Handler, r req) *httptest.ResponseRecorder {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodGet
	}
	var body io.Reader
	if r.form != nil {
		body = strings.NewReader(r.form.Encode())
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	hr.Host = "127.0.0.1:8080"
	if r.host != "" {
		hr.Host = r.host
	}
	if r.form != nil {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, hr)
	return w
}

// get is a GET that must answer 200.
func get(t *testing.T, h http.Handler, path string) string {
	t.Helper()
	w := do(t, h, req{path: path})
	require.Equal(t, http.StatusOK, w.Code, "GET %s: %s", path, w.Body.String())
	return w.Body.String()
}

// csrfOf reads the CSRF token of a page's forms.
func csrfOf(t *testing.T, page string) string {
	t.Helper()
	const marker = `name="csrf" value="`
	i := strings.Index(page, marker)
	require.GreaterOrEqual(t, i, 0, "the page has no CSRF field")
	rest := page[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}

// metaCSRF reads the CSRF token every page carries in its head.
func metaCSRF(t *testing.T, page string) string {
	t.Helper()
	const marker = `<meta name="csrf-token" content="`
	i := strings.Index(page, marker)
	require.GreaterOrEqual(t, i, 0, "the page has no CSRF meta tag")
	rest := page[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}

// deadLetter sends an echo task straight to the task queue's dead-letter
// queue, as if its receives had run out, and returns its ID.
func deadLetter(t *testing.T, rt *app.Runtime, id string) string {
	t.Helper()
	ctx := context.Background()
	dl, err := rt.DeadLetters(ctx, app.QueueTasks)
	require.NoError(t, err)
	defer dl.Close()
	p := rt.Ports
	p.Broker = dl.Broker
	c, err := core.NewClient(core.ClientOptions{Ports: p, Logger: quiet()})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Submit(ctx, core.Request{Task: "echo", ID: id, Args: "redriven"})
	require.NoError(t, err)
	return id
}

// launch launches job on rt and returns the run ID.
func launch(t *testing.T, rt *app.Runtime, job dag.Job, runID string) string {
	t.Helper()
	id, err := rt.Launcher.Launch(context.Background(), job, dag.LaunchOptions{RunID: runID})
	require.NoError(t, err)
	return id
}

// wait waits for run id to finish and returns its record.
func wait(t *testing.T, rt *app.Runtime, id string) dag.RunRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rec, err := rt.Launcher.Wait(ctx, id)
	require.NoError(t, err)
	return rec
}

func raw(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

var once = &core.RetryPolicy{MaxAttempts: 1}

// diamond is examples/jobs/diamond.yaml in code.
func diamond() dag.Job {
	return dag.Job{Name: "diamond", Steps: []dag.Step{
		{Name: "a", Task: "echo", Args: raw("hello, dagq")},
		{Name: "b", Task: "transform", Upstream: []string{"a"}, Args: json.RawMessage(`{"op":"upper"}`)},
		{Name: "c", Task: "transform", Upstream: []string{"a"}, Args: json.RawMessage(`{"op":"reverse"}`)},
		{Name: "d", Task: "concat", Upstream: []string{"b", "c"}, Args: json.RawMessage(`{"inputs":["b","c"],"sep":" | "}`)},
	}}
}

// hostile is a job whose step output and step error hold a script.
func hostile() dag.Job {
	return dag.Job{Name: "hostile", Steps: []dag.Step{
		{Name: "out", Task: "echo", Args: raw(xss)},
		{Name: "boom", Task: "fail", Args: raw(xss), Retry: once},
		{Name: "after", Task: "echo", Upstream: []string{"boom"}, Args: raw("never")},
	}}
}

// long has a step that sleeps for a minute.
func long() dag.Job {
	return dag.Job{Name: "long", Steps: []dag.Step{
		{Name: "prepare", Task: "echo", Args: raw("ready")},
		{Name: "work", Task: "sleep", Upstream: []string{"prepare"}, Args: raw("60s")},
		{Name: "publish", Task: "hash", Upstream: []string{"work"}},
	}}
}
