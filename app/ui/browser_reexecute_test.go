package ui_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/ui"
	"github.com/dagq/dagq/core/dag"
)

// Press "Re-execute from failure" on a failed run in a real browser, on the
// memory transport: the new run's page opens, follows the run to success,
// links to the run it re-executes and marks the reused step; once finished
// (succeeded) it offers "Re-execute all" only.
func TestBrowser_ReexecuteFromFailure(t *testing.T) {
	rt := flakyRuntime(t)
	s := newServer(t, ui.Options{Runtime: rt})
	b := newBrowser(t, serve(t, s))
	id := launch(t, rt, flakyJob(), "flaky-"+stamp())
	require.Equal(t, dag.RunFailed, wait(t, rt, id).State)

	b.open("/runs/" + id)
	b.waitFor(nodeIn("load", "failed")+" && "+nodeIn("report", "skipped"), 10*time.Second)
	require.False(t, eval[bool](b, `document.getElementById('reexecute').hidden`), "offered on a finished run")
	b.submit(`#reexecute-failure button`)

	require.Contains(t, b.text(`.flash`), "Re-execution of "+id+" launched")
	newPath := eval[string](b, `location.pathname`)
	require.NotEqual(t, "/runs/"+id, newPath, "the new run's page")
	b.waitFor(`document.querySelector('#run-state').textContent === 'succeeded' && window.dagqUI.finished`, 30*time.Second)
	b.waitFor(nodesIn("succeeded", 3), 10*time.Second)
	require.Equal(t, id, b.text(`#lineage a`))
	require.Contains(t, b.text(`#lineage`), "from failure")
	require.Equal(t, "reused from "+id, b.text(`#steps tr[data-step="extract"] .reused-from`))
	require.Equal(t, "echo · reused", b.text(`#dag g[data-step="extract"] .n-sub`), "the graph marks the reused step")
	require.Equal(t, "flaky · succeeded", b.text(`#dag g[data-step="load"] .n-sub`))
	require.Zero(t, eval[int](b, `document.querySelectorAll('#steps tr[data-step="load"] .reused-from').length`), "load ran again")
	// The output comes with the run's result, or on "show" when the page
	// saw the run finish before the run task's result was stored.
	report := `#steps tr[data-step="report"] .c-output`
	b.waitFor(`document.querySelector('`+report+` code').textContent !== '' || document.querySelector('`+report+` .show-output') !== null`, 10*time.Second)
	if eval[bool](b, `document.querySelector('`+report+` .show-output') !== null`) {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer cancel()
		_, err := chromedp.Run(ctx, chromedp.Click(chromedp.CSS(report+` .show-output`)))
		require.NoError(t, err)
	}
	b.waitFor(`document.querySelector('`+report+` code').textContent === '"rows: 12 → loaded"'`, 10*time.Second)
	require.False(t, eval[bool](b, `document.getElementById('reexecute').hidden`))
	require.Zero(t, eval[int](b, `document.querySelectorAll('#reexecute-failure').length`), "nothing failed: from failure is not offered")
	require.Equal(t, 1, eval[int](b, `document.querySelectorAll('#reexecute-all').length`))
	if dir := os.Getenv(screenshotEnv); dir != "" { // make screenshots
		b.screenshot(dir, "dashboard-reexecution.png")
	}

	rec, err := rt.Launcher.Record(t.Context(), newPath[len("/runs/"):])
	require.NoError(t, err)
	require.Equal(t, id, rec.ParentRun)
	ext, _ := rec.Step("extract")
	require.Equal(t, id, ext.ReusedFrom)
}
