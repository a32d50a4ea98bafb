package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/app/jobfile"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// Progress modes of dagq launch --wait: the record is polled, so there is
// no live view.
var launchProgressModes = []string{ProgressPlain, ProgressNone}

// followPoll is the longest interval between two reads of a followed run's
// record (shorter when launcher.heartbeat_interval is).
const followPoll = time.Second

// terminateGrace is added to executor.cancel_wait for the wait of an
// interrupted in-process launch for its run to end.
const terminateGrace = 30 * time.Second

func (c *cli) launchCmd() *cobra.Command {
	var (
		output   string
		progress string
		runID    string
		params   []string
		wait     bool
		waitT    time.Duration
		maxConc  int
	)
	cmd := &cobra.Command{
		Use:   "launch JOBFILE",
		Short: "Launch a job as one run on the workers and print its run ID",
		Long: `launch hands the job described by JOBFILE (YAML, see docs/cli.md) to the worker
fleet as one run: it writes the run's record (state queued) and queues its run
task on the run queue (launcher.queue), prints the run ID and returns. A run
worker ("dagq worker") drives the run, submitting its steps to the task queue
(queue); follow it with "dagq status RUNID" and "dagq health RUNID", stop it
with "dagq terminate RUNID".

--wait follows the run to its end: its step changes as they are recorded
(at most once per launcher.heartbeat_interval), then a table of every step, and
launch exits like "dagq run". Ctrl-C stops following; the run goes on.

On the memory transport (the default) runs live only in this process: launch
starts a run worker and a step worker here, waits for the run (--wait is
implied) and says so on stderr; Ctrl-C then terminates the run.

On the sqs transport launch first checks that the run queue
(sqs.run_queue_url), its dead-letter queue and the bucket (s3.bucket) exist
and answer, and exits 1 naming each problem's key and fix when they do not
(--wait-for-transport DURATION: keep checking for up to DURATION first).

Exit status: 0 when launched (with --wait: when the run succeeded), 1 when the
run failed or could not be launched, 2 for bad arguments, 130 when the run was
cancelled or the wait interrupted.`,
		Args: exactArgs(1, "the job file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkMaxConcurrent(maxConc); err != nil {
				return err
			}
			cfg, f, runParams, err := c.jobCommandArgs(cmd, args[0], output, progress, launchProgressModes, params, nil)
			if err != nil {
				return err
			}
			return c.launch(cmd, cfg, f, launchOpts{output: output, progress: progress, runID: runID, params: runParams, wait: wait,
				waitTransport: waitT, maxConcurrent: maxConc})
		},
	}
	fs := cmd.Flags()
	addOutputFlag(fs, &output, "text", "json")
	fs.StringVar(&progress, "progress", ProgressPlain, "with --wait, the run's progress: "+strings.Join(launchProgressModes, " or "))
	fs.StringVar(&runID, "run-id", "", "run ID (default: random); it must be new: a run ID is launched once")
	fs.StringArrayVarP(&params, "param", "p", nil, "run parameter NAME=VALUE (repeatable), overriding the job file's params")
	fs.BoolVarP(&wait, "wait", "w", false, "follow the run to its end and exit with its outcome (implied on the memory transport)")
	addWaitForTransportFlag(fs, &waitT)
	addMaxConcurrentFlag(fs, &maxConc)
	config.AddFlag(fs, "fail-fast", "concurrency", "launcher-concurrency", "launcher-heartbeat-interval", "launcher-stale-after")
	return cmd
}

type launchOpts struct {
	output, progress, runID string
	params                  map[string]string
	wait                    bool
	waitTransport           time.Duration // --wait-for-transport
	maxConcurrent           int           // --max-concurrent
}

// addMaxConcurrentFlag defines --max-concurrent (run, launch, reexecute).
func addMaxConcurrentFlag(fs *pflag.FlagSet, dst *int) {
	fs.IntVar(dst, "max-concurrent", 0, "at most N steps of the run in flight at once, overriding the job's max_concurrent (0: the job's)")
}

// checkMaxConcurrent checks --max-concurrent.
func checkMaxConcurrent(n int) error {
	if n < 0 {
		return usageErr("--max-concurrent %d: want 0 (the job file's max_concurrent) or a positive number of steps", n)
	}
	return nil
}

// launch launches the job on rt and, with --wait, follows it; its error
// carries the exit code.
func (c *cli) launch(cmd *cobra.Command, cfg config.Config, f *jobfile.File, o launchOpts) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	rt, err := c.runtime(stderr, cfg)
	if err != nil {
		return err
	}
	defer rt.close()
	// A launch uses the run queue and the bucket; the run's steps go to the
	// task queue from the run worker, which checks it.
	if err := checkTransportAtStart(cmd.Context(), rt.Runtime, app.CheckOptions{SkipTaskQueue: true}, o.waitTransport, stderr); err != nil {
		return err
	}
	local := rt.localWorkers()
	if err := checkTasks(f, rt.Registry, local, stderr); err != nil {
		return err
	}
	if err := checkPools(f, cfg.Pools, local, stderr); err != nil {
		return err
	}
	if local {
		o.wait = true
		fmt.Fprintf(stderr, "dagq: note: transport %q keeps runs in this process only: launch serves this run with in-process workers and waits for it (--wait); status, health and terminate from another process need a shared transport\n",
			rt.Config.Transport)
		// Workers get their own context: they stop after the run ended.
		steps, err := rt.StartWorkers(context.WithoutCancel(cmd.Context()), 1)
		if err != nil {
			return err
		}
		defer stopPool(rt.Runtime, steps)
		runs, err := rt.StartRunWorkers(context.WithoutCancel(cmd.Context()), 1)
		if err != nil {
			return err
		}
		defer stopPool(rt.Runtime, runs)
	}

	runID, err := rt.Launcher.Launch(cmd.Context(), f.Job, dag.LaunchOptions{
		RunID:         o.runID,
		Params:        o.params,
		FailFast:      cfg.Executor.FailFast,
		CancelWait:    cfg.Executor.CancelWait,
		MaxConcurrent: o.maxConcurrent,
	})
	if errors.Is(err, ports.ErrAlreadyExists) && o.runID != "" {
		return fmt.Errorf("%w; choose another --run-id or omit it", err)
	}
	if err != nil {
		return err
	}
	if !o.wait {
		if o.output == "json" {
			return writeJSON(stdout, launchedJSON{RunID: runID, Job: f.Job.Name, State: string(dag.RunQueued)})
		}
		fmt.Fprintln(stdout, runID)
		fmt.Fprintf(stderr, "dagq: launched run %s of job %s; follow it with: dagq status %s\n", runID, f.Job.Name, runID)
		return nil
	}
	return c.followLaunched(cmd, rt, cfg, f.Job, runID, o, local)
}

// followLaunched follows a launched run to its end (--wait), prints its
// step table and returns the error carrying its exit code. local: the run
// is served by this process's workers (interrupting it terminates it).
func (c *cli) followLaunched(cmd *cobra.Command, rt session, cfg config.Config, job dag.Job, runID string, o launchOpts, local bool) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	progressOut := stdout
	if o.output == "json" {
		progressOut = stderr
	} else {
		fmt.Fprintln(stdout, runID)
	}
	if o.progress == ProgressNone {
		progressOut = nil
	}
	what := "no longer following the run (it goes on)"
	if local {
		what = "terminating the run"
	}
	ctx, release := interruptContext(cmd.Context(), stderr, what)
	defer release()

	fw := newFollower(progressOut, job, runID)
	fw.line(time.Now(), "run %s launched (job %s, %d steps)", runID, job.Name, len(job.Steps))
	rec, err := fw.follow(ctx, rt.Launcher, pollInterval(rt.Config))
	interrupted := err != nil && ctx.Err() != nil
	switch {
	case interrupted && local:
		// The run cannot outlive this process: stop it and report it.
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), cfg.Executor.CancelWait+terminateGrace)
		defer cancel()
		if _, terr := rt.Launcher.Terminate(stopCtx, runID); terr != nil {
			return fmt.Errorf("terminate run %s after the interrupt: %w", runID, terr)
		}
		if rec, err = fw.follow(stopCtx, rt.Launcher, pollInterval(rt.Config)); err != nil {
			return fmt.Errorf("wait for run %s after the interrupt: %w", runID, err)
		}
	case interrupted:
		return exitErr(ExitCancelled, fmt.Errorf("stopped following run %s; it goes on (dagq status %s, dagq terminate %s)", runID, runID, runID))
	case err != nil:
		return err
	}

	if o.output == "json" {
		if err := writeJSON(stdout, rec); err != nil {
			return err
		}
	} else {
		if progressOut != nil {
			fmt.Fprintln(stdout)
		}
		outputs := runOutputs(context.WithoutCancel(cmd.Context()), rt.Client, runID)
		if err := writeRecordTable(stdout, rec, time.Now(), outputs); err != nil {
			return err
		}
		if err := writeRecordSummary(stdout, rec); err != nil {
			return err
		}
	}
	switch rec.State {
	case dag.RunSucceeded:
		return nil
	case dag.RunCancelled:
		return exitErr(ExitCancelled, recordFailure(rec, interrupted))
	default:
		return exitErr(ExitFailed, recordFailure(rec, false))
	}
}

// launchedJSON is what launch --output json prints without --wait.
type launchedJSON struct {
	RunID string `json:"run_id"`
	Job   string `json:"job"`
	State string `json:"state"`
}

// checkTasks checks the job's structure, and its task names against reg:
// strictly when this process runs the steps (local), otherwise with a
// warning per unknown task, since remote workers may know tasks this
// program does not.
func checkTasks(f *jobfile.File, reg *core.Registry, local bool, stderr io.Writer) error {
	known := func(task string) bool {
		_, ok := reg.Lookup(task)
		return ok
	}
	if local {
		return f.Validate(known)
	}
	if err := f.Validate(nil); err != nil {
		return err
	}
	for _, s := range f.Job.Steps {
		if !known(s.Task) {
			fmt.Fprintf(stderr, "dagq: warning: %s:%d: step %q: task %q is not registered in this program; the workers must know it\n",
				f.Path, f.StepLine(s.Name), s.Name, s.Task)
		}
	}
	return nil
}

// checkPools checks the pools the job's steps name against the
// configuration's. A worker fails a task of a pool it has no limit for, so
// with workers in this process (dagq run; launch on the memory transport) a
// pool missing here is refused before anything runs, naming each step;
// otherwise the workers' configuration decides, and a warning says so.
func checkPools(f *jobfile.File, pools config.PoolLimits, local bool, stderr io.Writer) error {
	var errs []error
	for _, s := range f.Job.Steps {
		if _, ok := pools[s.Pool]; s.Pool == "" || ok {
			continue
		}
		where := fmt.Sprintf("%s:%d: step %q", f.Path, f.StepLine(s.Name), s.Name)
		if !local {
			fmt.Fprintf(stderr, "dagq: warning: %s: pool %q is not configured here (pools); the workers must have it, or they fail the step\n",
				where, s.Pool)
			continue
		}
		errs = append(errs, fmt.Errorf("%s: pool %q is not configured: the workers would fail the step; add pools: {%s: N} to the configuration (or DAGQ_POOLS=%s=N)",
			where, s.Pool, s.Pool, s.Pool))
	}
	return errors.Join(errs...)
}

// stopPool stops workers after a command, logging their errors.
func stopPool(rt *app.Runtime, p *app.Pool) {
	if err := p.Stop(); err != nil {
		rt.Logger.Warn("in-process worker stopped with an error", "err", err)
	}
}

// pollInterval is how often a followed run's record is read: it changes at
// most once per launcher heartbeat.
func pollInterval(cfg config.Config) time.Duration {
	return min(followPoll, cfg.Launcher.HeartbeatInterval)
}

// recordFailure is the one-line reason of a run that did not succeed.
func recordFailure(rec dag.RunRecord, interrupted bool) error {
	var failed, cancelled []string
	for _, s := range rec.Steps {
		switch s.State {
		case dag.StepFailed:
			failed = append(failed, s.Name)
		case dag.StepCancelled:
			cancelled = append(cancelled, s.Name)
		}
	}
	msg := fmt.Sprintf("run %s %s", rec.RunID, rec.State)
	if len(failed) > 0 {
		msg += "; failed steps: " + strings.Join(failed, ", ")
	}
	if len(cancelled) > 0 {
		msg += "; cancelled steps: " + strings.Join(cancelled, ", ")
	}
	if len(failed)+len(cancelled) == 0 && rec.Error != "" {
		msg += ": " + strings.TrimPrefix(rec.Error, "dagq: ")
	}
	if interrupted {
		msg += " (interrupted)"
	}
	return errors.New(msg)
}
