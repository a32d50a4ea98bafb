package memory

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dagq/dagq/ports"
)

// broker is one handle on a named queue.
type broker struct {
	tr     *Transport
	name   string
	closed atomic.Bool
	// last is the queue the last lookup found: used until it is deleted,
	// so that most calls need not lock the Transport.
	last atomic.Pointer[queue]
}

var (
	_ ports.Broker       = (*broker)(nil)
	_ ports.Requeuer     = (*broker)(nil)
	_ ports.DeadLetterer = (*broker)(nil)
)

// queue returns the broker's queue, failing when the broker is closed, ctx
// is done or the queue is missing.
func (b *broker) queue(ctx context.Context, op string) (q, dlq *queue, err error) {
	if b.closed.Load() {
		return nil, nil, errClosed(op)
	}
	if err := checkCtx(ctx, op); err != nil {
		return nil, nil, err
	}
	if q = b.last.Load(); q != nil && !q.deleted.Load() {
		if q.opts.DeadLetterQueue != "" {
			dlq = b.tr.deadLetterQueue(q)
		}
		return q, dlq, nil
	}
	q, dlq, err = b.tr.lookup(b.name)
	if err != nil {
		return nil, nil, fmt.Errorf("memory: %s: %w", op, err)
	}
	b.last.Store(q)
	return q, dlq, nil
}

func (b *broker) Send(ctx context.Context, msgs ...ports.Message) error {
	q, _, err := b.queue(ctx, "send")
	if err != nil {
		return err
	}
	if err := validateSend(q.opts, msgs); err != nil {
		return fmt.Errorf("memory: send to %q: %w", b.name, err)
	}
	q.send(time.Now(), msgs)
	return nil
}

func validateSend(opts QueueOptions, msgs []ports.Message) error {
	if len(msgs) < 1 || len(msgs) > ports.MaxBatch {
		return fmt.Errorf("%w: %d messages, want 1 to %d", ports.ErrInvalidArgument, len(msgs), ports.MaxBatch)
	}
	for i, m := range msgs {
		if err := validateMessage(opts, m); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	return nil
}

func validateMessage(opts QueueOptions, m ports.Message) error {
	if m.ID == "" {
		return fmt.Errorf("%w: empty message ID", ports.ErrInvalidArgument)
	}
	if m.Delay < 0 || m.Delay > ports.MaxDelay {
		return fmt.Errorf("%w: message %q: delay %v, want 0 to %v", ports.ErrInvalidArgument, m.ID, m.Delay, ports.MaxDelay)
	}
	if opts.FIFO && m.Delay != 0 {
		return fmt.Errorf("%w: message %q: FIFO queues refuse a per-message delay", ports.ErrInvalidArgument, m.ID)
	}
	if len(m.Attributes) > ports.MaxAttributes {
		return fmt.Errorf("%w: message %q: %d attributes, want at most %d",
			ports.ErrInvalidArgument, m.ID, len(m.Attributes), ports.MaxAttributes)
	}
	size := len(m.Body)
	for k, v := range m.Attributes {
		if err := validAttributeName(k); err != nil {
			return fmt.Errorf("%w: message %q: %w", ports.ErrInvalidArgument, m.ID, err)
		}
		size += len(k) + len(v)
	}
	if size > opts.MaxBodyBytes {
		return fmt.Errorf("%w: message %q: body and attributes hold %d bytes, the queue's limit is %d",
			ports.ErrInvalidArgument, m.ID, size, opts.MaxBodyBytes)
	}
	return nil
}

func validAttributeName(k string) error {
	if k == "" || len(k) > 128 {
		return fmt.Errorf("attribute name %q must have 1 to 128 bytes", k)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("attribute name %q may only hold [A-Za-z0-9_.-]", k)
		}
	}
	if l := strings.ToLower(k); strings.HasPrefix(l, "aws.") || strings.HasPrefix(l, "amazon.") {
		return fmt.Errorf(`attribute name %q starts with a reserved prefix ("aws." or "amazon.")`, k)
	}
	return nil
}

func validLease(what string, d time.Duration, allowZero bool) error {
	if d < 0 || d == 0 && !allowZero || d > ports.MaxLease {
		lo := "more than 0"
		if allowZero {
			lo = "0"
		}
		return fmt.Errorf("%w: %s %v, want %s to %v", ports.ErrInvalidArgument, what, d, lo, ports.MaxLease)
	}
	return nil
}

func validReceipts(rs []ports.Receipt) error {
	if len(rs) < 1 || len(rs) > ports.MaxBatch {
		return fmt.Errorf("%w: %d receipts, want 1 to %d", ports.ErrInvalidArgument, len(rs), ports.MaxBatch)
	}
	for i, r := range rs {
		if r == "" {
			return fmt.Errorf("%w: receipt %d is empty", ports.ErrInvalidArgument, i)
		}
	}
	return nil
}

// Receive leases up to max messages; see ports.Broker. It blocks for at most
// the queue's PollWait, waking when a message is sent or released, a lease or
// delay ends, ctx is done, the broker is closed or the queue is deleted.
func (b *broker) Receive(ctx context.Context, max int, lease time.Duration) ([]ports.Delivery, error) {
	q, _, err := b.queue(ctx, "receive")
	if err != nil {
		return nil, err
	}
	if max < 1 || max > ports.MaxBatch {
		return nil, fmt.Errorf("memory: receive: %w: max %d, want 1 to %d", ports.ErrInvalidArgument, max, ports.MaxBatch)
	}
	if err := validLease("lease", lease, false); err != nil {
		return nil, fmt.Errorf("memory: receive: %w", err)
	}
	deadline := time.Now().Add(q.opts.PollWait)
	for {
		q, dlq, err := b.queue(ctx, "receive")
		if err != nil {
			return nil, err
		}
		now := time.Now()
		ds, moved, next, wake := q.take(now, max, lease, dlq != nil)
		if len(moved) > 0 {
			dlq.redrive(now, moved)
		}
		if len(ds) > 0 {
			return ds, nil
		}
		if !now.Before(deadline) {
			return nil, nil
		}
		until := deadline
		if !next.IsZero() && next.Before(until) {
			until = next
		}
		if err := sleep(ctx, wake, until.Sub(now)); err != nil {
			return nil, fmt.Errorf("memory: receive: %w", err)
		}
	}
}

func (b *broker) Ack(ctx context.Context, receipts ...ports.Receipt) error {
	q, _, err := b.queue(ctx, "ack")
	if err != nil {
		return err
	}
	if err := validReceipts(receipts); err != nil {
		return fmt.Errorf("memory: ack: %w", err)
	}
	q.ack(receipts)
	return nil
}

func (b *broker) Nack(ctx context.Context, r ports.Receipt, delay time.Duration) error {
	q, _, err := b.queue(ctx, "nack")
	if err != nil {
		return err
	}
	if err := validReceipts([]ports.Receipt{r}); err != nil {
		return fmt.Errorf("memory: nack: %w", err)
	}
	if err := validLease("nack delay", delay, true); err != nil {
		return fmt.Errorf("memory: nack: %w", err)
	}
	if err := q.nack(time.Now(), r, delay); err != nil {
		return fmt.Errorf("memory: nack: %w", err)
	}
	return nil
}

// Requeue implements ports.Requeuer: on a standard queue it replaces the
// leased message, atomically, by a copy built from d (its ID, Body and
// GroupID; its Attributes with attrs merged over them) at the back of the
// queue, visible after d.Delay (at once when 0), never received (its first delivery has Attempt 1)
// and sent now. A stale receipt fails with ports.ErrLeaseLost and changes
// nothing. FIFO queues fail with ports.ErrUnsupported, as on SQS (a copy
// would be deduplicated away and lose its place in its group).
func (b *broker) Requeue(ctx context.Context, d ports.Delivery, attrs map[string]string) error {
	q, _, err := b.queue(ctx, "requeue")
	if err != nil {
		return err
	}
	if q.opts.FIFO {
		return fmt.Errorf("memory: requeue on FIFO queue %q: %w: a copy would be dropped as a duplicate of its ID and go to the back of its group; release with Nack",
			b.name, ports.ErrUnsupported)
	}
	if err := validReceipts([]ports.Receipt{d.Receipt}); err != nil {
		return fmt.Errorf("memory: requeue: %w", err)
	}
	m := ports.Message{ID: d.ID, Body: d.Body, GroupID: d.GroupID, Attributes: mergeAttrs(d.Attributes, attrs), Delay: d.Delay}
	if err := validateMessage(q.opts, m); err != nil {
		return fmt.Errorf("memory: requeue to %q: %w", b.name, err)
	}
	if err := q.requeue(time.Now(), d.Receipt, m); err != nil {
		return fmt.Errorf("memory: requeue: %w", err)
	}
	return nil
}

// mergeAttrs returns a new map of base with over merged over it (nil when
// both are empty).
func mergeAttrs(base, over map[string]string) map[string]string {
	if len(base)+len(over) == 0 {
		return nil
	}
	out := make(map[string]string, len(base)+len(over))
	maps.Copy(out, base)
	maps.Copy(out, over)
	return out
}

func (b *broker) Extend(ctx context.Context, lease time.Duration, receipts ...ports.Receipt) error {
	q, _, err := b.queue(ctx, "extend")
	if err != nil {
		return err
	}
	if err := validReceipts(receipts); err != nil {
		return fmt.Errorf("memory: extend: %w", err)
	}
	if err := validLease("lease", lease, false); err != nil {
		return fmt.Errorf("memory: extend: %w", err)
	}
	errs := q.extend(time.Now(), lease, receipts)
	if len(errs) == 1 {
		if errs[0] != nil {
			return fmt.Errorf("memory: extend: %w", errs[0])
		}
		return nil
	}
	failed := make(map[int]error)
	for i, err := range errs {
		if err != nil {
			failed[i] = fmt.Errorf("memory: extend: %w", err)
		}
	}
	if len(failed) > 0 {
		return &ports.BatchError{Failed: failed}
	}
	return nil
}

// DeadLetters implements ports.DeadLetterer: a new Broker handle on the
// queue's DeadLetterQueue, with its MaxReceives.
func (b *broker) DeadLetters(ctx context.Context) (ports.DeadLetterQueue, error) {
	q, dlq, err := b.queue(ctx, "dead letters")
	if err != nil {
		return ports.DeadLetterQueue{}, err
	}
	switch {
	case q.opts.DeadLetterQueue == "":
		return ports.DeadLetterQueue{}, fmt.Errorf("memory: dead letters of %q: %w: the queue has no redrive policy (QueueOptions.DeadLetterQueue)",
			b.name, ports.ErrNotFound)
	case dlq == nil:
		return ports.DeadLetterQueue{}, fmt.Errorf("memory: dead letters of %q: dead-letter queue %q: %w",
			b.name, q.opts.DeadLetterQueue, ports.ErrNotFound)
	}
	return ports.DeadLetterQueue{Broker: b.tr.Broker(q.opts.DeadLetterQueue), Name: q.opts.DeadLetterQueue,
		MaxReceives: q.opts.MaxReceives}, nil
}

// Close closes this handle only; leases it handed out run on. A Receive
// blocked on this handle returns ErrClosed.
func (b *broker) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	if q, _, err := b.tr.lookup(b.name); err == nil {
		q.wake()
	}
	return nil
}
