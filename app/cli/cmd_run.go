package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/app/jobfile"
	"github.com/dagq/dagq/app/ui"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
)

// interruptSignals cancel a run (and stop a worker) gracefully.
var interruptSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// errStopped is the cause of an interruptContext's cancellation: the run's
// error and its skipped steps then say "interrupted: the command was
// stopped", not Go's "context canceled".
var errStopped = errors.New("the command was stopped")

// interruptContext returns a context cancelled by the first SIGINT or
// SIGTERM (after telling stderr what happens now), or when parent ends, with
// errStopped as its cause (context.Cause); the signal handling then goes
// back to the default, so a second Ctrl-C ends the process at once. release
// stops listening.
func interruptContext(parent context.Context, stderr io.Writer, what string) (context.Context, func()) {
	ctx, cancelCause := context.WithCancelCause(context.WithoutCancel(parent))
	stopAfter := context.AfterFunc(parent, func() { cancelCause(errStopped) })
	cancel := func() {
		stopAfter()
		cancelCause(errStopped)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, interruptSignals...)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case s := <-sigs:
			signal.Stop(sigs)
			fmt.Fprintf(stderr, "dagq: %v: %s (again to exit at once)\n", s, what)
			stopAfter()
			cancelCause(fmt.Errorf("%w (%v)", errStopped, s))
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		<-finished
		cancel()
	}
}

func (c *cli) runCmd() *cobra.Command {
	var (
		output   string
		progress string
		runID    string
		params   []string
		waitT    time.Duration
		uiAddr   string
		maxConc  int
	)
	cmd := &cobra.Command{
		Use:   "run JOBFILE",
		Short: "Run a job file and wait for it to finish",
		Long: `run runs the job described by JOBFILE (YAML, see docs/cli.md) and waits for
it: it shows each step's progress, then a table of every step's state, attempts,
duration and output or error.

On the memory transport (the default) run starts a worker inside this process;
--concurrency sets how many steps it runs at once.

Progress goes to stdout: a live view on a terminal, plain lines otherwise
(--progress to choose). With --output json, stdout holds only the run result as
JSON and the progress goes to stderr.

Ctrl-C (SIGINT) or SIGTERM cancels the run: every queued and running step gets
a cancel request, and run waits for them (up to executor.cancel_wait) before it
prints the result. A second Ctrl-C exits at once.

--ui ADDR (host:port, e.g. 127.0.0.1:8080) serves the dashboard (see "dagq ui")
while the run runs: its DAG, steps and timeline, live, and Terminate, which
cancels the run as Ctrl-C does. When the run has ended on its own, or was
terminated from the dashboard, the dashboard stays up until Ctrl-C; the exit
status is still the run's. A non-loopback ADDR needs ui.token or ui.basic_auth.

On the sqs transport run first checks that the task queue (sqs.queue_url),
its dead-letter queue and the bucket (s3.bucket) exist and answer, and exits 1
naming each problem's key and fix when they do not (--wait-for-transport
DURATION: keep checking for up to DURATION first).

Exit status: 0 when every step succeeded, 1 when the run failed (or could not
start), 2 for bad arguments, 130 when the run was cancelled.`,
		Args: exactArgs(1, "the job file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkMaxConcurrent(maxConc); err != nil {
				return err
			}
			cfg, f, runParams, err := c.jobCommandArgs(cmd, args[0], output, progress, progressModes, params, c.known)
			if err != nil {
				return err
			}
			if err := f.Validate(c.known); err != nil {
				return err
			}
			if runID != "" {
				// Checked before any worker starts.
				if err := f.Job.CheckRunID(runID); err != nil {
					return fmt.Errorf("run: %w", err)
				}
			}
			return c.run(cmd, cfg, f, runOpts{output: output, progress: progress, runID: runID, params: runParams, waitTransport: waitT, ui: uiAddr,
				maxConcurrent: maxConc})
		},
	}
	fs := cmd.Flags()
	addOutputFlag(fs, &output, "text", "json")
	fs.StringVar(&progress, "progress", ProgressAuto, "progress display: "+strings.Join(progressModes, ", ")+" (auto: live on a terminal, plain otherwise)")
	fs.StringVar(&runID, "run-id", "", "run ID (default: random); step task IDs are RUNID.STEP (on a shared transport, re-using an ID re-uses the results stored under it)")
	fs.StringArrayVarP(&params, "param", "p", nil, "run parameter NAME=VALUE (repeatable), overriding the job file's params")
	addWaitForTransportFlag(fs, &waitT)
	fs.StringVar(&uiAddr, "ui", "", "serve the dashboard on ADDR (host:port, e.g. 127.0.0.1:8080) while the job runs, and after it until Ctrl-C")
	addMaxConcurrentFlag(fs, &maxConc)
	config.AddFlag(fs, "concurrency", "fail-fast")
	return cmd
}

func (c *cli) known(task string) bool {
	_, ok := c.reg.Lookup(task)
	return ok
}

// loadJob loads a job file with the configured retry defaults, and its
// params overridden by extra (the -p flags). It checks the file's syntax,
// not the job: call Validate.
func loadJob(path string, cfg config.Config, extra map[string]string, known func(string) bool) (*jobfile.File, map[string]string, error) {
	policy := cfg.Retry.Policy()
	f, err := jobfile.Load(path, jobfile.Options{DefaultRetry: &policy, KnownTask: known})
	if err != nil {
		return nil, nil, err
	}
	params, err := f.RunParams(extra)
	if err != nil {
		return nil, nil, exitErr(ExitUsage, err)
	}
	return f, params, nil
}

func parseParams(kvs []string) (map[string]string, error) {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErr("--param %q: want NAME=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

type runOpts struct {
	output, progress, runID string
	params                  map[string]string
	waitTransport           time.Duration // --wait-for-transport
	ui                      string        // --ui: the dashboard's address
	maxConcurrent           int           // --max-concurrent
}

// run executes the job and reports it; its error carries the exit code.
func (c *cli) run(cmd *cobra.Command, cfg config.Config, f *jobfile.File, o runOpts) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	progressOut := stdout
	if o.output == "json" {
		progressOut = stderr
	}
	view := newProgress(o.progress, progressOut, f.Job)
	defer view.Close()
	// Logs and notices go through the view, so a live view stays whole.
	stderr = view.Wrap(stderr)

	rt, err := c.runtime(stderr, cfg)
	if err != nil {
		return err
	}
	defer rt.close()
	// A run uses the task queue and the bucket (not the run queue).
	if err := checkTransportAtStart(cmd.Context(), rt.Runtime, app.CheckOptions{SkipRunQueue: true}, o.waitTransport, stderr); err != nil {
		return err
	}
	if err := checkPools(f, cfg.Pools, rt.localWorkers(), stderr); err != nil {
		return err
	}

	// Workers get their own context: they shut down after the run, once
	// the executor has cancelled and collected every step.
	if rt.localWorkers() {
		pool, err := rt.StartWorkers(context.WithoutCancel(cmd.Context()), 1)
		if err != nil {
			return err
		}
		defer func() {
			if err := pool.Stop(); err != nil {
				rt.Logger.Warn("embedded worker stopped with an error", "err", err)
			}
		}()
	}

	ctx, releaseSignals := interruptContext(cmd.Context(), stderr, "cancelling the run's steps")
	release := sync.OnceFunc(releaseSignals)
	defer release()

	onEvent := view.Event
	var dash *runDashboard
	if o.ui != "" {
		if o.runID == "" {
			o.runID = core.NewTaskID() // known to the dashboard before the run starts
		}
		var runCtx context.Context
		dash, runCtx, err = startRunDashboard(ctx, rt.Runtime, cfg, o, f, stderr)
		if err != nil {
			return err
		}
		defer dash.stop()
		ctx = runCtx
		onEvent = func(ev dag.Event) {
			view.Event(ev)
			dash.local.Event(ev)
		}
	}

	res, err := rt.Executor.Run(ctx, f.Job, dag.RunOptions{
		RunID:         o.runID,
		FailFast:      cfg.Executor.FailFast,
		Params:        o.params,
		OnEvent:       onEvent,
		CancelWait:    cfg.Executor.CancelWait,
		MaxConcurrent: o.maxConcurrent,
	})
	view.Close()
	if dash != nil && res.RunID != "" {
		dash.local.Finish(res)
	}
	if err != nil && res.RunID == "" {
		return err // nothing ran: invalid job or options
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		rt.Logger.Error("the executor could not follow the run", "err", err)
	}

	if o.output == "json" {
		if werr := writeJSON(stdout, toJSON(res)); werr != nil {
			return werr
		}
	} else {
		if o.progress != ProgressNone {
			fmt.Fprintln(stdout)
		}
		if werr := writeTable(stdout, res); werr != nil {
			return werr
		}
	}

	if dash != nil && res.RunID != "" && !dash.interrupted() {
		release()
		dash.linger(cmd.Context(), stderr)
	}

	switch res.State {
	case dag.RunSucceeded:
		return nil
	case dag.RunCancelled:
		return exitErr(ExitCancelled, runFailure(res, err))
	default:
		return exitErr(ExitFailed, runFailure(res, err))
	}
}

// runFailure is the one-line reason of a run that did not succeed.
func runFailure(res dag.RunResult, err error) error {
	var failed, cancelled []string
	for _, s := range res.Steps {
		switch s.State {
		case dag.StepFailed:
			failed = append(failed, s.Name)
		case dag.StepCancelled:
			cancelled = append(cancelled, s.Name)
		}
	}
	sort.Strings(failed)
	sort.Strings(cancelled)
	msg := fmt.Sprintf("run %s %s", res.RunID, res.State)
	if len(failed) > 0 {
		msg += fmt.Sprintf("; failed steps: %s", strings.Join(failed, ", "))
	}
	if len(cancelled) > 0 {
		msg += fmt.Sprintf("; cancelled steps: %s", strings.Join(cancelled, ", "))
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		msg += "; " + err.Error()
	} else if err != nil {
		msg += " (interrupted)"
	}
	return errors.New(msg)
}

// jobCommandArgs checks the flags shared by run and launch (--output,
// --progress, -p) and loads the configuration and the job file; known
// checks task names when the file has other problems too (nil: not
// checked).
func (c *cli) jobCommandArgs(cmd *cobra.Command, path, output, progress string, modes, params []string, known func(string) bool) (config.Config, *jobfile.File, map[string]string, error) {
	if err := checkOutput(output, "text", "json"); err != nil {
		return config.Config{}, nil, nil, err
	}
	if !contains(modes, progress) {
		return config.Config{}, nil, nil, usageErr("--progress %q: valid values: %s", progress, strings.Join(modes, ", "))
	}
	extra, err := parseParams(params)
	if err != nil {
		return config.Config{}, nil, nil, err
	}
	cfg, _, err := c.loadConfig(cmd)
	if err != nil {
		return config.Config{}, nil, nil, err
	}
	f, runParams, err := loadJob(path, cfg, extra, known)
	if err != nil {
		return config.Config{}, nil, nil, err
	}
	return cfg, f, runParams, nil
}

// errTerminatedFromDashboard is the cause of a run terminated from its
// dashboard (dagq run --ui).
var errTerminatedFromDashboard = errors.New("terminated from the dashboard")

// runDashboard is the dashboard of dagq run --ui: it shows the run this
// process drives, and terminates it by cancelling its context.
type runDashboard struct {
	local      *ui.LocalRun
	url        string
	ctx        context.Context // the run's: cancelled by Terminate or Ctrl-C
	terminated func() bool
	stopServe  context.CancelFunc
	served     chan error
}

// startRunDashboard serves the dashboard of the run o describes on o.ui,
// and returns the run's context, which its Terminate cancels.
func startRunDashboard(ctx context.Context, rt *app.Runtime, cfg config.Config, o runOpts, f *jobfile.File, stderr io.Writer) (*runDashboard, context.Context, error) {
	opts := ui.FromConfig(rt, cfg.UI)
	opts.Addr = o.ui
	srv, ln, err := startUI(opts, stderr)
	if err != nil {
		return nil, nil, err
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	d := &runDashboard{url: ui.URL(ln), ctx: runCtx, served: make(chan error, 1)}
	d.terminated = func() bool { return errors.Is(context.Cause(runCtx), errTerminatedFromDashboard) }
	d.local = srv.AddLocalRun(o.runID, f.Job, o.params, func() { cancel(errTerminatedFromDashboard) })
	serveCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	d.stopServe = func() {
		stop()
		cancel(nil)
	}
	go func() { d.served <- srv.Serve(serveCtx, ln) }()
	fmt.Fprintf(stderr, "dagq: dashboard of run %s: %s/runs/%s\n", o.runID, d.url, o.runID)
	return d, runCtx, nil
}

// interrupted reports whether the run was stopped with Ctrl-C (or its
// command's context ended): then the user wants out, not the dashboard.
func (d *runDashboard) interrupted() bool { return d.ctx.Err() != nil && !d.terminated() }

// linger keeps the dashboard up after the run, until Ctrl-C (or ctx ends).
func (d *runDashboard) linger(ctx context.Context, stderr io.Writer) {
	fmt.Fprintf(stderr, "dagq: the run ended; the dashboard stays up at %s until Ctrl-C\n", d.url)
	wait, release := interruptContext(ctx, stderr, "stopping the dashboard")
	defer release()
	<-wait.Done()
}

// stop stops serving the dashboard and waits for it.
func (d *runDashboard) stop() {
	d.stopServe()
	<-d.served
}
