package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// DefaultDeadLetterSweep is the default WorkerOptions.DeadLetterSweep: how
// often a worker looks into its queue's dead-letter queue for tasks that
// have no result.
const DefaultDeadLetterSweep = 5 * time.Minute

// Tuning of the dead-letter sweep.
const (
	// deadLetterLease hides the messages a sweep read from the next
	// receive of the same sweep (and of other readers) while it lasts; the
	// sweep hands them back when it ends (handBack), and a sweep cut short
	// leaves them hidden at most this long.
	deadLetterLease = time.Minute
	// maxSweepReceives bounds one sweep: at most this many Receives of up
	// to ten messages; the rest wait for the next sweep.
	maxSweepReceives = 100
	// maxSweepSeen bounds the IDs a worker remembers as swept (their
	// results are recorded, or they need none); past it the set starts
	// again, which costs one conditional Put per message on the next sweep.
	maxSweepSeen = 100_000
)

// DeadLetteredError is the start of the error of a result recorded for a
// dead-lettered task (see Worker, Dead letters).
const DeadLetteredError = "dead-lettered after"

// deadLetterLoop sweeps the dead-letter queue behind the worker's broker
// (ports.DeadLetterer) every DeadLetterSweep, starting at once, until ctx
// (Run's: sweeps stop when shutdown begins) is done. Without the
// capability, or for a queue without a redrive policy, it returns at once.
func (w *Worker) deadLetterLoop(ctx context.Context) {
	dl, ok := w.broker.(ports.DeadLetterer)
	if !ok || w.deadLetterSweep <= 0 {
		return
	}
	var (
		q    *ports.DeadLetterQueue
		seen = make(map[string]struct{})
	)
	defer func() {
		if q != nil {
			_ = q.Close()
		}
	}()
	for {
		if q == nil {
			dq, err := dl.DeadLetters(ctx)
			switch {
			case err == nil:
				q = &dq
			case errors.Is(err, ports.ErrNotFound):
				w.log.Info("the queue has no dead-letter queue (redrive policy); dead-letter sweep off", "err", err)
				return
			case ctx.Err() != nil:
				return
			default:
				w.log.Warn("opening the dead-letter queue failed; trying again at the next sweep", "err", err)
			}
		}
		if q != nil {
			w.sweepDeadLetters(ctx, *q, seen)
		}
		// The next sweep in DeadLetterSweep, less up to 10 %: workers
		// started together drift apart.
		t := time.NewTimer(w.deadLetterSweep - time.Duration(rand.Int64N(int64(w.deadLetterSweep/10)+1)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// sweepDeadLetters reads the dead-letter queue once through and records a
// failed result for every dead-lettered task that has none. It leaves the
// messages in the DLQ (for an operator to look at, redrive or purge),
// handed back when the sweep ends. seen holds the message IDs swept
// before, which need no request.
func (w *Worker) sweepDeadLetters(ctx context.Context, q ports.DeadLetterQueue, seen map[string]struct{}) {
	var receipts []ports.Receipt
	defer func() { handBack(q, receipts) }()
	for range maxSweepReceives {
		ds, err := q.Receive(ctx, ports.MaxBatch, deadLetterLease)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("reading the dead-letter queue failed; trying again at the next sweep", "dlq", q.Name, "err", err)
			}
			return
		}
		if len(ds) == 0 {
			return
		}
		for _, d := range ds {
			receipts = append(receipts, d.Receipt)
			if _, ok := seen[d.ID]; ok {
				continue
			}
			if w.deadLettered(ctx, q, d) {
				if len(seen) >= maxSweepSeen {
					clear(seen)
				}
				seen[d.ID] = struct{}{}
			}
		}
	}
}

// deadLettered records a failed result for the dead-lettered message d,
// unless its task has a result already or its result policy is none, and
// publishes its completion. It reports whether d needs no more sweeping.
func (w *Worker) deadLettered(ctx context.Context, q ports.DeadLetterQueue, d ports.Delivery) bool {
	log := w.log.With("message_id", d.ID, "dlq", q.Name)
	if d.ID == "" || len(d.ID) > MaxTaskIDLen {
		log.Warn("a message in the dead-letter queue has an ID that cannot hold a result; leaving it to the operator",
			"message_id_bytes", len(d.ID), "limit", MaxTaskIDLen)
		return true
	}
	// The body is an envelope, a claim check or foreign: read what it has
	// of the fields that matter here, leniently.
	var env struct {
		ReplyTo string `json:"reply_to"`
		Result  string `json:"result"`
	}
	_ = json.Unmarshal(d.Body, &env)
	if resultPolicyOf(env.Result) == ResultNone {
		return true
	}
	receives := "receives"
	if q.MaxReceives == 1 {
		receives = "receive"
	}
	msg := fmt.Sprintf("%s %d %s: the queue's redrive policy moved the task's message to the dead-letter queue %s "+
		"(redrive it once the cause is fixed)", DeadLetteredError, q.MaxReceives, receives, q.Name)
	if q.MaxReceives <= 0 {
		msg = fmt.Sprintf("%s an unknown number of receives: the queue's redrive policy moved the task's message to the "+
			"dead-letter queue %s (redrive it once the cause is fixed)", DeadLetteredError, q.Name)
	}
	res := ports.Result{TaskID: d.ID, State: ports.StateFailed, Error: msg, Attempts: max(q.MaxReceives, 0),
		DeadLettered: true, Worker: w.id, FinishedAt: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, w.lease)
	err := w.results.Put(ctx, res)
	cancel()
	switch {
	case errors.Is(err, ports.ErrAlreadyExists):
		return true // it has its outcome
	case errors.Is(err, ports.ErrInvalidArgument):
		log.Warn("no result can be stored for a dead-lettered task; leaving it to the operator", "err", err)
		return true
	case err != nil:
		log.Warn("recording the result of a dead-lettered task failed; trying again at the next sweep", "err", err)
		return false
	}
	w.obs.DeadLettered()
	log.Warn("task dead-lettered; recorded it as failed", "task_id", d.ID, "max_receives", q.MaxReceives)
	if w.completions != nil && env.ReplyTo != "" && len(env.ReplyTo) <= wire.MaxReplyToLen {
		if err := w.pushCompletion(env.ReplyTo, &res); err != nil && !errors.Is(err, ports.ErrNotFound) {
			log.Warn("publishing the completion of a dead-lettered task failed", "reply_to", env.ReplyTo, "err", err)
		}
	}
	return true
}

// replaceDeadLettered deletes stored, the result recorded for a
// dead-lettered task, when res is that task's real outcome (its message was
// redriven from the DLQ and ran) and the ResultBackend can delete
// (ports.ResultDeleter). It reports whether it did, so that res can be
// stored instead.
func (w *Worker) replaceDeadLettered(log *slog.Logger, stored ports.Result, res *ports.Result) bool {
	if !stored.DeadLettered || res.DeadLettered {
		return false
	}
	d, ok := w.results.(ports.ResultDeleter)
	if !ok {
		log.Warn("the task was recorded as dead-lettered and has run since (redriven), but the result backend cannot "+
			"delete results (ports.ResultDeleter); keeping the dead-lettered result", "state", res.State)
		return false
	}
	ctx, cancel := w.opContext()
	err := d.Delete(ctx, stored.TaskID)
	cancel()
	if err != nil {
		log.Warn("deleting the dead-lettered result of a redriven task failed; keeping it", "err", err)
		return false
	}
	log.Info("replacing the dead-lettered result of a redriven task with its outcome", "state", res.State)
	return true
}

// handBackDelay is how soon handBack makes messages visible again: the
// shortest lease SQS honours.
const handBackDelay = time.Second

// handBack makes the DLQ messages of receipts visible again within
// handBackDelay: one Extend per ten receipts (on SQS one
// ChangeMessageVisibilityBatch). A failure leaves them hidden until their
// lease ends.
func handBack(q ports.DeadLetterQueue, receipts []ports.Receipt) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(receipts) > 0 {
		n := min(len(receipts), ports.MaxBatch)
		_ = q.Extend(ctx, handBackDelay, receipts[:n]...)
		receipts = receipts[n:]
	}
}
