package ports

import (
	"context"
	"fmt"
	"time"
)

// State is the state of a task. A Result always has a final state; a
// Completion has a final state or, for a progress notification, a progress
// state.
type State string

// Final task states: the states of a Result.
const (
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
)

// Progress states: only in progress notifications (Completion), never in a
// Result.
const (
	// StateRunning: an attempt's handler started (Completion.Attempt is that
	// attempt).
	StateRunning State = "running"
	// StateRetrying: an attempt failed and the task will run again after a
	// backoff (Completion.Attempt is the next attempt, Completion.Error why
	// the last one failed).
	StateRetrying State = "retrying"
)

// Final reports whether s is one of the final states.
func (s State) Final() bool {
	switch s {
	case StateSucceeded, StateFailed, StateCancelled:
		return true
	}
	return false
}

// Progress reports whether s is one of the progress states.
func (s State) Progress() bool { return s == StateRunning || s == StateRetrying }

// Valid reports whether s is a valid Result state, that is a final state.
func (s State) Valid() bool { return s.Final() }

// Result is the final, write-once outcome of one task.
type Result struct {
	TaskID string `json:"task_id"`
	State  State  `json:"state"`
	// Output is the handler's encoded return value (JSON from core); empty
	// unless State is StateSucceeded.
	Output []byte `json:"output,omitempty"`
	// Error describes why the task failed or was cancelled.
	Error string `json:"error,omitempty"`
	// Attempts is how many times the handler ran (0 if it never started).
	Attempts int `json:"attempts"`
	// Worker identifies the worker that recorded the result.
	Worker string `json:"worker,omitempty"`
	// DeadLettered marks a failed result recorded for a task whose message
	// the queue's redrive policy moved to its dead-letter queue, by a worker
	// sweeping that queue: the handler's own outcome is unknown. Redriving
	// the message replaces such a result (see ResultDeleter).
	DeadLettered bool      `json:"dead_lettered,omitempty"`
	StartedAt    time.Time `json:"started_at,omitzero"`
	FinishedAt   time.Time `json:"finished_at,omitzero"`
}

// Validate reports ErrInvalidArgument when r cannot be stored.
func (r Result) Validate() error {
	if r.TaskID == "" {
		return fmt.Errorf("%w: result has an empty task ID", ErrInvalidArgument)
	}
	if !r.State.Valid() {
		return fmt.Errorf("%w: result %q has state %q; valid states are %q, %q, %q",
			ErrInvalidArgument, r.TaskID, r.State, StateSucceeded, StateFailed, StateCancelled)
	}
	return nil
}

// ResultBackend stores write-once results keyed by task ID. It is the source
// of truth for a task's outcome; completions pushed over a CompletionBus are a
// latency optimisation on top of it.
type ResultBackend interface {
	// Put stores r under r.TaskID. The first Put of a task ID wins; a later Put
	// of the same ID fails with ErrAlreadyExists and leaves the stored result
	// unchanged, even when two Puts race. An invalid r fails with
	// ErrInvalidArgument (see Result.Validate).
	Put(ctx context.Context, r Result) error

	// Get returns the result of taskID, or ErrNotFound when none was stored.
	Get(ctx context.Context, taskID string) (Result, error)

	// Close releases the backend.
	Close() error
}

// ResultDeleter is an optional ResultBackend capability, discovered by type
// assertion (results.(ports.ResultDeleter)): it removes a stored result, so
// that a task whose recorded outcome was not its handler's — a result
// marked DeadLettered, replaced when the message is redriven and runs —
// can get its real one. Results stay write-once for every other purpose:
// core deletes only DeadLettered results.
type ResultDeleter interface {
	// Delete removes the result of taskID. A task without a result is not
	// an error. A later Put of taskID then succeeds (the first Put after the
	// Delete wins, as for a new task). ErrClosed, ErrUnavailable and
	// ErrInvalidArgument (a key the store cannot hold) as for Get.
	Delete(ctx context.Context, taskID string) error
}

// KeyLimiter is an optional capability of a ResultBackend or PayloadStore,
// discovered by type assertion (results.(ports.KeyLimiter)): the longest
// key it can store, in bytes, where the adapter has a limit of its own
// (the S3 adapter: 1,024 bytes minus its key prefix and key space, e.g.
// "dagq/results/"). A longer key fails Put and Get with ErrInvalidArgument
// before any request is made. core checks it when a Client or Worker is
// built: every task ID (up to 128 bytes) must fit the ResultBackend, and
// every claim-check key ("<task ID>/<32 hex digits>") the PayloadStore. An
// adapter without the capability stores keys of any length core uses.
type KeyLimiter interface {
	// MaxKeyLen returns the longest key, in bytes.
	MaxKeyLen() int
}
