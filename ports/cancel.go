package ports

import "context"

// CancelChannel carries durable, idempotent cancellation requests that every
// worker can see.
//
// A request is both recorded (so Canceled answers for it, e.g. before a queued
// task starts) and broadcast to every open subscription (so a running task is
// interrupted quickly wherever it runs). Unlike a point-to-point queue, no
// subscriber can consume a request away from another.
type CancelChannel interface {
	// Cancel records a cancellation request for each task ID (1 ≤ len ≤
	// MaxBatch, IDs non-empty) and broadcasts it. Requesting an already
	// requested ID is not an error. Once Cancel returns nil the request is
	// durable: Canceled reports it for at least the adapter's documented
	// retention.
	Cancel(ctx context.Context, taskIDs ...string) error

	// Canceled returns the subset of ids that have a cancellation request, in
	// the order given. It is the durable check core runs before starting a task.
	Canceled(ctx context.Context, ids ...string) ([]string, error)

	// Subscribe opens a listener that receives every request made after
	// Subscribe returned (and possibly some made shortly before). Every open
	// subscription receives every request: the channel broadcasts.
	Subscribe(ctx context.Context) (CancelSubscription, error)

	// Close releases the channel; its open subscriptions fail with ErrClosed.
	Close() error
}

// CancelSubscription is one listener of a CancelChannel.
type CancelSubscription interface {
	// Receive returns requested task IDs, blocking until there is at least one,
	// or for at most the adapter's poll bound (then it returns none and a nil
	// error). An ID may be delivered more than once. Not for concurrent use by
	// several goroutines.
	Receive(ctx context.Context) ([]string, error)

	// Close stops the subscription; a later Receive fails with ErrClosed.
	Close() error
}
