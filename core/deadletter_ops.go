package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dagq/dagq/ports"
)

// Operator functions on a dead-letter queue (ports.DeadLetterer): list,
// redrive and purge, on any transport. Each reads the DLQ through with
// Receive; see each function for what it costs.

// DeadLetter is one message of a dead-letter queue, as ListDeadLetters
// reports it.
type DeadLetter struct {
	// ID is the message ID: the task ID for everything dagq sends.
	ID string `json:"id"`
	// Task, RunID and StepID come from the envelope; empty when the body is
	// not one (a foreign or undecodable message) or is a claim check (Task
	// only).
	Task   string `json:"task,omitempty"`
	RunID  string `json:"run_id,omitempty"`
	StepID string `json:"step_id,omitempty"`
	// Receives is how often the source queue delivered it before its
	// redrive policy moved it: the policy's maxReceiveCount.
	Receives int `json:"receives"`
	// SentAt is when the message was sent, as the DLQ reports it.
	SentAt time.Time `json:"sent_at,omitzero"`
	// Bytes is the size of the body.
	Bytes int `json:"bytes"`
	// State and Reason are the task's stored result's state and error,
	// when it has one (a result marked dead-lettered by a worker's sweep,
	// or the worker's own failure); empty otherwise.
	State  ports.State `json:"state,omitempty"`
	Reason string      `json:"reason,omitempty"`
}

// peekLease hides the messages ListDeadLetters and RedriveDeadLetters have
// read from their own next Receive; they are handed back at once at the
// end.
const peekLease = time.Minute

// ListDeadLetters returns up to limit messages of the dead-letter queue q
// (limit ≤ 0: all), oldest receive first as the queue hands them out, with
// the stored result of each task when results is not nil. It leaves the
// messages in the DLQ.
//
// Cost: one Receive and one Extend per ten messages (they are hidden
// while they are read, then handed back, visible again within a second),
// plus one result Get per message with results. Each read raises the
// message's receive count in the DLQ. A message a worker's dead-letter
// sweep or another reader holds at that moment (for the seconds a sweep
// takes) is not listed.
func ListDeadLetters(ctx context.Context, q ports.DeadLetterQueue, results ports.ResultBackend, limit int) ([]DeadLetter, error) {
	var (
		out      []DeadLetter
		receipts []ports.Receipt
	)
	defer func() { handBack(q, receipts) }()
	for limit <= 0 || len(out) < limit {
		want := ports.MaxBatch
		if limit > 0 {
			want = min(want, limit-len(out))
		}
		ds, err := q.Receive(ctx, want, peekLease)
		if err != nil {
			return out, fmt.Errorf("dagq: list dead letters of %s: %w", q.Name, err)
		}
		if len(ds) == 0 {
			break
		}
		for _, d := range ds {
			receipts = append(receipts, d.Receipt)
			out = append(out, deadLetterOf(ctx, q, results, d))
		}
	}
	return out, nil
}

// deadLetterOf describes d.
func deadLetterOf(ctx context.Context, q ports.DeadLetterQueue, results ports.ResultBackend, d ports.Delivery) DeadLetter {
	var env struct {
		Task   string `json:"task"`
		RunID  string `json:"run"`
		StepID string `json:"step"`
	}
	_ = json.Unmarshal(d.Body, &env)
	dl := DeadLetter{ID: d.ID, Task: env.Task, RunID: env.RunID, StepID: env.StepID, Receives: q.MaxReceives,
		SentAt: d.SentAt, Bytes: len(d.Body)}
	if results != nil && d.ID != "" && len(d.ID) <= MaxTaskIDLen {
		if res, err := results.Get(ctx, d.ID); err == nil {
			dl.State, dl.Reason = res.State, res.Error
		}
	}
	return dl
}

// RedriveReport is what RedriveDeadLetters did.
type RedriveReport struct {
	// Moved lists the IDs of the messages sent back to the source queue
	// and deleted from the DLQ.
	Moved []string
	// Kept counts the messages read and left in the DLQ (not selected).
	Kept int
}

// RedriveDeadLetters moves the messages of the dead-letter queue q that
// match (all when match is nil) back to their source queue src, to run
// again: for each, it deletes the task's stored result when that result
// was recorded for the dead letter (ports.Result.DeadLettered; where
// results can delete, ports.ResultDeleter), so that waiters wait for the
// new outcome, sends a copy to src (same ID, body, attributes and group;
// its receive count starts again at 1), and then deletes it from the DLQ.
// The copy is sent before the delete, so a failure in between leaves a
// duplicate, never a loss. With one, it stops after the first match.
//
// Cost per message moved: one Send and one Ack (plus a result Get, and a
// Delete for a dead-lettered result); one Receive per ten messages read;
// one Extend per ten messages read and kept. On a FIFO source queue, a message
// moved back within five minutes of its original send is dropped by
// SQS's deduplication (same message ID).
func RedriveDeadLetters(ctx context.Context, src ports.Broker, q ports.DeadLetterQueue, results ports.ResultBackend,
	match func(DeadLetter) bool, one bool) (RedriveReport, error) {
	var (
		rep  RedriveReport
		kept []ports.Receipt
	)
	defer func() { handBack(q, kept) }()
	for {
		ds, err := q.Receive(ctx, ports.MaxBatch, peekLease)
		if err != nil {
			return rep, fmt.Errorf("dagq: redrive dead letters of %s: %w", q.Name, err)
		}
		if len(ds) == 0 {
			return rep, nil
		}
		for i, d := range ds {
			if (one && len(rep.Moved) > 0) || (match != nil && !match(deadLetterOf(ctx, q, nil, d))) {
				kept = append(kept, d.Receipt)
				rep.Kept++
				continue
			}
			if err := redriveOne(ctx, src, q, results, d); err != nil {
				for _, rest := range ds[i:] {
					kept = append(kept, rest.Receipt)
				}
				return rep, err
			}
			rep.Moved = append(rep.Moved, d.ID)
		}
		if one && len(rep.Moved) > 0 {
			return rep, nil
		}
	}
}

// redriveOne moves d from q back to src.
func redriveOne(ctx context.Context, src ports.Broker, q ports.DeadLetterQueue, results ports.ResultBackend, d ports.Delivery) error {
	if del, ok := results.(ports.ResultDeleter); ok && d.ID != "" && len(d.ID) <= MaxTaskIDLen {
		res, err := results.Get(ctx, d.ID)
		switch {
		case err == nil && res.DeadLettered:
			if err := del.Delete(ctx, d.ID); err != nil {
				return fmt.Errorf("dagq: redrive %s: delete its dead-lettered result: %w", d.ID, err)
			}
		case err != nil && !errors.Is(err, ports.ErrNotFound):
			return fmt.Errorf("dagq: redrive %s: read its result: %w", d.ID, err)
		}
	}
	if err := src.Send(ctx, ports.Message{ID: d.ID, Body: d.Body, Attributes: d.Attributes, GroupID: d.GroupID}); err != nil {
		return fmt.Errorf("dagq: redrive %s: send it back to its queue: %w", d.ID, err)
	}
	if err := q.Ack(ctx, d.Receipt); err != nil {
		return fmt.Errorf("dagq: redrive %s: sent back, but deleting it from %s failed (it stays there too): %w", d.ID, q.Name, err)
	}
	return nil
}

// PurgeDeadLetters deletes every message of the dead-letter queue q that
// a Receive hands out, and returns how many. Cost: one Receive and one Ack
// per ten messages. Messages a worker's sweep or another reader holds at
// that moment (for the seconds a sweep takes) stay.
func PurgeDeadLetters(ctx context.Context, q ports.DeadLetterQueue) (int, error) {
	n := 0
	for {
		ds, err := q.Receive(ctx, ports.MaxBatch, peekLease)
		if err != nil {
			return n, fmt.Errorf("dagq: purge dead letters of %s: %w", q.Name, err)
		}
		if len(ds) == 0 {
			return n, nil
		}
		rs := make([]ports.Receipt, len(ds))
		for i, d := range ds {
			rs[i] = d.Receipt
		}
		if err := q.Ack(ctx, rs...); err != nil {
			return n, fmt.Errorf("dagq: purge dead letters of %s: %w", q.Name, err)
		}
		n += len(ds)
	}
}
