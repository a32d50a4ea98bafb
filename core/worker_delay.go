package core

import (
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// Long delays. A broker delays one message by at most ports.MaxDelay (SQS:
// 15 minutes), and a Nack by at most ports.MaxLease (12 hours, counted on
// SQS from the receive). A task due later — a Request.Delay or NotBefore
// further ahead than the client's MaxDelay, or a retry backoff longer than
// the worker's MaxDelay — carries its due time: in the envelope's NotBefore
// (set by the client) or in the attribute wire.NotBeforeAttribute (set by
// the worker that sends a failed task on for its retry); the later of both
// counts. A worker that receives the task before it is due sends it on as a
// new message (ports.Requeuer) delayed by the rest, at most MaxDelay, and
// keeps neither the message nor a slot: the task waits in the queue, hop by
// hop, whatever happens to the workers. No hop counts an attempt.

// dueWait is the most a worker waits, holding the task's slot, for a task
// that is nearly due: broker delays are whole seconds (SQS), so a hop is
// delayed by the whole seconds left and the last fraction is waited here,
// and the task starts on time rather than up to a second late.
const dueWait = time.Second

// MaxTaskDelay is the furthest ahead a task may be due: the longest
// Request.Delay, the furthest Request.NotBefore from its submission and
// the largest RetryPolicy.MaxBackoff (365 days). It catches a delay given in
// the wrong unit; the broker's own limit (ports.MaxDelay) does not bound it.
const MaxTaskDelay = wire.MaxTaskDelay

// dueTime returns when the task of env, delivered as d, is due: the later
// of the envelope's NotBefore and d's wire.NotBeforeAttribute (an invalid
// attribute is logged and ignored); zero when neither is set.
func dueTime(env *wire.Envelope, d *ports.Delivery, log *slog.Logger) time.Time {
	due := env.NotBefore
	if v, ok := d.Attributes[wire.NotBeforeAttribute]; ok {
		t, err := wire.ParseNotBefore(v)
		if err != nil {
			log.Warn("ignoring an invalid due-time attribute", "err", err)
		} else if t.After(due) {
			due = t
		}
	}
	return due
}

// keepsOrig reports whether a job under policy p must keep its delivery
// after its handler starts: a retry backoff may be longer than one broker
// delay, and the task is then sent on as a new message (retryAfter).
func (w *Worker) keepsOrig(p RetryPolicy) bool {
	limit := p.MaxBackoff
	if limit == 0 {
		limit = ports.MaxLease
	}
	return p.MaxAttempts > 1 && limit > w.maxDelay
}

// hopDelay is the delay of the next message of a task due in remaining:
// its whole seconds, at most the worker's MaxDelay.
func (w *Worker) hopDelay(remaining time.Duration) time.Duration {
	return min(w.maxDelay, max(remaining.Truncate(time.Second), 0))
}

// sendOnEarly hands back at once, before they wait for a run slot or for
// the batches received before theirs, the tasks of jobs that are not due
// for more than dueWait (and not cancelled: a cancellation is recorded as
// usual), and returns the others.
func (w *Worker) sendOnEarly(jobs []*workerJob) []*workerJob {
	rest := jobs[:0]
	for _, j := range jobs {
		if j.due.IsZero() || j.cctx.Err() != nil || time.Until(j.due) <= dueWait {
			rest = append(rest, j)
			continue
		}
		w.spawn(func() {
			defer w.forget(j.l)
			defer j.stop()
			info := j.taskInfo()
			w.obs.TaskReceived(info)
			w.sendOn(j)
			w.obs.TaskFinished(info, j.result)
		})
	}
	return rest
}

// untilDue is the due-time check right before a task starts (runJob):
// a task due within dueWait is waited for here, and one due later (its
// checks took long) is sent on. It reports whether the task must not start
// now. A cancellation, a lost lease or shutdown ends the wait; the checks
// that follow find them.
func (w *Worker) untilDue(j *workerJob) bool {
	if j.due.IsZero() {
		return false
	}
	wait := time.Until(j.due)
	switch {
	case wait <= 0:
		return false
	case wait > dueWait:
		w.sendOn(j)
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-j.cctx.Done():
	}
	return false
}

// sendOn hands a task that is not due back to the queue as a new message,
// delayed by the rest of its wait (at most MaxDelay), without counting an
// attempt (postpone), and records the outcome OutcomeDelayed.
func (w *Worker) sendOn(j *workerJob) {
	d, ok := w.takeUnstarted(j)
	if !ok {
		return
	}
	w.settle(j.l)
	delay := w.hopDelay(time.Until(j.due))
	j.log.Debug("task not due yet; sending it on", "due", j.due, "delay", delay)
	w.postpone(d, delay, nil, j.log)
	j.result.Outcome = OutcomeDelayed
}

// retryAfter hands a failed attempt's message back for the next attempt,
// due after backoff. A backoff within MaxDelay is a Nack (the next
// delivery's receive count is the next attempt). A longer one sends the
// task on as a new message (ports.Requeuer) delayed by at most MaxDelay,
// carrying its due time (wire.NotBeforeAttribute) and the attempts made so
// far, this one included (wire.PriorAttemptsAttribute): its body, and so
// its signature or claim check, is unchanged. Where the broker cannot (a
// FIFO queue, no ports.Requeuer) or the requeue fails, it is a Nack of at
// most ports.MaxLease, as for any retry.
func (w *Worker) retryAfter(j *workerJob, log *slog.Logger, backoff time.Duration) {
	r, ok := w.broker.(ports.Requeuer)
	if !ok || backoff <= w.maxDelay || j.orig.Receipt == "" {
		w.nack(j.l, log, min(backoff, ports.MaxLease))
		return
	}
	w.settle(j.l)
	d := j.orig
	prior, _, perr := priorAttempts(d)
	if perr != nil {
		warnPrior(log, perr)
	}
	prior += max(d.Attempt, 1) // this delivery was an attempt
	due := time.Now().Add(backoff)
	d.Delay = w.hopDelay(backoff)
	ctx, cancel := w.opContext()
	defer cancel()
	err := r.Requeue(ctx, d, map[string]string{
		wire.PriorAttemptsAttribute: strconv.Itoa(prior),
		wire.NotBeforeAttribute:     wire.FormatNotBefore(due),
	})
	switch {
	case err == nil:
		return
	case errors.Is(err, ports.ErrLeaseLost):
		log.Info("sending a failed task on for its retry: its lease is gone; another delivery owns it", "err", err)
		return
	case errors.Is(err, ports.ErrUnsupported):
		log.Debug("the broker cannot requeue here; retrying with Nack", "err", err)
	default:
		log.Warn("sending a failed task on for its retry failed; retrying with Nack", "err", err)
	}
	w.nack(j.l, log, min(backoff, ports.MaxLease))
}
