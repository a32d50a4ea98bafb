package ports

import "context"

// Completion tells a waiting client that a task finished.
type Completion struct {
	TaskID string `json:"task_id"`
	State  State  `json:"state"`
	// Result is the full result when the publisher chose to inline it (small
	// results); nil means "fetch it from the ResultBackend".
	Result *Result `json:"result,omitempty"`
}

// CompletionBus pushes completions to the inbox of the client that waits for
// them, so that waiting needs no polling of the ResultBackend. Delivery is
// best-effort and at-least-once: a completion may be duplicated, or lost when
// its inbox is gone; the ResultBackend remains the source of truth.
type CompletionBus interface {
	// Publish delivers cs (1 ≤ len ≤ MaxBatch) to the inbox at address to.
	// An address whose inbox does not exist (never opened, or closed) fails
	// with ErrNotFound.
	Publish(ctx context.Context, to string, cs ...Completion) error

	// Open creates a new inbox. Its Address is what producers put in a task's
	// reply-to field.
	Open(ctx context.Context) (Inbox, error)

	// Close releases the bus; inboxes opened from it fail with ErrClosed.
	Close() error
}

// Inbox receives the completions published to its address.
type Inbox interface {
	// Address is the inbox's address for CompletionBus.Publish.
	Address() string

	// Receive returns published completions, blocking until there is at least
	// one, or for at most the adapter's poll bound (then none and a nil error).
	// Not for concurrent use by several goroutines.
	Receive(ctx context.Context) ([]Completion, error)

	// Close deletes the inbox; later Publishes to it fail with ErrNotFound and
	// a later Receive fails with ErrClosed.
	Close() error
}
