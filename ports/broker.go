package ports

import (
	"context"
	"time"
)

// Limits every Broker accepts. Adapters may accept more; core never asks for more.
const (
	// MaxBatch is the largest number of messages, receipts or completions in one
	// Send, Receive, Ack, Extend or Publish call (the SQS batch limit).
	MaxBatch = 10
	// MaxAttributes is the largest number of attributes on one Message. SQS allows
	// 10; adapters may reserve the remaining ones for their own bookkeeping.
	MaxAttributes = 8
	// MaxDelay is the longest per-message delay of Send (the SQS limit).
	MaxDelay = 15 * time.Minute
	// MaxLease is the longest lease of Receive, Extend and the longest Nack delay
	// (the SQS visibility-timeout limit).
	MaxLease = 12 * time.Hour
)

// Message is what a producer sends.
type Message struct {
	// ID is assigned by the producer, must be non-empty, and is the same on every
	// delivery of the message. FIFO queues deduplicate by ID (a second Send with
	// the same ID within the adapter's dedup window is accepted and dropped).
	ID string
	// Body is opaque and may hold any bytes (adapters encode it if their wire
	// format needs text). Its size limit is adapter-defined; a larger body fails
	// with ErrInvalidArgument.
	Body []byte
	// Attributes are small string metadata, at most MaxAttributes entries. Names
	// must be non-empty, at most 128 bytes of [A-Za-z0-9_.-], not starting with
	// "aws." or "amazon." (any case).
	Attributes map[string]string
	// GroupID is the FIFO message group. Ignored by standard queues. On a FIFO
	// queue an empty GroupID puts the message in a group of its own (its ID).
	GroupID string
	// Delay postpones the first delivery, 0 ≤ Delay ≤ MaxDelay. FIFO queues refuse
	// a non-zero Delay with ErrInvalidArgument.
	Delay time.Duration
}

// Receipt identifies one delivery (one lease) of a message. It is opaque; a
// message delivered again gets a new Receipt and the old one goes stale.
type Receipt string

// Delivery is a leased message.
type Delivery struct {
	Message
	// Receipt identifies this delivery's lease for Ack, Nack and Extend.
	Receipt Receipt
	// Attempt is 1 on the first delivery and grows by one on every delivery
	// (after a Nack or a lease expiry): the SQS ApproximateReceiveCount.
	// 0 means unknown: the broker could not tell (an SQS-compatible server
	// that reports no receive count). A consumer treats an unknown attempt
	// as a possible redelivery, never as a first delivery.
	Attempt int
	// SentAt is when the message was first accepted by the queue.
	SentAt time.Time
}

// Broker is an at-least-once, lease-based message queue bound to one queue.
//
// A received message is invisible to other receivers until its lease ends: it
// is then deleted by Ack, released by Nack, or it expires and is delivered
// again with Attempt+1. Standard queues give no ordering. FIFO queues deliver
// each message group in send order and hold back a group while one of its
// messages is leased.
//
// See the package doc for the rules on concurrency, blocking, retries, errors
// and Close that apply to every method.
type Broker interface {
	// Send enqueues msgs (1 ≤ len(msgs) ≤ MaxBatch) in one request where the
	// service allows. A message whose Send returned nil is durably queued. On a
	// partial failure the error is a *BatchError naming the failed indexes;
	// validation errors (ErrInvalidArgument) fail the whole call before anything
	// is sent. A missing queue fails with ErrNotFound.
	Send(ctx context.Context, msgs ...Message) error

	// Receive leases up to max messages (1 ≤ max ≤ MaxBatch) for lease
	// (0 < lease ≤ MaxLease). It returns as soon as at least one message is
	// available, or with none and a nil error after the adapter's poll bound.
	// A lease starts when the message is handed over (as SQS starts the
	// visibility timeout when it returns the message), not when the call
	// began: a caller counts it from when Receive returns, however long the
	// poll waited before.
	// Two concurrent receivers never hold a lease on the same message at once.
	// When ctx is done it returns what it has (possibly nothing) and ctx's error;
	// messages it leased but does not return are released, as far as the
	// adapter can tell: an SQS long poll cut short may still be handed a
	// message by the service, which then stays leased until its lease ends.
	// A caller that must not strand messages (a worker shutting down) lets
	// the call end instead of cancelling it, and releases what it returns.
	Receive(ctx context.Context, max int, lease time.Duration) ([]Delivery, error)

	// Ack deletes the messages whose leases the receipts hold (1 ≤ len ≤
	// MaxBatch). Weak contract, as SQS: acking a stale or already-acked receipt
	// is not an error (the message may or may not be deleted by it).
	Ack(ctx context.Context, receipts ...Receipt) error

	// Nack ends the lease early: the message becomes visible again after delay
	// (0 ≤ delay ≤ MaxLease; 0 means at once) and its next delivery has
	// Attempt+1. A stale receipt fails with ErrLeaseLost.
	Nack(ctx context.Context, r Receipt, delay time.Duration) error

	// Extend resets the lease of each receipt to end lease from now
	// (0 < lease ≤ MaxLease). A stale receipt's item fails with ErrLeaseLost
	// (inside a *BatchError when several receipts are given).
	Extend(ctx context.Context, lease time.Duration, receipts ...Receipt) error

	// Close releases the broker. Leases it handed out keep running and expire
	// normally.
	Close() error
}

// Requeuer is an optional Broker capability, discovered by type assertion
// (broker.(ports.Requeuer)): it hands a leased message back as a new
// message, so that a release that was not an execution (a message received
// but never started by a worker shutting down) does not raise the receive
// count (Delivery.Attempt) the way Nack does. The receive count stays what
// the queue's redrive policy (DLQ) counts.
type Requeuer interface {
	// Requeue puts the message of the leased delivery d back on the queue as
	// a new message — the same ID, Body and GroupID, and d's Attributes with
	// attrs merged over them (at most MaxAttributes in all) — visible after
	// d.Delay (0 ≤ d.Delay ≤ MaxDelay; 0: at once), and then deletes the
	// leased one (d.Receipt). The new message's first delivery has Attempt 1
	// and a new SentAt. The message is never lost: the copy is sent before
	// the original is deleted, so a failure or crash in between leaves both
	// (a duplicate, which at-least-once delivery allows). A delayed requeue
	// is how a worker postpones a task without counting a receive (a task
	// waiting for a pool slot, or for a due time beyond MaxDelay).
	//
	// Errors: a queue where the adapter cannot requeue (an SQS FIFO queue:
	// a copy with the same deduplication ID would be dropped, and it would
	// go to the back of its group) fails with ErrUnsupported before anything
	// is sent; the caller releases with Nack(d.Receipt, d.Delay) instead. A
	// copy the queue would refuse (attributes, size, a Delay out of range)
	// fails with
	// ErrInvalidArgument, also before anything is sent. A stale receipt
	// fails with ErrLeaseLost where the adapter can tell before sending
	// (the memory adapter can; SQS cannot, and its copy is then a
	// duplicate). ErrClosed, ErrNotFound and ErrUnavailable as for Send.
	Requeue(ctx context.Context, d Delivery, attrs map[string]string) error
}

// DeadLetterer is an optional Broker capability, discovered by type
// assertion (broker.(ports.DeadLetterer)): the dead-letter queue (DLQ)
// behind the broker's queue, where the queue's redrive policy moves a
// message that was received MaxReceives times without being deleted.
type DeadLetterer interface {
	// DeadLetters returns a Broker bound to the queue's DLQ, which the
	// caller owns and closes, with the redrive policy's MaxReceives. It
	// makes at most a couple of requests (SQS: the queue's RedrivePolicy
	// and the DLQ's URL). A queue without a redrive policy fails with
	// ErrNotFound (errors.Is), as does a redrive policy naming a DLQ that
	// does not exist; a missing queue, ErrClosed and ErrUnavailable as for
	// Receive.
	//
	// A message in the DLQ has the ID, Body, Attributes and GroupID it was
	// sent with. Its receive count (Delivery.Attempt) is the DLQ's own
	// and says nothing about the source queue: use MaxReceives.
	DeadLetters(ctx context.Context) (DeadLetterQueue, error)
}

// DeadLetterQueue is a Broker bound to a dead-letter queue, as
// DeadLetterer.DeadLetters returns it.
type DeadLetterQueue struct {
	Broker
	// Name identifies the DLQ to an operator: the memory queue's name, the
	// SQS queue's URL.
	Name string
	// MaxReceives is the redrive policy's maxReceiveCount: a message in the
	// DLQ was received this many times from the source queue.
	MaxReceives int
}
