package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// reexecJob is examples/jobs/reexecute.yaml.
const reexecJob = examples + "reexecute.yaml"

// requireReexecuted checks a re-execution from failure of the example job
// reexecute.yaml: its lineage, the steps it ran and reused, and that the
// reused steps were not submitted (no result under the new run's task IDs).
func requireReexecuted(ctx context.Context, t *testing.T, rt *app.Runtime, parent, runID string) {
	t.Helper()
	rec := record(t, rt, runID)
	require.Equal(t, dag.RunSucceeded, rec.State, rec.Error)
	require.Equal(t, parent, rec.ParentRun)
	require.Equal(t, parent, rec.RootRun)
	require.Equal(t, &dag.Reexecution{From: dag.ReexecuteFromFailure}, rec.Reexecution)
	require.Equal(t, map[string]string{"broken": "false"}, rec.Params)
	for _, name := range []string{"extract", "transform"} {
		s, _ := rec.Step(name)
		require.Equal(t, parent, s.ReusedFrom, name)
		require.Equal(t, dag.StepTaskID(parent, name), s.TaskID, name)
		_, err := rt.Ports.Results.Get(ctx, dag.StepTaskID(runID, name))
		require.ErrorIs(t, err, ports.ErrNotFound, "%s was not submitted in %s", name, runID)
	}
	for _, name := range []string{"publish", "report"} {
		s, _ := rec.Step(name)
		require.Empty(t, s.ReusedFrom, name)
		require.Equal(t, dag.StepTaskID(runID, name), s.TaskID, name)
	}
	// report got the reused output of transform as the first run stored it.
	first, err := rt.Ports.Results.Get(ctx, dag.StepTaskID(parent, "transform"))
	require.NoError(t, err)
	report, err := rt.Ports.Results.Get(ctx, dag.StepTaskID(runID, "report"))
	require.NoError(t, err)
	var transformed, reported string
	require.NoError(t, json.Unmarshal(first.Output, &transformed))
	require.NoError(t, json.Unmarshal(report.Output, &reported))
	require.Equal(t, "HÉLLO  WÖRLD ✓", transformed)
	require.Equal(t, transformed+" | succeeded on attempt 1 (when: false)", reported)
}

// dagq reexecute in process against a shared memory runtime: from failure
// with a parameter that fixes the failing step, the lineage in status (text
// and JSON), and what it refuses.
func TestReexecute_SharedRuntime(t *testing.T) {
	rt := sharedRuntime(t)
	ctx := context.Background()

	r := in(t, rt, "launch", reexecJob, "--run-id", "rx-1", "--wait", "--progress", "none")
	require.Equal(t, cli.ExitFailed, r.code, r.stderr)
	require.Contains(t, r.stderr, "run rx-1 failed; failed steps: publish")

	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			code int
			msg  string
		}{
			{[]string{"reexecute", "rx-1"}, cli.ExitUsage, "reexecute takes exactly one of --from-failure, --steps STEPS and --all (got 0)"},
			{[]string{"reexecute", "rx-1", "--all", "--from-failure"}, cli.ExitUsage, "(got 2)"},
			{[]string{"reexecute", "rx-1", "--steps", " , "}, cli.ExitUsage, `--steps " , " names no step`},
			{[]string{"reexecute", "rx-1", "--steps", "publish,nope+"}, cli.ExitUsage,
				`no step "nope+" in job "reexecute" of run rx-1; its steps: extract, transform, publish, report`},
			{[]string{"reexecute", "rx-1", "--steps", "report"}, cli.ExitUsage,
				`step "report" needs the output of step "publish", which is not selected and was failed in run rx-1: select it too (steps publish,report)`},
			{[]string{"reexecute", "rx-1", "--from-failure", "-p", "brokn=false"}, cli.ExitUsage,
				`-p: run rx-1 has no parameter "brokn" (its parameters: broken)`},
			{[]string{"reexecute", "rx-0", "--from-failure"}, cli.ExitNotFound, "no run rx-0"},
			{[]string{"reexecute", "rx-1", "--all", "--max-concurrent", "-1"}, cli.ExitUsage, "--max-concurrent -1: want 0"},
			{[]string{"reexecute", "rx-1", "--all", "--run-id", "rx-1"}, cli.ExitFailed, "choose another --run-id or omit it"},
			{[]string{"reexecute", "rx-1", "--from-failure", "--job", writeJob(t, strings.Replace(readExample(t, "reexecute.yaml"), "op: upper", "op: lower", 1))},
				cli.ExitFailed, `the job given is not the one run rx-1 ran (the job stored with it): step "transform": args differ (stored {"op":"upper"}, given {"op":"lower"})`},
		} {
			r := in(t, rt, tc.args...)
			require.Equal(t, tc.code, r.code, "%v: %s", tc.args, r.stderr)
			require.Contains(t, r.stderr, tc.msg, tc.args)
		}
	})

	t.Run("from failure", func(t *testing.T) {
		r := in(t, rt, "reexecute", "rx-1", "--from-failure", "-p", "broken=false", "--run-id", "rx-2", "--job", reexecJob)
		require.Equal(t, cli.ExitOK, r.code, r.stderr)
		require.Equal(t, "rx-2\n", r.stdout)
		require.Contains(t, r.stderr, "dagq: launched run rx-2 of job reexecute, a re-execution of rx-1, from failure; "+
			"running publish, report; reusing extract, transform; follow it with: dagq status rx-2")
		require.Eventually(t, func() bool { return record(t, rt, "rx-2").State.Final() }, 20*time.Second, 20*time.Millisecond)
		requireReexecuted(ctx, t, rt, "rx-1", "rx-2")

		r = in(t, rt, "status", "rx-2")
		require.Equal(t, cli.ExitOK, r.code)
		for _, re := range []string{
			`(?m)^state\s+succeeded$`,
			`(?m)^lineage\s+re-execution of rx-1, from failure$`,
			`(?m)^params\s+broken=false$`,
			`(?m)^max-concurrent\s+2$`,
			`(?m)^extract\s+echo\s+succeeded\s+0\s+-\s+\S+\s+\(reused from rx-1\)$`,
			`(?m)^transform\s+transform\s+succeeded\s+0\s+-\s+\S+\s+\(reused from rx-1\)$`,
			`(?m)^publish\s+fail\s+succeeded\s+1\s+\S+\s+\S+$`,
		} {
			require.Regexp(t, regexp.MustCompile(re), r.stdout)
		}
	})

	t.Run("a re-execution of the re-execution", func(t *testing.T) {
		r := in(t, rt, "reexecute", "rx-2", "--steps", "report", "--run-id", "rx-3", "--wait", "--progress", "plain")
		require.Equal(t, cli.ExitOK, r.code, r.stderr)
		for _, re := range []string{
			`(?m)^\S+ step extract reused from run rx-1$`,
			`(?m)^\S+ step publish reused from run rx-2$`,
			`(?m)^\S+ step report succeeded \(attempt 1, \S+\)$`,
			`(?m)^extract\s+echo\s+succeeded\s+0\s+-\s+\(reused from rx-1\) "héllo  wörld ✓"$`,
			`(?m)^publish\s+fail\s+succeeded\s+0\s+-\s+\(reused from rx-2\) "succeeded on attempt 1 \(when: false\)"$`,
			`(?m)^run rx-3 of job reexecute succeeded in \S+: 4 succeeded$`,
		} {
			require.Regexp(t, regexp.MustCompile(re), r.stdout)
		}
		r = in(t, rt, "status", "rx-3")
		require.Regexp(t, regexp.MustCompile(`(?m)^lineage\s+re-execution of rx-2 \(root rx-1\), steps report$`), r.stdout)

		r = in(t, rt, "status", "rx-3", "-o", "json")
		require.Equal(t, cli.ExitOK, r.code)
		var st struct {
			ParentRun   string           `json:"parent_run"`
			RootRun     string           `json:"root_run"`
			Reexecution *dag.Reexecution `json:"reexecution"`
			Steps       []struct {
				Name       string `json:"name"`
				ReusedFrom string `json:"reused_from"`
			} `json:"steps"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
		require.Equal(t, "rx-2", st.ParentRun)
		require.Equal(t, "rx-1", st.RootRun)
		require.Equal(t, &dag.Reexecution{From: dag.ReexecuteSteps, Steps: []string{"report"}}, st.Reexecution)
		reused := map[string]string{}
		for _, s := range st.Steps {
			reused[s.Name] = s.ReusedFrom
		}
		require.Equal(t, map[string]string{"extract": "rx-1", "transform": "rx-1", "publish": "rx-2", "report": ""}, reused)
	})

	t.Run("json", func(t *testing.T) {
		r := in(t, rt, "reexecute", "rx-1", "--steps", "transform+", "-p", "broken=false", "-o", "json", "--max-concurrent", "1")
		require.Equal(t, cli.ExitOK, r.code, r.stderr)
		var out struct {
			RunID     string   `json:"run_id"`
			Job       string   `json:"job"`
			State     string   `json:"state"`
			ParentRun string   `json:"parent_run"`
			RootRun   string   `json:"root_run"`
			Run       []string `json:"run"`
			Reused    []string `json:"reused"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
		require.Equal(t, "reexecute", out.Job)
		require.Equal(t, "rx-1", out.ParentRun)
		require.Equal(t, "rx-1", out.RootRun)
		require.Equal(t, []string{"transform", "publish", "report"}, out.Run)
		require.Equal(t, []string{"extract"}, out.Reused)
		rec, err := rt.Launcher.Wait(ctx, out.RunID)
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, rec.State)
		require.Equal(t, 1, rec.MaxConcurrent, "--max-concurrent overrides the job's 2")
	})

	t.Run("a running run is refused", func(t *testing.T) {
		r := in(t, rt, "launch", writeJob(t, slowJob), "--run-id", "rx-slow")
		require.Equal(t, cli.ExitOK, r.code)
		r = in(t, rt, "reexecute", "rx-slow", "--all")
		require.Equal(t, cli.ExitFailed, r.code)
		require.Regexp(t, regexp.MustCompile(`dagq: reexecute: run not finished: run rx-slow is (queued|running); re-execute it once it has finished `+
			`\(wait for it, or terminate it\); follow it with: dagq status rx-slow, or stop it with: dagq terminate rx-slow`), r.stderr)
		_, err := rt.Launcher.Terminate(ctx, "rx-slow")
		require.NoError(t, err)
		_, err = rt.Launcher.Wait(ctx, "rx-slow")
		require.NoError(t, err)
	})
}

// On the memory transport without a shared runtime there is no run to
// re-execute: reexecute refuses, as status does.
func TestReexecute_MemoryRefused(t *testing.T) {
	r := dagq(t, "reexecute", "some-run", "--from-failure")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, `dagq: reexecute needs a shared transport: transport "memory" keeps runs inside the process that launched them`)
}

// The end-to-end test on the emulators (SQS + S3): a job whose middle step
// fails (the built-in fail, switched by a run parameter) is re-executed from
// failure with the parameter changed; only the failed step and its
// downstream run again, the others' outputs come from the first run's S3
// results, and status shows the lineage.
func TestSQS_ReexecuteFromFailure(t *testing.T) {
	cfg, flags := sqsEnv(t)
	r := dagq(t, append([]string{"queue", "init"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The workers have a runtime of their own, as dagq worker processes have.
	fleet, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer fleet.Close()
	steps, err := fleet.StartWorkers(ctx, 1)
	require.NoError(t, err)
	defer func() { require.NoError(t, steps.Stop()) }()
	runs, err := fleet.StartRunWorkers(ctx, 1)
	require.NoError(t, err)
	defer func() { require.NoError(t, runs.Stop()) }()

	id := strings.ReplaceAll(cfg.S3.Bucket, "dagq-app-", "")
	first, second := "rx-"+id, "rx-"+id+"-again"
	// The commands wire their own runtime from the flags, as dagq does.
	args := func(a ...string) []string { return append(a, flags...) }
	r = dagqCtx(t, ctx, builtins(t), args("launch", reexecJob, "--run-id", first, "--wait", "--progress", "none",
		"--launcher-heartbeat-interval", "200ms")...)
	require.Equal(t, cli.ExitFailed, r.code, r.stderr)
	require.Regexp(t, regexp.MustCompile(`(?m)^publish\s+fail\s+failed\s+1\s+\S+\s+the target is read-only \(attempt 1\)$`), r.stdout)

	r = dagqCtx(t, ctx, builtins(t), args("reexecute", first, "--from-failure", "-p", "broken=false", "--run-id", second, "--wait",
		"--launcher-heartbeat-interval", "200ms")...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Regexp(t, regexp.MustCompile(`(?m)^report\s+concat\s+succeeded\s+1\s+\S+\s+"HÉLLO  WÖRLD ✓ \| succeeded on attempt 1 \(when: false\)"$`), r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^transform\s+transform\s+succeeded\s+0\s+-\s+\(reused from `+first+`\) "HÉLLO  WÖRLD ✓"$`), r.stdout)
	requireReexecuted(ctx, t, fleet, first, second)

	r = dagqCtx(t, ctx, builtins(t), args("status", second)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Regexp(t, regexp.MustCompile(`(?m)^lineage\s+re-execution of `+first+`, from failure$`), r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^extract\s+echo\s+succeeded\s+0\s+-\s+\S+\s+\(reused from `+first+`\)$`), r.stdout)

	// A re-execution of a running run is refused.
	r = dagqCtx(t, ctx, builtins(t), args("launch", examples+"long.yaml", "--run-id", first+"-long")...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	r = dagqCtx(t, ctx, builtins(t), args("reexecute", first+"-long", "--all")...)
	require.Equal(t, cli.ExitFailed, r.code)
	require.Contains(t, r.stderr, "re-execute it once it has finished")
	_, err = fleet.Launcher.Terminate(ctx, first+"-long")
	require.NoError(t, err)
	rec, err := fleet.Launcher.Wait(ctx, first+"-long")
	require.NoError(t, err)
	require.True(t, rec.State.Final())
	require.False(t, errors.Is(ctx.Err(), context.DeadlineExceeded))
}

// readExample returns the text of an example job file.
func readExample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(examples + name)
	require.NoError(t, err)
	return string(b)
}
