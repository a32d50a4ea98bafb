package ports

import "context"

// Completion tells a waiting client that a task finished or, with a progress
// state (State.Progress), how it is getting on.
type Completion struct {
	TaskID string `json:"task_id"`
	// State is the task's final state (State.Final) when it finished, or a
	// progress state (StateRunning, StateRetrying) for a progress
	// notification.
	State State `json:"state"`
	// Result is, for a final state, the full result when the publisher chose
	// to inline it (small results); nil means "fetch it from the
	// ResultBackend". Always nil in a progress notification.
	Result *Result `json:"result,omitempty"`
	// Attempt is, in a progress notification, the attempt that started
	// (StateRunning) or the attempt that comes next (StateRetrying).
	Attempt int `json:"attempt,omitempty"`
	// Error is, in a StateRetrying notification, why the last attempt failed.
	Error string `json:"error,omitempty"`
	// Worker is, in a progress notification, the ID of the worker that
	// publishes it (the one running the attempt, or that will hand it back).
	Worker string `json:"worker,omitempty"`
}

// CompletionBus pushes completions to the inbox of the client that waits for
// them, so that waiting needs no polling of the ResultBackend. Delivery is
// best-effort and at-least-once: a completion may be duplicated, or lost when
// its inbox is gone; the ResultBackend remains the source of truth. Progress
// notifications (non-final states) travel the same way and are just as
// best-effort: they may be lost, duplicated, or arrive after the task's final
// completion when several publishers are involved, so receivers treat them
// as hints and never as outcomes. Adapters carry every field of a Completion
// as given, whatever its State.
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
