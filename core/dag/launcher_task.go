package dag

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// Tuning of the run task.
const (
	// runFinalTries is how often the run task tries to write the final
	// record before it gives up (and fails the attempt, so that the run
	// task is retried and resumes the run at once).
	runFinalTries = 5
	// finalRetryDelay is the delay before the second try of the final
	// record write (doubling).
	finalRetryDelay = 100 * time.Millisecond
	// runWriteTimeout bounds one StateStore call of the run task.
	runWriteTimeout = 30 * time.Second
)

// errOwnershipLost: another delivery of the run task took the run over.
var errOwnershipLost = errors.New("another execution took the run over")

// RunTaskDeps is what the run task's handler needs on a worker. Client and
// State are required.
type RunTaskDeps struct {
	// Client submits the run's steps and follows them (RunOptions of an
	// Executor). Its Broker is the queue the step workers serve, which may
	// be another queue than the run tasks'.
	Client *core.Client
	// State holds run records, heartbeats and the run index: the
	// Launcher's store.
	State ports.StateStore
	// HeartbeatInterval is how often the handler writes the run's heartbeat
	// and, when steps changed, the run record (default DefaultRunHeartbeat,
	// 5s). Use the Launcher's.
	HeartbeatInterval time.Duration
	// StaleAfter is the heartbeat age after which another execution of the
	// run counts as dead and a new delivery of the run task takes it over
	// (default DefaultStaleFactor × HeartbeatInterval). Use the Launcher's.
	StaleAfter time.Duration
	// Logger receives the handler's logs (default slog.Default()).
	Logger *slog.Logger
}

// RegisterRunTask registers the handler of the Launcher's run task
// (RunTaskName) in reg. It fails for invalid deps (ports.ErrInvalidArgument)
// and when reg has a handler of that name.
//
// The handler runs one launched run:
//
//  1. It reads the run record. A finished (e.g. terminated) run is not run
//     again: the handler returns its outcome. A queued run is switched to
//     running (compare-and-swap, Attempt 1, Worker = this worker). A running
//     run whose heartbeat is older than StaleAfter (its worker died) or
//     marked released (its worker shut down) is taken over (Attempt + 1,
//     ResumedAt) and resumed (RunOptions.Resume: steps with a result are not
//     run again, steps the record shows as submitted are watched). A
//     running run whose heartbeat is fresh belongs to another, live
//     delivery of the run task (a duplicate): the handler waits, checking
//     every heartbeat interval, until the run finishes (then returns its
//     outcome) or goes stale (then takes it over). A cancellation request
//     does not end that wait: the live execution records the end.
//  2. While the run runs it writes the heartbeat record (runHeartbeatKey:
//     worker ID, attempt, time) every HeartbeatInterval, and the run record
//     with the steps' states when they changed — at most once per interval,
//     with compare-and-swap writes that keep what Terminate wrote. Finding
//     that another execution took the run over, it stops following the run
//     without cancelling anything and waits as in 1.
//  3. It runs the job with an Executor (RunID = the run's; params,
//     fail-fast and cancel wait from the launch), then writes the final
//     record and returns the RunResult (JSON) as the task's output — for a
//     failed or cancelled run too.
//
// When it starts the run (1) and when it writes the final record (3) it
// moves the run's key in the run index (see Launcher.ListRuns).
//
// When its context is cancelled by a cancellation request (Terminate), the
// executor cancels the steps in flight and the run ends cancelled. When it
// is cancelled because the worker shuts down or lost the run task's lease,
// the handler stops following the run without cancelling its steps, marks
// its heartbeat released and returns the cause: the worker records nothing
// and the run task's next delivery resumes the run.
//
// A worker that serves run tasks and steps from one queue needs more slots
// (WorkerOptions.Concurrency) than the runs it may hold at once, since a run
// task occupies one for the whole run; or serve run tasks from a queue of
// their own. Its WorkerOptions.MaxExtensions bounds how long a run can keep
// one delivery (default: one hour); a longer run is released and resumed by
// the next delivery, each counting as an attempt of the run task's retry
// policy.
func RegisterRunTask(reg *core.Registry, deps RunTaskDeps) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("dagq: run task: %w: "+format, append([]any{ports.ErrInvalidArgument}, args...)...)
	}
	if reg == nil {
		return bad("a Registry is required")
	}
	interval, stale, err := heartbeatTiming(deps.HeartbeatInterval, deps.StaleAfter)
	switch {
	case deps.Client == nil:
		return bad("Client is required")
	case deps.State == nil:
		return bad("State is required")
	case err != nil:
		return bad("%v", err)
	}
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	exec, err := NewExecutor(deps.Client, ExecutorOptions{Logger: log})
	if err != nil {
		return err
	}
	h := &runHandler{exec: exec, state: deps.State, interval: interval, stale: stale, log: log}
	return reg.Handle(RunTaskName, h)
}

// runHandler is the run task's handler.
type runHandler struct {
	exec     *Executor
	state    ports.StateStore
	interval time.Duration
	stale    time.Duration
	log      *slog.Logger
}

// ProcessTask runs one delivery of a run task.
func (h *runHandler) ProcessTask(ctx context.Context, t *core.Task) (json.RawMessage, error) {
	var args runTaskArgs
	if err := json.Unmarshal(t.Args, &args); err != nil {
		return nil, fmt.Errorf("dagq: run task %s: decode its arguments: %v: %w", t.ID, err, core.ErrSkipRetry)
	}
	job := args.job()
	if err := job.Validate(nil); err != nil {
		return nil, fmt.Errorf("dagq: run task %s: %w: %w", t.ID, err, core.ErrSkipRetry)
	}
	if args.RunID == "" || RunTaskID(args.RunID) != t.ID {
		return nil, fmt.Errorf("dagq: run task %s: run ID %q does not match the task ID: %w", t.ID, args.RunID, core.ErrSkipRetry)
	}
	worker := core.WorkerIDFromContext(ctx)
	if worker == "" {
		worker = "run-" + core.NewTaskID() // the handler called outside a Worker
	}
	r := &runExec{
		h: h, ctx: ctx, args: args, job: job, worker: worker,
		log: h.log.With("run_id", args.RunID, "job", job.Name, "worker", worker,
			"task_id", RunTaskID(args.RunID), "task", RunTaskName),
	}
	return r.serve()
}

// runExec is one delivery of a run task on its way.
type runExec struct {
	h      *runHandler
	ctx    context.Context // the handler's
	args   runTaskArgs
	job    Job
	worker string
	log    *slog.Logger

	mu      sync.Mutex
	rec     RunRecord // the record as this execution sees it
	dirty   bool      // rec has step changes not written yet
	stepIdx map[string]int
}

// serve takes the run (or waits for its owner) until it has an outcome.
func (r *runExec) serve() (json.RawMessage, error) {
	waiting := false
	for {
		rec, resume, held, err := r.acquire()
		switch {
		case err != nil:
			return nil, err
		case rec.State.Final():
			return r.outcome(rec)
		case held: // by another live execution: wait
			if !waiting {
				waiting = true
				r.log.Info("the run is held by another delivery of its task whose heartbeat is fresh; waiting",
					"owner", rec.Worker, "attempt", rec.Attempt)
			}
			if !r.pause(r.h.interval) {
				return nil, r.stopErr()
			}
			continue
		}
		waiting = false
		out, err := r.execute(rec, resume)
		if errors.Is(err, errOwnershipLost) {
			r.log.Warn("another execution took the run over; waiting for it")
			continue
		}
		return out, err
	}
}

// stopErr is the error of a handler whose context ended: its cause.
func (r *runExec) stopErr() error {
	return fmt.Errorf("dagq: run %s: %w", r.args.RunID, context.Cause(r.ctx))
}

// stopped reports whether the handler must stop: its context ended for
// another reason than a cancellation request (shutdown, lost lease). A
// cancelled run still needs its end recorded: by its live execution, which
// this one waits for, or by this one.
func (r *runExec) stopped() bool {
	return r.ctx.Err() != nil && !errors.Is(context.Cause(r.ctx), core.ErrTaskCanceled)
}

// pause sleeps for d; false when the handler must stop.
func (r *runExec) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	done := r.ctx.Done()
	if r.ctx.Err() != nil {
		done = nil // cancelled by request: sleep the whole d
	}
	select {
	case <-t.C:
	case <-done:
	}
	return !r.stopped()
}

// opCtx bounds one StateStore call; a cancellation request does not cut it
// short.
func (r *runExec) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.ctx), runWriteTimeout)
}

// acquire reads the record and takes the run when it may. It returns the
// record this execution now owns (with the Resume to use), a final record,
// or held: another live execution holds the run.
func (r *runExec) acquire() (rec RunRecord, resume *Resume, held bool, err error) {
	for range maxCASTries {
		if r.stopped() {
			return RunRecord{}, nil, false, r.stopErr()
		}
		rctx, cancel := r.opCtx()
		rec, err = readRunRecord(rctx, r.h.state, r.args.RunID)
		cancel()
		switch {
		case errors.Is(err, ErrRunNotFound):
			return RunRecord{}, nil, false, fmt.Errorf("dagq: run task %s: %w (launch runs with Launcher.Launch): %w",
				RunTaskID(r.args.RunID), err, core.ErrSkipRetry)
		case err != nil:
			return RunRecord{}, nil, false, err
		}
		resume = nil
		now := time.Now().UTC()
		prev := rec.State
		switch rec.State {
		case RunSucceeded, RunFailed, RunCancelled:
			return rec, nil, false, nil
		case RunQueued:
			rec.StartedAt = now
		case RunRunning:
			hctx, cancel := r.opCtx()
			hb, err := readHeartbeat(hctx, r.h.state, r.args.RunID)
			cancel()
			if err != nil {
				return RunRecord{}, nil, false, err
			}
			lv := livenessOf(rec, hb)
			if lv.alive(now, r.h.stale) {
				return rec, nil, true, nil
			}
			r.log.Warn("taking over a run whose execution stopped", "previous_worker", lv.worker,
				"previous_attempt", rec.Attempt, "last_sign_of_life", lv.last, "released", lv.released)
			// Steps that finished while nobody wrote the record: their
			// results say so, so that the takeover's first write shows them
			// finished rather than running.
			sctx, cancel := r.opCtx()
			applyStepResults(sctx, r.h.exec.c, &rec)
			cancel()
			resume = &Resume{}
			for _, s := range rec.Steps {
				if s.State != StepPending && s.State != StepSkipped {
					resume.Sent = append(resume.Sent, s.Name)
				}
			}
			rec.ResumedAt = now
		default:
			return RunRecord{}, nil, false, fmt.Errorf("dagq: run %s: the record has unknown state %q: %w", r.args.RunID, rec.State, core.ErrSkipRetry)
		}
		rec.State, rec.Attempt, rec.Worker = RunRunning, rec.Attempt+1, r.worker
		ver, err := r.put(rec)
		switch {
		case err != nil:
			return RunRecord{}, nil, false, err
		case ver != "":
			rec.Version = ver
			// A takeover writes the running key again: it is there already,
			// unless a crash or a failed write left it out.
			indexRun(r.ctx, r.h.state, r.log, rec, prev)
			return rec, resume, false, nil
		}
	}
	return RunRecord{}, nil, false, fmt.Errorf("dagq: run %s: %w: the record kept changing", r.args.RunID, ports.ErrConflict)
}

// put writes rec over the version it was read at (rec.Version) and returns
// the new version; "" and a nil error on a conflict.
func (r *runExec) put(rec RunRecord) (string, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return "", fmt.Errorf("dagq: encode the record of run %s: %w", r.args.RunID, err)
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	ver, err := r.h.state.Put(ctx, runRecordKey(r.args.RunID), data, ports.WriteCondition{MatchVersion: rec.Version})
	switch {
	case err == nil:
		return ver, nil
	case errors.Is(err, ports.ErrConflict), errors.Is(err, ports.ErrNotFound):
		return "", nil
	default:
		return "", fmt.Errorf("dagq: write the record of run %s: %w", r.args.RunID, err)
	}
}

// outcome is the task output for a run that finished: its RunResult,
// rebuilt from the record (without step outputs).
func (r *runExec) outcome(rec RunRecord) (json.RawMessage, error) {
	r.log.Info("the run is finished; not running it", "state", rec.State)
	res := RunResult{RunID: rec.RunID, Job: rec.Job, State: rec.State, StartedAt: rec.StartedAt, FinishedAt: rec.FinishedAt}
	for _, s := range rec.Steps {
		res.Steps = append(res.Steps, StepResult{Name: s.Name, Task: s.Task, TaskID: s.TaskID, State: s.State,
			Attempts: s.Attempts, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, Error: s.Error, Worker: s.Worker,
			ReusedFrom: s.ReusedFrom})
	}
	return json.Marshal(res)
}

// execute runs the job as the owner of rec.
func (r *runExec) execute(rec RunRecord, resume *Resume) (json.RawMessage, error) {
	r.mu.Lock()
	r.rec, r.dirty = rec, false
	r.stepIdx = make(map[string]int, len(rec.Steps))
	for i, s := range rec.Steps {
		r.stepIdx[s.Name] = i
	}
	r.mu.Unlock()
	log := r.log.With("attempt", rec.Attempt)
	log.Info("run started", "resumed", resume != nil)

	// A cancellation request interrupts the run (the executor cancels its
	// steps); shutdown and a lost lease only detach from it.
	runCtx, cancelRun := context.WithCancelCause(context.WithoutCancel(r.ctx))
	defer cancelRun(nil)
	detach := make(chan struct{})
	var detachOnce sync.Once
	var detachCause error
	doDetach := func(cause error) {
		detachOnce.Do(func() {
			detachCause = cause
			close(detach)
		})
	}
	stopWatch := context.AfterFunc(r.ctx, func() {
		cause := context.Cause(r.ctx)
		if errors.Is(cause, core.ErrShutdown) || errors.Is(cause, ports.ErrLeaseLost) {
			doDetach(cause)
			return
		}
		cancelRun(cause)
	})
	defer stopWatch()

	hbVersion := r.heartbeat(rec.Attempt, false)
	loopCtx, stopLoop := context.WithCancel(context.WithoutCancel(r.ctx))
	loopDone := make(chan string, 1)
	go func() { loopDone <- r.beatLoop(loopCtx, rec.Attempt, hbVersion, doDetach) }()

	res, err := r.h.exec.Run(runCtx, r.job, RunOptions{
		RunID:         r.args.RunID,
		FailFast:      r.args.FailFast,
		Params:        r.args.Params,
		CancelWait:    r.args.CancelWait,
		MaxConcurrent: r.args.MaxConcurrent,
		Reuse:         r.args.Reuse,
		OnEvent:       r.onEvent,
		Resume:        resume,
		detach:        detach,
		skip:          r.args.Skip,
	})
	stopLoop()
	hbVersion = <-loopDone

	if errors.Is(err, errRunDetached) {
		if errors.Is(detachCause, errOwnershipLost) {
			return nil, errOwnershipLost
		}
		// Released: save the steps' states and tell the next delivery it
		// need not wait for this execution's heartbeat to go stale.
		if ferr := r.flush(); ferr != nil && !errors.Is(ferr, errOwnershipLost) {
			log.Warn("saving the run record before releasing the run failed", "err", ferr)
		}
		if hbVersion != "" {
			r.writeHeartbeat(rec.Attempt, true, hbVersion)
		}
		log.Info("run released: its steps go on; the next delivery of the run task resumes it", "cause", detachCause)
		return nil, fmt.Errorf("dagq: run %s released: %w", r.args.RunID, detachCause)
	}
	if err != nil && runCtx.Err() == nil {
		// The executor could not follow the run (e.g. the client closed):
		// not the run's failure. Leave it running for the next attempt.
		_ = r.flush()
		if hbVersion != "" {
			r.writeHeartbeat(rec.Attempt, true, hbVersion)
		}
		log.Error("the executor could not follow the run; the run task will be retried and resume it", "err", err)
		return nil, err
	}

	final := r.snapshot()
	applyRunResult(&final, res)
	if errors.Is(context.Cause(runCtx), core.ErrTaskCanceled) && final.CancelRequestedAt.IsZero() {
		final.CancelRequestedAt = time.Now().UTC()
	}
	if werr := r.writeFinal(final); werr != nil {
		if errors.Is(werr, errOwnershipLost) {
			log.Warn("another execution took the run over before its end was recorded; it records the end")
		} else {
			if hbVersion != "" {
				r.writeHeartbeat(rec.Attempt, true, hbVersion)
			}
			log.Error("recording the end of the run failed; the run task will be retried and resume it", "err", werr)
			return nil, werr
		}
	}
	log.Info("run finished", "state", res.State)
	out, merr := json.Marshal(res)
	if merr != nil {
		return nil, fmt.Errorf("dagq: run %s: encode its result: %v: %w", r.args.RunID, merr, core.ErrSkipRetry)
	}
	return out, nil
}

// beatLoop writes the heartbeat and flushes step changes every interval
// until ctx is done; it detaches the run when another execution took it
// over. It returns the version of its last heartbeat ("" when unknown).
func (r *runExec) beatLoop(ctx context.Context, attempt int, hbVersion string, detach func(error)) string {
	t := time.NewTicker(r.h.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return hbVersion
		case <-t.C:
		}
		hbVersion = r.heartbeat(attempt, false)
		if err := r.flush(); errors.Is(err, errOwnershipLost) {
			detach(err)
			return ""
		} else if err != nil {
			r.log.Warn("writing the run record failed; trying again on the next heartbeat", "err", err)
		}
	}
}

// heartbeat writes this execution's heartbeat (unconditionally) and
// returns its version ("" when the write failed).
func (r *runExec) heartbeat(attempt int, released bool) string {
	data, _ := json.Marshal(runHeartbeat{Worker: r.worker, Attempt: attempt, At: time.Now().UTC(), Released: released})
	ctx, cancel := r.opCtx()
	defer cancel()
	v, err := r.h.state.Put(ctx, runHeartbeatKey(r.args.RunID), data, ports.WriteCondition{})
	if err != nil {
		r.log.Warn("writing the run heartbeat failed", "err", err)
		return ""
	}
	return v
}

// writeHeartbeat marks the heartbeat released, unless another execution
// wrote it since version.
func (r *runExec) writeHeartbeat(attempt int, released bool, version string) {
	data, _ := json.Marshal(runHeartbeat{Worker: r.worker, Attempt: attempt, At: time.Now().UTC(), Released: released})
	ctx, cancel := r.opCtx()
	defer cancel()
	if _, err := r.h.state.Put(ctx, runHeartbeatKey(r.args.RunID), data, ports.WriteCondition{MatchVersion: version}); err != nil &&
		!errors.Is(err, ports.ErrConflict) && !errors.Is(err, ports.ErrNotFound) {
		r.log.Warn("marking the run heartbeat released failed", "err", err)
	}
}

// onEvent applies an executor event to the in-memory record.
func (r *runExec) onEvent(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.stepIdx[ev.Step]
	if !ok {
		return
	}
	s := &r.rec.Steps[i]
	switch ev.Type {
	case EventStepQueued:
		s.TaskID = ev.TaskID
		// A resumed run reports the steps it watches or reuses as queued;
		// one the record shows running (with its worker) is still running
		// as far as anyone knows, and one it shows finished is: keep that
		// until the step reports otherwise.
		if s.State != StepRunning && !s.State.Final() {
			s.State, s.Worker = StepQueued, ""
		}
	case EventStepStarted:
		if s.State.Final() {
			// A resumed run's step that the record shows finished (the
			// takeover read its result): a start reported now is older
			// news. Its final event follows.
			return
		}
		s.State, s.Attempts, s.StartedAt, s.Error = StepRunning, ev.Attempt, ev.Time.UTC(), ""
		s.Worker = ev.Worker
	case EventStepRetried:
		s.State, s.Attempts, s.Error = StepQueued, ev.Attempt-1, ev.Error
	case EventStepSucceeded, EventStepFailed, EventStepCancelled, EventStepSkipped:
		s.State = StepState(ev.Type[len("step_"):])
		s.Attempts, s.FinishedAt, s.Error = ev.Attempt, ev.Time.UTC(), ev.Error
		if ev.Worker != "" {
			s.Worker = ev.Worker
		}
		if ev.TaskID != "" {
			s.TaskID = ev.TaskID
		}
		s.ReusedFrom = ev.ReusedFrom
		if ev.ReusedFrom != "" {
			s.StartedAt, s.FinishedAt = time.Time{}, time.Time{} // it did not run in this run
		}
	default:
		return
	}
	r.dirty = true
}

// snapshot copies the in-memory record.
func (r *runExec) snapshot() RunRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.rec
	rec.Steps = slices.Clone(r.rec.Steps)
	return rec
}

// flush writes the in-memory record when it has changes, keeping what
// others wrote meanwhile (CancelRequestedAt); errOwnershipLost when another
// execution took the run over.
func (r *runExec) flush() error {
	r.mu.Lock()
	dirty := r.dirty
	r.dirty = false
	r.mu.Unlock()
	if !dirty {
		return nil
	}
	err := r.casWrite(r.snapshot)
	if err != nil && !errors.Is(err, errOwnershipLost) {
		r.mu.Lock()
		r.dirty = true
		r.mu.Unlock()
	}
	return err
}

// writeFinal writes the final record, retrying failed writes with backoff.
func (r *runExec) writeFinal(final RunRecord) error {
	var (
		err     error
		written RunRecord // the record of the last write tried
	)
	for i := range runFinalTries {
		err = r.casWrite(func() RunRecord {
			rec := final
			r.mu.Lock()
			rec.Version = r.rec.Version
			if !r.rec.CancelRequestedAt.IsZero() {
				rec.CancelRequestedAt = r.rec.CancelRequestedAt
			}
			r.mu.Unlock()
			if rec.State == RunCancelled && !rec.CancelRequestedAt.IsZero() {
				rec.Error = "terminated: " + rec.Error
			}
			written = rec
			return rec
		})
		if err == nil {
			indexRun(r.ctx, r.h.state, r.log, written, RunRunning)
			return nil
		}
		if errors.Is(err, errOwnershipLost) {
			return err
		}
		if i < runFinalTries-1 {
			time.Sleep(finalRetryDelay << i) // the run's context may be done: the final write must still be tried
		}
	}
	return err
}

// casWrite writes the record next() builds over the version this execution
// knows; after a conflict it reads the record again, checks that this
// execution still owns the run, keeps the fields others write and tries
// again.
func (r *runExec) casWrite(next func() RunRecord) error {
	for range maxCASTries {
		rec := next()
		ver, err := r.put(rec)
		if err != nil {
			return err
		}
		if ver != "" {
			r.setVersion(ver)
			return nil
		}
		ctx, cancel := r.opCtx()
		cur, err := readRunRecord(ctx, r.h.state, r.args.RunID)
		cancel()
		if err != nil {
			return err
		}
		if cur.State != RunRunning || cur.Attempt != rec.Attempt || cur.Worker != r.worker {
			return errOwnershipLost
		}
		r.mu.Lock()
		r.rec.Version, r.rec.CancelRequestedAt = cur.Version, cur.CancelRequestedAt
		r.mu.Unlock()
	}
	return fmt.Errorf("dagq: write the record of run %s: %w: it kept changing", r.args.RunID, ports.ErrConflict)
}

// setVersion remembers the version of the record this execution wrote.
func (r *runExec) setVersion(v string) {
	r.mu.Lock()
	r.rec.Version = v
	r.mu.Unlock()
}
