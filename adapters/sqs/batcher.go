package sqs

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/dagq/dagq/ports"
)

const (
	// DefaultFlushWindow is how long a single-receipt Ack waits for others
	// to join its DeleteMessageBatch request.
	DefaultFlushWindow = 5 * time.Millisecond
	// maxFlushWindow bounds Options.FlushWindow.
	maxFlushWindow = time.Second
	// flushTimeout bounds one coalesced DeleteMessageBatch request, which
	// runs on no caller's context (a caller leaving must not fail the
	// others), and so also bounds Close.
	flushTimeout = 30 * time.Second
)

// deleteBatchFunc is the DeleteMessageBatch request (the SDK client's, or a
// fake in tests).
type deleteBatchFunc func(ctx context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error)

// ackBatcher coalesces concurrent single-receipt Acks into DeleteMessageBatch
// requests of up to ports.MaxBatch receipts. A batch is sent when it is full
// or window after its first receipt joined, whichever comes first; every
// caller waits for its own batch's request and gets its own entry's result.
type ackBatcher struct {
	b      *Broker // its deleteBatch and url, read at flush time
	window time.Duration

	mu      sync.Mutex
	pending *ackBatch
	closed  bool
	flushes sync.WaitGroup // requests in flight
}

type ackBatch struct {
	ctx      context.Context // the first caller's values, no cancellation
	receipts []ports.Receipt
	results  []error // valid once done is closed
	done     chan struct{}
	timer    *time.Timer
}

// ack adds r to the pending batch and waits for its result. It returns
// ErrClosed once close has begun and ctx's error if ctx ends first (the
// receipt stays in its batch and may still be deleted: the weak contract).
func (a *ackBatcher) ack(ctx context.Context, r ports.Receipt) error {
	const op = "ack"
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqs: %s: %w", op, err)
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return closedErr(op)
	}
	bt := a.pending
	if bt == nil {
		bt = &ackBatch{ctx: context.WithoutCancel(ctx), done: make(chan struct{})}
		a.pending = bt
		bt.timer = time.AfterFunc(a.window, func() { a.flushAfterWindow(bt) })
	}
	i := len(bt.receipts)
	bt.receipts = append(bt.receipts, r)
	if len(bt.receipts) == ports.MaxBatch {
		a.pending = nil
		bt.timer.Stop()
		a.flushes.Add(1)
		go func() {
			defer a.flushes.Done()
			a.flush(bt)
		}()
	}
	a.mu.Unlock()

	select {
	case <-bt.done:
		return bt.results[i]
	case <-ctx.Done():
		return fmt.Errorf("sqs: %s: %w", op, ctx.Err())
	}
}

// flushAfterWindow sends bt unless it was sent already (full, or by close).
func (a *ackBatcher) flushAfterWindow(bt *ackBatch) {
	a.mu.Lock()
	if a.pending != bt {
		a.mu.Unlock()
		return
	}
	a.pending = nil
	a.flushes.Add(1)
	a.mu.Unlock()
	defer a.flushes.Done()
	a.flush(bt)
}

// close refuses later acks, sends the pending batch and waits for every
// request in flight.
func (a *ackBatcher) close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		a.flushes.Wait()
		return
	}
	a.closed = true
	bt := a.pending
	a.pending = nil
	a.mu.Unlock()
	if bt != nil {
		bt.timer.Stop()
		a.flush(bt)
	}
	a.flushes.Wait()
}

// flush makes bt's request and publishes every entry's result.
func (a *ackBatcher) flush(bt *ackBatch) {
	defer close(bt.done)
	bt.results = make([]error, len(bt.receipts))
	ctx, cancel := context.WithTimeout(bt.ctx, flushTimeout)
	defer cancel()
	failed, err := deleteReceipts(ctx, a.b.deleteBatch, a.b.url, bt.receipts)
	if err != nil {
		for i := range bt.results {
			bt.results[i] = err
		}
		return
	}
	for i, e := range failed {
		bt.results[i] = e
	}
}

// deleteReceipts makes one DeleteMessageBatch request for receipts. It
// returns the errors of the failed entries by index, or an error failing the
// whole call. Stale receipts are not failures (the weak Ack contract).
func deleteReceipts(ctx context.Context, del deleteBatchFunc, url string, receipts []ports.Receipt) (map[int]error, error) {
	const op = "ack"
	entries := make([]types.DeleteMessageBatchRequestEntry, len(receipts))
	for i, r := range receipts {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(string(r))}
	}
	out, err := del(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: entries})
	if err != nil {
		err = wrap(op, err, true)
		if ignoredOnAck(err) {
			return nil, nil
		}
		return nil, err
	}
	failed := make(map[int]error)
	for _, f := range out.Failed {
		i, ok := entryIndex(f.Id, len(receipts))
		if !ok {
			return nil, fmt.Errorf("sqs: %s: unexpected batch entry id %q", op, deref(f.Id))
		}
		if err := entryError(op, f, true); !ignoredOnAck(err) {
			failed[i] = err
		}
	}
	return failed, nil
}
