package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/app/ui"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
)

// etl is a job of a dozen steps whose run, a while after its start, shows
// most states at once: succeeded, running (sessionize sleeps for ten
// minutes), failed (validate), skipped (notify) and pending.
func etl() dag.Job {
	step := func(name, task string, args string, up ...string) dag.Step {
		s := dag.Step{Name: name, Task: task, Upstream: up}
		if args != "" {
			s.Args = json.RawMessage(args)
		}
		return s
	}
	validate := step("validate", "fail", `{"message":"schema check: column user_id is null in 3 rows"}`, "clean_users")
	validate.Retry = once
	return dag.Job{Name: "nightly-etl", Steps: []dag.Step{
		step("extract_orders", "echo", `"orders: 1204 rows"`),
		step("extract_users", "echo", `"users: 311 rows"`),
		step("extract_events", "echo", `"events: 88213 rows"`),
		step("clean_orders", "transform", `{"op":"upper"}`, "extract_orders"),
		step("clean_users", "transform", `{"op":"upper"}`, "extract_users"),
		step("clean_events", "transform", `{"op":"trim"}`, "extract_events"),
		validate,
		step("notify", "echo", `"users validated"`, "validate"),
		step("join", "concat", `{"sep":" + "}`, "clean_orders", "clean_users"),
		step("sessionize", "sleep", `"10m"`, "clean_events"),
		step("aggregate", "hash", ``, "join", "sessionize"),
		step("report", "echo", `"report ready"`, "aggregate"),
		step("publish", "sleep", `"1s"`, "report"),
	}}
}

// Every page in a real browser, on the memory transport: the DAG of a
// finished and of a running run, a hostile step's <script> shown as text
// (no dialog opens), the runs list, the queues with their chart and a dead
// letter, the workers; no script error and no Content-Security-Policy
// violation anywhere. With DAGQ_TEST_UI_SCREENSHOTS set (make screenshots) it
// writes the screenshots of docs/dashboard.md there.
func TestBrowser_Pages(t *testing.T) {
	shots := os.Getenv(screenshotEnv)
	if shots == "" {
		shots = t.TempDir()
	}
	rt := memRuntime(t, func(c *config.Config) { c.Worker.Concurrency = 8 })
	s := newServer(t, ui.Options{Runtime: rt})
	b := newBrowser(t, serve(t, s))

	ok := launch(t, rt, diamond(), "diamond-"+stamp())
	wait(t, rt, ok)
	bad := launch(t, rt, hostile(), "hostile-"+stamp())
	wait(t, rt, bad)
	big := launch(t, rt, etl(), "nightly-etl-"+stamp())
	terminateAtEnd(t, rt, big)
	deadLetter(t, rt, "7f3c2a91e4b0.export")

	b.open("/runs/" + ok)
	b.waitFor(nodesIn("succeeded", 4), 10*time.Second)
	require.Equal(t, "succeeded", b.text("#run-state"))
	require.Equal(t, `"HELLO, DAGQ | qgad ,olleh"`, b.text(`#steps tr[data-step="d"] .c-output code`))
	b.waitFor(`window.dagqUI.finished`, 5*time.Second)

	b.open("/runs/" + bad)
	b.waitFor(nodeIn("boom", "failed"), 10*time.Second)
	require.Equal(t, xss+" (attempt 1)", b.text(`#steps tr[data-step="boom"] .c-error .clip`), "the error is text")
	require.Equal(t, `"`+xss+`"`, b.text(`#steps tr[data-step="out"] .c-output code`), "the output is text")
	require.Zero(t, eval[int](b, `document.querySelectorAll('#steps script, #timeline script').length`), "no script element from a task")

	b.open("/runs/" + big)
	b.waitFor(nodeIn("sessionize", "running")+" && "+nodeIn("validate", "failed")+" && "+nodeIn("notify", "skipped")+
		" && "+nodeIn("join", "succeeded"), 20*time.Second)
	b.waitFor(`document.querySelector('#live').textContent.startsWith('live')`, 5*time.Second)
	b.screenshot(shots, "dashboard-run.png")

	require.NoError(t, s.Track(context.Background(), big))
	b.open("/runs")
	b.waitFor(`document.querySelectorAll('#runs-table tbody tr[data-run]').length >= 3`, 10*time.Second)
	b.screenshot(shots, "dashboard-runs.png")

	b.open("/queues")
	b.waitFor(`document.querySelector('#chart svg') !== null && document.querySelector('tr[data-task="7f3c2a91e4b0.export"]') !== null`, 10*time.Second)
	queuesWithHistory(t, shots)

	b.open("/workers")
	b.waitFor(`document.querySelectorAll('table.workers tbody tr:not(.empty)').length >= 1`, 5*time.Second)
	b.screenshot(shots, "dashboard-workers.png")
}

// queuesWithHistory screenshots the queues page of a console whose chart
// has a history: a backlog of sleep tasks drained by two step slots,
// sampled every 300ms while the console's clock (Options.Now) moves a
// minute per sample, so the chart's quarter of an hour passes in seconds.
func queuesWithHistory(t *testing.T, shots string) {
	rt := memRuntime(t, func(c *config.Config) { c.Worker.Concurrency = 2 })
	var mu sync.Mutex
	clock := time.Now().Add(-15 * time.Minute)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	s := newServer(t, ui.Options{Runtime: rt, Now: now})
	deadLetter(t, rt, "3be1c07a52f9.load")
	deadLetter(t, rt, "91d0e6aa7c13.resize")
	for i := range 40 {
		_, err := rt.Client.Submit(context.Background(), core.Request{Task: "sleep", Args: raw("150ms"), ID: fmt.Sprintf("backlog-%02d", i)})
		require.NoError(t, err)
	}
	for range 14 {
		get(t, s, "/api/queues")
		mu.Lock()
		clock = clock.Add(time.Minute)
		mu.Unlock()
		time.Sleep(300 * time.Millisecond)
	}
	b := newBrowser(t, serve(t, s))
	b.open("/queues")
	b.waitFor(`document.querySelectorAll('#chart polyline').length >= 3`, 10*time.Second)
	b.screenshot(shots, "dashboard-queues.png")
}

// stamp is a short time stamp for run IDs.
func stamp() string { return time.Now().UTC().Format("0102-150405") }
