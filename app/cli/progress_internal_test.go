package cli

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core/dag"
)

var testJob = dag.Job{Name: "j", Steps: []dag.Step{
	{Name: "a", Task: "echo"},
	{Name: "load", Task: "fail", Upstream: []string{"a"}},
	{Name: "z", Task: "hash", Upstream: []string{"load"}},
}}

func testEvents() []dag.Event {
	t0 := time.Date(2026, 1, 2, 12, 0, 1, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	return []dag.Event{
		{Type: dag.EventRunStarted, RunID: "r1", Time: at(0)},
		{Type: dag.EventStepQueued, RunID: "r1", Step: "a", Time: at(0)},
		{Type: dag.EventStepStarted, RunID: "r1", Step: "a", Attempt: 1, Time: at(5)},
		{Type: dag.EventStepSucceeded, RunID: "r1", Step: "a", Attempt: 1, Time: at(25)},
		{Type: dag.EventStepQueued, RunID: "r1", Step: "load", Time: at(26)},
		{Type: dag.EventStepStarted, RunID: "r1", Step: "load", Attempt: 1, Time: at(30)},
		{Type: dag.EventStepRetried, RunID: "r1", Step: "load", Attempt: 2, Error: "boom", Time: at(31)},
		{Type: dag.EventStepStarted, RunID: "r1", Step: "load", Attempt: 2, Time: at(1500)},
		{Type: dag.EventStepFailed, RunID: "r1", Step: "load", Attempt: 2, Error: "boom", Time: at(2750)},
		{Type: dag.EventStepSkipped, RunID: "r1", Step: "z", Error: `upstream "load" failed`, Time: at(2751)},
		{Type: dag.EventRunFinished, RunID: "r1", Error: `dagq: run r1 of job "j" failed; step "load" failed: boom`, Time: at(2752)},
	}
}

func TestPlainProgress(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(ProgressAuto, &b, testJob) // a buffer is no terminal: plain
	for _, ev := range testEvents() {
		p.Event(ev)
	}
	p.Close()
	want := func(hms string) string {
		return time.Date(2026, 1, 2, 12, 0, 1, 0, time.UTC).Local().Format("15:04:05")[:6] + hms
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Equal(t, []string{
		want("01") + " run r1 started",
		want("01") + " step a queued",
		want("01") + " step a started (attempt 1)",
		want("01") + " step a succeeded (attempt 1, 20ms)",
		want("01") + " step load queued",
		want("01") + " step load started (attempt 1)",
		want("01") + " step load will retry (attempt 2 next): boom",
		want("02") + " step load started (attempt 2)",
		want("03") + " step load failed (attempt 2, 1.25s): boom",
		want("03") + ` step z skipped: upstream "load" failed`,
		want("03") + ` run r1 finished in 2.75s: failed; step "load" failed: boom`,
	}, lines)
}

func TestLiveProgress(t *testing.T) {
	var b bytes.Buffer
	p := newLiveProgress(&b, testJob, time.Hour)
	evs := testEvents()
	for _, ev := range evs[:6] {
		p.Event(ev)
	}
	frame := b.String()
	require.Contains(t, frame, "\x1b[4A", "redraws over the previous 4 lines (header + 3 steps)")
	b.Reset()
	// Text written through Wrap lands above the frame, which is redrawn.
	var logs bytes.Buffer
	_, err := p.Wrap(&logs).Write([]byte("a log line\n"))
	require.NoError(t, err)
	require.Equal(t, "a log line\n", logs.String())
	require.True(t, strings.HasPrefix(b.String(), "\x1b[4A\r\x1b[J"), "%q", b.String())
	for _, ev := range evs[6:] {
		p.Event(ev)
	}
	p.Close()
	last := b.String()[strings.LastIndex(b.String(), "\x1b[4A"):]
	plain := regexp.MustCompile(`\x1b\[[0-9]*[A-Za-z]|\r`).ReplaceAllString(last, "")
	require.Equal(t, `run r1 · 3/3 steps done · 2.75s
  ✓ a     echo       succeeded 20ms
  ✗ load  fail       failed    1.25s (attempt 2) boom
  - z     hash       skipped   upstream "load" failed
`, plain)
	p.Event(evs[0]) // after Close: ignored, no panic
}

func TestWriteTableAndJSON(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	res := dag.RunResult{RunID: "r1", Job: "j", State: dag.RunFailed, StartedAt: t0, FinishedAt: t0.Add(1500 * time.Millisecond),
		Steps: []dag.StepResult{
			{Name: "a", Task: "echo", TaskID: "r1.a", State: dag.StepSucceeded, Attempts: 1, StartedAt: t0, FinishedAt: t0.Add(20 * time.Millisecond), Output: json.RawMessage(`{ "k": [1, 2] }`)},
			{Name: "load", Task: "fail", TaskID: "r1.load", State: dag.StepFailed, Attempts: 3, StartedAt: t0, FinishedAt: t0.Add(time.Second), Error: "boom\nsecond line"},
			{Name: "z", Task: "hash", State: dag.StepSkipped, Error: strings.Repeat("x", 100)},
		}}
	var b bytes.Buffer
	require.NoError(t, writeTable(&b, res))
	require.Equal(t, `STEP  TASK  STATE      ATTEMPTS  DURATION  OUTPUT / ERROR
a     echo  succeeded  1         20ms      {"k":[1,2]}
load  fail  failed     3         1s        boom second line
z     hash  skipped    0         -         `+strings.Repeat("x", 71)+`…

run r1 of job j failed in 1.5s: 1 succeeded, 1 failed, 1 skipped
`, b.String())

	b.Reset()
	require.NoError(t, writeJSON(&b, toJSON(res)))
	var back map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &back))
	require.Equal(t, "r1", back["run_id"])
	require.Equal(t, 1500.0, back["duration_ms"])
	steps := back["steps"].([]any)
	require.Equal(t, map[string]any{"k": []any{1.0, 2.0}}, steps[0].(map[string]any)["output"])
	require.NotContains(t, steps[2].(map[string]any), "started_at", "unknown times are left out")
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Nanosecond:                      "1µs",
		1234 * time.Microsecond:                    "1ms",
		20*time.Millisecond + 400*time.Microsecond: "20ms",
		1250 * time.Millisecond:                    "1.25s",
		65*time.Second + 400*time.Millisecond:      "1m5s",
	} {
		require.Equal(t, want, formatDuration(d), d.String())
	}
}

// Plain progress and the logs written through its Wrap share one writer
// line by line: a log line written in pieces is never cut by a progress
// line.
func TestPlainProgress_LinesNotInterleaved(t *testing.T) {
	var out bytes.Buffer
	p := newPlainProgress(&out)
	logs := p.Wrap(&out)
	_, err := logs.Write([]byte(`{"level":"WARN",`))
	require.NoError(t, err)
	p.Event(dag.Event{Type: dag.EventStepQueued, Step: "a", Time: time.Date(2026, 1, 1, 12, 0, 1, 0, time.UTC)})
	_, err = logs.Write([]byte(`"msg":"x"}` + "\n"))
	require.NoError(t, err)
	require.Equal(t, "12:00:01 step a queued\n"+`{"level":"WARN","msg":"x"}`+"\n", out.String())
	p.Close()
}
