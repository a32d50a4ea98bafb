package dag

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// DefaultCancelWait is how long Run waits, by default, for the steps it
// asked to cancel to report (RunOptions.CancelWait).
const DefaultCancelWait = 30 * time.Second

// Tuning of the executor.
const (
	// submitChunk is the most steps handed to one SubmitBatch call (ten
	// broker calls); the executor checks for an interrupt between calls.
	submitChunk = 100
	// submitTimeout bounds one SubmitBatch or Cancel call of the executor.
	// Those calls are not cut short by an interrupt, so that the executor
	// always knows what it sent.
	submitTimeout = 30 * time.Second
	// submitAttempts is how often the executor tries to submit a step
	// before it fails the step.
	submitAttempts = 5
)

// submitBackoff paces the re-submission of steps whose Send failed.
var submitBackoff = core.RetryPolicy{
	MaxAttempts:    submitAttempts,
	InitialBackoff: 200 * time.Millisecond,
	MaxBackoff:     5 * time.Second,
	Multiplier:     2,
	Jitter:         0.2,
}

// ExecutorOptions configures an Executor.
type ExecutorOptions struct {
	// Logger receives the executor's logs (default slog.Default()).
	Logger *slog.Logger
}

// Executor runs Jobs: it submits each step as a task through a Client once
// its upstream steps have succeeded, and follows the tasks to their
// results. Workers anywhere on the Client's broker run the steps. An
// Executor is safe for concurrent use; each Run is independent.
type Executor struct {
	c   *core.Client
	log *slog.Logger
}

// NewExecutor returns an Executor submitting through c (required).
func NewExecutor(c *core.Client, opts ExecutorOptions) (*Executor, error) {
	if c == nil {
		return nil, fmt.Errorf("dagq: executor: %w: a Client is required", ports.ErrInvalidArgument)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Executor{c: c, log: log}, nil
}

// RunOptions configures one Run.
type RunOptions struct {
	// RunID identifies the run; default NewTaskID(). It is the prefix of the
	// steps' task IDs (see StepTaskID) and, on FIFO queues, their message
	// group: printable ASCII without spaces, at most 128 bytes minus one
	// more than the job's longest step name. Use a new RunID per run: with
	// a RunID used before, steps are submitted again under the same task
	// IDs, and since results are write-once a step that finished then keeps
	// its first result (even if its handler runs again).
	RunID string
	// FailFast: on the first step that fails, send a cancel request for
	// every in-flight step and skip every step not submitted yet. Without
	// it, only the failed step's downstream steps are skipped and the other
	// branches run on.
	FailFast bool
	// Params are the run's parameters, handed to every step's handler as
	// Task.Params.
	Params map[string]string
	// OnEvent, when set, receives the run's events in order, from the
	// goroutine that called Run (do not block in it for long). Setting it
	// also asks workers for progress notifications (step_started,
	// step_retried), which cost one Publish per attempt and per retry.
	OnEvent func(Event)
	// CancelWait bounds how long Run waits, after sending cancel requests
	// (on an interrupt or with FailFast), for the in-flight steps to report
	// their final state; steps that do not report in time are marked
	// cancelled. Default DefaultCancelWait (30s); must not be negative.
	CancelWait time.Duration
	// Resume, when not nil, continues a run that an earlier Run of the same
	// job under the same RunID started and did not finish (e.g. its process
	// died): finished steps are not run again. See Resume.
	Resume *Resume
	// MaxConcurrent, when positive, overrides the job's Job.MaxConcurrent:
	// at most that many steps of the run in flight (submitted and not
	// finished) at once; the steps ready beyond it wait, in declaration
	// order. 0 keeps the job's; it must not be negative.
	MaxConcurrent int
	// Reuse maps step names to the task IDs of stored results to take as
	// those steps' outcomes instead of running them (a re-execution, see
	// Launcher.Reexecute): before anything is submitted, Run reads those
	// results (one ResultBackend read each, eight at a time) and settles
	// each step succeeded with the stored output, byte for byte, without
	// submitting it — no handler runs. Its downstream steps get that output
	// as their input as usual. A reused step is settled whatever its
	// upstreams do (they may run again). A result that is missing (expired)
	// or did not succeed fails its step, saying so; reads that fail make Run
	// fail before it submits anything. Reuse is applied before Resume.
	Reuse map[string]string

	// detach, when closed, makes Run return errRunDetached at once without
	// cancelling anything (the Launcher's run task, released by its worker).
	detach <-chan struct{}
	// skip maps step names to why they are skipped without running (a
	// re-execution's steps neither selected nor reusable); applied after
	// Reuse.
	skip map[string]string
}

// Resume tells Run how to continue an earlier, unfinished run (RunOptions.Resume).
//
// Before submitting anything, Run reads the stored result of every step
// (one ResultBackend read per step, eight at a time) and walks the DAG in
// topological order: a step whose upstreams all succeeded and that has a
// result is not submitted again; its result is taken as it is (succeeded
// with its output, failed or cancelled) and reported with the step_queued
// and final events. A step without a result that Sent names is followed
// without being submitted again (its message is in the queue, so a worker
// will record its result). Every other step is submitted as usual, under
// its deterministic task ID: if the earlier Run had sent it after all, the
// task is queued twice, which at-least-once delivery allows for — its
// result stays the first one stored, though on a standard queue its
// handler may run twice.
type Resume struct {
	// Sent names the steps the earlier Run is known to have submitted
	// (e.g. from a run record): without a result they are watched, not
	// submitted again.
	Sent []string
}

// errRunDetached is Run's error when RunOptions.detach closed.
var errRunDetached = errors.New("run detached: its steps were left running")

// EventType names what happened in a run.
type EventType string

// Event types. A step's events come in this order: queued, then per attempt
// started and, if the attempt failed and is retried, retried; then one of
// succeeded, failed or cancelled. A step that is never submitted gets only
// skipped (a step whose submission failed: failed). Started and retried
// come from the workers' progress notifications, which are best-effort:
// one may be missing, in which case started is reported with the final
// event (when the result shows the handler ran).
const (
	EventRunStarted    EventType = "run_started"
	EventRunFinished   EventType = "run_finished"
	EventStepQueued    EventType = "step_queued"
	EventStepStarted   EventType = "step_started"
	EventStepRetried   EventType = "step_retried"
	EventStepSucceeded EventType = "step_succeeded"
	EventStepFailed    EventType = "step_failed"
	EventStepSkipped   EventType = "step_skipped"
	EventStepCancelled EventType = "step_cancelled"
)

// Event is one thing that happened in a run.
type Event struct {
	Type  EventType `json:"type"`
	RunID string    `json:"run_id"`
	// Step and TaskID are empty for run events; TaskID is also empty for a
	// step that was never submitted.
	Step   string `json:"step,omitempty"`
	TaskID string `json:"task_id,omitempty"`
	// Attempt is the attempt that started (step_started), the attempt that
	// comes next (step_retried), or the attempts made (final step events).
	Attempt int `json:"attempt,omitempty"`
	// Error says why a step failed, was retried, skipped or cancelled, and
	// for run_finished why the run did not succeed.
	Error string `json:"error,omitempty"`
	// Worker is the worker running the attempt (step_started, when the
	// worker said) or that recorded the step's result (final step events).
	Worker string `json:"worker,omitempty"`
	// ReusedFrom, on the step_succeeded of a step taken from a stored
	// result (RunOptions.Reuse), is the run whose result it is (see
	// StepResult.ReusedFrom); TaskID is then that result's task ID.
	ReusedFrom string `json:"reused_from,omitempty"`
	// Time is when the executor observed the event.
	Time time.Time `json:"time"`
}

// StepState is where a step of a run is.
type StepState string

// Step states.
const (
	StepPending   StepState = "pending"   // waiting for its upstreams
	StepQueued    StepState = "queued"    // submitted, or waiting for a retry
	StepRunning   StepState = "running"   // an attempt's handler runs
	StepSucceeded StepState = "succeeded" // final
	StepFailed    StepState = "failed"    // final
	StepSkipped   StepState = "skipped"   // final: never submitted
	StepCancelled StepState = "cancelled" // final
)

// Final reports whether s is a final state.
func (s StepState) Final() bool {
	switch s {
	case StepSucceeded, StepFailed, StepSkipped, StepCancelled:
		return true
	}
	return false
}

// RunState is where a run is.
type RunState string

// Run states. RunQueued is for launchers that queue whole runs; Run itself
// goes from running to a final state.
const (
	RunQueued    RunState = "queued"
	RunRunning   RunState = "running"
	RunSucceeded RunState = "succeeded" // final: every step succeeded
	RunFailed    RunState = "failed"    // final: a step failed
	RunCancelled RunState = "cancelled" // final: interrupted, or a step was cancelled
)

// Final reports whether s is a final state.
func (s RunState) Final() bool {
	return s == RunSucceeded || s == RunFailed || s == RunCancelled
}

// StepResult is the outcome of one step of a run.
type StepResult struct {
	Name string `json:"name"`
	Task string `json:"task"`
	// TaskID is the step's task ID (StepTaskID), empty if never submitted.
	TaskID string    `json:"task_id,omitempty"`
	State  StepState `json:"state"`
	// Attempts is how many times the step's handler ran.
	Attempts int `json:"attempts"`
	// StartedAt and FinishedAt come from the worker's result (the last
	// attempt's start and end); zero when unknown.
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Error says why the step failed, was skipped or cancelled.
	Error string `json:"error,omitempty"`
	// Worker is the worker that recorded the step's result.
	Worker string `json:"worker,omitempty"`
	// Output is the handler's output (JSON) of a succeeded step.
	Output json.RawMessage `json:"output,omitempty"`
	// ReusedFrom is set on a step that did not run but took a stored result
	// (RunOptions.Reuse): the run whose step produced it — the task ID's
	// run, when the task ID is StepTaskID(run, step), else the task ID
	// itself. TaskID is then the reused task's ID, and Attempts is 0.
	ReusedFrom string `json:"reused_from,omitempty"`
}

// Duration is FinishedAt - StartedAt, or 0 when either is unknown.
func (s StepResult) Duration() time.Duration {
	if s.StartedAt.IsZero() || s.FinishedAt.IsZero() {
		return 0
	}
	return s.FinishedAt.Sub(s.StartedAt)
}

// RunResult is the outcome of a run.
type RunResult struct {
	RunID string   `json:"run_id"`
	Job   string   `json:"job"`
	State RunState `json:"state"`
	// Steps are in the job's declaration order.
	Steps      []StepResult `json:"steps"`
	StartedAt  time.Time    `json:"started_at,omitzero"`
	FinishedAt time.Time    `json:"finished_at,omitzero"`
}

// Step returns the result of the named step.
func (r RunResult) Step(name string) (StepResult, bool) {
	for _, s := range r.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return StepResult{}, false
}

// Err returns nil when the run succeeded and otherwise a *RunError naming
// the steps that failed or were cancelled.
func (r RunResult) Err() error {
	if r.State == RunSucceeded {
		return nil
	}
	e := &RunError{RunID: r.RunID, Job: r.Job, State: r.State}
	for _, s := range r.Steps {
		if s.State == StepFailed || s.State == StepCancelled {
			e.Steps = append(e.Steps, s)
		}
	}
	return e
}

// RunError is the error of a run that did not succeed (RunResult.Err).
// errors.Is(err, ErrTaskCanceled) is true for a cancelled run.
type RunError struct {
	RunID, Job string
	State      RunState
	// Steps are the failed and cancelled steps, in declaration order.
	Steps []StepResult
}

func (e *RunError) Error() string {
	msg := fmt.Sprintf("run %s of job %q %s", e.RunID, e.Job, e.State)
	for i, s := range e.Steps {
		if i == 3 {
			msg += fmt.Sprintf("; and %d more", len(e.Steps)-i)
			break
		}
		msg += fmt.Sprintf("; step %q %s", s.Name, s.State)
		if s.Error != "" {
			msg += ": " + s.Error
		}
	}
	return msg
}

// Is makes errors.Is(err, ErrTaskCanceled) true for a cancelled run.
func (e *RunError) Is(target error) bool {
	return target == core.ErrTaskCanceled && e.State == RunCancelled
}

// StepTaskID returns the task ID of step in run runID: runID + "." + step.
func StepTaskID(runID, step string) string { return runID + "." + step }

// Run runs job to the end and returns its result.
//
// It validates the job (Job.Validate, task names unchecked: the workers
// know them) and the options; an invalid job fails with an error matching
// ErrInvalidJob, invalid options with ports.ErrInvalidArgument, and nothing
// is submitted. It then submits every step whose upstreams all succeeded
// (several at once in one SubmitBatch), with task ID StepTaskID(RunID,
// step), the step's args, retry policy and deadline, the run's Params and
// the outputs of its upstream steps as Inputs, and follows all in-flight
// steps through one Watch: no goroutine and no polling per step. Retries
// are the workers' (the step's Retry policy travels in the envelope). A
// step whose Send fails is submitted again with backoff, up to 5 times.
//
// A step that fails or is cancelled has all its downstream steps skipped;
// other branches go on, unless FailFast (see RunOptions). When ctx is done
// (an interrupt), Run sends one batched cancel request for every in-flight
// step, skips the steps not submitted, waits up to CancelWait for the
// cancelled steps to report, and returns the result (state cancelled) with
// ctx's error. Whatever happens, Run leaves no waiter and no goroutine
// behind.
//
// A run that failed is not an error of Run: see RunResult.State and
// RunResult.Err. Run's error is ctx's for an interrupt and otherwise says
// why the executor could not follow the run (e.g. the client was closed;
// the steps it affected are failed with that reason).
func (e *Executor) Run(ctx context.Context, job Job, opts RunOptions) (RunResult, error) {
	if err := job.Validate(nil); err != nil {
		return RunResult{}, fmt.Errorf("dagq: run: %w", err)
	}
	if opts.RunID == "" {
		opts.RunID = core.NewTaskID()
	}
	if err := job.CheckRunID(opts.RunID); err != nil {
		return RunResult{}, fmt.Errorf("dagq: run: %w", err)
	}
	switch {
	case opts.CancelWait < 0:
		return RunResult{}, fmt.Errorf("dagq: run: %w: CancelWait is %v; it must be 0 (default %v) or positive",
			ports.ErrInvalidArgument, opts.CancelWait, DefaultCancelWait)
	case opts.CancelWait == 0:
		opts.CancelWait = DefaultCancelWait
	}
	opts.Params = maps.Clone(opts.Params)
	job.Steps = slices.Clone(job.Steps) // the caller may reuse its job

	switch {
	case opts.MaxConcurrent < 0:
		return RunResult{}, fmt.Errorf("dagq: run: %w: MaxConcurrent is %d; it must be 0 (the job's max_concurrent) or positive",
			ports.ErrInvalidArgument, opts.MaxConcurrent)
	case opts.MaxConcurrent == 0:
		opts.MaxConcurrent = job.MaxConcurrent
	}
	known := make(map[string]bool, len(job.Steps))
	for _, st := range job.Steps {
		known[st.Name] = true
	}
	if opts.Resume != nil {
		for _, name := range opts.Resume.Sent {
			if !known[name] {
				return RunResult{}, fmt.Errorf("dagq: run: %w: Resume.Sent names step %q, which the job %q does not have",
					ports.ErrInvalidArgument, name, job.Name)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(opts.Reuse)) {
		if !known[name] {
			return RunResult{}, fmt.Errorf("dagq: run: %w: Reuse names step %q, which the job %q does not have",
				ports.ErrInvalidArgument, name, job.Name)
		}
		if err := core.ValidateTaskID(opts.Reuse[name]); err != nil {
			return RunResult{}, fmt.Errorf("dagq: run: Reuse of step %q: %w", name, err)
		}
	}
	var reused map[string]ports.Result
	if len(opts.Reuse) > 0 {
		ids := slices.Collect(maps.Values(opts.Reuse))
		rctx, cancel := context.WithTimeout(ctx, submitTimeout)
		found, failed := e.c.StoredResults(rctx, ids)
		cancel()
		if failed > 0 {
			return RunResult{}, fmt.Errorf("dagq: run: reading the stored results to reuse failed (%d of %d reads); nothing was submitted",
				failed, len(ids))
		}
		reused = found
	}

	w, err := e.c.Watch(context.WithoutCancel(ctx))
	if err != nil {
		return RunResult{}, fmt.Errorf("dagq: run: %w", err)
	}
	defer w.Close()
	// The steps are submitted from the run span's context: their spans
	// are its children.
	ctx, end := startSpan(ctx, e.c.Tracer(), core.SpanStart{Kind: core.SpanRun, Name: job.Name, RunID: opts.RunID})
	r := newRunState(ctx, e, job, opts, w)
	r.reused = reused
	res, err := r.run()
	end(runSpanErr(res, err))
	return res, err
}

// stepRun is a step's state during a run.
type stepRun struct {
	idx  int
	step *Step
	id   string // task ID

	state      StepState
	submitted  bool // handed to SubmitBatch at least once: watched
	attempts   int
	started    time.Time
	finished   time.Time
	err        string
	output     json.RawMessage
	waiting    int // upstreams not succeeded yet
	up, down   []*stepRun
	worker     string // the worker of the last attempt seen, or of the result
	seenStart  int    // last attempt reported started
	seenRetry  int    // last attempt reported as coming next
	tries      int    // failed submissions
	alone      bool
	resubmitAt time.Time
	reusedTask string // the task whose stored result the step took (RunOptions.Reuse)
	reusedFrom string // its run
}

// runState is one Run in progress; only Run's goroutine touches it.
type runState struct {
	e      *Executor
	ctx    context.Context // Run's
	log    *slog.Logger
	job    Job
	opts   RunOptions
	w      *core.Watch
	steps  []*stepRun
	byTask map[string]*stepRun

	inflight int        // watched steps without a final state
	ready    []*stepRun // to submit
	resubmit []*stepRun // failed submissions waiting for their next try

	detached    bool      // RunOptions.detach closed
	stopping    bool      // fail-fast or interrupt: submit nothing more
	stopReason  string    // why steps not submitted are skipped
	deadline    time.Time // end of the wait for cancelled steps
	interrupted bool
	fatal       error // why the executor could not follow the run

	reused  map[string]ports.Result // the stored results of RunOptions.Reuse, by task ID
	started time.Time
}

func newRunState(ctx context.Context, e *Executor, job Job, opts RunOptions, w *core.Watch) *runState {
	r := &runState{
		e:      e,
		ctx:    ctx,
		log:    e.log.With("run_id", opts.RunID, "job", job.Name),
		job:    job,
		opts:   opts,
		w:      w,
		steps:  make([]*stepRun, len(job.Steps)),
		byTask: make(map[string]*stepRun, len(job.Steps)),
	}
	byName := make(map[string]*stepRun, len(job.Steps))
	for i := range job.Steps {
		s := &stepRun{idx: i, step: &job.Steps[i], id: StepTaskID(opts.RunID, job.Steps[i].Name), state: StepPending}
		r.steps[i] = s
		r.byTask[s.id] = s
		byName[s.step.Name] = s
	}
	for _, s := range r.steps {
		for _, up := range s.step.Upstream {
			u := byName[up]
			s.up = append(s.up, u)
			u.down = append(u.down, s)
		}
		s.waiting = len(s.up)
	}
	return r
}

func (r *runState) run() (RunResult, error) {
	r.started = time.Now()
	r.log.Info("run started", "steps", len(r.steps), "fail_fast", r.opts.FailFast, "max_concurrent", r.opts.MaxConcurrent)
	r.emit(Event{Type: EventRunStarted})
	if len(r.opts.Reuse) > 0 || len(r.opts.skip) > 0 {
		r.reuse()
	}
	if r.opts.Resume != nil {
		r.resume()
	}
	for _, s := range r.steps {
		if s.waiting == 0 && s.state == StepPending && !s.submitted {
			r.ready = append(r.ready, s)
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	r.submitReady()
	for r.inflight > 0 || len(r.ready) > 0 {
		var timerC <-chan time.Time
		if wake := r.nextWake(); !wake.IsZero() {
			timer.Reset(time.Until(wake))
			timerC = timer.C
		}
		done := r.ctx.Done()
		if r.interrupted {
			done = nil
		}
		select {
		case <-r.w.Ready():
			r.handle(r.w.Take())
		case <-timerC:
			r.timerFired()
		case <-done:
			r.interrupted = true
			if !r.stopping {
				r.stop("run cancelled: " + interruption(r.ctx))
			}
		case <-r.opts.detach:
			r.detached = true
		}
		if r.detached {
			return r.finishDetached()
		}
		r.submitReady()
	}
	return r.finish()
}

// reuse settles the steps of RunOptions.Reuse from their stored results
// (read by Run), then skips the steps of skip. It leaves r.ready empty; run
// fills it.
func (r *runState) reuse() {
	// The results found first, so that a missing one skips only the
	// downstream steps that are not reused.
	n := 0
	var missing []*stepRun
	for _, s := range r.steps {
		id, ok := r.opts.Reuse[s.step.Name]
		if !ok {
			continue
		}
		res, found := r.reused[id]
		if !found || res.State != ports.StateSucceeded {
			missing = append(missing, s)
			continue
		}
		n++
		s.reusedTask, s.reusedFrom = id, reusedRun(id, s.step.Name)
		s.worker = res.Worker
		s.state, s.output = StepSucceeded, res.Output
		r.emit(Event{Type: EventStepSucceeded, Step: s.step.Name, TaskID: id, Worker: res.Worker, ReusedFrom: s.reusedFrom})
		r.stepLog(s).Debug("step reused", "reused_task", id)
		for _, d := range s.down {
			d.waiting--
		}
	}
	for _, s := range missing {
		if s.state != StepPending {
			continue // stopped meanwhile (fail-fast)
		}
		id := r.opts.Reuse[s.step.Name]
		from := reusedRun(id, s.step.Name)
		if res, found := r.reused[id]; found {
			r.settle(s, StepFailed, fmt.Sprintf("the stored result of task %s (run %s) to reuse is %s, not succeeded", id, from, res.State), nil)
		} else {
			r.settle(s, StepFailed, fmt.Sprintf("the stored result of task %s (run %s) to reuse is gone (results expire): re-execute this step too", id, from), nil)
		}
	}
	// Each with its own reason (not skip's, which passes one down): the
	// downstream steps of a step skipped here are skipped here too, or
	// reused.
	for _, s := range r.steps {
		if why, ok := r.opts.skip[s.step.Name]; ok && s.state == StepPending {
			s.state, s.err = StepSkipped, why
			r.emit(Event{Type: EventStepSkipped, Step: s.step.Name, Error: why})
		}
	}
	r.ready = nil // run rebuilds the list
	if n > 0 {
		r.log.Info("reused stored results", "steps", n)
	}
}

// reusedRun is the run of a reused task ID: run when the ID is
// StepTaskID(run, step), else the ID itself.
func reusedRun(taskID, step string) string {
	if run, ok := strings.CutSuffix(taskID, "."+step); ok && run != "" {
		return run
	}
	return taskID
}

// resume applies the stored results of an earlier run (RunOptions.Resume):
// see Resume. It leaves r.ready empty; run fills it.
func (r *runState) resume() {
	ids := make([]string, 0, len(r.steps))
	for _, s := range r.steps {
		if !s.state.Final() {
			ids = append(ids, s.id)
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), submitTimeout)
	found, failed := r.e.c.StoredResults(ctx, ids)
	cancel()
	if failed > 0 {
		r.log.Warn("resume: reading some step results failed; those steps are watched or submitted again", "failed", failed)
	}
	sent := make(map[string]bool, len(r.opts.Resume.Sent))
	for _, name := range r.opts.Resume.Sent {
		sent[name] = true
	}
	var watch []string
	reused := 0
	for _, idx := range r.job.order() {
		s := r.steps[idx]
		if s.state != StepPending || s.submitted || s.waiting > 0 {
			continue // skipped, or an upstream did not succeed (yet)
		}
		res, ok := found[s.id]
		if !ok && !sent[s.step.Name] {
			continue // submitted by run
		}
		s.submitted = true
		s.state = StepQueued
		r.inflight++
		r.emit(Event{Type: EventStepQueued, Step: s.step.Name, TaskID: s.id})
		if ok {
			reused++
			r.handle([]core.WatchEvent{{TaskID: s.id, Final: true, Result: res}})
			continue
		}
		watch = append(watch, s.id)
	}
	r.ready = nil // settle queued downstream steps; run rebuilds the list
	if len(watch) > 0 {
		if err := r.w.Add(watch...); err != nil {
			// Only an ended Watch fails here: the client is closed.
			r.log.Error("resume: watching the steps in flight failed", "err", err)
			for _, id := range watch {
				if s := r.byTask[id]; !s.state.Final() {
					r.inflight--
					if r.fatal == nil {
						r.fatal = err
					}
					r.settle(s, StepFailed, "outcome unknown: watching the step failed: "+err.Error(), nil)
				}
			}
		}
	}
	r.log.Info("run resumed", "reused_results", reused, "watched", len(watch))
}

// finishDetached builds the partial result of a detached run: steps keep
// the state they had (possibly not final) and the run is still running.
func (r *runState) finishDetached() (RunResult, error) {
	res := RunResult{
		RunID:      r.opts.RunID,
		Job:        r.job.Name,
		State:      RunRunning,
		Steps:      make([]StepResult, len(r.steps)),
		StartedAt:  r.started,
		FinishedAt: time.Now(),
	}
	for i, s := range r.steps {
		res.Steps[i] = r.stepResult(s)
	}
	r.log.Info("run detached; its steps were left running", "in_flight", r.inflight)
	return res, fmt.Errorf("dagq: run %s: %w", r.opts.RunID, errRunDetached)
}

// stepResult is s as a StepResult.
func (r *runState) stepResult(s *stepRun) StepResult {
	sr := StepResult{
		Name: s.step.Name, Task: s.step.Task, State: s.state, Attempts: s.attempts,
		StartedAt: s.started, FinishedAt: s.finished, Error: s.err, Output: s.output, Worker: s.worker,
	}
	switch {
	case s.reusedTask != "":
		sr.TaskID, sr.ReusedFrom = s.reusedTask, s.reusedFrom
	case s.submitted:
		sr.TaskID = s.id
	}
	return sr
}

// nextWake is when the loop must wake without an event: the end of the
// cancel wait, or the next re-submission; zero for never.
func (r *runState) nextWake() time.Time {
	if r.stopping {
		return r.deadline
	}
	var next time.Time
	for _, s := range r.resubmit {
		if next.IsZero() || s.resubmitAt.Before(next) {
			next = s.resubmitAt
		}
	}
	return next
}

func (r *runState) timerFired() {
	now := time.Now()
	if r.stopping {
		if !now.Before(r.deadline) {
			r.giveUp()
		}
		return
	}
	keep := r.resubmit[:0]
	for _, s := range r.resubmit {
		switch {
		case s.state.Final():
			// Its result arrived meanwhile: the failed Send went through.
		case now.Before(s.resubmitAt):
			keep = append(keep, s)
		default:
			r.ready = append(r.ready, s)
		}
	}
	clear(r.resubmit[len(keep):])
	r.resubmit = keep
}

// submitReady submits the ready steps in declaration order, in chunks,
// until an interrupt or a fail-fast stop.
func (r *runState) submitReady() {
	if len(r.ready) == 0 || r.stopping {
		return
	}
	batch := r.ready
	r.ready = nil
	sort.Slice(batch, func(a, b int) bool { return batch[a].idx < batch[b].idx })
	// With a concurrency limit, new steps take the free slots in
	// declaration order and the rest wait in r.ready; a step submitted
	// again (its Send failed) holds its slot already.
	slots := -1
	if m := r.opts.MaxConcurrent; m > 0 {
		slots = max(m-r.inflight, 0)
	}
	var together, alone []*stepRun // steps to isolate are sent one per call
	for _, s := range batch {
		switch {
		case s.state.Final():
			continue
		case !s.submitted && slots == 0:
			r.ready = append(r.ready, s)
			continue
		case !s.submitted && slots > 0:
			slots--
		}
		if s.alone {
			alone = append(alone, s)
		} else {
			together = append(together, s)
		}
	}
	chunks := make([][]*stepRun, 0, len(together)/submitChunk+len(alone)+1)
	for len(together) > 0 {
		n := min(len(together), submitChunk)
		chunks = append(chunks, together[:n])
		together = together[n:]
	}
	for _, s := range alone {
		chunks = append(chunks, []*stepRun{s})
	}
	for i, chunk := range chunks {
		if r.stopping {
			return // stop skipped the steps not submitted
		}
		if r.ctx.Err() != nil {
			for _, rest := range chunks[i:] {
				r.ready = append(r.ready, rest...) // the loop stops and skips them
			}
			return
		}
		r.submit(chunk)
	}
}

// submit sends one chunk of steps through the Watch.
func (r *runState) submit(chunk []*stepRun) {
	now := time.Now()
	reqs := make([]core.Request, len(chunk))
	for i, s := range chunk {
		reqs[i] = r.request(s, now)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), submitTimeout)
	_, err := r.w.SubmitBatch(sctx, reqs...)
	cancel()
	// All of the chunk is watched now, even what failed to send: count it
	// in flight before anything below may stop the run and cancel it.
	for _, s := range chunk {
		if !s.submitted {
			s.submitted = true
			r.inflight++
		}
	}
	var se *core.SubmitError
	isSubmitErr := errors.As(err, &se)
	for i, s := range chunk {
		var ierr error
		switch {
		case err == nil:
		case isSubmitErr:
			ierr = se.Failed[i]
		default:
			ierr = err
		}
		switch {
		case s.state.Final():
			// Stopped meanwhile (given up below).
		case ierr == nil:
			s.state = StepQueued
			r.emit(Event{Type: EventStepQueued, Step: s.step.Name, TaskID: s.id})
		default:
			r.submitFailed(s, ierr, len(chunk))
		}
	}
}

// request builds the submission of s.
func (r *runState) request(s *stepRun, now time.Time) core.Request {
	req := core.Request{
		Task:     s.step.Task,
		ID:       s.id,
		RunID:    r.opts.RunID,
		StepID:   s.step.Name,
		Params:   r.opts.Params,
		Progress: r.opts.OnEvent != nil,
		Retry:    s.step.Retry,
		Pool:     s.step.Pool,
	}
	if len(s.step.Args) > 0 {
		req.Args = s.step.Args
	}
	if len(s.up) > 0 {
		req.Inputs = make(map[string]json.RawMessage, len(s.up))
		for _, u := range s.up {
			req.Inputs[u.step.Name] = u.output
		}
	}
	if s.step.Timeout > 0 {
		req.Deadline = now.Add(s.step.Timeout)
	}
	return req
}

// submitFailed schedules another try of s, or gives it up.
func (r *runState) submitFailed(s *stepRun, err error, batch int) {
	s.tries++
	closed := errors.Is(err, ports.ErrClosed)
	if closed && r.fatal == nil {
		r.fatal = err
	}
	if r.stopping {
		r.abandon(s, fmt.Sprintf("%s (its submission had failed: %v)", r.stopReason, err), StepSkipped)
		return
	}
	permanent := closed || errors.Is(err, ports.ErrInvalidArgument) && batch == 1
	if !permanent && s.tries < submitAttempts {
		if errors.Is(err, ports.ErrInvalidArgument) {
			// A whole Send is refused for one bad message: isolate each.
			s.alone = true
			s.resubmitAt = time.Now()
		} else {
			s.resubmitAt = time.Now().Add(submitBackoff.Backoff(s.tries))
		}
		r.stepLog(s).Warn("submitting a step failed; trying again", "try", s.tries,
			"retry_in", time.Until(s.resubmitAt), "err", err)
		r.resubmit = append(r.resubmit, s)
		return
	}
	r.stepLog(s).Error("submitting a step failed; failing the step", "tries", s.tries, "err", err)
	r.abandon(s, fmt.Sprintf("submit failed after %d tries: %v", s.tries, err), StepFailed)
}

// abandon stops following a step whose submission failed: it is cancelled
// (a failed Send may still have queued it), unwatched and settled.
func (r *runState) abandon(s *stepRun, why string, state StepState) {
	if r.fatal == nil || !errors.Is(r.fatal, ports.ErrClosed) {
		r.cancel([]string{s.id})
	}
	r.w.Remove(s.id)
	r.inflight--
	r.settle(s, state, why, nil)
}

// handle applies watch events.
func (r *runState) handle(evs []core.WatchEvent) {
	for _, ev := range evs {
		s := r.byTask[ev.TaskID]
		if s == nil || s.state.Final() {
			continue
		}
		if !ev.Final {
			r.progress(s, ev.Progress)
			continue
		}
		r.inflight--
		if ev.Err != nil {
			if errors.Is(ev.Err, ports.ErrClosed) && r.fatal == nil {
				r.fatal = ev.Err
			}
			r.settle(s, StepFailed, "outcome unknown: waiting for the result failed: "+ev.Err.Error(), nil)
			continue
		}
		res := ev.Result
		if !res.StartedAt.IsZero() && res.Attempts > s.seenStart {
			// The handler ran but its start was not reported.
			s.seenStart = res.Attempts
			r.emit(Event{Type: EventStepStarted, Step: s.step.Name, TaskID: s.id, Attempt: res.Attempts, Worker: res.Worker})
		}
		s.attempts, s.started, s.finished = res.Attempts, res.StartedAt, res.FinishedAt
		if res.Worker != "" {
			s.worker = res.Worker
		}
		if st := stepStateOf(res.State); st == StepSucceeded {
			r.settle(s, st, "", res.Output)
		} else {
			r.settle(s, st, res.Error, nil)
		}
	}
}

// stepStateOf is the final step state of a task result's state: failed for
// anything but succeeded and cancelled.
func stepStateOf(st ports.State) StepState {
	switch st {
	case ports.StateSucceeded:
		return StepSucceeded
	case ports.StateCancelled:
		return StepCancelled
	}
	return StepFailed
}

// progress applies a progress notification, dropping stale or repeated ones.
func (r *runState) progress(s *stepRun, p ports.Completion) {
	switch p.State {
	case ports.StateRunning:
		if p.Attempt <= s.seenStart {
			return
		}
		s.seenStart = p.Attempt
		s.state, s.worker = StepRunning, p.Worker
		r.emit(Event{Type: EventStepStarted, Step: s.step.Name, TaskID: s.id, Attempt: p.Attempt, Worker: p.Worker})
	case ports.StateRetrying:
		if p.Attempt <= s.seenRetry || p.Attempt <= s.seenStart {
			return
		}
		s.seenRetry = p.Attempt
		s.state = StepQueued
		r.emit(Event{Type: EventStepRetried, Step: s.step.Name, TaskID: s.id, Attempt: p.Attempt, Error: p.Error})
	}
}

// settle gives s its final state, reports it and moves the DAG on: a
// success readies the downstream steps whose upstreams all succeeded; any
// other outcome skips all downstream steps, and a failure with FailFast
// stops the run.
func (r *runState) settle(s *stepRun, state StepState, why string, output json.RawMessage) {
	s.state, s.err, s.output = state, why, output
	ev := Event{Step: s.step.Name, Attempt: s.attempts, Error: why, Worker: s.worker}
	if s.submitted {
		ev.TaskID = s.id
	}
	switch state {
	case StepSucceeded:
		ev.Type = EventStepSucceeded
	case StepFailed:
		ev.Type = EventStepFailed
	case StepCancelled:
		ev.Type = EventStepCancelled
	default:
		ev.Type = EventStepSkipped
	}
	r.emit(ev)
	r.stepLog(s).Debug("step finished", "state", state, "attempts", s.attempts, "err", why)

	if state == StepSucceeded {
		for _, d := range s.down {
			if d.waiting--; d.waiting > 0 || d.state != StepPending {
				continue
			}
			if r.stopping {
				r.skip(d, r.stopReason)
			} else {
				r.ready = append(r.ready, d)
			}
		}
		return
	}
	reason := fmt.Sprintf("upstream %q %s", s.step.Name, state)
	for _, d := range s.down {
		r.skip(d, reason)
	}
	if state == StepFailed && r.opts.FailFast && !r.stopping {
		r.stop(fmt.Sprintf("fail-fast: step %q failed", s.step.Name))
	}
}

// skip marks a step that was never submitted, and all its downstream
// steps, skipped.
func (r *runState) skip(s *stepRun, why string) {
	stack := []*stepRun{s}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if s.state != StepPending || s.submitted {
			continue
		}
		s.state, s.err = StepSkipped, why
		r.emit(Event{Type: EventStepSkipped, Step: s.step.Name, Error: why})
		for i := len(s.down) - 1; i >= 0; i-- {
			stack = append(stack, s.down[i])
		}
	}
}

// stop ends the submitting part of the run (fail-fast or interrupt): one
// batched cancel request for every step in flight, every step not
// submitted skipped, and a deadline for the cancelled steps to report.
func (r *runState) stop(why string) {
	r.stopping, r.stopReason = true, why
	r.deadline = time.Now().Add(r.opts.CancelWait)
	r.log.Info("stopping the run", "reason", why, "in_flight", r.inflight, "cancel_wait", r.opts.CancelWait)
	var ids []string
	for _, s := range r.steps {
		if s.submitted && !s.state.Final() {
			ids = append(ids, s.id)
		}
	}
	r.cancel(ids)
	// Steps whose submission failed (waiting to be tried again, or due):
	// they may or may not be queued, and got a cancel request above.
	pending := append(r.resubmit, r.ready...)
	r.resubmit, r.ready = nil, nil
	for _, s := range pending {
		if s.submitted && !s.state.Final() {
			r.w.Remove(s.id)
			r.inflight--
			r.settle(s, StepSkipped, why+" (its submission had failed)", nil)
		}
	}
	for _, s := range r.steps {
		if s.state == StepPending && !s.submitted {
			r.skip(s, why)
		}
	}
}

// stepLog is the run's logger with the attributes of step s's task: its
// step ID (the step name), task ID, task name and attempts so far.
func (r *runState) stepLog(s *stepRun) *slog.Logger {
	return r.log.With("step_id", s.step.Name, "task_id", s.id, "task", s.step.Task, "attempt", s.attempts)
}

// giveUp marks the steps that did not report within CancelWait cancelled.
func (r *runState) giveUp() {
	for _, s := range r.steps {
		if s.submitted && !s.state.Final() {
			r.stepLog(s).Warn("a cancelled step did not report in time; marking it cancelled",
				"cancel_wait", r.opts.CancelWait)
			r.w.Remove(s.id)
			r.inflight--
			r.settle(s, StepCancelled, fmt.Sprintf("cancel requested; no final result within %v", r.opts.CancelWait), nil)
		}
	}
}

// cancel sends one cancel request for ids (batched by the client). It is
// not cut short by an interrupt.
func (r *runState) cancel(ids []string) {
	if len(ids) == 0 {
		return
	}
	ctx, done := context.WithTimeout(context.WithoutCancel(r.ctx), submitTimeout)
	defer done()
	err := r.e.c.Cancel(ctx, ids...)
	switch {
	case err == nil:
	case errors.Is(err, ports.ErrUnsupported):
		r.log.Warn("cancellation is disabled (the client has no CancelChannel): in-flight steps run to the end; waiting for them",
			"steps", len(ids), "cancel_wait", r.opts.CancelWait)
	default:
		r.log.Error("cancel requests for in-flight steps failed; they may run to the end", "steps", len(ids), "err", err)
	}
}

// finish builds the run's result.
func (r *runState) finish() (RunResult, error) {
	res := RunResult{
		RunID:      r.opts.RunID,
		Job:        r.job.Name,
		Steps:      make([]StepResult, len(r.steps)),
		StartedAt:  r.started,
		FinishedAt: time.Now(),
	}
	var failed, cancelled bool
	for i, s := range r.steps {
		if !s.state.Final() { // cannot happen: every step is settled or skipped
			r.stepLog(s).Error("step left without a final state; marking it skipped", "state", s.state)
			s.state, s.err = StepSkipped, "never became ready"
		}
		failed = failed || s.state == StepFailed
		cancelled = cancelled || s.state == StepCancelled
		res.Steps[i] = r.stepResult(s)
	}
	switch {
	case r.interrupted:
		res.State = RunCancelled
	case failed || r.fatal != nil:
		res.State = RunFailed
	case cancelled:
		res.State = RunCancelled
	default:
		res.State = RunSucceeded
	}
	var err error
	switch {
	case r.interrupted:
		err = &interruptedError{runID: r.opts.RunID, err: r.ctx.Err(), cause: context.Cause(r.ctx)}
	case r.fatal != nil:
		err = fmt.Errorf("dagq: run %s: %w", r.opts.RunID, r.fatal)
	}
	ev := Event{Type: EventRunFinished}
	if res.State != RunSucceeded {
		if err != nil {
			ev.Error = err.Error()
		} else {
			ev.Error = res.Err().Error()
		}
	}
	r.emit(ev)
	r.log.Info("run finished", "state", res.State, "duration", res.FinishedAt.Sub(res.StartedAt))
	return res, err
}

// interruptedError is Run's error when its context ends the run: it matches
// the context's error (context.Canceled or context.DeadlineExceeded) and its
// cause, and says in words why the run stopped.
type interruptedError struct {
	runID      string
	err, cause error
}

func (e *interruptedError) Error() string {
	return fmt.Sprintf("dagq: run %s interrupted: %s", e.runID, describeStop(e.err, e.cause))
}

func (e *interruptedError) Unwrap() []error {
	if e.cause == nil || e.cause == e.err {
		return []error{e.err}
	}
	return []error{e.err, e.cause}
}

// interruption says why ctx ended, for people: its cause when it has one
// (context.WithCancelCause), else what happened in words rather than Go's
// "context canceled".
func interruption(ctx context.Context) string {
	return describeStop(ctx.Err(), context.Cause(ctx))
}

func describeStop(err, cause error) string {
	switch {
	case cause != nil && cause != err:
		return cause.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "its deadline passed"
	default:
		return "its context was cancelled"
	}
}

// emit reports ev to RunOptions.OnEvent.
func (r *runState) emit(ev Event) {
	if r.opts.OnEvent == nil {
		return
	}
	ev.RunID = r.opts.RunID
	ev.Time = time.Now()
	r.opts.OnEvent(ev)
}

// runSpanErr is the error a run span ends with.
func runSpanErr(res RunResult, err error) error {
	if err != nil || res.RunID == "" {
		return err
	}
	return res.Err()
}

// startSpan starts a span with t, or nothing when t is nil.
func startSpan(ctx context.Context, t core.Tracer, s core.SpanStart) (context.Context, func(error)) {
	if t == nil {
		return ctx, func(error) {}
	}
	return t.Start(ctx, s)
}
