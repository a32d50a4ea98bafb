package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// workerJob is one decoded delivery on its way through the worker.
type workerJob struct {
	// first: the broker says this is the message's first delivery
	// (Delivery.Attempt 1) and it is no requeued copy (which carries
	// wire.PriorAttemptsAttribute): the task cannot have run before.
	first   bool
	l       *workerLease
	env     wire.Envelope
	attempt int
	policy  RetryPolicy
	log     *slog.Logger
	// due is when the task may start (zero: at once); orig is its delivery
	// as received, kept past the handler's start when a retry may have to
	// send the task on (see worker_delay.go).
	due  time.Time
	orig ports.Delivery

	// cctx is cancelled with a cause (request, lease lost, shutdown); ctx adds
	// the envelope's deadline and is what the handler gets.
	cctx   context.Context
	cancel context.CancelCauseFunc
	ctx    context.Context
	stop   context.CancelFunc

	// result is what became of the task, for the observer.
	result TaskResult

	// pool is the task's part in its pool (nil: it names none; see pool.go).
	pool *jobPool

	// task and hctx are the handler's arguments (see invoke), and res the
	// result of its run, kept here to save their allocations.
	task Task
	hctx handlerCtx
	res  ports.Result
}

// processBatch decodes the deliveries of one Receive, runs the durable
// cancellation check once for the whole batch, and runs each task in a
// runner of its own.
//
// With prefetch, prev (nil for the first batch) is closed once the batch
// received before this one has taken its run tokens, and turn is closed
// once this one has: tasks start in the order received, across batches.
func (w *Worker) processBatch(ds []ports.Delivery, ls []*workerLease, prev, turn chan struct{}) {
	if turn != nil {
		defer close(turn)
	}
	unresolved := w.resolvePayloads(ds, ls)
	jobs := make([]*workerJob, 0, len(ds))
	for i, d := range ds {
		if fail := at(unresolved, i); fail != nil {
			l := ls[i]
			w.spawn(func() {
				defer w.forget(l)
				fail()
			})
			continue
		}
		if w.verifier != nil {
			if err := w.verifier.Verify(d.Body, d.Attributes[wire.SignatureAttribute]); err != nil {
				l := ls[i]
				l.payload = "" // an unauthenticated reference: keep the object
				w.spawn(func() {
					defer w.forget(l)
					w.unverified(d, l, err)
				})
				continue
			}
		}
		env, err := wire.Decode(d.Body)
		if err != nil {
			l := ls[i]
			w.spawn(func() {
				defer w.forget(l)
				w.undecodable(d, l, err)
			})
			continue
		}
		jobs = append(jobs, w.newJob(d, ls[i], env))
	}
	w.durableCancelCheck(jobs)
	jobs = w.sendOnEarly(jobs) // not due: sent on at once, no slot to wait for
	if prev != nil {
		select {
		case <-prev:
		case <-w.stopping: // releasing: the order no longer matters
		case <-w.abortCtx.Done():
		}
	}
	for _, j := range jobs {
		// With prefetch, a task waits here, in order, for a free slot.
		if !w.acquireRun(j) {
			w.spawn(func() {
				defer w.forget(j.l)
				defer j.stop()
				w.releasePrefetched(j)
			})
			continue
		}
		w.spawn(func() { w.runToEnd(j) })
	}
}

// runToEnd runs j and forgets its delivery.
func (w *Worker) runToEnd(j *workerJob) {
	defer w.forget(j.l)
	defer j.stop()
	w.runJob(j)
}

// at returns fs[i], or nil when fs is nil.
func at(fs []func(), i int) func() {
	if fs == nil {
		return nil
	}
	return fs[i]
}

// resolvePayloads fetches, concurrently, the envelopes of the claim-check
// deliveries of ds and puts them in their Body. For a delivery that cannot be
// resolved it returns the function that settles it (at its index; nil for
// the others); nil when ds has no claim-check delivery.
func (w *Worker) resolvePayloads(ds []ports.Delivery, ls []*workerLease) []func() {
	if !slices.ContainsFunc(ds, func(d ports.Delivery) bool { return d.Attributes[wire.PayloadAttribute] != "" }) {
		return nil // the usual batch: nothing to fetch
	}
	var (
		out = make([]func(), len(ds))
		mu  sync.Mutex
		wg  sync.WaitGroup
	)
	settle := func(i int, f func()) {
		mu.Lock()
		defer mu.Unlock()
		out[i] = f
	}
	for i := range ds {
		key := ds[i].Attributes[wire.PayloadAttribute]
		if key == "" {
			continue
		}
		d, l := ds[i], ls[i]
		log := w.log.With("message_id", d.ID, "delivery_attempt", d.Attempt, "payload_key", key)
		if w.payloads == nil {
			settle(i, func() {
				w.failDelivery(d, l, log, fmt.Sprintf("claim-check message (payload %s) but this worker has no "+
					"payload store: set Ports.Payloads to the store the client offloads to", key))
			})
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(w.abortCtx, w.lease)
			body, err := w.payloads.Get(ctx, key)
			cancel()
			switch {
			case err == nil:
				ds[i].Body = body
				ls[i].payload = key // read by the task goroutine, started after wg.Wait
			case errors.Is(err, ports.ErrNotFound):
				settle(i, func() {
					w.failDelivery(d, l, log, fmt.Sprintf("claim-check object %s is missing", key))
				})
			case errors.Is(err, ports.ErrInvalidArgument): // e.g. a key too long for the store: never readable
				settle(i, func() {
					w.failDelivery(d, l, log, fmt.Sprintf("claim-check key %s cannot be read: %v", wire.ShortID(key), err))
				})
			default:
				settle(i, func() {
					delay := min(w.retry.Backoff(d.Attempt), ports.MaxLease)
					log.Warn("fetching the claim-check payload failed; handing the message back",
						"err", err, "retry_in", delay)
					if w.enterFinishing(l) {
						w.nack(l, log, delay)
					}
				})
			}
		})
	}
	wg.Wait()
	return out
}

// newJob builds the task's context and makes it reachable by cancellation
// requests.
func (w *Worker) newJob(d ports.Delivery, l *workerLease, env wire.Envelope) *workerJob {
	j := &workerJob{l: l, env: env, policy: w.retry}
	if env.Retry != nil {
		j.policy = RetryPolicy(*env.Retry)
	}
	// The attempt: the envelope's first, plus what earlier messages of a
	// requeued task used, plus this message's receives before this one.
	prior, requeued, perr := priorAttempts(d)
	j.attempt = env.Attempt + prior + max(d.Attempt, 1) - 1
	j.first = d.Attempt == 1 && !requeued
	attrs := []slog.Attr{slog.String("task_id", env.TaskID), slog.String("task", env.Task), slog.Int("attempt", j.attempt)}
	if env.RunID != "" {
		attrs = append(attrs, slog.String("run_id", env.RunID))
	}
	if env.StepID != "" {
		attrs = append(attrs, slog.String("step_id", env.StepID))
	}
	j.log = slog.New(w.log.Handler().WithAttrs(attrs))
	if perr != nil {
		warnPrior(j.log, perr)
	}
	j.cctx, j.cancel = context.WithCancelCause(w.abortCtx) // cancelled at shutdown's abort
	j.ctx, j.stop = j.cctx, func() {}
	if !env.Deadline.IsZero() {
		j.ctx, j.stop = context.WithDeadline(j.cctx, env.Deadline)
	}

	w.mu.Lock()
	l.taskID = env.TaskID
	l.log = j.log
	l.cancel = j.cancel
	orig := l.orig
	switch {
	case l.lost:
		j.cancel(ports.ErrLeaseLost)
	case w.recent.has(env.TaskID):
		j.cancel(ErrTaskCanceled)
	}
	w.mu.Unlock()
	if !env.NotBefore.IsZero() || orig.Attributes[wire.NotBeforeAttribute] != "" {
		j.due = dueTime(&env, &orig, j.log)
	}
	if w.keepsOrig(j.policy) {
		j.orig = orig
	}
	return j
}

// durableCancelCheck asks the cancel channel once which of the batch's tasks
// have a cancellation request, and cancels them. When the channel cannot
// answer the tasks start anyway; the subscription still reaches them.
func (w *Worker) durableCancelCheck(jobs []*workerJob) {
	if w.cancels == nil {
		return
	}
	var ids []string
	for _, j := range jobs {
		if j.cctx.Err() == nil {
			ids = append(ids, j.env.TaskID)
		}
	}
	if len(ids) == 0 {
		return
	}
	var (
		canceled []string
		err      error
	)
	for i := range durableCheckAttempts {
		ctx, cancel := context.WithTimeout(w.abortCtx, w.lease)
		canceled, err = w.cancels.Canceled(ctx, ids...)
		cancel()
		if err == nil || errors.Is(err, ports.ErrClosed) || i == durableCheckAttempts-1 ||
			!sleepCtx(w.abortCtx, putRetryDelay<<i) {
			break
		}
	}
	if err != nil {
		if w.abortCtx.Err() == nil {
			w.log.Warn("durable cancellation check failed; starting the tasks anyway", "tasks", ids, "err", err)
		}
		return
	}
	for _, j := range jobs {
		if slices.Contains(canceled, j.env.TaskID) { // a few IDs at most
			j.cancel(ErrTaskCanceled)
		}
	}
}

// runJob takes one decoded task through the checks before its start, its
// handler and the recording of its outcome.
func (w *Worker) runJob(j *workerJob) {
	info := j.taskInfo()
	w.obs.TaskReceived(info)
	defer func() { w.obs.TaskFinished(info, j.result) }()
	w.poolBegin(j)
	defer w.poolDone(j) // frees its pool slot once the outcome is recorded
	env := j.env
	if w.stopBeforeStart(j) {
		return
	}
	// A redelivery, or a delivery whose count the broker could not tell
	// (0): maybe it finished before.
	if !j.first {
		ctx, cancel := context.WithTimeout(j.cctx, w.lease)
		res, err := w.results.Get(ctx, env.TaskID)
		cancel()
		switch {
		case err == nil:
			j.log.Info("redelivered task already has a result; not running it again", "state", res.State)
			j.result.Outcome = OutcomeDuplicate
			if w.enterFinishing(j.l) {
				w.beginSettle(j.l)
				w.publish(j.l, j.log, env.ReplyTo, &res)
				w.ack(j.l, j.log)
			}
			return
		case errors.Is(err, ports.ErrNotFound):
		case j.cctx.Err() == nil:
			j.log.Warn("reading the result of a redelivered task failed; running it", "err", err)
		}
		if w.stopBeforeStart(j) {
			return
		}
	}
	if !env.Deadline.IsZero() && !time.Now().Before(env.Deadline) {
		j.log.Warn("task deadline passed before start; failing it", "deadline", env.Deadline)
		w.finishUnstarted(j, ports.StateFailed, "deadline exceeded before start")
		return
	}
	h, ok := w.registry.Lookup(env.Task)
	if !ok {
		msg := fmt.Sprintf("unknown task %q; this worker handles: %s", env.Task, strings.Join(w.registry.Names(), ", "))
		j.log.Error("no handler for the task; failing it", "err", fmt.Errorf("%w: %s", ErrUnknownTask, msg))
		w.finishUnstarted(j, ports.StateFailed, msg)
		return
	}
	if j.attempt > j.policy.MaxAttempts {
		msg := fmt.Sprintf("attempts exhausted before start: attempt %d of at most %d "+
			"(earlier deliveries ran and lost their lease, or were released where the broker cannot requeue, as on a FIFO queue)",
			j.attempt, j.policy.MaxAttempts)
		j.log.Error("task was delivered more often than its retry policy allows; failing it",
			"max_attempts", j.policy.MaxAttempts)
		w.finishUnstarted(j, ports.StateFailed, msg)
		return
	}

	// The checks that may postpone the task, without counting an attempt
	// or holding a worker slot while it waits: its due time, its pool slot.
	if w.untilDue(j) || w.waitForPoolSlot(j) {
		return
	}

	w.mu.Lock()
	startable := !j.l.released && !j.l.lost
	if startable {
		j.l.state = leaseRunning // from now on a release is an attempt
		j.l.orig = ports.Delivery{}
	}
	released := j.l.released
	w.mu.Unlock()
	if !startable {
		j.result.Outcome = OutcomeLeaseLost
		if released {
			j.result.Outcome = OutcomeReleased
		}
		return
	}
	if w.stopBeforeStart(j) {
		return
	}

	if env.Progress {
		w.publishProgress(j, ports.Completion{TaskID: env.TaskID, State: ports.StateRunning, Attempt: j.attempt, Worker: w.id})
	}
	w.obs.TaskStarted(info)
	started := time.Now()
	j.log.Debug("task started")
	endSpan := w.startTaskSpan(j)
	w.running.Add(1)
	out, err := w.invoke(j, h)
	w.running.Add(-1)
	finished := time.Now()
	j.result.Ran, j.result.Duration = true, finished.Sub(started)
	if err == nil && len(out) > 0 && !json.Valid(out) {
		err = fmt.Errorf("handler returned an output that is not valid JSON: %w", ErrSkipRetry)
		out = nil
	}
	if err == nil && w.maxResult >= 0 && len(out) > w.maxResult {
		err = fmt.Errorf("result of %d bytes exceeds the limit of %d (WorkerOptions.MaxResultBytes): %w",
			len(out), w.maxResult, ErrSkipRetry)
		out = nil
	}
	cause := context.Cause(j.ctx)
	err = poolSlotLostErr(err, cause)
	endSpan(err, cause)

	w.mu.Lock()
	lost, released := j.l.lost, j.l.released
	if !released {
		j.l.state = leaseFinishing
	}
	w.mu.Unlock()
	// The handler returned: its slot goes to the next task while the
	// outcome is recorded.
	w.beginSettle(j.l)

	res := &j.res
	*res = ports.Result{
		TaskID:     env.TaskID,
		Attempts:   j.attempt,
		Worker:     w.id,
		StartedAt:  started,
		FinishedAt: finished,
	}
	duration := slog.Duration("duration", finished.Sub(started))
	if err == nil {
		// Recorded even when the lease is gone: results are write-once.
		res.State, res.Output = ports.StateSucceeded, out
		j.result.Outcome = OutcomeSucceeded
		j.log.LogAttrs(w.base, slog.LevelInfo, "task succeeded", duration)
		w.record(j.l, j.log, res, env.ReplyTo, env.Result)
		return
	}
	log := j.log.With(duration)
	switch {
	case released || errors.Is(cause, ErrShutdown):
		j.result.Outcome = OutcomeReleased
		log.Info("task interrupted by shutdown; released for another worker", "err", err)
	case lost || errors.Is(cause, ports.ErrLeaseLost):
		j.result.Outcome = OutcomeLeaseLost
		log.Warn("task lost its lease; recording nothing (another delivery owns it)", "err", err)
	case errors.Is(cause, ErrTaskCanceled):
		res.State, res.Error = ports.StateCancelled, "cancelled by request"
		j.result.Outcome = OutcomeCancelled
		log.Info("task cancelled by request", "err", err)
		w.record(j.l, log, res, env.ReplyTo, env.Result)
	case errors.Is(cause, context.DeadlineExceeded):
		res.State, res.Error = ports.StateFailed, "deadline exceeded: "+err.Error()
		j.result.Outcome = OutcomeFailed
		log.Warn("task deadline exceeded while running; failing it", "err", err)
		w.record(j.l, log, res, env.ReplyTo, env.Result)
	case errors.Is(err, ErrSkipRetry):
		res.State, res.Error = ports.StateFailed, failedWithoutRetry(err)
		j.result.Outcome = OutcomeFailed
		log.Warn("task failed without retry", "err", quietSkipRetry{err})
		w.record(j.l, log, res, env.ReplyTo, env.Result)
	case j.attempt >= j.policy.MaxAttempts:
		res.State, res.Error = ports.StateFailed, err.Error()
		j.result.Outcome = OutcomeFailed
		log.Warn("task failed; attempts exhausted", "err", err, "max_attempts", j.policy.MaxAttempts)
		w.record(j.l, log, res, env.ReplyTo, env.Result)
	default:
		delay := j.policy.Backoff(j.attempt)
		j.result.Outcome = OutcomeRetried
		log.Warn("task failed; retrying", "err", err, "retry_in", delay, "max_attempts", j.policy.MaxAttempts)
		if env.Progress {
			w.publishProgress(j, ports.Completion{TaskID: env.TaskID, State: ports.StateRetrying,
				Attempt: j.attempt + 1, Error: err.Error(), Worker: w.id})
		}
		w.retryAfter(j, log, delay)
	}
}

// stopBeforeStart reports whether the task's context was cancelled before
// its handler started, and records a cancellation request's outcome.
func (w *Worker) stopBeforeStart(j *workerJob) bool {
	if j.cctx.Err() == nil {
		return false
	}
	cause := context.Cause(j.cctx)
	if errors.Is(cause, ErrTaskCanceled) {
		j.log.Info("task cancelled before start")
		w.finishUnstarted(j, ports.StateCancelled, "cancelled before start")
		return true
	}
	// Lease lost or shutdown: another delivery owns the message.
	j.result.Outcome = OutcomeLeaseLost
	if errors.Is(cause, ErrShutdown) {
		j.result.Outcome = OutcomeReleased
	}
	j.log.Info("task not started", "reason", cause)
	return true
}

// finishUnstarted records the outcome of a task whose handler never ran.
func (w *Worker) finishUnstarted(j *workerJob, state ports.State, msg string) {
	if !w.enterFinishing(j.l) {
		j.result.Outcome = OutcomeReleased
		return
	}
	w.beginSettle(j.l)
	j.result.Outcome = OutcomeFailed
	if state == ports.StateCancelled {
		j.result.Outcome = OutcomeCancelled
	}
	w.record(j.l, j.log, &ports.Result{
		TaskID:     j.env.TaskID,
		State:      state,
		Error:      msg,
		Attempts:   j.attempt - 1,
		Worker:     w.id,
		FinishedAt: time.Now(),
	}, j.env.ReplyTo, j.env.Result)
}

// enterFinishing moves l to the finishing state, where shutdown no longer
// releases it; false when shutdown released it already.
func (w *Worker) enterFinishing(l *workerLease) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if l.released {
		return false
	}
	l.state = leaseFinishing
	l.orig = ports.Delivery{}
	return true
}

// invoke runs the handler, turning a panic into an error.
func (w *Worker) invoke(j *workerJob, h Handler) (out json.RawMessage, err error) {
	defer func() {
		if r := recover(); r != nil {
			j.log.Error("handler panicked", "panic", r, "stack", string(debug.Stack()))
			out = nil
			if e, ok := r.(error); ok {
				err = fmt.Errorf("panic: %w", e)
			} else {
				err = fmt.Errorf("panic: %v", r)
			}
		}
	}()
	j.task = Task{
		ID:       j.env.TaskID,
		Name:     j.env.Task,
		Attempt:  j.attempt,
		Args:     j.env.Args,
		Labels:   j.env.Labels,
		Meta:     j.env.Meta,
		RunID:    j.env.RunID,
		StepID:   j.env.StepID,
		Inputs:   j.env.Inputs,
		Params:   j.env.Params,
		Deadline: j.env.Deadline,
	}
	j.hctx = handlerCtx{Context: j.ctx, task: &j.task, workerID: w.id}
	return h.ProcessTask(&j.hctx, &j.task)
}

// undecodable handles a delivery whose body is not an envelope this worker
// can read.
func (w *Worker) undecodable(d ports.Delivery, l *workerLease, err error) {
	log := w.log.With("message_id", d.ID, "delivery_attempt", d.Attempt)
	var msg string
	if errors.Is(err, wire.ErrVersion) {
		deliveries := d.Attempt
		if deliveries == 0 { // unknown: estimated from the message's age
			deliveries = w.estimateDeliveries(d.SentAt)
		}
		if prior, _, _ := priorAttempts(d); prior > 0 { // requeued: earlier messages' deliveries
			deliveries += prior
		}
		if deliveries < w.retry.MaxAttempts {
			delay := min(w.retry.Backoff(deliveries), ports.MaxLease)
			log.Warn("message has a newer envelope version; handing it back for a newer worker",
				"err", err, "retry_in", delay)
			if w.enterFinishing(l) {
				w.nack(l, log, delay)
			}
			return
		}
		msg = fmt.Sprintf("%v (gave up after %d deliveries)", err, deliveries)
		if d.Attempt == 0 && !d.SentAt.IsZero() {
			msg = fmt.Sprintf("%v (gave up after handing it back for %v; the broker reports no delivery count)",
				err, time.Since(d.SentAt).Round(time.Second))
		}
	} else if errors.Is(err, wire.ErrLimit) {
		msg = "message refused, not run: " + err.Error()
	} else {
		msg = "undecodable message: " + err.Error()
	}
	log.Error("message cannot be executed; it is never run", "err", err)
	w.failDelivery(d, l, log, msg)
}

// estimateDeliveries estimates how often a message sent at sentAt was
// handed back with the retry backoff (for a broker that reports no delivery
// count): 1 plus the number of backoffs, without jitter, that fit in its age.
// Without a send time it is 1: the queue's redrive policy is the backstop.
func (w *Worker) estimateDeliveries(sentAt time.Time) int {
	if sentAt.IsZero() {
		return 1
	}
	p := w.retry
	p.Jitter = 0
	age, n := time.Since(sentAt), 1
	for n < p.MaxAttempts && age >= p.Backoff(n) {
		age -= p.Backoff(n)
		n++
	}
	return n
}

// unverified handles a delivery whose signature check failed: it is never
// executed.
func (w *Worker) unverified(d ports.Delivery, l *workerLease, err error) {
	log := w.log.With("message_id", d.ID, "delivery_attempt", d.Attempt)
	log.Error("message signature check failed; failing it without running it", "err", err)
	w.failDelivery(d, l, log, "message refused, not run: "+err.Error())
}

// failDelivery records a failed result with msg for a delivery that is never
// executed, under its message ID, and acks it. When the message ID cannot
// hold a result (longer than MaxTaskIDLen: no store need accept it, no
// client can ask for it) the delivery is handed back instead, with the
// retry policy's backoff, until the queue's redrive policy moves it to the
// dead-letter queue: acking it would lose the message without a trace.
func (w *Worker) failDelivery(d ports.Delivery, l *workerLease, log *slog.Logger, msg string) {
	if !w.enterFinishing(l) {
		return
	}
	w.obs.MessageRejected()
	if d.ID == "" {
		log.Error("message has no ID, so no result can be recorded; deleting it")
		w.ack(l, log)
		return
	}
	if len(d.ID) > MaxTaskIDLen {
		delay := min(w.retry.Backoff(max(d.Attempt, 1)), ports.MaxLease)
		log.Error("no result can be stored under the message ID; handing the message back, never run, "+
			"until the queue's redrive policy moves it to the dead-letter queue",
			"message_id_bytes", len(d.ID), "limit", MaxTaskIDLen, "reason", msg, "retry_in", delay)
		w.nack(l, log, delay)
		return
	}
	w.record(l, log, &ports.Result{
		TaskID:     d.ID,
		State:      ports.StateFailed,
		Error:      msg,
		Worker:     w.id,
		FinishedAt: time.Now(),
	}, replyToOf(d.Body), "") // a rejected message's outcome is always stored
}

// replyToOf digs the reply-to address out of a body that is not a valid
// envelope, when it is JSON that has one within its limit.
func replyToOf(body []byte) string {
	var v struct {
		ReplyTo string `json:"reply_to"`
	}
	if json.Unmarshal(body, &v) != nil || len(v.ReplyTo) > wire.MaxReplyToLen {
		return ""
	}
	return v.ReplyTo
}

// record settles a finished task by its result policy (the envelope's
// Result): durable stores res, publishes its completion and acks the
// delivery; reply publishes the completion with res inline and acks, and
// falls back to durable when that cannot be done; none only acks. When a
// result that must be stored cannot be, the delivery is nacked so that
// nothing is lost.
func (w *Worker) record(l *workerLease, log *slog.Logger, res *ports.Result, replyTo, policy string) {
	switch resultPolicyOf(policy) {
	case ResultNone:
		w.ack(l, log)
		return
	case ResultReply:
		if w.reply(log, replyTo, res) {
			w.ack(l, log)
			return
		}
		replyTo = "" // the completion failed once; the stored result is read instead
	}
	stored, ok := w.store(log, res)
	if !ok {
		w.obs.ResultStoreFailed()
		log.Error("result could not be stored; releasing the task for a later redelivery",
			"retry_in", putFailedNackDelay)
		w.nack(l, log, putFailedNackDelay)
		return
	}
	w.publish(l, log, replyTo, stored)
	w.ack(l, log)
}

// reply publishes res inline in its completion to replyTo, for policy
// reply. It reports whether the task is settled so: true once published,
// or when the inbox is gone (its client is, and nobody else waits for a
// reply); false when the result must be stored instead (no inbox address,
// a result above the inline limit, or a failed publish).
func (w *Worker) reply(log *slog.Logger, replyTo string, res *ports.Result) bool {
	if w.completions == nil || replyTo == "" || !w.inlines(res) {
		return false
	}
	switch err := w.pushCompletion(replyTo, res); {
	case err == nil:
		return true
	case errors.Is(err, ports.ErrNotFound):
		log.Info("completion inbox is gone; dropping the result of a task with result policy reply", "reply_to", replyTo)
		return true
	default:
		log.Warn("publishing the completion failed; storing the result instead (result policy reply)", "reply_to", replyTo, "err", err)
		return false
	}
}

// inlines reports whether res travels inside its completion.
func (w *Worker) inlines(res *ports.Result) bool {
	return w.inlineLimit >= 0 && len(res.Output) <= w.inlineLimit
}

// pushCompletion publishes res's completion to replyTo, with res inline
// when it fits. An error matching ports.ErrNotFound means the inbox is
// gone; any other failure is counted (CompletionPublishFailed). The caller
// logs.
func (w *Worker) pushCompletion(replyTo string, res *ports.Result) error {
	c := ports.Completion{TaskID: res.TaskID, State: res.State}
	if w.inlines(res) {
		c.Result = res // the caller's to give: adapters copy what they keep
	}
	ctx, cancel := w.opContext()
	err := w.completions.Publish(ctx, replyTo, c)
	cancel()
	if err != nil && !errors.Is(err, ports.ErrNotFound) {
		w.obs.CompletionPublishFailed()
	}
	return err
}

// store puts res, retrying briefly. A result stored before wins (write-once);
// its stored version is returned (nil when it could not be read back) —
// except a result recorded for a dead-lettered task (ports.Result.DeadLettered),
// which the task's real outcome replaces where the backend can delete
// (ports.ResultDeleter): the message was redriven and ran.
func (w *Worker) store(log *slog.Logger, res *ports.Result) (*ports.Result, bool) {
	for i := range putAttempts {
		ctx, cancel := w.opContext()
		err := w.results.Put(ctx, *res)
		cancel()
		switch {
		case err == nil:
			return res, true
		case errors.Is(err, ports.ErrAlreadyExists):
			ctx, cancel := w.opContext()
			stored, gerr := w.results.Get(ctx, res.TaskID)
			cancel()
			if gerr != nil {
				log.Warn("a result was stored before but cannot be read", "err", gerr)
				return nil, true
			}
			if w.replaceDeadLettered(log, stored, res) {
				continue // the marker is gone: store the real outcome
			}
			log.Info("a result was stored before; keeping it", "state", stored.State)
			return &stored, true
		case errors.Is(err, ports.ErrInvalidArgument), errors.Is(err, ports.ErrClosed):
			log.Error("storing the result failed", "err", err)
			return nil, false
		}
		log.Warn("storing the result failed", "err", err, "try", i+1, "of", putAttempts)
		if i < putAttempts-1 {
			sleepCtx(w.base, putRetryDelay<<i)
		}
	}
	return nil, false
}

// publish sends res's completion to replyTo, inlining small results.
// Failures are logged only: the result backend stays the source of truth.
func (w *Worker) publish(l *workerLease, log *slog.Logger, replyTo string, res *ports.Result) {
	if w.completions == nil || replyTo == "" || res == nil {
		return
	}
	switch err := w.pushCompletion(replyTo, res); {
	case err == nil:
	case errors.Is(err, ports.ErrNotFound):
		log.Debug("completion inbox is gone; the waiter reads the result backend", "reply_to", replyTo)
	default:
		log.Warn("publishing the completion failed", "reply_to", replyTo, "err", err)
	}
}

// publishProgress sends a progress notification to the task's ReplyTo.
// Failures are logged at debug level only: progress is best-effort.
func (w *Worker) publishProgress(j *workerJob, c ports.Completion) {
	if w.completions == nil || j.env.ReplyTo == "" {
		return
	}
	ctx, cancel := w.opContext()
	err := w.completions.Publish(ctx, j.env.ReplyTo, c)
	cancel()
	if err != nil {
		j.log.Debug("publishing a progress notification failed", "state", c.State, "reply_to", j.env.ReplyTo, "err", err)
	}
}

// settle stops heartbeats for l: it is about to be acked or nacked.
func (w *Worker) settle(l *workerLease) {
	w.mu.Lock()
	l.settled = true
	w.mu.Unlock()
}

// ack deletes the delivery's message.
func (w *Worker) ack(l *workerLease, log *slog.Logger) {
	w.settle(l)
	ctx, cancel := w.opContext()
	defer cancel()
	if err := w.broker.Ack(ctx, l.receipt); err != nil {
		log.Warn("ack failed; the message will be redelivered and its stored result reused", "err", err)
		return
	}
	if l.payload != "" && w.payloads != nil {
		// The message is gone: its claim-check object is no longer needed.
		dctx, dcancel := w.opContext()
		defer dcancel()
		if err := w.payloads.Delete(dctx, l.payload); err != nil {
			log.Warn("deleting the claim-check payload failed; it stays in the payload store",
				"payload_key", l.payload, "err", err)
		}
	}
}

// nack hands the delivery's message back, visible again after delay.
func (w *Worker) nack(l *workerLease, log *slog.Logger, delay time.Duration) {
	w.settle(l)
	ctx, cancel := w.opContext()
	defer cancel()
	if err := w.broker.Nack(ctx, l.receipt, delay); err != nil {
		log.Warn("nack failed; the message is redelivered when its lease ends", "err", err)
	}
}
