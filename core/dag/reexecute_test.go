package dag_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/internal/testutil"
	"github.com/dagq/dagq/ports"
)

// Re-execution (Launcher.Reexecute, RunOptions.Reuse) and max_concurrent,
// over the in-memory adapters and real Workers, on synctest's fake clock.

// rxOutput is the output of step a of rxJob: spacing, non-ASCII and
// characters encoding/json would escape, so that a reused output that went
// through a decode and encode would not be the same bytes.
const rxOutput = `{"text": "héllo  wörld ✓ <&>", "n": [1, 2.50, 3e2]}`

// rxJob: a → b (fails on its first call) → c, and side → c.
func rxJob() dag.Job {
	return dag.Job{Name: "etl", Steps: []dag.Step{
		{Name: "a", Task: lnRaw, Args: json.RawMessage(rxOutput)},
		lnStep("side", lnArgs{Sleep: time.Second}),
		lnStep("b", lnArgs{Sleep: time.Second, FailOnce: true}, "a"),
		lnStep("c", lnArgs{Sleep: time.Second}, "b", "side"),
	}}
}

// stepRec returns the named step of rec, failing the test without it.
func stepRec(t *testing.T, rec dag.RunRecord, name string) dag.StepRecord {
	t.Helper()
	s, ok := rec.Step(name)
	require.True(t, ok, "run %s has no step %s", rec.RunID, name)
	return s
}

// newLauncher returns another launcher on x's transport, with a client of
// its own (another process's).
func (x *lnWorld) newLauncher() *dag.Launcher {
	x.t.Helper()
	c, err := core.NewClient(core.ClientOptions{
		Ports:  core.Ports{Broker: x.tr.Broker(x.queue), Results: x.tr.ResultBackend(), Cancels: x.tr.CancelChannel(), Completions: x.tr.CompletionBus()},
		Logger: testutil.QuietLogger(),
	})
	require.NoError(x.t, err)
	x.t.Cleanup(func() { require.NoError(x.t, c.Close()) })
	l, err := dag.NewLauncher(dag.LauncherOptions{Client: c, State: x.state, Logger: testutil.QuietLogger()})
	require.NoError(x.t, err)
	return l
}

// storedOutput reads the stored output of a task.
func (x *lnWorld) storedOutput(taskID string) json.RawMessage {
	x.t.Helper()
	res, err := x.tr.ResultBackend().Get(context.Background(), taskID)
	require.NoError(x.t, err)
	require.Equal(x.t, ports.StateSucceeded, res.State)
	return res.Output
}

// The test: the middle step fails on the first run; the
// re-execution from failure runs only it and its downstream, reuses the
// other steps' stored outputs byte for byte, and records its lineage; a
// re-execution of that re-execution follows reused results to their runs.
func TestReexecute_FromFailureRunsOnlyTheFailedStepAndItsDownstream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		w1 := x.startWorker("w1", nil)
		ctx := context.Background()
		job := rxJob()

		_, err := x.launcher.Launch(ctx, job, dag.LaunchOptions{RunID: "r1", Params: map[string]string{"day": "mon"}})
		require.NoError(t, err)
		rec1 := x.wait("r1")
		require.Equal(t, dag.RunFailed, rec1.State)
		require.Equal(t, map[string]dag.StepState{"a": "succeeded", "side": "succeeded", "b": "failed", "c": "skipped"}, stepStates(rec1))
		assert.Empty(t, rec1.ParentRun)
		assert.Empty(t, rec1.RootRun)
		assert.Nil(t, rec1.Reexecution)
		stored, err := x.launcher.StoredJob(ctx, "r1")
		require.NoError(t, err)
		assert.Equal(t, job.Name, stored.Name)
		require.Len(t, stored.Steps, 4)
		assert.JSONEq(t, rxOutput, string(stored.Steps[0].Args), "the job is stored with the run")

		synctest.Wait()
		w1.stop() // so that r2 is seen queued
		runID, err := x.launcher.Reexecute(ctx, "r1", dag.ReexecuteOptions{RunID: "r2", From: dag.ReexecuteFromFailure,
			Params: map[string]string{"night": "yes"}})
		require.NoError(t, err)
		require.Equal(t, "r2", runID)
		queued := x.status("r2")
		assert.Equal(t, dag.RunQueued, queued.State)
		assert.Equal(t, map[string]dag.StepState{"a": "succeeded", "side": "succeeded", "b": "pending", "c": "pending"}, stepStates(queued),
			"the reused steps are succeeded from the start")
		w2 := x.startWorker("w2", nil)
		rec2 := x.wait("r2")
		require.Equal(t, dag.RunSucceeded, rec2.State, rec2.Error)

		// Only b and its downstream c ran again.
		assert.Equal(t, 1, x.calls.count("a"))
		assert.Equal(t, 1, x.calls.count("side"))
		assert.Equal(t, []string{"r1", "r2"}, x.calls.runsOf("b"))
		assert.Equal(t, []string{"r2"}, x.calls.runsOf("c"))
		synctest.Wait()
		assert.Len(t, w1.obs.outcomes(lnRaw), 1, "a ran in r1")
		assert.Len(t, w1.obs.outcomes(lnWork.Name), 2, "side and b ran in r1")
		assert.Empty(t, w2.obs.outcomes(lnRaw), "a's task was not submitted in r2")
		assert.Len(t, w2.obs.outcomes(lnWork.Name), 2, "b and c ran in r2")

		// The reused outputs reached the steps that ran again byte for byte.
		bIns := x.calls.inputsOf("b")
		require.Len(t, bIns, 2)
		assert.Equal(t, string(x.storedOutput("r1.a")), string(bIns[1]["a"]), "r2's b got r1's a as stored")
		assert.Equal(t, string(bIns[0]["a"]), string(bIns[1]["a"]), "as r1's b got it")
		assert.Contains(t, string(bIns[1]["a"]), "héllo  wörld ✓")
		cIns := x.calls.inputsOf("c")
		require.Len(t, cIns, 1)
		assert.Equal(t, string(x.storedOutput("r1.side")), string(cIns[0]["side"]))
		assert.Equal(t, string(x.storedOutput("r2.b")), string(cIns[0]["b"]))

		// Lineage and reuse in the record.
		assert.Equal(t, "r1", rec2.ParentRun)
		assert.Equal(t, "r1", rec2.RootRun)
		assert.Equal(t, &dag.Reexecution{From: dag.ReexecuteFromFailure}, rec2.Reexecution)
		assert.Equal(t, map[string]string{"day": "mon", "night": "yes"}, rec2.Params, "the parent's params with the new ones")
		for _, name := range []string{"a", "side"} {
			s := stepRec(t, rec2, name)
			assert.Equal(t, dag.StepSucceeded, s.State, name)
			assert.Equal(t, "r1", s.ReusedFrom, name)
			assert.Equal(t, "r1."+name, s.TaskID, name)
			assert.Zero(t, s.Attempts, name)
		}
		for _, name := range []string{"b", "c"} {
			s := stepRec(t, rec2, name)
			assert.Empty(t, s.ReusedFrom, name)
			assert.Equal(t, "r2."+name, s.TaskID, name)
			assert.Equal(t, 1, s.Attempts, name)
		}
		_, rr := x.runResult("r2")
		a, _ := rr.Step("a")
		assert.Equal(t, string(x.storedOutput("r1.a")), string(a.Output), "the run's result has the reused output")
		assert.Equal(t, "r1", a.ReusedFrom)

		// A re-execution is a run of the index like any other.
		runs, _, err := x.launcher.ListRuns(ctx, dag.ListRunsOptions{Job: "etl"})
		require.NoError(t, err)
		var ids []string
		for _, r := range runs {
			ids = append(ids, r.RunID)
		}
		assert.ElementsMatch(t, []string{"r1", "r2"}, ids)

		// Re-executing the re-execution: a and side come from r1, b from r2.
		_, err = x.launcher.Reexecute(ctx, "r2", dag.ReexecuteOptions{RunID: "r3", From: dag.ReexecuteSteps, Steps: []string{"c"}})
		require.NoError(t, err)
		rec3 := x.wait("r3")
		require.Equal(t, dag.RunSucceeded, rec3.State, rec3.Error)
		assert.Equal(t, "r2", rec3.ParentRun)
		assert.Equal(t, "r1", rec3.RootRun, "the root of the lineage")
		assert.Equal(t, &dag.Reexecution{From: dag.ReexecuteSteps, Steps: []string{"c"}}, rec3.Reexecution)
		assert.Equal(t, "r1", stepRec(t, rec3, "a").ReusedFrom, "followed back to the run whose step produced it")
		assert.Equal(t, "r1.a", stepRec(t, rec3, "a").TaskID)
		assert.Equal(t, "r1", stepRec(t, rec3, "side").ReusedFrom)
		assert.Equal(t, "r2", stepRec(t, rec3, "b").ReusedFrom)
		assert.Equal(t, "r2.b", stepRec(t, rec3, "b").TaskID)
		assert.Empty(t, stepRec(t, rec3, "c").ReusedFrom)
		assert.Equal(t, []string{"r1", "r2"}, x.calls.runsOf("b"), "b did not run again")
		assert.Equal(t, []string{"r2", "r3"}, x.calls.runsOf("c"))
		cIns = x.calls.inputsOf("c")
		assert.Equal(t, string(cIns[0]["b"]), string(cIns[1]["b"]))
		assert.Equal(t, string(cIns[0]["side"]), string(cIns[1]["side"]))
	})
}

// Which steps each selection runs, on a parent that succeeded.
func TestReexecute_Selections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		x.startWorker("w1", nil)
		ctx := context.Background()
		// a → b → c, a → d; e alone.
		job := dag.Job{Name: "sel", Steps: []dag.Step{
			lnStep("a", lnArgs{}),
			lnStep("b", lnArgs{}, "a"),
			lnStep("c", lnArgs{}, "b"),
			lnStep("d", lnArgs{}, "a"),
			lnStep("e", lnArgs{}),
		}}
		_, err := x.launcher.Launch(ctx, job, dag.LaunchOptions{RunID: "p"})
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, x.wait("p").State)

		_, err = x.launcher.Reexecute(ctx, "p", dag.ReexecuteOptions{From: dag.ReexecuteFromFailure})
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
		assert.Contains(t, err.Error(), "every step of run p succeeded: nothing to re-execute from failure")

		ran := func(runID string) []string {
			rec := x.wait(runID)
			require.Equal(t, dag.RunSucceeded, rec.State, rec.Error)
			var out []string
			for _, s := range rec.Steps {
				if s.ReusedFrom == "" {
					out = append(out, s.Name)
				} else {
					assert.Equal(t, "p", s.ReusedFrom)
				}
			}
			return out
		}
		for _, tc := range []struct {
			runID string
			opts  dag.ReexecuteOptions
			ran   []string
		}{
			{"all", dag.ReexecuteOptions{From: dag.ReexecuteAll}, []string{"a", "b", "c", "d", "e"}},
			{"b-plus", dag.ReexecuteOptions{From: dag.ReexecuteSteps, Steps: []string{"b+"}}, []string{"b", "c"}},
			{"b-only", dag.ReexecuteOptions{From: dag.ReexecuteSteps, Steps: []string{"b"}}, []string{"b"}},
			{"a-plus-e", dag.ReexecuteOptions{From: dag.ReexecuteSteps, Steps: []string{"e", "a+"}}, []string{"a", "b", "c", "d", "e"}},
			{"c-then-b-plus", dag.ReexecuteOptions{From: dag.ReexecuteSteps, Steps: []string{"c", "b+"}}, []string{"b", "c"}},
		} {
			tc.opts.RunID = tc.runID
			_, err := x.launcher.Reexecute(ctx, "p", tc.opts)
			require.NoError(t, err, tc.runID)
			assert.Equal(t, tc.ran, ran(tc.runID), tc.runID)
		}
		assert.Equal(t, 3, x.calls.count("a"), "p, all, a-plus-e")
		assert.Equal(t, 6, x.calls.count("b"))
	})
}

// Re-execution refuses what it cannot run, before launching anything.
func TestReexecute_Refusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		x.startWorker("w1", nil)
		ctx := context.Background()
		// a → b (fails) → c; x fails, y after it; z alone.
		job := dag.Job{Name: "refuse", Steps: []dag.Step{
			lnStep("a", lnArgs{}),
			lnStep("b", lnArgs{Fail: "disk full"}, "a"),
			lnStep("c", lnArgs{}, "b"),
			lnStep("x", lnArgs{Fail: "nope"}),
			lnStep("y", lnArgs{}, "x"),
			lnStep("z", lnArgs{}),
		}}
		_, err := x.launcher.Launch(ctx, job, dag.LaunchOptions{RunID: "f"})
		require.NoError(t, err)
		require.Equal(t, dag.RunFailed, x.wait("f").State)

		for _, tc := range []struct {
			name string
			opts dag.ReexecuteOptions
			is   error
			msg  string
		}{
			{"no From", dag.ReexecuteOptions{}, ports.ErrInvalidArgument, `From is required: "failure", "steps" or "all"`},
			{"bad From", dag.ReexecuteOptions{From: "some"}, ports.ErrInvalidArgument, `From "some": valid values`},
			{"Steps without From steps", dag.ReexecuteOptions{From: dag.ReexecuteAll, Steps: []string{"a"}}, ports.ErrInvalidArgument, "Steps is set"},
			{"From steps without Steps", dag.ReexecuteOptions{From: dag.ReexecuteSteps}, ports.ErrInvalidArgument, "needs Steps"},
			{"unknown steps", dag.ReexecuteOptions{From: dag.ReexecuteSteps, Steps: []string{"a", "q", "r+"}}, ports.ErrInvalidArgument,
				`no step "q", "r+" in job "refuse" of run f; its steps: a, b, c, x, y, z`},
			{"a needed upstream that failed", dag.ReexecuteOptions{From: dag.ReexecuteSteps, Steps: []string{"c"}}, ports.ErrInvalidArgument,
				`step "c" needs the output of step "b", which is not selected and was failed in run f: select it too (steps b,c)`},
			{"an unknown run", dag.ReexecuteOptions{From: dag.ReexecuteAll}, dag.ErrRunNotFound, "nope"},
			{"a taken run ID", dag.ReexecuteOptions{From: dag.ReexecuteAll, RunID: "f"}, ports.ErrAlreadyExists, "run f already exists"},
		} {
			parent := "f"
			if tc.is == dag.ErrRunNotFound {
				parent = "nope"
			}
			_, err := x.launcher.Reexecute(ctx, parent, tc.opts)
			require.ErrorIs(t, err, tc.is, tc.name)
			assert.Contains(t, err.Error(), tc.msg, tc.name)
		}

		// A failed branch neither selected nor needed is skipped; the run
		// succeeds.
		_, err = x.launcher.Reexecute(ctx, "f", dag.ReexecuteOptions{RunID: "zz", From: dag.ReexecuteSteps, Steps: []string{"z"}})
		require.NoError(t, err)
		rec := x.wait("zz")
		assert.Equal(t, dag.RunSucceeded, rec.State, rec.Error)
		assert.Equal(t, map[string]dag.StepState{"a": "succeeded", "b": "skipped", "c": "skipped", "x": "skipped", "y": "skipped", "z": "succeeded"},
			stepStates(rec))
		assert.Equal(t, "not selected for re-execution (failed in run f)", stepRec(t, rec, "b").Error)
		assert.Equal(t, "not selected for re-execution (skipped in run f)", stepRec(t, rec, "y").Error)
		assert.Equal(t, 2, x.calls.count("z"))
		assert.Equal(t, 1, x.calls.count("b"))
	})
}

// A run that has not finished cannot be re-executed.
func TestReexecute_RefusesARunningOrQueuedRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		job := dag.Job{Name: "busy", Steps: []dag.Step{lnStep("a", lnArgs{Block: true})}}
		_, err := x.launcher.Launch(ctx, job, dag.LaunchOptions{RunID: "busy"})
		require.NoError(t, err)
		_, err = x.launcher.Reexecute(ctx, "busy", dag.ReexecuteOptions{From: dag.ReexecuteAll})
		require.ErrorIs(t, err, dag.ErrRunNotFinished)
		assert.Contains(t, err.Error(), "run busy is queued; re-execute it once it has finished (wait for it, or terminate it)")

		x.startWorker("w1", nil)
		require.Equal(t, "a", <-x.calls.started)
		_, err = x.launcher.Reexecute(ctx, "busy", dag.ReexecuteOptions{From: dag.ReexecuteAll})
		require.ErrorIs(t, err, dag.ErrRunNotFinished)
		assert.Contains(t, err.Error(), "run busy is running; re-execute it once it has finished")

		ok, err := x.launcher.Terminate(ctx, "busy")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, dag.RunCancelled, x.wait("busy").State)
		_, err = x.launcher.Reexecute(ctx, "busy", dag.ReexecuteOptions{RunID: "again", From: dag.ReexecuteFromFailure})
		require.NoError(t, err, "a terminated run can be re-executed")
		ok, err = x.launcher.Terminate(ctx, "again")
		require.NoError(t, err)
		require.True(t, ok)
		x.wait("again")
	})
}

// The job given must be the one stored with the run; a run without a
// stored job needs one; a result gone cannot be reused.
func TestReexecute_JobsAndResults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		x.startWorker("w1", nil)
		ctx := context.Background()
		job := rxJob()
		_, err := x.launcher.Launch(ctx, job, dag.LaunchOptions{RunID: "r1"})
		require.NoError(t, err)
		require.Equal(t, dag.RunFailed, x.wait("r1").State)

		changed := rxJob()
		changed.Steps[2].Args = arg(lnArgs{Sleep: 2 * time.Second, FailOnce: true})
		changed.Steps[3].Upstream = []string{"b"}
		changed.Steps[1].Pool = "db"
		changed.Steps = append(changed.Steps, lnStep("e", lnArgs{}))
		_, err = x.launcher.Reexecute(ctx, "r1", dag.ReexecuteOptions{From: dag.ReexecuteFromFailure, Job: &changed})
		require.ErrorIs(t, err, dag.ErrJobMismatch)
		assert.Contains(t, err.Error(), "the job given is not the one run r1 ran (the job stored with it): ")
		assert.Contains(t, err.Error(), `step "b": args differ (stored {"Sleep":1000000000,`)
		assert.Contains(t, err.Error(), `given {"Sleep":2000000000,`)
		assert.Contains(t, err.Error(), `step "c": upstream differs (stored [b, side], given [b])`)
		assert.Contains(t, err.Error(), `step "e" added`)
		assert.Contains(t, err.Error(), `step "side": pool differs (stored "", given "db")`)
		reordered := rxJob()
		reordered.Steps[0], reordered.Steps[1] = reordered.Steps[1], reordered.Steps[0]
		// The same values, spelled differently.
		same := `{"FailOnce": false, "Block": false, "BlockOn": "", "Fail": "", "Sleep": 1e9}`
		reordered.Steps[0].Args = json.RawMessage(same)
		other := rxJob()
		other.Steps[1].Args = json.RawMessage(same)
		_, err = x.launcher.Reexecute(ctx, "r1", dag.ReexecuteOptions{RunID: "same", From: dag.ReexecuteFromFailure, Job: &other})
		require.NoError(t, err, "the same job (args compared as JSON values)")
		require.Equal(t, dag.RunSucceeded, x.wait("same").State)

		// A stored result that expired.
		// (A launcher of its own, as another dagq command has: the one that
		// re-executed "same" remembers the results it read.)
		require.NoError(t, x.tr.ResultBackend().(ports.ResultDeleter).Delete(ctx, "r1.side"))
		_, err = x.newLauncher().Reexecute(ctx, "r1", dag.ReexecuteOptions{From: dag.ReexecuteFromFailure})
		require.ErrorIs(t, err, dag.ErrResultGone)
		assert.Contains(t, err.Error(), `the stored result of step "side" (task r1.side of run r1) is gone (results expire): re-execute those steps too, or all steps`)
		_, err = x.launcher.Reexecute(ctx, "r1", dag.ReexecuteOptions{RunID: "all", From: dag.ReexecuteAll})
		require.NoError(t, err, "nothing reused: nothing missing")
		require.Equal(t, dag.RunSucceeded, x.wait("all").State)

		// A run launched before jobs were stored with runs.
		require.NoError(t, x.state.Delete(ctx, dag.RunJobKey("r1")))
		_, err = x.launcher.StoredJob(ctx, "r1")
		require.ErrorIs(t, err, dag.ErrNoStoredJob)
		_, err = x.launcher.StoredJob(ctx, "none")
		require.ErrorIs(t, err, dag.ErrRunNotFound)
		_, err = x.launcher.Reexecute(ctx, "r1", dag.ReexecuteOptions{From: dag.ReexecuteSteps, Steps: []string{"b+"}})
		require.ErrorIs(t, err, dag.ErrNoStoredJob)
		assert.Contains(t, err.Error(), "run r1: no job stored with the run: it was launched before dagq stored the job with each run; pass the job it ran (ReexecuteOptions.Job")
		_, err = x.launcher.Reexecute(ctx, "r1", dag.ReexecuteOptions{From: dag.ReexecuteSteps, Steps: []string{"b+"}, Job: &changed})
		require.ErrorIs(t, err, dag.ErrJobMismatch)
		assert.Contains(t, err.Error(), "(its record)")
		assert.Contains(t, err.Error(), `step "c": upstream differs (the run's [b, side], given [b])`)
		_, err = x.launcher.Reexecute(ctx, "r1", dag.ReexecuteOptions{RunID: "given", From: dag.ReexecuteSteps, Steps: []string{"b+"}, Job: &reordered})
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, x.wait("given").State)
		_, err = x.launcher.StoredJob(ctx, "given")
		require.NoError(t, err, "the re-execution stores its job")
	})
}

// Another worker takes a re-execution over when its worker dies: the
// reused steps stay reused, nothing runs twice but the step that hung.
func TestReexecute_TakeoverOfAReexecution(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		w1 := x.startWorker("w1", nil)
		ctx := context.Background()
		job := dag.Job{Name: "takeover", Steps: []dag.Step{
			{Name: "a", Task: lnRaw, Args: json.RawMessage(rxOutput)},
			lnStep("b", lnArgs{Sleep: time.Second, FailOnce: true, BlockOn: "w1"}, "a"), // fails, then hangs on w1
			lnStep("c", lnArgs{Sleep: time.Second}, "b"),
		}}
		_, err := x.launcher.Launch(ctx, job, dag.LaunchOptions{RunID: "t1"})
		require.NoError(t, err)
		require.Equal(t, dag.RunFailed, x.wait("t1").State)
		_, err = x.launcher.Reexecute(ctx, "t1", dag.ReexecuteOptions{RunID: "t2", From: dag.ReexecuteFromFailure})
		require.NoError(t, err)
		require.Equal(t, "b", <-x.calls.started)
		time.Sleep(6 * time.Second)
		w1.dead.Store(true)
		x.startWorker("w2", nil)
		rec := x.wait("t2")
		require.Equal(t, dag.RunSucceeded, rec.State, rec.Error)
		assert.Equal(t, 2, rec.Attempt, "taken over")
		assert.Equal(t, "w2", rec.Worker)
		assert.Equal(t, 1, x.calls.count("a"), "reused by both executions")
		assert.Equal(t, []string{"t1", "t2", "t2"}, x.calls.runsOf("b"))
		assert.Equal(t, []string{"t2"}, x.calls.runsOf("c"))
		a := stepRec(t, rec, "a")
		assert.Equal(t, "t1", a.ReusedFrom)
		assert.Equal(t, dag.StepSucceeded, a.State)
		bIns := x.calls.inputsOf("b")
		assert.Equal(t, string(bIns[0]["a"]), string(bIns[2]["a"]))
	})
}

// The executor's Reuse: reused steps are settled from the stored results
// without a submission (one step_succeeded marked reused), a missing one
// fails its step and skips its downstream.
func TestExecutor_Reuse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		x.startWorker("w1", nil)
		ctx := context.Background()
		exec, err := dag.NewExecutor(x.client, dag.ExecutorOptions{Logger: testutil.QuietLogger()})
		require.NoError(t, err)
		job := dag.Job{Name: "reuse", Steps: []dag.Step{
			lnStep("a", lnArgs{}),
			{Name: "b", Task: lnRaw, Upstream: []string{"a"}, Args: json.RawMessage(`1`)},
			lnStep("x", lnArgs{}),
			lnStep("y", lnArgs{}, "x"),
		}}
		results := x.tr.ResultBackend()
		require.NoError(t, results.Put(ctx, ports.Result{TaskID: "old.a", State: ports.StateSucceeded, Output: json.RawMessage(rxOutput),
			Attempts: 1, Worker: "w0"}))

		_, err = exec.Run(ctx, job, dag.RunOptions{RunID: "n", Reuse: map[string]string{"q": "old.q"}})
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
		assert.Contains(t, err.Error(), `Reuse names step "q"`)

		var log eventLog
		res, err := exec.Run(ctx, job, dag.RunOptions{RunID: "n", OnEvent: log.add, Reuse: map[string]string{"a": "old.a", "x": "old.x"}})
		require.NoError(t, err)
		assert.Equal(t, dag.RunFailed, res.State)
		requireEventOrder(t, log.all(), job)
		assert.Equal(t, []string{"succeeded"}, log.of("a"), "no step_queued: a was not submitted")
		assert.Equal(t, []string{"failed"}, log.of("x"))
		assert.Equal(t, []string{"skipped"}, log.of("y"))
		for _, ev := range log.all() {
			if ev.Step == "a" {
				assert.Equal(t, "old", ev.ReusedFrom)
				assert.Equal(t, "old.a", ev.TaskID)
				assert.Equal(t, "w0", ev.Worker)
			}
		}
		a, _ := res.Step("a")
		assert.Equal(t, dag.StepResult{Name: "a", Task: lnWork.Name, TaskID: "old.a", State: dag.StepSucceeded, Worker: "w0",
			Output: json.RawMessage(rxOutput), ReusedFrom: "old"}, a)
		xs, _ := res.Step("x")
		assert.Equal(t, dag.StepFailed, xs.State)
		assert.Equal(t, "the stored result of task old.x (run old) to reuse is gone (results expire): re-execute this step too", xs.Error)
		assert.Zero(t, x.calls.count("a"))
		assert.Zero(t, x.calls.count("x"))
		assert.Zero(t, x.calls.count("y"))
		require.Equal(t, 1, x.calls.count("b"))
		// The stored output as the envelope carries every output (compact,
		// with HTML characters escaped, as json.Marshal writes a RawMessage).
		enveloped, err := json.Marshal(json.RawMessage(rxOutput))
		require.NoError(t, err)
		assert.Equal(t, string(enveloped), string(x.calls.inputsOf("b")[0]["a"]), "the stored output, byte for byte")
	})
}

// ---- max_concurrent ---------------------------------------------------------

// overlap counts the handlers of the test task "slot" running at once,
// and notes the order they start in.
type overlap struct {
	mu        sync.Mutex
	cur, peak int
	order     []string
}

func (o *overlap) reset() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cur, o.peak, o.order = 0, 0, nil
}

func (o *overlap) enter(step string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cur++
	o.peak = max(o.peak, o.cur)
	o.order = append(o.order, step)
}

func (o *overlap) leave() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cur--
}

func (o *overlap) result() (int, []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.peak, slices.Clone(o.order)
}

var slotTask = core.NewTaskType[time.Duration, string]("slot")

// A run never has more than max_concurrent steps in flight: six parallel
// steps of 10s with a limit of 2 run two at a time, in declaration order;
// the run's option and the launch's override the job's.
func TestExecutor_MaxConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var o overlap
		reg := core.NewRegistry()
		slotTask.MustRegister(reg, func(ctx context.Context, d time.Duration) (string, error) {
			task, _ := core.TaskFromContext(ctx)
			o.enter(task.StepID)
			defer o.leave()
			time.Sleep(d)
			return task.StepID, nil
		})
		exec := newExWorld(t, reg, exOpts{}).exec
		job := dag.Job{Name: "wide", MaxConcurrent: 2}
		for _, n := range []string{"s1", "s2", "s3", "s4", "s5", "s6"} {
			job.Steps = append(job.Steps, dag.Step{Name: n, Task: slotTask.Name, Args: arg(10 * time.Second)})
		}
		for _, tc := range []struct {
			name string
			opts dag.RunOptions
			peak int
			took time.Duration
		}{
			{"the job's", dag.RunOptions{}, 2, 30 * time.Second},
			{"the run's", dag.RunOptions{MaxConcurrent: 3}, 3, 20 * time.Second},
			{"one at a time", dag.RunOptions{MaxConcurrent: 1}, 1, 60 * time.Second},
		} {
			o.reset()
			start := time.Now()
			res, err := exec.Run(context.Background(), job, tc.opts)
			require.NoError(t, err, tc.name)
			require.Equal(t, dag.RunSucceeded, res.State, tc.name)
			peak, order := o.result()
			assert.Equal(t, tc.peak, peak, tc.name)
			assert.Equal(t, tc.took, time.Since(start), tc.name)
			if tc.peak == 1 {
				assert.Equal(t, []string{"s1", "s2", "s3", "s4", "s5", "s6"}, order, "%s: in declaration order", tc.name)
			}
			for i, s := range res.Steps { // the first peak steps start at once, then peak more every 10s
				assert.Equal(t, start.Add(time.Duration(i/tc.peak)*10*time.Second), s.StartedAt, "%s: %s", tc.name, s.Name)
			}
		}
		unlimited := job
		unlimited.MaxConcurrent = 0
		o.reset()
		res, err := exec.Run(context.Background(), unlimited, dag.RunOptions{})
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, res.State)
		peak, _ := o.result()
		assert.Equal(t, 6, peak, "no limit")

		_, err = exec.Run(context.Background(), job, dag.RunOptions{MaxConcurrent: -1})
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
		bad := job
		bad.MaxConcurrent = -2
		err = bad.Validate(nil)
		require.ErrorIs(t, err, dag.ErrInvalidJob)
		assert.Contains(t, err.Error(), "max_concurrent is -2; it must be 0 (no limit) or positive")
	})
}

// A launched run applies the job's max_concurrent, or the launch's.
func TestLauncher_MaxConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		x.startWorker("w1", nil)
		ctx := context.Background()
		job := dag.Job{Name: "wide", MaxConcurrent: 2}
		for _, n := range []string{"s1", "s2", "s3", "s4"} {
			job.Steps = append(job.Steps, lnStep(n, lnArgs{Sleep: 10 * time.Second}))
		}
		start := time.Now()
		_, err := x.launcher.Launch(ctx, job, dag.LaunchOptions{RunID: "m2"})
		require.NoError(t, err)
		rec := x.wait("m2")
		require.Equal(t, dag.RunSucceeded, rec.State)
		assert.Equal(t, 2, rec.MaxConcurrent)
		assert.Equal(t, 20*time.Second, time.Since(start), "two at a time")

		start = time.Now()
		_, err = x.launcher.Launch(ctx, job, dag.LaunchOptions{RunID: "m1", MaxConcurrent: 1})
		require.NoError(t, err)
		rec = x.wait("m1")
		assert.Equal(t, 1, rec.MaxConcurrent)
		assert.Equal(t, 40*time.Second, time.Since(start), "one at a time")
		stored, err := x.launcher.StoredJob(ctx, "m1")
		require.NoError(t, err)
		assert.Equal(t, 2, stored.MaxConcurrent, "the job as given; the override is the run's")

		// A re-execution takes the job's limit, or its own.
		start = time.Now()
		_, err = x.launcher.Reexecute(ctx, "m1", dag.ReexecuteOptions{RunID: "m4", From: dag.ReexecuteAll, MaxConcurrent: 4})
		require.NoError(t, err)
		rec = x.wait("m4")
		assert.Equal(t, 4, rec.MaxConcurrent)
		assert.Equal(t, 10*time.Second, time.Since(start))

		_, err = x.launcher.Launch(ctx, job, dag.LaunchOptions{MaxConcurrent: -1})
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
	})
}
