package dag

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// RunTaskName is the registered task name of a Launcher's run task: the
// task that runs a whole job on a worker (see RegisterRunTask).
const RunTaskName = "dagq.run"

// Launcher defaults (see LauncherOptions and RunTaskDeps).
const (
	// DefaultRunHeartbeat is how often a worker running a launched run
	// writes its heartbeat and, when steps changed, the run record.
	DefaultRunHeartbeat = 5 * time.Second
	// DefaultStaleFactor times the heartbeat interval is the default age
	// after which a run's heartbeat is stale.
	DefaultStaleFactor = 3
)

// DefaultRunTaskRetry is the retry policy of run tasks (LaunchOptions.Retry).
// Every delivery counts as an attempt, including the redelivery after a
// worker died and the release at a worker's shutdown, so it allows many.
var DefaultRunTaskRetry = core.RetryPolicy{
	MaxAttempts:    20,
	InitialBackoff: 5 * time.Second,
	MaxBackoff:     time.Minute,
	Multiplier:     2,
	Jitter:         0.2,
}

// ErrRunNotFound is matched (errors.Is) by the errors of Launcher methods
// asked about a run that has no run record. Those errors match
// ports.ErrNotFound too.
var ErrRunNotFound = errors.New("run not found")

// RunTaskID returns the task ID of the run task of run runID: runID + ":run".
// The colon keeps it apart from the run's step task IDs (StepTaskID), since
// step names cannot hold one.
func RunTaskID(runID string) string { return runID + ":run" }

// runRecordKey returns the StateStore key of run runID's record.
func runRecordKey(runID string) string { return "runs/" + runID }

// runHeartbeatKey returns the StateStore key of run runID's heartbeat. It is
// not below the record's key (runs/<id>/…): file-backed S3 stores refuse a
// key under another object's key.
func runHeartbeatKey(runID string) string { return "heartbeats/" + runID }

// RunRecord is what the StateStore holds about a launched run (under
// runRecordKey), as Launcher.Status reports it.
type RunRecord struct {
	RunID string `json:"run_id"`
	// Job is the job's name.
	Job   string   `json:"job"`
	State RunState `json:"state"`
	// TaskID is the run task's ID (RunTaskID).
	TaskID   string            `json:"task_id"`
	Params   map[string]string `json:"params,omitempty"`
	FailFast bool              `json:"fail_fast,omitempty"`
	// Steps are the job's steps in declaration order. While the run runs
	// they are updated at most once per heartbeat interval, so they may lag
	// behind the steps' tasks by that much.
	Steps []StepRecord `json:"steps"`
	// Worker is the ID of the worker that runs (or last ran) the run task.
	Worker string `json:"worker,omitempty"`
	// Attempt counts the executions of the run: 1 once a worker started it,
	// one more every time another delivery of the run task took it over
	// (after a worker died or released it at shutdown).
	Attempt   int       `json:"attempt"`
	CreatedAt time.Time `json:"created_at"`
	// StartedAt is when the first execution started; ResumedAt when the
	// current one took over (zero on the first).
	StartedAt  time.Time `json:"started_at,omitzero"`
	ResumedAt  time.Time `json:"resumed_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// CancelRequestedAt is when Terminate asked a running run to stop.
	CancelRequestedAt time.Time `json:"cancel_requested_at,omitzero"`
	// Error says why the run did not succeed.
	Error string `json:"error,omitempty"`
	// MaxConcurrent is the most steps of the run in flight at once (the
	// job's max_concurrent or the launch's override); 0: no limit.
	MaxConcurrent int `json:"max_concurrent,omitempty"`
	// ParentRun is, for a re-execution (Launcher.Reexecute), the run it
	// re-executes; RootRun the first run of that lineage (the parent's
	// RootRun, or the parent when it has none). Both empty otherwise.
	ParentRun string `json:"parent_run,omitempty"`
	RootRun   string `json:"root_run,omitempty"`
	// Reexecution says what a re-execution was asked to run again.
	Reexecution *Reexecution `json:"reexecution,omitempty"`

	// Version is the StateStore version the record was read at.
	Version string `json:"-"`
}

// Step returns the record of the named step.
func (r RunRecord) Step(name string) (StepRecord, bool) {
	for _, s := range r.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return StepRecord{}, false
}

// StepRecord is the state of one step in a RunRecord: a StepResult without
// the output.
type StepRecord struct {
	Name string `json:"name"`
	Task string `json:"task"`
	// Upstream lists the steps this one depends on (the job's Step.Upstream),
	// so that a run can be drawn from its record alone (dagq graph --run).
	Upstream []string `json:"upstream,omitempty"`
	// TaskID is the step's task ID once it was submitted.
	TaskID   string    `json:"task_id,omitempty"`
	State    StepState `json:"state"`
	Attempts int       `json:"attempts,omitempty"`
	// StartedAt and FinishedAt are, while the run runs, when the executor
	// saw the step start and finish, and at the end the worker's times.
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Error      string    `json:"error,omitempty"`
	// Worker is the worker running the step's attempt (as it reported when
	// the attempt started) or, once finished, the one that recorded its
	// result; empty when unknown.
	Worker string `json:"worker,omitempty"`
	// ReusedFrom is set on a step of a re-execution that did not run but
	// reused the stored result of an earlier run: that run (the one whose
	// step produced the result, following reuse back along the lineage).
	// TaskID is then the task ID of that result.
	ReusedFrom string `json:"reused_from,omitempty"`
}

// runHeartbeat is the record under runHeartbeatKey.
type runHeartbeat struct {
	Worker  string    `json:"worker"`
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	// Released: the worker stopped running the run on purpose (shutdown,
	// lost lease) and left it to the next delivery of the run task.
	Released bool `json:"released,omitempty"`
}

// runTaskArgs are the run task's arguments.
type runTaskArgs struct {
	RunID      string            `json:"run_id"`
	Job        string            `json:"job"`
	Steps      []runTaskStep     `json:"steps"`
	Params     map[string]string `json:"params,omitempty"`
	FailFast   bool              `json:"fail_fast,omitempty"`
	CancelWait time.Duration     `json:"cancel_wait,omitempty"`
	// MaxConcurrent is the run's limit (RunOptions.MaxConcurrent).
	MaxConcurrent int `json:"max_concurrent,omitempty"`
	// Reuse and Skip are a re-execution's: the steps taken from stored
	// results (RunOptions.Reuse) and those skipped, with why.
	Reuse map[string]string `json:"reuse,omitempty"`
	Skip  map[string]string `json:"skip,omitempty"`
}

// runTaskStep is a Step with JSON names (a conversion of Step: a field
// added to Step must be added here too).
type runTaskStep struct {
	Name     string            `json:"name"`
	Task     string            `json:"task"`
	Args     json.RawMessage   `json:"args,omitempty"`
	Upstream []string          `json:"upstream,omitempty"`
	Retry    *core.RetryPolicy `json:"retry,omitempty"`
	Timeout  time.Duration     `json:"timeout,omitempty"`
	Pool     string            `json:"pool,omitempty"`
}

func newRunTaskArgs(runID string, job Job, opts LaunchOptions, rx *reexecPlan) runTaskArgs {
	a := runTaskArgs{RunID: runID, Job: job.Name, Params: opts.Params, FailFast: opts.FailFast, CancelWait: opts.CancelWait,
		MaxConcurrent: cmp.Or(opts.MaxConcurrent, job.MaxConcurrent)}
	for _, s := range job.Steps {
		a.Steps = append(a.Steps, runTaskStep(s))
	}
	if rx != nil {
		a.Reuse, a.Skip = rx.reuse, rx.skip
	}
	return a
}

func (a runTaskArgs) job() Job {
	j := Job{Name: a.Job, Steps: make([]Step, len(a.Steps))}
	for i, s := range a.Steps {
		j.Steps[i] = Step(s)
	}
	return j
}

// LauncherOptions configures a Launcher. Client and State are required.
type LauncherOptions struct {
	// Client submits run tasks, cancels them and reads their results. Its
	// Broker is the queue the workers with the run task (RegisterRunTask)
	// serve. Terminate needs its CancelChannel.
	Client *core.Client
	// State holds run records, heartbeats and the run index; the workers'
	// RunTaskDeps.State must be the same store. ListRuns needs it to
	// implement ports.KeyLister.
	State ports.StateStore
	// HeartbeatInterval is the workers' RunTaskDeps.HeartbeatInterval
	// (default DefaultRunHeartbeat, 5s); it only sets StaleAfter's default.
	HeartbeatInterval time.Duration
	// StaleAfter is the heartbeat age after which a running run counts as
	// dead (Health FAILED). Default DefaultStaleFactor × HeartbeatInterval;
	// it must be longer than HeartbeatInterval.
	StaleAfter time.Duration
	// Logger receives the launcher's logs (default slog.Default()).
	Logger *slog.Logger
}

// Launcher launches whole runs of jobs as one task each (the run task),
// which a worker picks up and drives with an Executor (RegisterRunTask), and
// answers for them from the run records and worker heartbeats in a
// StateStore: Status, Health, Terminate, Wait and ListRuns. It is safe for
// concurrent use; it starts no goroutine. See docs/launcher.md.
//
// Every method blocks until the StateStore (and, where said, the Client)
// answered, or until ctx is done. Errors from the ports are wrapped, so
// errors.Is(err, ports.ErrX) works.
type Launcher struct {
	c     *core.Client
	state ports.StateStore
	stale time.Duration
	log   *slog.Logger
}

// NewLauncher validates opts and returns a Launcher. Invalid options fail
// with an error matching ports.ErrInvalidArgument that names the field.
func NewLauncher(opts LauncherOptions) (*Launcher, error) {
	bad := func(format string, args ...any) (*Launcher, error) {
		return nil, fmt.Errorf("dagq: launcher options: %w: "+format, append([]any{ports.ErrInvalidArgument}, args...)...)
	}
	_, stale, err := heartbeatTiming(opts.HeartbeatInterval, opts.StaleAfter)
	switch {
	case opts.Client == nil:
		return bad("Client is required")
	case opts.State == nil:
		return bad("State is required")
	case err != nil:
		return bad("%v", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Launcher{c: opts.Client, state: opts.State, stale: stale, log: log}, nil
}

// heartbeatTiming applies the defaults of a heartbeat interval and stale
// age and checks them.
func heartbeatTiming(interval, stale time.Duration) (time.Duration, time.Duration, error) {
	switch {
	case interval < 0:
		return 0, 0, fmt.Errorf("HeartbeatInterval is %v; it must be 0 (default %v) or positive", interval, DefaultRunHeartbeat)
	case interval == 0:
		interval = DefaultRunHeartbeat
	}
	switch {
	case stale < 0:
		return 0, 0, fmt.Errorf("StaleAfter is %v; it must be 0 (default %d × HeartbeatInterval) or longer than HeartbeatInterval (%v)",
			stale, DefaultStaleFactor, interval)
	case stale == 0:
		stale = DefaultStaleFactor * interval
	case stale <= interval:
		return 0, 0, fmt.Errorf("StaleAfter is %v; it must be longer than HeartbeatInterval (%v), e.g. %v",
			stale, interval, DefaultStaleFactor*interval)
	}
	return interval, stale, nil
}

// LaunchOptions configures one Launch.
type LaunchOptions struct {
	// RunID identifies the run; default NewTaskID(). It must be new: Launch
	// fails when a record of that run exists. Printable ASCII without
	// spaces; at most 124 bytes and at most 127 minus the length of the
	// job's longest step name.
	RunID string
	// Params are the run's parameters (RunOptions.Params).
	Params map[string]string
	// FailFast: see RunOptions.FailFast.
	FailFast bool
	// CancelWait: see RunOptions.CancelWait (0: DefaultCancelWait).
	CancelWait time.Duration
	// Retry is the run task's retry policy (default DefaultRunTaskRetry).
	Retry *core.RetryPolicy
	// MaxConcurrent, when positive, overrides the job's max_concurrent for
	// this run (RunOptions.MaxConcurrent); 0 keeps the job's.
	MaxConcurrent int
}

// Launch validates job and opts, writes the run's record (state queued)
// and submits the run task, then returns the run ID without waiting.
//
// An invalid job fails with an error matching ErrInvalidJob (task names are
// not checked: the workers know them), invalid options with
// ports.ErrInvalidArgument, a RunID that has a record with
// ports.ErrAlreadyExists; nothing is submitted then. When the submission
// fails, Launch marks the record failed (so that the run task, if the
// failed Send queued it after all, does not run the job) and returns the
// run ID with the error.
//
// With a Tracer on the Client, Launch is one SpanLaunch span whose context
// travels in the run task's envelope: the run task's span on its worker,
// and so the run and its steps, are in its trace.
func (l *Launcher) Launch(ctx context.Context, job Job, opts LaunchOptions) (string, error) {
	if l.c.Tracer() == nil {
		return l.launch(ctx, job, opts)
	}
	if opts.RunID == "" {
		opts.RunID = core.NewTaskID() // as launch would, but known to the span
	}
	ctx, end := l.c.Tracer().Start(ctx, core.SpanStart{Kind: core.SpanLaunch, Name: job.Name, RunID: opts.RunID})
	runID, err := l.launch(ctx, job, opts)
	end(err)
	return runID, err
}

// launch is Launch without its span.
func (l *Launcher) launch(ctx context.Context, job Job, opts LaunchOptions) (string, error) {
	return l.launchRun(ctx, job, opts, nil)
}

// launchRun launches job: a new run, or with rx a re-execution.
func (l *Launcher) launchRun(ctx context.Context, job Job, opts LaunchOptions, rx *reexecPlan) (string, error) {
	if err := job.Validate(nil); err != nil {
		return "", fmt.Errorf("dagq: launch: %w", err)
	}
	runID := opts.RunID
	if runID == "" {
		runID = core.NewTaskID()
	}
	if err := job.CheckRunID(runID); err != nil {
		return "", fmt.Errorf("dagq: launch: %w", err)
	}
	if limit := core.MaxTaskIDLen - len(RunTaskID("")); len(runID) > limit {
		return "", fmt.Errorf("dagq: launch: %w: RunID %q is %d bytes; the run task's ID %q adds %d, the limit is %d",
			ports.ErrInvalidArgument, runID, len(runID), RunTaskID("RUNID"), len(RunTaskID("")), limit)
	}
	if opts.CancelWait < 0 {
		return "", fmt.Errorf("dagq: launch: %w: CancelWait is %v; it must be 0 (default %v) or positive",
			ports.ErrInvalidArgument, opts.CancelWait, DefaultCancelWait)
	}
	if opts.MaxConcurrent < 0 {
		return "", fmt.Errorf("dagq: launch: %w: MaxConcurrent is %d; it must be 0 (the job's max_concurrent) or positive",
			ports.ErrInvalidArgument, opts.MaxConcurrent)
	}
	retry := DefaultRunTaskRetry
	if opts.Retry != nil {
		if err := opts.Retry.Validate(); err != nil {
			return "", fmt.Errorf("dagq: launch: %w: Retry: %v", ports.ErrInvalidArgument, err)
		}
		retry = *opts.Retry
	}
	opts.Params = maps.Clone(opts.Params)

	rec := RunRecord{
		RunID:         runID,
		Job:           job.Name,
		State:         RunQueued,
		TaskID:        RunTaskID(runID),
		Params:        opts.Params,
		FailFast:      opts.FailFast,
		MaxConcurrent: cmp.Or(opts.MaxConcurrent, job.MaxConcurrent),
		Steps:         make([]StepRecord, len(job.Steps)),
		CreatedAt:     time.Now().UTC(),
	}
	for i, s := range job.Steps {
		rec.Steps[i] = StepRecord{Name: s.Name, Task: s.Task, Upstream: slices.Clone(s.Upstream), State: StepPending}
	}
	if rx != nil {
		rx.apply(&rec)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return "", fmt.Errorf("dagq: launch: encode the run record: %w", err)
	}
	// The job first: a run with a record has its job stored
	// (Launcher.StoredJob, Reexecute).
	if err := l.storeJob(ctx, runID, job); err != nil {
		return "", err
	}
	ver, err := l.state.Put(ctx, runRecordKey(runID), data, ports.WriteCondition{MustNotExist: true})
	if errors.Is(err, ports.ErrAlreadyExists) {
		return "", l.runExists(ctx, runID, err)
	}
	if err != nil {
		return "", fmt.Errorf("dagq: launch: write the record of run %s: %w", runID, err)
	}
	rec.Version = ver
	// Indexed before the submission, so that a worker that starts the run
	// at once finds the queued key to move.
	indexRun(ctx, l.state, l.log, rec, "")
	_, err = l.c.Submit(ctx, core.Request{
		Task:    RunTaskName,
		ID:      rec.TaskID,
		Args:    newRunTaskArgs(runID, job, opts, rx),
		RunID:   runID,
		GroupID: rec.TaskID, // not the steps' group (RunID): it waits for them
		Retry:   &retry,
	})
	if err != nil {
		err = fmt.Errorf("dagq: launch: submit the run task of run %s: %w", runID, err)
		l.failLaunch(ctx, rec, err)
		return runID, err
	}
	l.log.Info("run launched", "run_id", runID, "job", job.Name, "steps", len(job.Steps))
	return runID, nil
}

// runExists is Launch's error for a RunID that has a record: it names the
// run and, when its record can be read, when it was launched, and matches
// ports.ErrAlreadyExists; the store's own refusal (an S3 412
// PreconditionFailed) is logged at debug level, not shown.
func (l *Launcher) runExists(ctx context.Context, runID string, cause error) error {
	l.log.Debug("run record exists", "run_id", runID, "err", cause)
	when := ""
	if rec, err := l.read(ctx, runID); err == nil && !rec.CreatedAt.IsZero() {
		when = " (launched at " + rec.CreatedAt.UTC().Format(time.RFC3339) + ")"
	}
	return fmt.Errorf("dagq: run %s %w%s", runID, ports.ErrAlreadyExists, when)
}

// failLaunch marks a queued record failed after its submission failed.
func (l *Launcher) failLaunch(ctx context.Context, rec RunRecord, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), submitTimeout)
	defer cancel()
	var failed bool
	cur, err := l.update(ctx, rec.RunID, func(cur *RunRecord) (bool, error) {
		failed = cur.State == RunQueued
		if !failed {
			return false, nil // it started after all
		}
		cur.State, cur.Error, cur.FinishedAt = RunFailed, cause.Error(), time.Now().UTC()
		return true, nil
	})
	if err != nil {
		l.log.Error("marking a run whose launch failed as failed failed too; it stays queued (Terminate it)",
			"run_id", rec.RunID, "err", err)
		return
	}
	if failed {
		indexRun(ctx, l.state, l.log, cur, RunQueued)
	}
}

// maxCASTries bounds the read-modify-write rounds of one update.
const maxCASTries = 10

// update applies change to run runID's record with compare-and-swap writes,
// reading it again after a conflict. change reports whether to write; the
// record returned is the last one read or written.
func (l *Launcher) update(ctx context.Context, runID string, change func(*RunRecord) (bool, error)) (RunRecord, error) {
	for range maxCASTries {
		rec, err := l.read(ctx, runID)
		if err != nil {
			return RunRecord{}, err
		}
		write, err := change(&rec)
		if err != nil || !write {
			return rec, err
		}
		data, err := json.Marshal(rec)
		if err != nil {
			return RunRecord{}, fmt.Errorf("dagq: encode the record of run %s: %w", runID, err)
		}
		ver, err := l.state.Put(ctx, runRecordKey(runID), data, ports.WriteCondition{MatchVersion: rec.Version})
		switch {
		case err == nil:
			rec.Version = ver
			return rec, nil
		case errors.Is(err, ports.ErrConflict), errors.Is(err, ports.ErrNotFound):
			continue // changed meanwhile: read it again
		default:
			return RunRecord{}, fmt.Errorf("dagq: write the record of run %s: %w", runID, err)
		}
	}
	return RunRecord{}, fmt.Errorf("dagq: write the record of run %s: %w: it kept changing (%d tries)",
		runID, ports.ErrConflict, maxCASTries)
}

// read returns run runID's record; a missing one fails with ErrRunNotFound.
func (l *Launcher) read(ctx context.Context, runID string) (RunRecord, error) {
	return readRunRecord(ctx, l.state, runID)
}

func readRunRecord(ctx context.Context, state ports.StateStore, runID string) (RunRecord, error) {
	if err := core.ValidateTaskID(runID); err != nil {
		return RunRecord{}, fmt.Errorf("dagq: run ID: %w", err)
	}
	r, err := state.Get(ctx, runRecordKey(runID))
	switch {
	case errors.Is(err, ports.ErrNotFound):
		return RunRecord{}, fmt.Errorf("dagq: run %s: %w: %w", runID, ErrRunNotFound, err)
	case err != nil:
		return RunRecord{}, fmt.Errorf("dagq: read the record of run %s: %w", runID, err)
	}
	var rec RunRecord
	if err := json.Unmarshal(r.Data, &rec); err != nil {
		return RunRecord{}, fmt.Errorf("dagq: the record of run %s is not a run record: %v", runID, err)
	}
	rec.Version = r.Version
	return rec, nil
}

// readHeartbeat returns run runID's heartbeat, nil when there is none.
func readHeartbeat(ctx context.Context, state ports.StateStore, runID string) (*runHeartbeat, error) {
	r, err := state.Get(ctx, runHeartbeatKey(runID))
	switch {
	case errors.Is(err, ports.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("dagq: read the heartbeat of run %s: %w", runID, err)
	}
	var hb runHeartbeat
	if err := json.Unmarshal(r.Data, &hb); err != nil {
		return nil, fmt.Errorf("dagq: the heartbeat of run %s is not a heartbeat: %v", runID, err)
	}
	if hb.At.IsZero() {
		hb.At = r.UpdatedAt
	}
	return &hb, nil
}

// liveness is what a run's heartbeat says about its current execution.
type liveness struct {
	worker   string
	last     time.Time // last sign of life: heartbeat, or the execution's start
	beat     bool      // last is a heartbeat of the current execution
	released bool
	// newer: the heartbeat is of a later execution than the record's (a
	// takeover wrote both after the record was read).
	newer bool
}

// livenessOf reads rec's heartbeat against its current execution.
func livenessOf(rec RunRecord, hb *runHeartbeat) liveness {
	lv := liveness{worker: rec.Worker, last: rec.StartedAt}
	if rec.ResumedAt.After(lv.last) {
		lv.last = rec.ResumedAt
	}
	if hb != nil && hb.Attempt >= rec.Attempt {
		lv.worker, lv.released, lv.beat, lv.newer = hb.Worker, hb.Released, true, hb.Attempt > rec.Attempt
		if hb.At.After(lv.last) {
			lv.last = hb.At
		}
	}
	return lv
}

// alive reports whether the execution lv describes counts as running at
// now: not released, and a sign of life no older than stale. An execution
// that is not alive is taken over by the run task's next delivery, and
// ended by Terminate.
func (lv liveness) alive(now time.Time, stale time.Duration) bool {
	return !lv.released && now.Sub(lv.last) <= stale
}

// execution reads rec's heartbeat and returns the liveness of its current
// execution.
func (l *Launcher) execution(ctx context.Context, rec RunRecord) (liveness, error) {
	hb, err := readHeartbeat(ctx, l.state, rec.RunID)
	if err != nil {
		return liveness{}, err
	}
	return livenessOf(rec, hb), nil
}

// Status returns run runID's record. A run unknown to the StateStore fails
// with ErrRunNotFound.
//
// For a run that is not finished it also reads the run task's status (one
// Client.Status), and for a running run whose execution shows no sign of
// life (its worker died; nobody writes the record until another execution
// takes over) the stored results of its unfinished steps, so that steps
// finished meanwhile show as finished: when the run task has a result although the record is not
// final — the task was cancelled before it started, failed before it could
// run the job (e.g. no worker registered RunTaskName, or its attempts ran
// out), or its worker stopped after it finished the job but before it wrote
// the record — the state, error and finish time come from that result.
func (l *Launcher) Status(ctx context.Context, runID string) (RunRecord, error) {
	rec, err := l.read(ctx, runID)
	if err != nil {
		return RunRecord{}, fmt.Errorf("dagq: status: %w", err)
	}
	if !rec.State.Final() {
		finished, err := l.reconcile(ctx, &rec)
		if err != nil {
			l.log.Warn("status: reading the run task's status failed; reporting the record as stored",
				"run_id", runID, "err", err)
		}
		if !finished && rec.State == RunRunning {
			l.stepsOfOrphan(ctx, &rec)
		}
	}
	return rec, nil
}

// stepsOfOrphan brings the steps of a running record whose execution shows
// no sign of life (stale heartbeat, or released) up to date from their
// stored results: nobody writes the record until another execution takes
// the run over, while other workers go on finishing its steps. It changes
// the returned record only, never the stored one.
//
// It does the same for a run that was taken over (ResumedAt set): the new
// execution learns of the steps submitted before the takeover by polling
// their results (their completions go to the old worker's inbox), so its
// record may show such a step running for seconds after its result was
// stored — and after a read of the orphan, or one right after the takeover
// read the results, showed it finished. A finished step never goes back.
func (l *Launcher) stepsOfOrphan(ctx context.Context, rec *RunRecord) {
	now := time.Now()
	if !rec.ResumedAt.IsZero() {
		applyStepResults(ctx, l.c, rec)
		return
	}
	// The record of a live execution is current (to a heartbeat). Not so
	// when the heartbeat could not be read, or is a takeover's that came
	// after the record was read: the record is the dead execution's then,
	// and a read before may have shown its steps' stored results.
	if lv, err := l.execution(ctx, *rec); err == nil && lv.alive(now, l.stale) && !lv.newer {
		return
	}
	applyStepResults(ctx, l.c, rec)
}

// applyStepResults gives the unfinished steps of rec that have a stored
// result the state, times and worker of that result (one read per such
// step; a read that fails leaves its step as it is).
func applyStepResults(ctx context.Context, c *core.Client, rec *RunRecord) {
	var ids []string
	for _, s := range rec.Steps {
		if s.TaskID != "" && !s.State.Final() {
			ids = append(ids, s.TaskID)
		}
	}
	if len(ids) == 0 {
		return
	}
	found, _ := c.StoredResults(ctx, ids)
	for i := range rec.Steps {
		st := &rec.Steps[i]
		res, ok := found[st.TaskID]
		if !ok || st.State.Final() {
			continue
		}
		st.State = stepStateOf(res.State)
		st.Attempts, st.Error = res.Attempts, res.Error
		st.StartedAt, st.FinishedAt = res.StartedAt, res.FinishedAt
		if res.Worker != "" {
			st.Worker = res.Worker
		}
	}
}

// reconcile applies the run task's result to a record that is not final;
// it reports whether there was one.
func (l *Launcher) reconcile(ctx context.Context, rec *RunRecord) (bool, error) {
	st, err := l.c.Status(ctx, rec.TaskID)
	if err != nil {
		return false, err
	}
	if !st.State.Final() {
		return false, nil
	}
	res := st.Result
	rec.FinishedAt = res.FinishedAt
	switch res.State {
	case ports.StateSucceeded:
		var rr RunResult
		if err := json.Unmarshal(res.Output, &rr); err != nil || !rr.State.Final() {
			rec.State, rec.Error = RunFailed, "the run task succeeded without a final run result"
			break
		}
		applyRunResult(rec, rr)
	case ports.StateCancelled:
		rec.State, rec.Error = RunCancelled, "the run task was cancelled: "+res.Error
	default:
		rec.State, rec.Error = RunFailed, "the run task failed: "+res.Error
	}
	return true, nil
}

// applyRunResult makes rec the final record of the run rr.
func applyRunResult(rec *RunRecord, rr RunResult) {
	rec.State, rec.FinishedAt, rec.Error = rr.State, rr.FinishedAt, ""
	if err := rr.Err(); err != nil {
		rec.Error = err.Error()
	}
	byName := make(map[string]int, len(rec.Steps))
	for i, s := range rec.Steps {
		byName[s.Name] = i
	}
	for _, s := range rr.Steps {
		sr := StepRecord{Name: s.Name, Task: s.Task, TaskID: s.TaskID, State: s.State, Attempts: s.Attempts,
			StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, Error: s.Error, Worker: s.Worker, ReusedFrom: s.ReusedFrom}
		if i, ok := byName[s.Name]; ok {
			sr.Upstream = rec.Steps[i].Upstream
			rec.Steps[i] = sr
		} else {
			rec.Steps = append(rec.Steps, sr)
		}
	}
}

// Wait blocks until run runID finished and returns its final record (as
// Status). It waits for the run task's result through the Client (pushed
// completions, or polling with backoff), so it also returns for a run whose
// task was cancelled before it started or failed, and it reads the record
// every few seconds, so it returns for a run ended by Terminate whose run
// task never gets a result. It fails with
// ErrRunNotFound for an unknown run, and with ctx's error when ctx is done.
func (l *Launcher) Wait(ctx context.Context, runID string) (RunRecord, error) {
	rec, err := l.read(ctx, runID)
	if err != nil {
		return RunRecord{}, fmt.Errorf("dagq: wait: %w", err)
	}
	if rec.State.Final() {
		return rec, nil
	}
	// Wait for the run task's result, and look at the record every
	// waitRecordPoll: a run ended by someone else (Terminate of a run with
	// no live execution) has a final record but may never get a run task
	// result (its message is gone).
	for {
		wctx, cancel := context.WithTimeout(ctx, waitRecordPoll)
		_, err := l.c.Wait(wctx, rec.TaskID)
		cancel()
		switch {
		case err == nil:
			return l.Status(ctx, runID)
		case ctx.Err() != nil:
			return RunRecord{}, fmt.Errorf("dagq: wait for run %s: %w", runID, ctx.Err())
		case !errors.Is(err, context.DeadlineExceeded):
			return RunRecord{}, fmt.Errorf("dagq: wait for run %s: %w", runID, err)
		}
		if rec, err = l.read(ctx, runID); err != nil {
			return RunRecord{}, fmt.Errorf("dagq: wait: %w", err)
		}
		if rec.State.Final() {
			return rec, nil
		}
	}
}

// waitRecordPoll is how often Launcher.Wait reads the run record while it
// waits for the run task's result.
const waitRecordPoll = 5 * time.Second

// Terminate cancels run runID and all its steps; the run ends cancelled.
// It returns true when the run was queued or running and a cancellation is
// now durably requested, false when the run had already finished, and
// ErrRunNotFound for an unknown run. It does not wait for the run to stop:
// use Wait or Status.
//
//   - Queued: the record is switched to cancelled with a compare-and-swap
//     write (read again and retried when it changed meanwhile), so a worker
//     that receives the run task anyway does not run the job; then a cancel
//     request is sent for the run task, so that it never starts (a failure
//     of that request is only logged).
//   - Running: the record gets CancelRequestedAt (compare-and-swap; the run
//     task's own writes keep it), then cancel requests are sent for the run
//     task — the worker running it cancels the run's context, and the
//     executor sends cancel requests for every step in flight, waits for
//     them (up to the run's CancelWait) and records the run cancelled — and,
//     directly, for every step not finished in the record, so that the
//     steps of a run whose worker died are cancelled too. When the cancel
//     requests fail, Terminate returns false and the error (the mark stays:
//     call Terminate again).
//   - Running with no live execution (heartbeat older than StaleAfter, or
//     released and not taken over): Terminate writes the final record
//     itself (cancelled), since nothing may come back to finish the run —
//     its run task's message may be gone — then sends the cancel requests.
//
// A run that finishes while Terminate runs may still end succeeded or
// failed. Cancel requests go through the Client (ports.ErrUnsupported
// without a CancelChannel), ten IDs per call.
func (l *Launcher) Terminate(ctx context.Context, runID string) (bool, error) {
	var wasQueued bool
	rec, err := l.update(ctx, runID, func(rec *RunRecord) (bool, error) {
		wasQueued = false
		switch rec.State {
		case RunQueued:
			now := time.Now().UTC()
			wasQueued = true
			rec.State, rec.FinishedAt, rec.CancelRequestedAt = RunCancelled, now, now
			rec.Error = "terminated before it started"
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return false, fmt.Errorf("dagq: terminate: %w", err)
	}
	log := l.log.With("run_id", runID)
	if wasQueued {
		if err := l.cancelRun(ctx, rec, false); err != nil {
			// The record says cancelled: the run task does not run the job.
			log.Warn("terminate: cancel requests failed; the run task ends without running the job", "err", err)
		}
		indexRun(ctx, l.state, l.log, rec, RunQueued)
		log.Info("queued run terminated")
		return true, nil
	}
	if rec.State.Final() {
		return false, nil
	}
	// Running.
	if finished, err := l.reconcile(ctx, &rec); err == nil && finished {
		return false, nil
	}
	if ended, done, err := l.endOrphan(ctx, rec); done {
		return ended, err
	}
	// Mark first, so that the run's final write (which keeps the mark)
	// says it was terminated, whatever reaches the executor first.
	marked, err := l.update(ctx, runID, func(rec *RunRecord) (bool, error) {
		if rec.State.Final() || !rec.CancelRequestedAt.IsZero() {
			return false, nil
		}
		rec.CancelRequestedAt = time.Now().UTC()
		return true, nil
	})
	switch {
	case err != nil:
		log.Warn("terminate: noting the cancellation in the run record failed; sending the cancel requests anyway", "err", err)
	case marked.State.Final():
		return false, nil // it finished meanwhile
	default:
		rec = marked
	}
	if err := l.cancelRun(ctx, rec, true); err != nil {
		return false, fmt.Errorf("dagq: terminate run %s: %w", runID, err)
	}
	log.Info("running run terminated: cancel requested")
	return true, nil
}

// endOrphan ends a running run that has no live execution — its worker
// stopped heartbeating more than StaleAfter ago, or released it and nobody
// took it over — by writing the final record itself (cancelled; its
// unfinished steps cancelled, or skipped when never submitted) and then
// requesting the cancellation of its run task and steps. Nobody else would:
// when the run task's message is gone (expired, purged, dead-lettered) no
// execution ever comes back to finish the run. A run task delivered later
// finds the record final and does not run the job.
//
// done is false when the run has a live execution (or its heartbeat cannot
// be read): Terminate then asks that execution to stop.
func (l *Launcher) endOrphan(ctx context.Context, seen RunRecord) (ended, done bool, err error) {
	lv, err := l.execution(ctx, seen)
	if err != nil {
		l.log.Warn("terminate: reading the run's heartbeat failed; asking its execution to stop", "run_id", seen.RunID, "err", err)
		return false, false, nil
	}
	if lv.alive(time.Now(), l.stale) {
		return false, false, nil
	}
	why := fmt.Sprintf("worker %s stopped heartbeating at %s", lv.worker, lv.last.UTC().Format(time.RFC3339))
	if lv.released {
		why = fmt.Sprintf("worker %s released it at %s and no worker took it over", lv.worker, lv.last.UTC().Format(time.RFC3339))
	}
	var wrote bool
	rec, err := l.update(ctx, seen.RunID, func(rec *RunRecord) (bool, error) {
		// Taken over or finished meanwhile: not an orphan any more.
		wrote = rec.State == RunRunning && rec.Attempt == seen.Attempt
		if !wrote {
			return false, nil
		}
		now := time.Now().UTC()
		rec.State, rec.FinishedAt = RunCancelled, now
		if rec.CancelRequestedAt.IsZero() {
			rec.CancelRequestedAt = now
		}
		rec.Error = "terminated with no live execution: " + why
		for i := range rec.Steps {
			st := &rec.Steps[i]
			switch {
			case st.State.Final():
			case st.State == StepPending:
				st.State = StepSkipped
			default:
				st.State, st.Error, st.FinishedAt = StepCancelled, "the run was terminated", now
			}
		}
		return true, nil
	})
	switch {
	case err != nil:
		return false, true, fmt.Errorf("dagq: terminate: %w", err)
	case rec.Attempt != seen.Attempt || rec.State == RunRunning:
		return false, false, nil // taken over: stop that execution instead
	case rec.State != RunCancelled || rec.FinishedAt.IsZero():
		return false, true, nil // it finished meanwhile
	}
	log := l.log.With("run_id", seen.RunID)
	if err := l.cancelRun(ctx, seen, true); err != nil {
		// The record is final: a run task delivered later does not run the job.
		log.Warn("terminate: cancel requests for the run task and its steps failed", "err", err)
	}
	if wrote {
		indexRun(ctx, l.state, l.log, rec, RunRunning)
	}
	log.Info("run with no live execution terminated", "reason", why)
	return true, true, nil
}

// cancelRun requests the cancellation of rec's run task and, with steps,
// of its unfinished steps.
func (l *Launcher) cancelRun(ctx context.Context, rec RunRecord, steps bool) error {
	ids := []string{rec.TaskID}
	for _, s := range rec.Steps {
		if steps && !s.State.Final() {
			ids = append(ids, StepTaskID(rec.RunID, s.Name))
		}
	}
	return l.c.Cancel(ctx, ids...)
}

// HealthStatus is Health's verdict on a run.
type HealthStatus string

// Health statuses.
const (
	HealthQueued    HealthStatus = "QUEUED"    // waiting for a worker
	HealthRunning   HealthStatus = "RUNNING"   // its worker's heartbeat is fresh
	HealthSuccess   HealthStatus = "SUCCESS"   // finished: succeeded
	HealthFailed    HealthStatus = "FAILED"    // finished: failed; or its worker stopped heartbeating
	HealthCancelled HealthStatus = "CANCELLED" // finished: cancelled
	HealthNotFound  HealthStatus = "NOT_FOUND" // no such run
	HealthUnknown   HealthStatus = "UNKNOWN"   // the StateStore could not be read
)

// Health is Launcher.Health's answer.
type Health struct {
	Status HealthStatus
	// Message explains Status in a sentence.
	Message string
	// LastHeartbeat is the last heartbeat of the run's current execution
	// (zero when none was written).
	LastHeartbeat time.Time
	// Worker is the worker that runs (or ran) the run.
	Worker string
}

// Health tells whether run runID is alive, from its record and its worker's
// heartbeat (written every heartbeat interval while the run runs):
//
//   - finished: SUCCESS, FAILED or CANCELLED;
//   - running, with a heartbeat (or, before the first one, a start) no older
//     than StaleAfter: RUNNING;
//   - running, with an older one: FAILED, with the message "worker X
//     stopped heartbeating at T; the run task will be redelivered to
//     another worker after its lease expires" — the worker died, hangs or
//     lost the StateStore. When the run task has a result nevertheless
//     (see Status), the status comes from that result;
//   - queued: QUEUED (or the run task's final status, see Status);
//   - unknown run: NOT_FOUND, with a nil error.
//
// Only when the StateStore cannot be read is the status UNKNOWN, with the
// error. Comparing heartbeats with this host's clock assumes clocks agree
// to well within StaleAfter.
func (l *Launcher) Health(ctx context.Context, runID string) (Health, error) {
	rec, err := l.read(ctx, runID)
	switch {
	case errors.Is(err, ErrRunNotFound):
		return Health{Status: HealthNotFound, Message: fmt.Sprintf("no run %s", runID)}, nil
	case err != nil:
		return Health{Status: HealthUnknown, Message: "cannot read the run record: " + err.Error()},
			fmt.Errorf("dagq: health: %w", err)
	}
	if rec.State.Final() {
		return finalHealth(rec), nil
	}
	if rec.State == RunQueued {
		if finished, _ := l.reconcile(ctx, &rec); finished {
			return finalHealth(rec), nil
		}
		return Health{Status: HealthQueued, Message: fmt.Sprintf("queued since %s; waiting for a worker",
			rec.CreatedAt.Format(time.RFC3339))}, nil
	}
	hb, err := readHeartbeat(ctx, l.state, runID)
	if err != nil {
		return Health{Status: HealthUnknown, Worker: rec.Worker, Message: "cannot read the run's heartbeat: " + err.Error()},
			fmt.Errorf("dagq: health: %w", err)
	}
	lv := livenessOf(rec, hb)
	h := Health{Worker: lv.worker}
	if lv.beat {
		h.LastHeartbeat = lv.last
	}
	now := time.Now()
	age := now.Sub(lv.last)
	if age <= l.stale {
		h.Status = HealthRunning
		switch {
		case lv.released:
			h.Message = fmt.Sprintf("worker %s released the run at %s (shutdown or lost lease); the next delivery of the run task resumes it",
				lv.worker, lv.last.Format(time.RFC3339))
		case lv.beat:
			h.Message = fmt.Sprintf("worker %s heartbeat %s ago", lv.worker, age.Round(time.Millisecond))
		default:
			h.Message = fmt.Sprintf("worker %s started the run %s ago; no heartbeat yet", lv.worker, age.Round(time.Millisecond))
		}
		return h, nil
	}
	finished, rerr := l.reconcile(ctx, &rec)
	if finished {
		return finalHealth(rec), nil
	}
	h.Status = HealthFailed
	switch {
	case lv.released:
		h.Message = fmt.Sprintf("worker %s released the run at %s and no worker has taken it over since; "+
			"a worker resumes it if its run task is still queued (Terminate ends it either way)",
			lv.worker, lv.last.Format(time.RFC3339))
	case lv.beat:
		h.Message = fmt.Sprintf("worker %s stopped heartbeating at %s; another worker resumes it when its run task's lease expires, "+
			"if the run task is still queued (Terminate ends it either way)",
			lv.worker, lv.last.Format(time.RFC3339))
	default:
		h.Message = fmt.Sprintf("worker %s started the run at %s and never heartbeated; another worker resumes it when its run task's lease expires, "+
			"if the run task is still queued (Terminate ends it either way)",
			lv.worker, lv.last.Format(time.RFC3339))
	}
	if rerr != nil {
		h.Message += " (the run task's status could not be read: " + rerr.Error() + ")"
	}
	return h, nil
}

// finalHealth is the Health of a finished run.
func finalHealth(rec RunRecord) Health {
	h := Health{Worker: rec.Worker, Message: rec.Error}
	switch rec.State {
	case RunSucceeded:
		h.Status = HealthSuccess
		h.Message = "the run succeeded"
	case RunCancelled:
		h.Status = HealthCancelled
	default:
		h.Status = HealthFailed
	}
	if h.Message == "" {
		h.Message = "the run " + string(rec.State)
	}
	return h
}
