package cli_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
)

// wrapped is a writer that wraps another, as dagq run's live view does.
type wrapped struct{ w io.Writer }

func (w wrapped) Write(p []byte) (int, error) { return w.w.Write(p) }
func (w wrapped) Unwrap() io.Writer           { return w.w }

// Format auto writes text to a terminal and JSON to anything else; text
// and json force it.
func TestNewLogger_Auto(t *testing.T) {
	require.Equal(t, "auto", config.Default().Log.Format)
	handler := func(format string, w io.Writer) slog.Handler {
		t.Helper()
		l, err := app.NewLogger(config.LogConfig{Level: "info", Format: format}, w)
		require.NoError(t, err)
		return l.Handler()
	}
	var buf bytes.Buffer
	require.IsType(t, &slog.JSONHandler{}, handler("auto", &buf), "a buffer is no terminal")
	require.IsType(t, &slog.JSONHandler{}, handler("", &buf))
	require.IsType(t, &slog.TextHandler{}, handler("text", &buf))
	require.IsType(t, &slog.JSONHandler{}, handler("JSON", &buf))

	file, err := os.Create(t.TempDir() + "/log")
	require.NoError(t, err)
	defer file.Close()
	require.IsType(t, &slog.JSONHandler{}, handler("auto", file), "a regular file is no terminal")

	tty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal to test with: %v", err)
	}
	defer tty.Close()
	require.IsType(t, &slog.TextHandler{}, handler("auto", tty))
	require.IsType(t, &slog.TextHandler{}, handler("auto", wrapped{wrapped{tty}}), "judged by the writer wrapped")
	require.IsType(t, &slog.JSONHandler{}, handler("json", tty))

	_, err = app.NewLogger(config.LogConfig{Level: "info", Format: "xml"}, &buf)
	require.EqualError(t, err, `log.format: "xml": valid values: auto, text, json`)
}

// Every log line of a run's tasks carries the task's ID, name and attempt,
// the run ID and the step ID; every line about a task names it.
func TestRun_TaskLogLinesCarryTheTask(t *testing.T) {
	r := dagq(t, "run", examples+"failing.yaml", "--run-id", "logs-1", "--progress", "none",
		"--log-level", "debug", "--log-format", "json")
	require.Equal(t, cli.ExitFailed, r.code)
	var taskLines, executorLines int
	for _, line := range strings.Split(r.stderr, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue // dagq's own messages
		}
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		msg, _ := rec["msg"].(string)
		if strings.HasPrefix(msg, "task ") {
			require.Contains(t, rec, "task_id", line)
		}
		id, ok := rec["task_id"].(string)
		if !ok {
			continue
		}
		taskLines++
		step, _ := rec["step_id"].(string)
		require.NotEmpty(t, step, line)
		require.Equal(t, "logs-1."+step, id, line)
		require.Equal(t, "logs-1", rec["run_id"], line)
		require.NotEmpty(t, rec["task"], line)
		require.GreaterOrEqual(t, rec["attempt"], float64(1), line)
		if _, executor := rec["job"]; executor {
			executorLines++ // the executor's lines about a step (no worker)
		} else {
			require.NotEmpty(t, rec["worker"], line)
		}
	}
	require.Positive(t, executorLines, "the executor's step lines carry the task too")
	require.GreaterOrEqual(t, taskLines, 10, "debug logs a start and an end per attempt")
}
