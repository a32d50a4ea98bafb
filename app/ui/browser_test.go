package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/ui"
)

// The browser tests drive headless Chromium (Debian package chromium) with
// chromedp. They never skip: without Chromium they fail, saying how to
// install it. On failure a test saves a screenshot of the page and prints
// its path.

// screenshotEnv names the directory where TestBrowser_Pages writes the
// screenshots of the documentation (make screenshots: docs/img).
const screenshotEnv = "DAGQ_TEST_UI_SCREENSHOTS"

// chromiumPath finds Chromium, or fails the test saying how to install it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatalf("the browser tests need Chromium and found none on PATH (chromium, chromium-browser, google-chrome): " +
		"install it with \"apt-get install -y chromium\" (Debian; .ci/run installs it when it is missing)")
	return ""
}

// browser is one headless Chromium tab with what the page did wrong: script
// exceptions, console errors (a Content-Security-Policy violation is one)
// and alert dialogs (which the console never opens: one means a script ran
// that should not have).
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string

	mu       sync.Mutex
	problems []string
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // root in CI
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("disable-gpu", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: ctx, base: base}
	t.Cleanup(func() {
		if t.Failed() {
			b.saveFailure()
		}
		cancel()
		cancelAlloc()
	})
	require.NoError(t, chromedp.Do(ctx), "start Chromium")
	_, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{})
	require.NoError(t, err)
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	console := chromedp.Events(ctx, runtime.ConsoleAPICalled)
	logs := chromedp.Events(ctx, cdplog.EntryAdded)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			b.problem("script exception at %s:%d: %s", d.URL, d.LineNumber, msg)
		}
	}()
	go func() {
		for ev, err := range console {
			if err != nil {
				return
			}
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				b.problem("console.error: %s", strings.Join(parts, " "))
			}
		}
	}()
	go func() {
		for ev, err := range logs {
			if err != nil {
				return
			}
			e := ev.Entry
			if e.Level == cdplog.EntryLevelError && e.Source != cdplog.EntrySourceNetwork {
				b.problem("console (%s): %s", e.Source, e.Text)
			}
		}
	}()
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			if ev.Type != page.DialogTypeConfirm {
				b.problem("a %s dialog opened: %q", ev.Type, ev.Message)
			}
			// Accept confirm(): the console asks before it terminates or redrives.
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	t.Cleanup(func() { b.requireClean() })
	return b
}

func (b *browser) problem(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, fmt.Sprintf(format, args...))
}

// requireClean fails the test when a page had a problem.
func (b *browser) requireClean() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("the page had a problem: %s", p)
	}
	b.problems = nil
}

// open navigates to path and waits for the page's script to have run.
func (b *browser) open(path string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	require.NoError(b.t, chromedp.Do(ctx, chromedp.Navigate(b.base+path)), "open %s", path)
	b.waitFor(`window.dagqUI !== undefined`, 10*time.Second)
}

// waitFor polls the JavaScript condition until it is true or timeout.
func (b *browser) waitFor(cond string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	require.NoError(b.t, err, "waiting for %s", cond)
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(b.t, err, expr)
	return v
}

// text is the text of the first element matching the CSS selector.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return eval[string](b, `document.querySelector(`+jsString(sel)+`).textContent`)
}

// submit clicks the button matching the CSS selector, which submits a
// form (a confirm() it asks is accepted), and waits for the page it leads to.
func (b *browser) submit(sel string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel))))
	require.NoError(b.t, err, "submit with %s", sel)
	b.waitFor(`window.dagqUI !== undefined`, 10*time.Second)
}

// screenshot saves the viewport as dir/name.
func (b *browser) screenshot(dir, name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(b.t, err)
	path := filepath.Join(dir, name)
	require.NoError(b.t, os.WriteFile(path, png, 0o644))
	return path
}

// saveFailure saves a screenshot of the whole page of a failed test and
// prints where.
func (b *browser) saveFailure() {
	dir := filepath.Join(os.TempDir(), "dagq-ui-failures")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Logf("no failure screenshot: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("no failure screenshot: %v", err)
		return
	}
	name := regexp.MustCompile(`[^A-Za-z0-9_-]+`).ReplaceAllString(b.t.Name(), "_") + "-" + time.Now().Format("150405") + ".png"
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("no failure screenshot: %v", err)
		return
	}
	url, _ := chromedp.Run(ctx, chromedp.Location())
	b.t.Logf("screenshot of %s at the failure: %s", url, path)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// serve serves s on a loopback port until the test ends and returns its
// base URL.
func serve(t *testing.T, s *ui.Server) string {
	t.Helper()
	ln, err := ui.Listen("127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return ui.URL(ln)
}

// nodesIn is a JavaScript condition: n nodes of the DAG are in state.
func nodesIn(state string, n int) string {
	return fmt.Sprintf(`document.querySelectorAll('#dag g.node.st-%s').length === %d`, state, n)
}

// nodeIn is a JavaScript condition: the DAG node of step is in state.
func nodeIn(step, state string) string {
	return fmt.Sprintf(`(document.querySelector('#dag g.node[data-step=%s]')||{classList:{contains(){return false}}}).classList.contains('st-%s')`,
		jsString(step), state)
}

// terminateAtEnd terminates run id when the test ends (a run left running
// would hold the workers).
func terminateAtEnd(t *testing.T, rt *app.Runtime, id string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = rt.Launcher.Terminate(ctx, id)
		_, _ = rt.Launcher.Wait(ctx, id)
	})
}
