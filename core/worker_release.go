package core

import (
	"errors"
	"log/slog"
	"maps"
	"strconv"
	"time"

	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// Releases that are not attempts. A message the worker hands back without
// having run its handler (shutdown began before it started) must not cost
// its task an attempt. Nack would: the next delivery's receive count, which
// is the attempt number, grows by one. So where the broker can
// (ports.Requeuer), the worker requeues it instead: a new message whose
// receive count starts again at 1, carrying in wire.PriorAttemptsAttribute
// the attempts its earlier deliveries counted.

// priorAttempts returns the attempts d's earlier messages used
// (wire.PriorAttemptsAttribute) and whether d carries the attribute. A
// value that is not valid counts as none; err says why.
func priorAttempts(d ports.Delivery) (n int, present bool, err error) {
	v, ok := d.Attributes[wire.PriorAttemptsAttribute]
	if !ok {
		return 0, false, nil
	}
	n, err = wire.ParsePriorAttempts(v)
	return n, true, err
}

// warnPrior logs an invalid prior-attempts attribute.
func warnPrior(log *slog.Logger, err error) {
	log.Warn("ignoring an invalid prior-attempts attribute; counting the broker's receives only", "err", err)
}

// handBack hands d, whose handler never ran, back to the queue at once
// without counting an attempt (postpone with no delay), and reports it
// (WorkerObserver.MessageHandedBack).
func (w *Worker) handBack(d ports.Delivery, log *slog.Logger) {
	switch w.postpone(d, 0, nil, log) {
	case handedRequeued:
		w.obs.MessageHandedBack(true)
	case handedNacked:
		w.obs.MessageHandedBack(false)
	}
}

// takeUnstarted takes the delivery of j, whose handler has not started,
// out of its lease to hand it back itself: the lease is finishing from then
// on, so shutdown no longer hands it back. When shutdown released it first,
// or its lease is lost, it records that outcome and reports false.
func (w *Worker) takeUnstarted(j *workerJob) (ports.Delivery, bool) {
	w.mu.Lock()
	l := j.l
	ok := !l.released && !l.lost && l.state == leasePending
	d := l.orig
	if ok {
		l.state = leaseFinishing
		l.orig = ports.Delivery{}
	}
	lost := l.lost
	w.mu.Unlock()
	if !ok {
		j.result.Outcome = OutcomeReleased
		if lost {
			j.result.Outcome = OutcomeLeaseLost
		}
	}
	return d, ok
}

// How postpone handed a message back.
type handed int

const (
	handedNot      handed = iota // its lease was gone, or the Nack failed
	handedRequeued               // as a new message: no receive counted
	handedNacked                 // with Nack: its next delivery counts a receive
)

// postpone hands d, whose handler did not run on this delivery, back to the
// queue, visible again after delay (0 ≤ delay ≤ ports.MaxDelay), without
// counting an attempt: Requeue with the attempts d counted so far and
// attrs, or, when the broker cannot (no ports.Requeuer, or ErrUnsupported,
// as on a FIFO queue) or the requeue fails, Nack with delay, whose next
// delivery counts one more receive. It tells how the message was handed
// back.
func (w *Worker) postpone(d ports.Delivery, delay time.Duration, attrs map[string]string, log *slog.Logger) handed {
	ctx, cancel := w.opContext()
	defer cancel()
	if r, ok := w.broker.(ports.Requeuer); ok {
		prior, _, perr := priorAttempts(d)
		if perr != nil {
			warnPrior(log, perr)
		}
		prior += max(d.Attempt, 1) - 1 // this delivery was no attempt
		merged := make(map[string]string, len(attrs)+1)
		maps.Copy(merged, attrs)
		merged[wire.PriorAttemptsAttribute] = strconv.Itoa(prior)
		copyOf := d
		copyOf.Delay = delay
		err := r.Requeue(ctx, copyOf, merged)
		switch {
		case err == nil:
			return handedRequeued
		case errors.Is(err, ports.ErrLeaseLost):
			log.Info("handing back an unstarted message: its lease is gone; another delivery owns it", "err", err)
			return handedNot
		case errors.Is(err, ports.ErrUnsupported):
			log.Debug("the broker cannot requeue here; releasing with Nack, which counts a receive", "err", err)
		default:
			log.Warn("requeueing an unstarted message failed; releasing it with Nack, which counts a receive", "err", err)
		}
	}
	if err := w.broker.Nack(ctx, d.Receipt, delay); err != nil {
		log.Warn("releasing an unstarted message failed; it is redelivered when its lease ends", "err", err)
		return handedNot
	}
	return handedNacked
}
