package ui_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/app/ui"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
)

const token = "0123456789abcdef-token"

func TestNew_NonLoopbackNeedsAuth(t *testing.T) {
	rt := memRuntime(t)
	for _, addr := range []string{":8080", "0.0.0.0:8080", "10.1.2.3:8080", "[::]:8080"} {
		_, err := ui.New(ui.Options{Runtime: rt, Addr: addr, Logger: quiet()})
		require.ErrorIs(t, err, ui.ErrInsecureBind, addr)
		for _, want := range []string{"DAGQ_UI_TOKEN", "DAGQ_UI_BASIC_AUTH", "--insecure", "127.0.0.1:8080"} {
			require.Contains(t, err.Error(), want)
		}
		for _, o := range []ui.Options{
			{Runtime: rt, Addr: addr, Insecure: true},
			{Runtime: rt, Addr: addr, Token: token},
			{Runtime: rt, Addr: addr, BasicAuth: "ops:password1"},
		} {
			o.Logger = quiet()
			s, err := ui.New(o)
			require.NoError(t, err, addr)
			s.Close()
		}
	}
	for _, addr := range []string{"127.0.0.1:8080", "localhost:0", "[::1]:9000"} {
		s, err := ui.New(ui.Options{Runtime: rt, Addr: addr, Logger: quiet()})
		require.NoError(t, err, addr)
		s.Close()
	}
	_, err := ui.New(ui.Options{Runtime: rt, Token: "short", Logger: quiet()})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "short", "the token is never quoted")
}

func TestAuth_Token(t *testing.T) {
	rt := memRuntime(t)
	s := newServer(t, ui.Options{Runtime: rt, Addr: ":8080", Token: token})
	host := "dagq.internal:8080"

	w := do(t, s, req{path: "/runs", host: host})
	require.Equal(t, http.StatusSeeOther, w.Code)
	require.Equal(t, "/login?next=%2Fruns", w.Header().Get("Location"))
	w = do(t, s, req{path: "/api/queues", host: host})
	require.Equal(t, http.StatusUnauthorized, w.Code)
	require.Contains(t, w.Header().Values("WWW-Authenticate"), `Bearer realm="dagq"`)
	w = do(t, s, req{path: "/api/queues", host: host, header: map[string]string{"Authorization": "Bearer wrong-token-wrong-token"}})
	require.Equal(t, http.StatusUnauthorized, w.Code)
	w = do(t, s, req{path: "/api/queues", host: host, header: map[string]string{"Authorization": "Bearer " + token}})
	require.Equal(t, http.StatusOK, w.Code)

	// The login page sets a cookie that is not the token.
	login := do(t, s, req{path: "/login?next=/workers", host: host})
	require.Equal(t, http.StatusOK, login.Code)
	csrf := csrfOf(t, login.Body.String())
	w = do(t, s, req{method: http.MethodPost, path: "/login", host: host,
		form: url.Values{"csrf": {csrf}, "token": {"not-the-token-at-all"}, "next": {"/workers"}}})
	require.Equal(t, http.StatusUnauthorized, w.Code)
	require.Contains(t, w.Body.String(), "not the dashboard")
	w = do(t, s, req{method: http.MethodPost, path: "/login", host: host,
		form: url.Values{"csrf": {csrf}, "token": {token}, "next": {"//evil.example/"}}})
	require.Equal(t, http.StatusSeeOther, w.Code)
	require.Equal(t, "/runs", w.Header().Get("Location"), "next must be a path of the console")
	cookie := w.Result().Cookies()[0]
	require.True(t, cookie.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, cookie.SameSite)
	require.NotContains(t, cookie.Value, token)
	w = do(t, s, req{path: "/workers", host: host, header: map[string]string{"Cookie": cookie.Name + "=" + cookie.Value}})
	require.Equal(t, http.StatusOK, w.Code)
	require.NotContains(t, w.Body.String(), token, "the token is never rendered")
	require.Contains(t, w.Body.String(), "Sign out")

	// Static assets need no sign-in (the login page uses them).
	require.Equal(t, http.StatusOK, do(t, s, req{path: "/static/app.css", host: host}).Code)
}

func TestAuth_Basic(t *testing.T) {
	rt := memRuntime(t)
	s := newServer(t, ui.Options{Runtime: rt, Addr: "0.0.0.0:8080", BasicAuth: "ops:password1"})
	w := do(t, s, req{path: "/runs", host: "10.0.0.1:8080"})
	require.Equal(t, http.StatusUnauthorized, w.Code)
	require.Contains(t, w.Header().Get("WWW-Authenticate"), "Basic")
	hr := func(user, pw string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth(user, pw)
		return r
	}
	w = do(t, s, req{path: "/runs", host: "10.0.0.1:8080", header: map[string]string{"Authorization": hr("ops", "wrong").Header.Get("Authorization")}})
	require.Equal(t, http.StatusUnauthorized, w.Code)
	w = do(t, s, req{path: "/runs", host: "10.0.0.1:8080", header: map[string]string{"Authorization": hr("ops", "password1").Header.Get("Authorization")}})
	require.Equal(t, http.StatusOK, w.Code)
	require.NotContains(t, w.Body.String(), "password1")
}

// Without authentication, a loopback console answers only to loopback Host
// names: a rebinding attacker's name is refused.
func TestLoopbackConsoleRefusesOtherHosts(t *testing.T) {
	s := newServer(t, ui.Options{Runtime: memRuntime(t)})
	require.Equal(t, http.StatusMisdirectedRequest, do(t, s, req{path: "/runs", host: "attacker.example:8080"}).Code)
	for _, h := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080", "localhost"} {
		require.Equal(t, http.StatusOK, do(t, s, req{path: "/runs", host: h}).Code, h)
	}
}

func TestSecurityHeaders(t *testing.T) {
	s := newServer(t, ui.Options{Runtime: memRuntime(t)})
	for _, path := range []string{"/runs", "/api/queues", "/static/app.js", "/nope"} {
		h := do(t, s, req{path: path}).Header()
		csp := h.Get("Content-Security-Policy")
		require.Contains(t, csp, "script-src 'self'", path)
		require.NotContains(t, csp, "unsafe-inline", path)
		require.Contains(t, csp, "frame-ancestors 'none'", path)
		require.Equal(t, "DENY", h.Get("X-Frame-Options"), path)
		require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"), path)
	}
	page := get(t, s, "/runs")
	require.NotContains(t, page, "<script>", "no inline script")
	require.NotContains(t, page, "style=", "no inline style")
	require.NotContains(t, page, "http://", "nothing loaded from elsewhere")
	require.NotContains(t, page, "https://", "nothing loaded from elsewhere")
}

func TestCSRF(t *testing.T) {
	rt := memRuntime(t)
	s := newServer(t, ui.Options{Runtime: rt})
	id := launch(t, rt, long(), "csrf-1")
	page := get(t, s, "/runs/"+id)
	csrf := csrfOf(t, page)
	path := "/runs/" + id + "/terminate"

	for name, r := range map[string]req{
		"no token":           {form: url.Values{}},
		"wrong token":        {form: url.Values{"csrf": {strings.Repeat("0", 64)}}},
		"other origin":       {form: url.Values{"csrf": {csrf}}, header: map[string]string{"Origin": "https://evil.example"}},
		"null origin":        {form: url.Values{"csrf": {csrf}}, header: map[string]string{"Origin": "null"}},
		"cross-site fetch":   {form: url.Values{"csrf": {csrf}}, header: map[string]string{"Sec-Fetch-Site": "cross-site"}},
		"other referer":      {form: url.Values{"csrf": {csrf}}, header: map[string]string{"Referer": "https://evil.example/x"}},
		"token in the query": {form: url.Values{}, path: path + "?csrf=" + csrf},
	} {
		r.method = http.MethodPost
		if r.path == "" {
			r.path = path
		}
		w := do(t, s, r)
		require.Equal(t, http.StatusForbidden, w.Code, name)
	}
	rec, err := rt.Launcher.Record(context.Background(), id)
	require.NoError(t, err)
	require.False(t, rec.State.Final(), "no refused request terminated the run")

	w := do(t, s, req{method: http.MethodPost, path: path, form: url.Values{"csrf": {csrf}},
		header: map[string]string{"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"}})
	require.Equal(t, http.StatusSeeOther, w.Code, w.Body.String())
	require.Equal(t, "/runs/"+id+"?msg=terminated", w.Header().Get("Location"))
	require.Equal(t, dag.RunCancelled, wait(t, rt, id).State)
	require.Contains(t, get(t, s, "/runs/"+id+"?msg=terminated"), "Terminate requested")
}

func TestReadOnly(t *testing.T) {
	rt := memRuntime(t)
	s := newServer(t, ui.Options{Runtime: rt, ReadOnly: true})
	id := launch(t, rt, long(), "ro-1")
	deadLetter(t, rt, "ro-dead")
	page := get(t, s, "/runs/"+id)
	require.NotContains(t, page, "Terminate</button>")
	require.Contains(t, page, "read-only")
	require.NotContains(t, get(t, s, "/queues"), "Redrive")

	// Even a well-formed action is refused.
	csrf := metaCSRF(t, page)
	w := do(t, s, req{method: http.MethodPost, path: "/runs/" + id + "/terminate", form: url.Values{"csrf": {csrf}}})
	require.Equal(t, http.StatusForbidden, w.Code)
	require.Contains(t, w.Body.String(), "read-only")
	w = do(t, s, req{method: http.MethodPost, path: "/queues/tasks/redrive", form: url.Values{"csrf": {csrf}, "all": {"1"}}})
	require.Equal(t, http.StatusForbidden, w.Code)
	rec, err := rt.Launcher.Record(context.Background(), id)
	require.NoError(t, err)
	require.False(t, rec.State.Final())
	require.Contains(t, get(t, s, "/queues"), "ro-dead", "the dead letter stayed")
	_, err = rt.Launcher.Terminate(context.Background(), id)
	require.NoError(t, err)
	wait(t, rt, id)
}

// A step's error and output holding <script> are shown as text: escaped in
// the page and in the JSON the page polls.
func TestEscapesTaskStrings(t *testing.T) {
	rt := memRuntime(t)
	s := newServer(t, ui.Options{Runtime: rt})
	id := launch(t, rt, hostile(), "xss-1")
	rec := wait(t, rt, id)
	require.Equal(t, dag.RunFailed, rec.State)

	page := get(t, s, "/runs/"+id)
	require.NotContains(t, page, xss)
	require.NotContains(t, page, "<script>alert")
	require.Contains(t, page, "&lt;script&gt;alert(1)&lt;/script&gt; (attempt 1)", "the error, escaped")
	require.Contains(t, page, "&#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;", "the output, escaped")

	api := get(t, s, "/api/runs/"+id)
	require.NotContains(t, api, "<script>")
	require.Contains(t, api, `\u003cscript\u003ealert(1)\u003c/script\u003e`)
	var j struct {
		Steps []struct{ Name, Error, Output string }
	}
	require.NoError(t, json.Unmarshal([]byte(api), &j))
	require.Equal(t, xss+" (attempt 1)", j.Steps[1].Error, "the JSON holds the text itself")
	require.Equal(t, `"`+xss+`"`, j.Steps[0].Output)

	runs := get(t, s, "/runs")
	require.NotContains(t, runs, "<script>")
	require.Contains(t, runs, id)
	require.NotContains(t, get(t, s, "/api/runs/"+id+"/steps/out/output"), "<script>")
}

func TestRunJSONShape(t *testing.T) {
	rt := memRuntime(t)
	s := newServer(t, ui.Options{Runtime: rt})
	id := launch(t, rt, diamond(), "shape-1")
	wait(t, rt, id)
	w := do(t, s, req{path: "/api/runs/" + id})
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "application/json; charset=utf-8", w.Header().Get("Content-Type"))
	var j map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &j))
	for _, k := range []string{"run_id", "job", "state", "final", "created_at", "started_at", "finished_at", "duration",
		"summary", "steps", "timeline", "can_terminate"} {
		require.Contains(t, j, k)
	}
	require.Equal(t, id, j["run_id"])
	require.Equal(t, "succeeded", j["state"])
	require.Equal(t, true, j["final"])
	require.Equal(t, false, j["can_terminate"])
	steps := j["steps"].([]any)
	require.Len(t, steps, 4)
	d := steps[3].(map[string]any)
	for _, k := range []string{"name", "task", "state", "attempts", "worker", "started_at", "finished_at", "duration", "output", "upstream"} {
		require.Contains(t, d, k)
	}
	require.Equal(t, "d", d["name"])
	require.Equal(t, "succeeded", d["state"])
	require.Equal(t, "b, c", d["upstream"])
	require.Equal(t, `"HELLO, DAGQ | qgad ,olleh"`, d["output"], "a finished run's outputs come from its run task's result")
	require.Equal(t, []any{map[string]any{"state": "succeeded", "n": float64(4)}}, j["summary"])
	tl := j["timeline"].([]any)
	require.Equal(t, "run launched", tl[0].(map[string]any)["text"])
	require.Equal(t, "run succeeded", tl[len(tl)-1].(map[string]any)["text"])

	page := get(t, s, "/runs/"+id)
	for _, want := range []string{`data-step="d"`, `class="node st-succeeded"`, `class="edge st-succeeded" data-from="b" data-to="d"`,
		"HELLO, DAGQ | qgad ,olleh"} {
		require.Contains(t, page, want)
	}
}

func TestUnknownRun404(t *testing.T) {
	s := newServer(t, ui.Options{Runtime: memRuntime(t)})
	for _, path := range []string{"/runs/nope", "/api/runs/nope", "/api/runs/nope/steps/a/output", "/runs/bad%20id", "/elsewhere"} {
		w := do(t, s, req{path: path})
		require.Equal(t, http.StatusNotFound, w.Code, path)
	}
	w := do(t, s, req{path: "/api/runs/nope"})
	require.JSONEq(t, `{"error":"There is no run \"nope\": the state store has no record of it."}`, w.Body.String())
	require.Contains(t, get(t, s, "/runs"), "No runs yet", "an unknown run is not remembered")
}

// The runs list: the runs the console opened, filtered and paged; with a
// run index (ListRuns) its rows instead.
func TestRunsList(t *testing.T) {
	rt := memRuntime(t)
	s := newServer(t, ui.Options{Runtime: rt, NoIndex: true})
	ok := launch(t, rt, diamond(), "list-ok")
	bad := launch(t, rt, hostile(), "list-bad")
	wait(t, rt, ok)
	wait(t, rt, bad)
	require.NoError(t, s.Track(context.Background(), ok))
	require.NoError(t, s.Track(context.Background(), bad))
	require.Error(t, s.Track(context.Background(), "list-none"))

	all := get(t, s, "/runs")
	require.Contains(t, all, ok)
	require.Contains(t, all, bad)
	failed := get(t, s, "/runs?state=failed")
	require.NotContains(t, failed, ok)
	require.Contains(t, failed, bad)
	byJob := get(t, s, "/runs?job=diam")
	require.Contains(t, byJob, ok)
	require.NotContains(t, byJob, bad)
	page1 := get(t, s, "/runs?limit=1")
	require.Contains(t, page1, "Next page")
	require.Contains(t, page1, "cursor=1")
	frag := get(t, s, "/runs?fragment=rows")
	require.NotContains(t, frag, "<html")
	require.Contains(t, frag, ok)

	var got ui.RunFilter
	indexed := newServer(t, ui.Options{Runtime: rt, ListRuns: func(_ context.Context, f ui.RunFilter) ([]ui.RunRow, string, error) {
		got = f
		return []ui.RunRow{{RunID: "idx-1", Job: "j<b>", State: dag.RunRunning, CreatedAt: time.Now()}}, "c2", nil
	}})
	page := get(t, indexed, "/runs?state=running&job=j&since=1h&cursor=c1")
	require.Equal(t, dag.RunRunning, got.State)
	require.Equal(t, "j", got.Job)
	require.Equal(t, "c1", got.Cursor)
	require.Equal(t, 50, got.Limit)
	require.WithinDuration(t, time.Now().Add(-time.Hour), got.Since, time.Minute)
	require.Contains(t, page, "idx-1")
	require.Contains(t, page, "j&lt;b&gt;")
	require.Contains(t, page, "cursor=c2")
	require.NotContains(t, page, "No run index")

	failing := newServer(t, ui.Options{Runtime: rt, ListRuns: func(context.Context, ui.RunFilter) ([]ui.RunRow, string, error) {
		return nil, "", errors.New("index unavailable")
	}})
	require.Contains(t, get(t, failing, "/runs"), "Listing the runs failed: index unavailable")
}

func TestWorkersPage(t *testing.T) {
	rt := memRuntime(t)
	s := newServer(t, ui.Options{Runtime: rt, NoIndex: true})
	id := launch(t, rt, diamond(), "workers-1")
	rec := wait(t, rt, id)
	require.NoError(t, s.Track(context.Background(), id))
	page := get(t, s, "/workers")
	require.Contains(t, page, "No worker registry")
	require.Contains(t, page, rec.Worker)
	require.Contains(t, page, rec.Steps[0].Worker)

	reg := newServer(t, ui.Options{Runtime: rt, Workers: func(context.Context) ([]ui.WorkerRow, error) {
		return []ui.WorkerRow{
			{ID: "w-1", Host: "host-a", PID: 42, Version: "v1.2.3", Queues: []string{"dagq-tasks"}, Concurrency: 10, InFlight: 3, SeenAt: time.Now()},
			{ID: "w-2", Host: "host-b", Stale: true},
		}, nil
	}})
	page = get(t, reg, "/workers")
	for _, want := range []string{"w-1", "host-a", "v1.2.3", "3 / 10", "dagq-tasks", "stale", "live"} {
		require.Contains(t, page, want)
	}
	require.NotContains(t, page, "No worker registry")
}

// The queues page and its JSON on the memory transport, whose queues have
// dead-letter queues; redrive moves a dead letter back and it runs.
func TestQueuesAndRedrive(t *testing.T) {
	rt := memRuntime(t)
	s := newServer(t, ui.Options{Runtime: rt})
	taskID := deadLetter(t, rt, "dead-1")

	page := get(t, s, "/queues")
	require.Contains(t, page, "Dead letters of the tasks queue")
	require.Contains(t, page, taskID)
	require.Contains(t, page, `data-queue="tasks-dlq"`)
	var j struct {
		Samples []struct {
			T      int64
			Queues []struct {
				Key     string
				Visible int64
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(get(t, s, "/api/queues")), &j))
	require.NotEmpty(t, j.Samples)
	last := j.Samples[len(j.Samples)-1]
	keys := map[string]int64{}
	for _, q := range last.Queues {
		keys[q.Key] = q.Visible
	}
	require.Contains(t, keys, "tasks")
	require.Contains(t, keys, "runs")
	require.Contains(t, keys, "tasks-dlq")

	csrf := csrfOf(t, page)
	w := do(t, s, req{method: http.MethodPost, path: "/queues/tasks/redrive", form: url.Values{"csrf": {csrf}, "task_id": {taskID}}})
	require.Equal(t, http.StatusSeeOther, w.Code, w.Body.String())
	require.Equal(t, "/queues?msg=redriven&n=1&role=tasks", w.Header().Get("Location"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := rt.Client.Wait(ctx, taskID)
	require.NoError(t, err)
	require.JSONEq(t, `"redriven"`, string(res.Output), "the redriven task ran")
	require.Contains(t, get(t, s, "/queues?msg=redriven&n=1&role=tasks"), "1 dead letter(s) moved back to the tasks queue")

	w = do(t, s, req{method: http.MethodPost, path: "/queues/elsewhere/redrive", form: url.Values{"csrf": {csrf}, "all": {"1"}}})
	require.Equal(t, http.StatusNotFound, w.Code)
	w = do(t, s, req{method: http.MethodPost, path: "/queues/tasks/redrive", form: url.Values{"csrf": {csrf}}})
	require.Equal(t, http.StatusBadRequest, w.Code)
}

// No secret of the configuration is rendered on any page.
func TestNoSecretRendered(t *testing.T) {
	keys := "k1=" + strings.Repeat("QUJD", 11)
	rt := memRuntime(t, func(c *config.Config) {
		c.Signing.KeyID, c.Signing.Keys = "k1", keys
		c.UI.Token = token
	})
	s := newServer(t, ui.Options{Runtime: rt, BasicAuth: "ops:password1"})
	id := launch(t, rt, diamond(), "secret-1")
	wait(t, rt, id)
	auth := func() map[string]string {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth("ops", "password1")
		return map[string]string{"Authorization": r.Header.Get("Authorization")}
	}()
	for _, path := range []string{"/runs", "/runs/" + id, "/api/runs/" + id, "/queues", "/api/queues", "/workers", "/login"} {
		w := do(t, s, req{path: path, header: auth})
		body := w.Body.String()
		for _, secret := range []string{strings.Repeat("QUJD", 11), token, "password1"} {
			assert.NotContains(t, body, secret, path)
		}
	}
}

// By default the console reads the Runtime's run index and worker
// registry: launched runs are listed without being opened here, exactly
// by job, and this process's workers are listed live.
func TestIndexAndRegistryByDefault(t *testing.T) {
	rt := memRuntime(t)
	s := newServer(t, ui.Options{Runtime: rt})
	id := launch(t, rt, diamond(), "indexed-1")
	wait(t, rt, id)
	page := get(t, s, "/runs?job="+diamond().Name)
	require.Contains(t, page, id, "listed from the run index, never opened here")
	require.NotContains(t, get(t, s, "/runs?job=nope"), id)
	page = get(t, s, "/workers")
	require.NotContains(t, page, "No worker registry")
	require.Contains(t, page, ">live<", "this process's workers, from the registry")
}

// flakyRuntime is a memory runtime (as memRuntime) whose registry has,
// besides the built-in tasks, "flaky": it fails on its first call for each
// step name and succeeds afterwards, returning its args — a transient
// fault, gone when the step runs again in a re-execution.
func flakyRuntime(t *testing.T) *app.Runtime {
	t.Helper()
	reg := builtins(t)
	var mu sync.Mutex
	calls := map[string]int{}
	require.NoError(t, reg.Handle("flaky", core.HandlerFunc(func(_ context.Context, task *core.Task) (json.RawMessage, error) {
		mu.Lock()
		calls[task.StepID]++
		n := calls[task.StepID]
		mu.Unlock()
		if n == 1 {
			return nil, fmt.Errorf("the warehouse is not reachable: %w", core.ErrSkipRetry)
		}
		return task.Args, nil
	})))
	cfg := config.Default()
	fastLauncher(&cfg)
	rt, err := app.New(cfg, reg, app.WithLogger(quiet()))
	require.NoError(t, err)
	startWorkers(t, rt)
	t.Cleanup(rt.Close)
	return rt
}

// flakyJob: extract → load (fails on its first run) → report.
func flakyJob() dag.Job {
	return dag.Job{Name: "flaky", Steps: []dag.Step{
		{Name: "extract", Task: "echo", Args: raw("rows: 12")},
		{Name: "load", Task: "flaky", Upstream: []string{"extract"}, Args: raw("loaded"), Retry: once},
		{Name: "report", Task: "concat", Upstream: []string{"extract", "load"}, Args: json.RawMessage(`{"inputs":["extract","load"],"sep":" → "}`)},
	}}
}

// The re-execute action: offered on a finished launched run (from failure
// only when it did not succeed), a CSRF-checked POST that launches the
// re-execution and shows it, with its lineage and reused steps; refused for
// an unfinished run, a bad form and a read-only console.
func TestReexecuteAction(t *testing.T) {
	rt := flakyRuntime(t)
	s := newServer(t, ui.Options{Runtime: rt})
	id := launch(t, rt, flakyJob(), "rx-ui-1")
	require.Equal(t, dag.RunFailed, wait(t, rt, id).State)

	page := get(t, s, "/runs/"+id)
	require.Contains(t, page, `<div id="reexecute">`, "shown: the run has finished")
	require.Contains(t, page, "Re-execute from failure</button>")
	require.Contains(t, page, "Re-execute all</button>")
	require.NotContains(t, page, `id="lineage"`, "not a re-execution")
	csrf := csrfOf(t, page)
	path := "/runs/" + id + "/reexecute"

	w := do(t, s, req{method: http.MethodPost, path: path, form: url.Values{"from": {"failure"}}})
	require.Equal(t, http.StatusForbidden, w.Code, "no CSRF token")
	w = do(t, s, req{method: http.MethodPost, path: path, form: url.Values{"csrf": {csrf}, "from": {"some"}}})
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Contains(t, w.Body.String(), "must be &#34;failure&#34; or &#34;all&#34;")

	w = do(t, s, req{method: http.MethodPost, path: path, form: url.Values{"csrf": {csrf}, "from": {"failure"}},
		header: map[string]string{"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"}})
	require.Equal(t, http.StatusSeeOther, w.Code, w.Body.String())
	loc := w.Header().Get("Location")
	require.Regexp(t, `^/runs/\w+\?msg=reexecuted&parent=rx-ui-1$`, loc)
	newID := strings.TrimPrefix(strings.Split(loc, "?")[0], "/runs/")
	rec := wait(t, rt, newID)
	require.Equal(t, dag.RunSucceeded, rec.State, rec.Error)
	require.Equal(t, id, rec.ParentRun)
	require.Equal(t, &dag.Reexecution{From: dag.ReexecuteFromFailure}, rec.Reexecution)

	page = get(t, s, loc)
	require.Contains(t, page, "Re-execution of rx-ui-1 launched")
	require.Contains(t, page, `re-execution of <a class="mono" href="/runs/rx-ui-1">rx-ui-1</a>, from failure`)
	require.Contains(t, page, `<tr data-step="extract" class="reused">`)
	require.Contains(t, page, `reused from <a href="/runs/rx-ui-1">rx-ui-1</a>`)
	require.NotContains(t, page, "Re-execute from failure</button>", "it succeeded: nothing to re-execute from failure")
	require.Contains(t, page, "Re-execute all</button>")
	var j struct {
		ParentRun    string `json:"parent_run"`
		RootRun      string `json:"root_run"`
		Reexecution  string `json:"reexecution"`
		CanReexecute bool   `json:"can_reexecute"`
		Steps        []struct {
			Name, Output string
			ReusedFrom   string `json:"reused_from"`
		}
	}
	require.NoError(t, json.Unmarshal([]byte(get(t, s, "/api/runs/"+newID)), &j))
	require.Equal(t, "rx-ui-1", j.ParentRun)
	require.Equal(t, "rx-ui-1", j.RootRun)
	require.Equal(t, "from failure", j.Reexecution)
	require.True(t, j.CanReexecute)
	require.Equal(t, "rx-ui-1", j.Steps[0].ReusedFrom)
	require.Empty(t, j.Steps[1].ReusedFrom)
	require.Equal(t, `"rows: 12 → loaded"`, j.Steps[2].Output)

	// A running run: the buttons wait, hidden, and the action is refused.
	long := launch(t, rt, long(), "rx-ui-long")
	terminateAtEnd(t, rt, long)
	page = get(t, s, "/runs/"+long)
	require.Contains(t, page, `<div id="reexecute" hidden>`)
	w = do(t, s, req{method: http.MethodPost, path: "/runs/" + long + "/reexecute", form: url.Values{"csrf": {csrf}, "from": {"all"}}})
	require.Equal(t, http.StatusConflict, w.Code)
	require.Contains(t, w.Body.String(), "The run has not finished: run not finished: run rx-ui-long is")

	// Read-only: neither offered nor done.
	ro := newServer(t, ui.Options{Runtime: rt, ReadOnly: true})
	page = get(t, ro, "/runs/"+id)
	require.NotContains(t, page, `id="reexecute"`)
	w = do(t, ro, req{method: http.MethodPost, path: path, form: url.Values{"csrf": {metaCSRF(t, page)}, "from": {"all"}}})
	require.Equal(t, http.StatusForbidden, w.Code)
	require.Contains(t, w.Body.String(), "read-only")
}
