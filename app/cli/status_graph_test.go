package cli_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/core/dag"
)

// dagq status and dagq graph --run on a failed launched run, in process
// against one shared memory runtime.
func TestStatusAndGraph_FailedRun(t *testing.T) {
	rt := sharedRuntime(t)
	r := in(t, rt, "launch", examples+"failing.yaml", "--wait", "--progress", "none", "--run-id", "g-1")
	require.Equal(t, cli.ExitFailed, r.code)

	t.Run("status table", func(t *testing.T) {
		r := in(t, rt, "status", "g-1")
		require.Equal(t, cli.ExitOK, r.code)
		for _, re := range []string{
			`(?m)^run\s+g-1$`,
			`(?m)^job\s+failing$`,
			`(?m)^state\s+failed$`,
			`(?m)^started\s+\S+ \(\S+ ago\)$`,
			`(?m)^finished\s+\S+ \(\S+ ago\), took \S+$`,
			`(?m)^error\s+\S`,
			`(?m)^STEP\s+TASK\s+STATE\s+ATTEMPTS\s+DURATION\s+WORKER\s+ERROR$`,
			`(?m)^fetch\s+echo\s+succeeded\s+1\s+\S+\s+\S+-\w+$`,
			`(?m)^flaky\s+fail\s+succeeded\s+3\s+\S+\s+\S+-\w+$`,
			`(?m)^load\s+fail\s+failed\s+3\s+\S+\s+\S+-\w+\s+database is read-only \(attempt 3\)$`,
			`(?m)^report\s+concat\s+skipped\s+0\s+-\s+-\s+upstream "load" failed$`,
		} {
			require.Regexp(t, regexp.MustCompile(re), r.stdout)
		}
		// The columns line up: every value starts where its header does.
		lines := strings.Split(r.stdout, "\n")
		head := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "STEP ") })
		require.GreaterOrEqual(t, head, 0)
		col := strings.Index(lines[head], "WORKER") // ASCII
		for _, l := range lines[head+1 : head+6] {
			r := []rune(l)
			require.NotEqual(t, ' ', r[col], "column WORKER of %q", l)
			require.Equal(t, ' ', r[col-1], "column WORKER of %q", l)
		}
	})

	t.Run("status json", func(t *testing.T) {
		r := in(t, rt, "status", "g-1", "--output", "json")
		require.Equal(t, cli.ExitOK, r.code)
		var doc map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &doc))
		require.ElementsMatch(t, []string{"run_id", "job", "state", "task_id", "steps", "worker", "attempt",
			"created_at", "started_at", "finished_at", "error"}, slices.Collect(mapKeys(doc)))
		var rec struct {
			RunID string `json:"run_id"`
			State string `json:"state"`
			Steps []map[string]any
		}
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &rec))
		require.Equal(t, "g-1", rec.RunID)
		require.Equal(t, "failed", rec.State)
		require.Len(t, rec.Steps, 5)
		byName := map[string]map[string]any{}
		for _, s := range rec.Steps {
			byName[s["name"].(string)] = s
		}
		load := byName["load"]
		require.ElementsMatch(t, []string{"name", "task", "task_id", "state", "attempts", "started_at", "finished_at", "error", "worker", "upstream"},
			slices.Collect(mapKeys(load)))
		require.Equal(t, "failed", load["state"])
		require.Equal(t, float64(3), load["attempts"])
		require.Equal(t, "g-1.load", load["task_id"])
		require.Regexp(t, `^\S+-\w+$`, load["worker"], "the worker that recorded the result")
		require.Equal(t, "database is read-only (attempt 3)", load["error"])
		report := byName["report"]
		require.Equal(t, "skipped", report["state"])
		require.NotContains(t, report, "worker", "a skipped step never ran")
		require.NotEmpty(t, byName["audit"]["worker"])
	})

	t.Run("graph --run marks the failed and skipped steps", func(t *testing.T) {
		r := in(t, rt, "graph", examples+"failing.yaml", "--run", "g-1")
		require.Equal(t, cli.ExitOK, r.code, r.stderr)
		require.Equal(t, `graph TD
  %% run g-1 of job failing: failed
  fetch["fetch<br/><i>echo</i><br/>succeeded"]
  flaky["flaky<br/><i>fail</i><br/>succeeded, 3 attempts"]
  load["load<br/><i>fail</i><br/>failed, 3 attempts"]
  report["report<br/><i>concat</i><br/>skipped"]
  audit["audit<br/><i>hash</i><br/>succeeded"]
  fetch --> flaky
  fetch --> load
  load --> report
  flaky --> report
  fetch --> audit
  classDef succeeded fill:#c8e6c9,stroke:#2e7d32,color:#1b5e20
  classDef failed fill:#ffcdd2,stroke:#c62828,color:#b71c1c
  classDef skipped fill:#e0e0e0,stroke:#9e9e9e,color:#616161
  class fetch,flaky,audit succeeded
  class load failed
  class report skipped
`, r.stdout)

		withFile := r.stdout
		r = in(t, rt, "graph", "--run", "g-1")
		require.Equal(t, cli.ExitOK, r.code, r.stderr)
		require.Equal(t, withFile, r.stdout, "the run record alone draws the same graph (upstreams are in the record)")

		r = in(t, rt, "graph", examples+"failing.yaml", "--run", "g-1", "--format", "dot")
		require.Equal(t, cli.ExitOK, r.code, r.stderr)
		require.Contains(t, r.stdout, `  "load" [label="load\nfail\nfailed, 3 attempts", style="rounded,filled", fillcolor="#ffcdd2"`)
		require.Contains(t, r.stdout, `  "report" [label="report\nconcat\nskipped", style="rounded,filled", fillcolor="#e0e0e0"`)
		require.Contains(t, r.stdout, `  label="run g-1 of job failing: failed";`)
	})

	t.Run("graph --run errors", func(t *testing.T) {
		r := in(t, rt, "graph", examples+"diamond.yaml", "--run", "g-1")
		require.Equal(t, cli.ExitUsage, r.code)
		require.Equal(t, "dagq: "+examples+`diamond.yaml is job "diamond", but run g-1 is of job "failing": give graph --run the run's job file`+"\n", r.stderr)
		require.Empty(t, r.stdout)

		other := writeJob(t, "name: failing\nsteps:\n  - {name: fetch, task: echo}\n")
		r = in(t, rt, "graph", other, "--run", "g-1")
		require.Equal(t, cli.ExitUsage, r.code)
		require.Contains(t, r.stderr, "(job failing) has steps fetch, but run g-1 has steps audit, fetch, flaky, load, report")

		r = in(t, rt, "graph", examples+"failing.yaml", "--run", "nope")
		require.Equal(t, cli.ExitNotFound, r.code)
		require.Equal(t, "dagq: no run nope: the state store of transport memory has no record of it\n", r.stderr)

		r = in(t, rt, "graph", examples+"failing.yaml", "--run", "g-1", "--format", "png")
		require.Equal(t, cli.ExitUsage, r.code)

		r = in(t, rt, "graph", "a.yaml", "b.yaml", "--run", "g-1")
		require.Equal(t, cli.ExitUsage, r.code)
		require.Contains(t, r.stderr, "graph --run takes at most one argument, the run's job file; got 2")
		r = in(t, rt, "graph")
		require.Equal(t, cli.ExitUsage, r.code, "without --run the job file is required")
	})
}

// graph --run of a running run: running steps blue, the finished one
// green, pending ones plain.
func TestGraph_RunningRun(t *testing.T) {
	rt := sharedRuntime(t)
	slow := writeJob(t, slowJob)
	r := in(t, rt, "launch", slow, "--run-id", "gr-1")
	require.Equal(t, cli.ExitOK, r.code)
	t.Cleanup(func() { in(t, rt, "terminate", "gr-1", "--wait") })
	require.Eventually(t, func() bool {
		st := stepStates(record(t, rt, "gr-1"))
		return st["b"] == dag.StepRunning && st["c"] == dag.StepRunning
	}, 10*time.Second, 50*time.Millisecond)

	r = in(t, rt, "graph", slow, "--run", "gr-1")
	require.Equal(t, cli.ExitOK, r.code)
	require.Contains(t, r.stdout, "  %% run gr-1 of job slow: running\n")
	require.Contains(t, r.stdout, "  d[\"d<br/><i>hash</i><br/>pending\"]\n")
	require.True(t, strings.HasSuffix(r.stdout, `  classDef succeeded fill:#c8e6c9,stroke:#2e7d32,color:#1b5e20
  classDef running fill:#bbdefb,stroke:#1565c0,color:#0d47a1
  class a succeeded
  class b,c running
`), r.stdout)
}

// On the memory transport, graph --run in a process of its own has no run
// to read: it refuses like status; graph without --run needs no transport.
func TestGraphRun_Memory(t *testing.T) {
	r := dagq(t, "graph", examples+"failing.yaml", "--run", "some-run")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, `dagq: graph --run needs a shared transport: transport "memory" keeps runs inside the process that launched them`)
	require.Empty(t, r.stdout)

	r = dagq(t, "graph", examples+"failing.yaml")
	require.Equal(t, cli.ExitOK, r.code)
	require.NotContains(t, r.stdout, "classDef")
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
