package dag_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core/dag"
)

// RunResult and Event are stored and printed as JSON with stable snake_case
// names, and survive a round trip (the run task's output is a RunResult).
func TestRunResult_JSON(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	in := dag.RunResult{RunID: "r1", Job: "diamond", State: dag.RunFailed, StartedAt: at, FinishedAt: at.Add(time.Second),
		Steps: []dag.StepResult{{Name: "a", Task: "echo", TaskID: "r1.a", State: dag.StepFailed, Attempts: 2,
			StartedAt: at, FinishedAt: at.Add(time.Second), Error: "boom", Output: json.RawMessage(`"x"`)}}}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	require.JSONEq(t, `{"run_id":"r1","job":"diamond","state":"failed","started_at":"2026-11-25T12:00:00Z","finished_at":"2026-11-25T12:00:01Z",
		"steps":[{"name":"a","task":"echo","task_id":"r1.a","state":"failed","attempts":2,"started_at":"2026-11-25T12:00:00Z",
		"finished_at":"2026-11-25T12:00:01Z","error":"boom","output":"x"}]}`, string(b))
	var out dag.RunResult
	require.NoError(t, json.Unmarshal(b, &out))
	require.Equal(t, in.Steps[0].Name, out.Steps[0].Name)
	require.True(t, in.FinishedAt.Equal(out.FinishedAt))

	ev, err := json.Marshal(dag.Event{Type: dag.EventStepRetried, RunID: "r1", Step: "a", Attempt: 2, Error: "boom", Time: at})
	require.NoError(t, err)
	require.JSONEq(t, `{"type":"step_retried","run_id":"r1","step":"a","attempt":2,"error":"boom","time":"2026-11-25T12:00:00Z"}`, string(ev))
}
