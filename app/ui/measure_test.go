package ui_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/app/ui"
	"github.com/dagq/dagq/core/dag"
)

// measureEnv runs TestMeasure_Dashboard (make ui-measure): it is a
// measurement, minutes long, that prints numbers and asserts none of them.
const measureEnv = "DAGQ_TEST_UI_MEASURE"

// measureWindow is how long each request count runs.
const measureWindow = time.Minute

// What the dashboard costs and how closely it follows a run, on the
// emulators, printed (docs/dashboard.md quotes it):
//
//   - step finished → its state changed in the browser, p50 and max over a
//     50-step job, at launcher.heartbeat_interval 5s (the default) and 1s;
//   - SQS and S3 requests per minute of the dashboard's runtime with one run
//     page open on a running run, with the queues page open, with the runs
//     page open and nothing running, and with no page open;
//   - the runs page with 1,000 runs: server render time and the browser's
//     load time.
func TestMeasure_Dashboard(t *testing.T) {
	if os.Getenv(measureEnv) == "" {
		t.Skipf("a measurement, not a test: make ui-measure (or %s=1) runs it", measureEnv)
	}
	if os.Getenv(measureEnv) == "runs" { // only the runs page
		measureRunsList(t)
		return
	}
	for _, hb := range []time.Duration{5 * time.Second, time.Second} {
		measureLatency(t, hb)
	}
	measureRequests(t)
	measureRunsList(t)
}

// fiftySteps is ten chains of five sleeps of 1 to 4 seconds.
func fiftySteps() dag.Job {
	r := rand.New(rand.NewPCG(1, 2))
	job := dag.Job{Name: "fifty"}
	for c := range 10 {
		for i := range 5 {
			s := dag.Step{Name: fmt.Sprintf("c%d_s%d", c, i), Task: "sleep", Args: raw(fmt.Sprintf("%dms", 1000+r.IntN(3000)))}
			if i > 0 {
				s.Upstream = []string{fmt.Sprintf("c%d_s%d", c, i-1)}
			}
			job.Steps = append(job.Steps, s)
		}
	}
	return job
}

func measureLatency(t *testing.T, heartbeat time.Duration) {
	cfg := sqsConfig(t)
	cfg.Launcher.HeartbeatInterval = heartbeat
	cfg.Launcher.StaleAfter = 3 * heartbeat
	cfg.Worker.Concurrency = 10
	fleet := sqsRuntime(t, cfg)
	startWorkers(t, fleet)
	dash := sqsRuntime(t, cfg)
	s := newServer(t, ui.Options{Runtime: dash})
	b := newBrowser(t, serve(t, s))

	id := launch(t, fleet, fiftySteps(), "fifty-"+stamp())
	b.open("/runs/" + id)
	b.waitFor(`window.dagqUI.finished`, 3*time.Minute)
	seen := eval[map[string]float64](b, `window.dagqUI.seen`)
	rec, err := dash.Launcher.Record(context.Background(), id)
	require.NoError(t, err)
	var lat []time.Duration
	for _, st := range rec.Steps {
		at, ok := seen[st.Name]
		if !ok || st.FinishedAt.IsZero() {
			continue
		}
		lat = append(lat, time.UnixMilli(int64(at)).Sub(st.FinishedAt))
	}
	slices.Sort(lat)
	require.NotEmpty(t, lat)
	fmt.Printf("latency  heartbeat %-4v refresh %v: step finished → shown in the browser over %d steps: p50 %v, p90 %v, max %v (run %s, %s)\n",
		heartbeat, config.DefaultUIRefresh, len(lat), lat[len(lat)/2].Round(10*time.Millisecond),
		lat[len(lat)*9/10].Round(10*time.Millisecond), lat[len(lat)-1].Round(10*time.Millisecond), rec.State,
		rec.FinishedAt.Sub(rec.StartedAt).Round(100*time.Millisecond))
}

func measureRequests(t *testing.T) {
	cfg := sqsConfig(t)
	fleet := sqsRuntime(t, cfg)
	startWorkers(t, fleet)
	counter := cli.NewAWSCounter()
	dash := sqsRuntime(t, cfg, cli.WithAWSCounter(counter))
	s := newServer(t, ui.Options{Runtime: dash})
	base := serve(t, s)
	b := newBrowser(t, base)

	count := func(what string) {
		counter.Reset()
		time.Sleep(measureWindow)
		snap := counter.Snapshot()
		var ops []string
		for _, c := range snap {
			ops = append(ops, fmt.Sprintf("%s %s %d", c.Service, c.Operation, c.Requests))
		}
		per := float64(snap.Total()) * float64(time.Minute) / float64(measureWindow)
		fmt.Printf("requests %-48s %5.1f per minute (%d in %v: %s)\n", what, per, snap.Total(), measureWindow, strings.Join(ops, ", "))
	}

	id := launch(t, fleet, long(), "cost-"+stamp())
	terminateAtEnd(t, fleet, id)
	b.open("/runs/" + id)
	b.waitFor(nodeIn("work", "running"), time.Minute)
	count("one run page open on a running run:")
	_, err := fleet.Launcher.Terminate(context.Background(), id)
	require.NoError(t, err)
	b.waitFor(`window.dagqUI.finished`, time.Minute)
	count("the same page, the run finished:")
	b.open("/queues")
	count("the queues page open:")
	b.open("/runs")
	count("the runs page open, nothing running:")
	require.NoError(t, chromedp.Do(b.ctx, chromedp.Navigate("about:blank")))
	count("no page open (idle dashboard):")
}

func measureRunsList(t *testing.T) {
	// The run index on the emulators: 1,000 launched runs stored (queued:
	// no worker serves this runtime), listed by the console's default
	// ListRuns (dag.Launcher.ListRuns: one ListObjectsV2 per page).
	stored := sqsRuntime(t, sqsConfig(t))
	for i := range 1000 {
		launch(t, stored, diamond(), fmt.Sprintf("stored-%04d", i))
	}
	indexed := newServer(t, ui.Options{Runtime: stored})
	// The console's own list: 1,000 launched runs it knows.
	bare := memRuntimeWithoutWorkers(t)
	knownBare := newServer(t, ui.Options{Runtime: bare, NoIndex: true})
	for i := range 1000 {
		id := launch(t, bare, diamond(), fmt.Sprintf("known-%04d", i))
		require.NoError(t, knownBare.Track(context.Background(), id))
	}
	for _, c := range []struct {
		name, path string
		s          *ui.Server
	}{
		{"from the run index on S3, default page (50)", "/runs", indexed},
		{"from the run index on S3, one page of 1,000", "/runs?limit=1000", indexed},
		{"the runs the console knows (1,000)", "/runs?limit=1000", knownBare},
	} {
		var d []time.Duration
		var size int
		for range 20 {
			start := time.Now()
			w := do(t, c.s, req{path: c.path})
			d = append(d, time.Since(start))
			size = w.Body.Len()
			require.Equal(t, http.StatusOK, w.Code)
		}
		slices.Sort(d)
		b := newBrowser(t, serve(t, c.s))
		b.open(c.path)
		load := eval[float64](b, `(() => { const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime; })()`)
		fmt.Printf("runs page with 1,000 runs %s: server p50 %v (%d KiB), browser load %.0fms\n",
			c.name, d[len(d)/2].Round(100*time.Microsecond), size/1024, load)
	}
}

// memRuntimeWithoutWorkers is a memory runtime nobody serves: launched runs
// stay queued.
func memRuntimeWithoutWorkers(t *testing.T) *app.Runtime {
	t.Helper()
	cfg := config.Default()
	fastLauncher(&cfg)
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	t.Cleanup(rt.Close)
	return rt
}
