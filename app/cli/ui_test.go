package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/cli"
)

func TestUI_NeedsASharedTransport(t *testing.T) {
	r := dagq(t, "ui")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, "ui needs a shared transport")
}

func TestUI_NonLoopbackNeedsAuth(t *testing.T) {
	_, flags := sqsEnv(t)
	r := dagq(t, append([]string{"ui", "--addr", "0.0.0.0:0"}, flags...)...)
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, "needs authentication")
	require.Contains(t, r.stderr, "DAGQ_UI_TOKEN")
	require.Contains(t, r.stderr, "--insecure")
}

// dagq ui serves on the sqs transport until it is stopped, then exits 0.
func TestUI_ServesUntilStopped(t *testing.T) {
	_, flags := sqsEnv(t)
	t.Setenv("DAGQ_UI_TOKEN", "a-token-of-twenty-chars")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Execute(ctx, builtins(t), append([]string{"ui", "--addr", "127.0.0.1:0", "--read-only"}, flags...), &out, &errb)
	}()
	base := waitForLine(t, &out, regexp.MustCompile(`dagq ui: serving (http://127\.0\.0\.1:\d+) \(Ctrl-C to stop\)`))
	resp, err := http.Get(base + "/api/queues")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "ui.token applies on loopback too")
	req, _ := http.NewRequest(http.MethodGet, base+"/runs", nil)
	req.Header.Set("Authorization", "Bearer a-token-of-twenty-chars")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "read-only")
	cancel()
	select {
	case code := <-done:
		require.Equal(t, cli.ExitOK, code, errb.String())
	case <-time.After(20 * time.Second):
		t.Fatal("dagq ui did not stop")
	}
}

// dagq run --ui: the dashboard follows the in-process run, stays up after
// it ended and stops with Ctrl-C; the exit status is the run's.
func TestRun_UI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Execute(ctx, builtins(t), []string{"run", examples + "diamond.yaml", "--ui", "127.0.0.1:0", "--run-id", "ui-run-1", "--progress", "none"}, &out, &errb)
	}()
	base := waitForLine(t, &errb, regexp.MustCompile(`dagq: dashboard of run ui-run-1: (http://127\.0\.0\.1:\d+)/runs/ui-run-1`))
	waitForLine(t, &errb, regexp.MustCompile(`the run ended; the dashboard stays up at (\S+) until Ctrl-C`))
	var run struct {
		State string
		Local bool
		Steps []struct{ Name, State, Output string }
	}
	getJSON(t, base+"/api/runs/ui-run-1", &run)
	require.Equal(t, "succeeded", run.State)
	require.True(t, run.Local)
	require.Len(t, run.Steps, 4)
	require.Equal(t, `"HELLO, DAGQ | qgad ,olleh"`, run.Steps[3].Output)
	page := getBody(t, base+"/runs/ui-run-1")
	require.Contains(t, page, "driven by this dagq process")
	select {
	case <-done:
		t.Fatal("dagq run --ui exited before it was stopped")
	default:
	}
	cancel()
	select {
	case code := <-done:
		require.Equal(t, cli.ExitOK, code, "the run's exit status")
	case <-time.After(20 * time.Second):
		t.Fatal("dagq run --ui did not stop")
	}
	require.Regexp(t, `(?m)^d\s+concat\s+succeeded`, out.String(), "the result table as without --ui")
}

// Terminate on the dashboard of dagq run --ui cancels the run: exit 130.
func TestRun_UITerminate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Execute(ctx, builtins(t), []string{"run", examples + "long.yaml", "--ui", "127.0.0.1:0", "--run-id", "ui-run-2", "--progress", "none"}, &out, &errb)
	}()
	base := waitForLine(t, &errb, regexp.MustCompile(`dagq: dashboard of run ui-run-2: (http://127\.0\.0\.1:\d+)/runs/ui-run-2`))
	require.Eventually(t, func() bool {
		var run struct {
			Steps []struct{ Name, State string }
		}
		getJSON(t, base+"/api/runs/ui-run-2", &run)
		return run.Steps[1].State == "running"
	}, 20*time.Second, 50*time.Millisecond)
	page := getBody(t, base+"/runs/ui-run-2")
	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page)
	require.NotNil(t, csrf, "the page has a Terminate form")
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(base+"/runs/ui-run-2/terminate", url.Values{"csrf": {csrf[1]}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	waitForLine(t, &errb, regexp.MustCompile(`the run ended; the dashboard stays up at (\S+) until Ctrl-C`))
	var run struct{ State string }
	getJSON(t, base+"/api/runs/ui-run-2", &run)
	require.Equal(t, "cancelled", run.State)
	cancel()
	select {
	case code := <-done:
		require.Equal(t, cli.ExitCancelled, code)
	case <-time.After(20 * time.Second):
		t.Fatal("dagq run --ui did not stop")
	}
}

func TestRun_UINonLoopbackNeedsAuth(t *testing.T) {
	r := dagq(t, "run", examples+"diamond.yaml", "--ui", ":0")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, "needs authentication")
}

// waitForLine waits for a line matching re in b and returns its first
// group.
func waitForLine(t *testing.T, b *syncBuffer, re *regexp.Regexp) string {
	t.Helper()
	var m []string
	require.Eventually(t, func() bool {
		m = re.FindStringSubmatch(b.String())
		return m != nil
	}, 30*time.Second, 20*time.Millisecond, "no line matching %s in:\n%s", re, b)
	return m[1]
}

func getBody(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, u)
	return string(body)
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal([]byte(getBody(t, u)), v), u)
	_ = strings.TrimSpace
}
