package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core/dag"
)

// The status table's ERROR column is whole off a terminal and cut to fit
// on one (to no less than minDetail characters on a narrow one).
func TestStepTable_ErrorWidth(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	long := "dial tcp 10.0.0.1:5432: connect: connection refused\nwhile loading rows " + strings.Repeat("x", 80)
	rec := dag.RunRecord{RunID: "r1", Job: "j", Steps: []dag.StepRecord{
		{Name: "load", Task: "fail", State: dag.StepFailed, Attempts: 3, StartedAt: t0, FinishedAt: t0.Add(1500 * time.Millisecond), Error: long},
		{Name: "report", Task: "concat", State: dag.StepSkipped, Error: `upstream "load" failed`},
	}}
	workers := map[string]string{"load": "host-1-abc"}
	table := func(width int) []string {
		var b bytes.Buffer
		require.NoError(t, writeStepTable(&b, rec, t0, stepTable{workers: workers, width: width}))
		return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	}

	lines := table(0)
	require.Equal(t, []string{
		"STEP    TASK    STATE    ATTEMPTS  DURATION  WORKER      ERROR",
		"load    fail    failed   3         1.5s      host-1-abc  " + strings.ReplaceAll(long, "\n", " "),
		`report  concat  skipped  0         -         -           upstream "load" failed`,
	}, lines, "no terminal: the whole error on one line")

	lines = table(100)
	for _, l := range lines {
		require.LessOrEqual(t, utf8.RuneCountInString(l), 100, l)
	}
	require.True(t, strings.HasPrefix(lines[1], "load    fail    failed   3         1.5s      host-1-abc  dial tcp"), lines[1])
	require.True(t, strings.HasSuffix(lines[1], "…"), lines[1])
	require.Equal(t, 100, utf8.RuneCountInString(lines[1]), "cut to the width")
	require.Equal(t, `report  concat  skipped  0         -         -           upstream "load" failed`, lines[2], "short errors are whole")

	lines = table(40)
	require.Equal(t, minDetail, utf8.RuneCountInString(strings.TrimPrefix(lines[1], "load    fail    failed   3         1.5s      host-1-abc  ")))
}
