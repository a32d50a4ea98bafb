package cli_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core/dag"
)

// sharedRuntime is one memory runtime with its step and run workers
// running, as a program that embeds dagq has: the commands given
// cli.WithRuntime see the runs of each other.
func sharedRuntime(t *testing.T, mods ...func(*config.Config)) *app.Runtime {
	t.Helper()
	cfg := config.Default()
	cfg.Launcher.HeartbeatInterval = 50 * time.Millisecond
	cfg.Launcher.StaleAfter = 2 * time.Second
	cfg.Worker.ShutdownTimeout = 2 * time.Second
	for _, m := range mods {
		m(&cfg)
	}
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	steps, err := rt.StartWorkers(ctx, 1)
	require.NoError(t, err)
	runs, err := rt.StartRunWorkers(ctx, 1)
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, runs.Stop())
		assert.NoError(t, steps.Stop())
		rt.Close()
	})
	return rt
}

// in runs a dagq command against rt.
func in(t *testing.T, rt *app.Runtime, args ...string) result {
	t.Helper()
	return inCtx(t, context.Background(), rt, args...)
}

func inCtx(t *testing.T, ctx context.Context, rt *app.Runtime, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	code := cli.Execute(ctx, nil, args, &out, &errb, cli.WithRuntime(rt))
	r := result{code: code, stdout: out.String(), stderr: errb.String()}
	t.Logf("dagq %s → %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, r.stdout, r.stderr)
	assert.NotContains(t, r.stderr, "panic")
	return r
}

// record runs dagq status --output json.
func record(t *testing.T, rt *app.Runtime, runID string) dag.RunRecord {
	t.Helper()
	r := in(t, rt, "status", runID, "-o", "json")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	var rec dag.RunRecord
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rec))
	return rec
}

func stepStates(rec dag.RunRecord) map[string]dag.StepState {
	m := map[string]dag.StepState{}
	for _, s := range rec.Steps {
		m[s.Name] = s.State
	}
	return m
}

const slowJob = `name: slow
params: {day: sun}
steps:
  - {name: a, task: echo, args: go}
  - {name: b, task: sleep, upstream: [a], args: 1m}
  - {name: c, task: sleep, upstream: [a], args: 1m}
  - {name: d, task: hash, upstream: [b, c]}
`

// The launcher commands, in process against one shared memory runtime:
// launch, status, health and terminate of a long run; unknown runs;
// launch --wait of a succeeding and a failing job.
func TestLauncherCommands_SharedRuntime(t *testing.T) {
	rt := sharedRuntime(t)
	slow := writeJob(t, slowJob)

	t.Run("launch prints the run ID", func(t *testing.T) {
		r := in(t, rt, "launch", slow, "--run-id", "long-1", "-p", "day=mon")
		require.Equal(t, cli.ExitOK, r.code)
		require.Equal(t, "long-1\n", r.stdout, "stdout holds only the run ID")
		require.Contains(t, r.stderr, "dagq: launched run long-1 of job slow; follow it with: dagq status long-1")
		require.NotContains(t, r.stderr, "note:", "no in-process workers: the runtime's owner serves it")
	})

	t.Run("status shows the running steps", func(t *testing.T) {
		require.Eventually(t, func() bool {
			st := stepStates(record(t, rt, "long-1"))
			return st["b"] == dag.StepRunning && st["c"] == dag.StepRunning
		}, 10*time.Second, 50*time.Millisecond)
		rec := record(t, rt, "long-1")
		require.Equal(t, dag.RunRunning, rec.State)
		require.Equal(t, "slow", rec.Job)
		require.Equal(t, 1, rec.Attempt)
		require.NotEmpty(t, rec.Worker)
		require.Equal(t, map[string]string{"day": "mon"}, rec.Params)
		require.Equal(t, map[string]dag.StepState{"a": "succeeded", "b": "running", "c": "running", "d": "pending"}, stepStates(rec))

		r := in(t, rt, "status", "long-1")
		require.Equal(t, cli.ExitOK, r.code)
		for _, re := range []string{
			`(?m)^run\s+long-1$`,
			`(?m)^job\s+slow$`,
			`(?m)^state\s+running$`,
			`(?m)^worker\s+` + regexp.QuoteMeta(rec.Worker) + ` \(attempt 1\)$`,
			`(?m)^params\s+day=mon$`,
			`(?m)^started\s+\S+ \(\S+ ago\)$`,
			`(?m)^STEP\s+TASK\s+STATE\s+ATTEMPTS\s+DURATION\s+WORKER\s+ERROR$`,
			`(?m)^a\s+echo\s+succeeded\s+1\s+\S+\s+\S+-\w+$`,           // the step worker, from a's result
			`(?m)^b\s+sleep\s+running\s+1\s+[0-9.]+[µmn]?s\s+\S+-\w+$`, // the worker running it, from its progress
			`(?m)^d\s+hash\s+pending\s+0\s+-\s+-$`,
		} {
			require.Regexp(t, regexp.MustCompile(re), r.stdout)
		}
	})

	t.Run("health RUNNING", func(t *testing.T) {
		r := in(t, rt, "health", "long-1")
		require.Equal(t, cli.ExitOK, r.code)
		require.Regexp(t, regexp.MustCompile(`^RUNNING: worker \S+ heartbeat \S+ ago\n$`), r.stdout)

		r = in(t, rt, "health", "long-1", "--output", "json")
		require.Equal(t, cli.ExitOK, r.code)
		var h struct {
			RunID         string    `json:"run_id"`
			Status        string    `json:"status"`
			Worker        string    `json:"worker"`
			LastHeartbeat time.Time `json:"last_heartbeat"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &h))
		require.Equal(t, "long-1", h.RunID)
		require.Equal(t, "RUNNING", h.Status)
		require.NotEmpty(t, h.Worker)
		require.False(t, h.LastHeartbeat.IsZero())
	})

	t.Run("terminate a running run", func(t *testing.T) {
		start := time.Now()
		r := in(t, rt, "terminate", "long-1")
		require.Equal(t, cli.ExitOK, r.code)
		// The run may have ended by the time terminate read its record.
		require.Regexp(t, `^run long-1 terminated: (cancel requested; it ends cancelled once its steps stopped \(dagq status long-1\)|cancelled)\n$`, r.stdout)

		require.Eventually(t, func() bool { return record(t, rt, "long-1").State == dag.RunCancelled }, 10*time.Second, 50*time.Millisecond)
		require.Less(t, time.Since(start), 10*time.Second, "the sleeping steps were cancelled, not waited for")
		rec := record(t, rt, "long-1")
		require.Equal(t, map[string]dag.StepState{"a": "succeeded", "b": "cancelled", "c": "cancelled", "d": "skipped"}, stepStates(rec))
		require.False(t, rec.CancelRequestedAt.IsZero())

		r = in(t, rt, "status", "long-1")
		require.Equal(t, cli.ExitOK, r.code)
		require.Regexp(t, regexp.MustCompile(`(?m)^state\s+cancelled$`), r.stdout)
		require.Regexp(t, regexp.MustCompile(`(?m)^b\s+sleep\s+cancelled\s+1\s`), r.stdout)
		require.Regexp(t, regexp.MustCompile(`(?m)^error\s+\S`), r.stdout)
	})

	t.Run("health CANCELLED", func(t *testing.T) {
		r := in(t, rt, "health", "long-1")
		require.Equal(t, cli.ExitFailed, r.code)
		require.True(t, strings.HasPrefix(r.stdout, "CANCELLED: "), r.stdout)
		require.Empty(t, r.stderr, "the verdict is on stdout; the exit code says the rest")
	})

	t.Run("terminate a finished run", func(t *testing.T) {
		r := in(t, rt, "terminate", "long-1")
		require.Equal(t, cli.ExitFailed, r.code)
		require.Equal(t, "run long-1 not terminated: it had already finished (cancelled)\n", r.stdout)
		require.Empty(t, r.stderr)

		r = in(t, rt, "terminate", "long-1", "-o", "json")
		require.Equal(t, cli.ExitFailed, r.code)
		require.JSONEq(t, `{"run_id":"long-1","terminated":false,"state":"cancelled"}`, r.stdout)
	})

	t.Run("unknown run", func(t *testing.T) {
		r := in(t, rt, "health", "nope")
		require.Equal(t, cli.ExitNotFound, r.code)
		require.Equal(t, "NOT_FOUND: no run nope\n", r.stdout)

		r = in(t, rt, "health", "nope", "-o", "json")
		require.Equal(t, cli.ExitNotFound, r.code)
		require.JSONEq(t, `{"run_id":"nope","status":"NOT_FOUND","message":"no run nope"}`, r.stdout)

		r = in(t, rt, "status", "nope")
		require.Equal(t, cli.ExitNotFound, r.code)
		require.Equal(t, "dagq: no run nope: the state store of transport memory has no record of it\n", r.stderr)

		r = in(t, rt, "terminate", "nope")
		require.Equal(t, cli.ExitNotFound, r.code)
		require.Contains(t, r.stderr, "dagq: no run nope")

		r = in(t, rt, "status", "bad id")
		require.Equal(t, cli.ExitUsage, r.code)
		r = in(t, rt, "health", "bad id")
		require.Equal(t, cli.ExitUsage, r.code)
	})

	t.Run("launch --wait diamond succeeds", func(t *testing.T) {
		r := in(t, rt, "launch", examples+"diamond.yaml", "--wait", "--run-id", "d-1", "-p", "who=world")
		require.Equal(t, cli.ExitOK, r.code)
		require.True(t, strings.HasPrefix(r.stdout, "d-1\n"), "the run ID comes first")
		require.Regexp(t, regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d run d-1 launched \(job diamond, 4 steps\)$`), r.stdout)
		require.Regexp(t, regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d step d succeeded \(attempt 1`), r.stdout)
		require.Regexp(t, regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d run d-1 succeeded`), r.stdout)
		require.Regexp(t, regexp.MustCompile(`(?m)^STEP\s+TASK\s+STATE\s+ATTEMPTS\s+DURATION\s+OUTPUT / ERROR$`), r.stdout)
		require.Regexp(t, regexp.MustCompile(`(?m)^d\s+concat\s+succeeded\s+1\s+\S+\s+"HELLO, WORLD \| dlrow ,olleh"$`), r.stdout)
		require.Regexp(t, regexp.MustCompile(`(?m)^run d-1 of job diamond succeeded in \S+: 4 succeeded$`), r.stdout)

		r = in(t, rt, "health", "d-1")
		require.Equal(t, cli.ExitOK, r.code)
		require.Equal(t, "SUCCESS: the run succeeded\n", r.stdout)

		r = in(t, rt, "launch", examples+"diamond.yaml", "--run-id", "d-1")
		require.Equal(t, cli.ExitFailed, r.code, "a run ID is launched once")
		require.Regexp(t, `^dagq: run d-1 already exists \(launched at \S+\); choose another --run-id or omit it\n$`, r.stderr)
	})

	t.Run("launch --wait --output json", func(t *testing.T) {
		r := in(t, rt, "launch", examples+"diamond.yaml", "-w", "-o", "json", "--run-id", "d-2")
		require.Equal(t, cli.ExitOK, r.code)
		var rec dag.RunRecord
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &rec), "stdout holds only the final record")
		require.Equal(t, dag.RunSucceeded, rec.State)
		require.Len(t, rec.Steps, 4)
		require.Contains(t, r.stderr, "run d-2 succeeded", "progress goes to stderr")
	})

	t.Run("launch --wait failing exits 1", func(t *testing.T) {
		r := in(t, rt, "launch", examples+"failing.yaml", "--wait", "--progress", "none", "--run-id", "f-1")
		require.Equal(t, cli.ExitFailed, r.code)
		require.Equal(t, "f-1", strings.SplitN(r.stdout, "\n", 2)[0])
		require.NotContains(t, r.stdout, "launched", "--progress none")
		require.Regexp(t, regexp.MustCompile(`(?m)^load\s+fail\s+failed\s+3\s+\S+\s+database is read-only \(attempt 3\)$`), r.stdout)
		require.Regexp(t, regexp.MustCompile(`(?m)^report\s+concat\s+skipped\s+0\s+-\s+upstream "load" failed$`), r.stdout)
		require.Contains(t, r.stderr, "dagq: run f-1 failed; failed steps: load\n")

		r = in(t, rt, "health", "f-1")
		require.Equal(t, cli.ExitFailed, r.code)
		require.True(t, strings.HasPrefix(r.stdout, "FAILED: "), r.stdout)
	})

	t.Run("launch --output json", func(t *testing.T) {
		r := in(t, rt, "launch", examples+"diamond.yaml", "-o", "json", "--run-id", "d-3")
		require.Equal(t, cli.ExitOK, r.code)
		require.JSONEq(t, `{"run_id":"d-3","job":"diamond","state":"queued"}`, r.stdout)
		r = in(t, rt, "terminate", "d-3", "--wait")
		// Whichever came first: the run finished, or it was terminated.
		require.Contains(t, []int{cli.ExitOK, cli.ExitFailed}, r.code)
		require.Regexp(t, `^run d-3 (not )?terminated`, r.stdout)
	})

	t.Run("interrupting launch --wait stops following", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan result, 1)
		go func() { done <- inCtx(t, ctx, rt, "launch", slow, "--wait", "--run-id", "long-2") }()
		require.Eventually(t, func() bool {
			r := in(t, rt, "health", "long-2")
			return r.code == cli.ExitOK && strings.HasPrefix(r.stdout, "RUNNING")
		}, 10*time.Second, 50*time.Millisecond)
		cancel()
		var r result
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("launch --wait did not return after the interrupt")
		}
		require.Equal(t, cli.ExitCancelled, r.code)
		require.Contains(t, r.stderr, "dagq: stopped following run long-2; it goes on (dagq status long-2, dagq terminate long-2)")
		require.Equal(t, dag.RunRunning, record(t, rt, "long-2").State, "the run goes on")

		r = in(t, rt, "terminate", "long-2", "--wait")
		require.Equal(t, cli.ExitOK, r.code)
		require.Equal(t, "run long-2 terminated: cancelled\n", r.stdout)
	})

	t.Run("task names unknown here are a warning", func(t *testing.T) {
		job := writeJob(t, "name: remote\nsteps:\n  - {name: x, task: remote-only}\n")
		r := in(t, rt, "launch", job, "--run-id", "r-1")
		require.Equal(t, cli.ExitOK, r.code)
		require.Contains(t, r.stderr, `dagq: warning: `+job+`:3: step "x": task "remote-only" is not registered in this program; the workers must know it`)
		require.Eventually(t, func() bool { return record(t, rt, "r-1").State == dag.RunFailed }, 10*time.Second, 50*time.Millisecond)
	})
}

// Terminating a running run needs the cancel channel; without it terminate
// says which switch is off.
func TestTerminate_CancellationDisabled(t *testing.T) {
	rt := sharedRuntime(t, func(c *config.Config) {
		c.Cancellation.Enabled = false
		c.Worker.ShutdownTimeout = 100 * time.Millisecond
	})
	r := in(t, rt, "launch", writeJob(t, slowJob), "--run-id", "nc-1")
	require.Equal(t, cli.ExitOK, r.code)
	require.Eventually(t, func() bool { return record(t, rt, "nc-1").State == dag.RunRunning }, 10*time.Second, 20*time.Millisecond)
	r = in(t, rt, "terminate", "nc-1")
	require.Equal(t, cli.ExitFailed, r.code)
	require.Contains(t, r.stderr, "dagq: terminate run nc-1: a running run needs the cancel channel, and cancellation.enabled is false")
}

// Without a shared runtime, on the memory transport: launch serves its run
// with in-process workers and waits for it; status, health and terminate
// refuse, naming the transport key and its values.
func TestLauncherCommands_Memory(t *testing.T) {
	t.Run("launch waits for its in-process run", func(t *testing.T) {
		r := dagq(t, "launch", examples+"diamond.yaml", "--run-id", "m-1")
		require.Equal(t, cli.ExitOK, r.code)
		require.Contains(t, r.stderr, `dagq: note: transport "memory" keeps runs in this process only: launch serves this run with in-process workers and waits for it (--wait)`)
		require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line of notice")
		require.True(t, strings.HasPrefix(r.stdout, "m-1\n"))
		require.Regexp(t, regexp.MustCompile(`(?m)^run m-1 of job diamond succeeded in \S+: 4 succeeded$`), r.stdout)
	})

	t.Run("failing job exits 1", func(t *testing.T) {
		r := dagq(t, "launch", examples+"failing.yaml", "--progress", "none")
		require.Equal(t, cli.ExitFailed, r.code)
		require.Regexp(t, regexp.MustCompile(`(?m)^dagq: run \w+ failed; failed steps: load$`), r.stderr)
	})

	t.Run("unknown task is an error when this process runs the steps", func(t *testing.T) {
		job := writeJob(t, "name: j\nsteps:\n  - {name: x, task: nope}\n")
		r := dagq(t, "launch", job)
		require.Equal(t, cli.ExitFailed, r.code)
		require.Contains(t, r.stderr, `step "x": unknown task "nope"`)
	})

	t.Run("interrupt terminates the in-process run", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out, errb syncBuffer
		done := make(chan int, 1)
		job := writeJob(t, slowJob)
		go func() {
			done <- cli.Execute(ctx, builtins(t), []string{"launch", job, "--launcher-heartbeat-interval", "50ms", "--launcher-stale-after", "1s"}, &out, &errb)
		}()
		require.Eventually(t, func() bool { return strings.Contains(out.String(), "step b running") }, 10*time.Second, 20*time.Millisecond)
		cancel()
		var code int
		select {
		case code = <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("launch did not stop after the interrupt")
		}
		t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
		require.Equal(t, cli.ExitCancelled, code)
		require.Regexp(t, regexp.MustCompile(`(?m)^b\s+sleep\s+cancelled\s+1\s`), out.String())
		require.Regexp(t, regexp.MustCompile(`(?m)^d\s+hash\s+skipped\s+0\s`), out.String())
		require.Contains(t, errb.String(), "cancelled steps: b, c (interrupted)")
	})

	for _, cmd := range []string{"status", "health", "terminate"} {
		t.Run(cmd+" needs a shared transport", func(t *testing.T) {
			r := dagq(t, cmd, "some-run")
			require.Equal(t, cli.ExitUsage, r.code)
			require.Contains(t, r.stderr, "dagq: "+cmd+` needs a shared transport: transport "memory" keeps runs inside the process that launched them`)
			require.Contains(t, r.stderr, "Set transport (--transport, DAGQ_TRANSPORT) to a shared transport; valid values: memory")
			require.Empty(t, r.stdout)
		})
	}
}
