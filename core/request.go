package core

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dagq/dagq/ports"
)

// Causes a handler's context can be cancelled with (read them with
// context.Cause). A lost lease is ports.ErrLeaseLost; a passed deadline is
// context.DeadlineExceeded.
var (
	// ErrTaskCanceled: a cancellation request for the task arrived.
	ErrTaskCanceled = errors.New("task cancelled by request")
	// ErrShutdown: the worker shut down before the task finished; the task is
	// released for another worker.
	ErrShutdown = errors.New("worker shutting down")
)

// Request is one task submission.
type Request struct {
	// Task is the registered task name.
	Task string
	// Args is JSON-encoded at submit; a json.RawMessage is sent as is.
	Args any
	// ID is the task ID; empty means a new random ID. Submitting an ID again
	// is at-least-once: the result stays write-once per ID.
	ID     string
	Labels map[string]string
	// RunID and StepID place the task in a DAG run (optional).
	RunID  string
	StepID string
	// GroupID is the FIFO message group of the task (ignored by standard
	// queues): a FIFO queue delivers a group in send order and holds it back
	// while one of its messages is leased. Empty means RunID, or the task ID
	// for a task outside a run. Printable ASCII without spaces, at most 128
	// bytes. Give a task that waits for other tasks of its run (a Launcher's
	// run task) a group of its own, or it blocks them.
	GroupID string
	// Inputs are upstream outputs by step name and Params run parameters,
	// both handed to the handler as Task.Inputs and Task.Params (the
	// Executor fills them for DAG steps).
	Inputs map[string]json.RawMessage
	Params map[string]string
	// Progress asks workers to publish progress notifications to the
	// client's completion inbox: ports.StateRunning when an attempt's
	// handler starts, ports.StateRetrying when a failed attempt is retried
	// (best-effort; see WatchEvent.Progress).
	Progress bool
	// Deadline, when non-zero, is when the task stops being worth running.
	Deadline time.Time
	// Delay postpones the task's start by this much from its submission,
	// 0 ≤ Delay ≤ MaxTaskDelay (365 days). Whole seconds within
	// ClientOptions.MaxDelay (15 minutes) are the message's own delay. A
	// longer one, or one that is not whole seconds (SQS would round it up),
	// is carried as a due time (NotBefore, Delay from now): the message is
	// sent delayed by at most MaxDelay, and workers
	// that receive it early send it on, hop by hop, until it is due; it then
	// starts within about a second of the due time (see Worker, Due
	// times). No worker holds the task while it waits, so it survives
	// worker restarts; each hop costs a send, a receive and a delete. Not
	// on FIFO queues, which refuse delays of a second or more. Set Delay or
	// NotBefore, not both.
	Delay time.Duration
	// NotBefore, when set, is the earliest time the task may start, at most
	// MaxTaskDelay after its submission; a time past means at once. It is
	// carried in the envelope like a long Delay (the task starts within
	// about a second of it, by the workers' clocks), and must be before a
	// Deadline. Not on FIFO queues (when more than a second ahead).
	NotBefore time.Time
	// Pool names the fleet-wide concurrency pool the task runs in (see
	// WorkerOptions.Pools); empty means none.
	Pool string
	// Retry overrides the worker's retry policy for this task.
	Retry *RetryPolicy
	// Result is the task's result policy: what the worker keeps of its
	// outcome (see ResultPolicy). Empty means ResultDurable; a TaskType's
	// Request fills in the type's policy.
	Result ResultPolicy
	// Meta is framework metadata carried in the envelope (e.g. trace context).
	Meta map[string]string
}

// ResultPolicy says what a worker keeps of a task's outcome, and so what
// the outcome survives and what it costs (see docs/semantics.md).
type ResultPolicy string

// Result policies.
const (
	// ResultDurable (the default, and that of DAG steps and launched runs):
	// the result is written to the result backend (write-once), then its
	// completion is published to the submitting client's inbox. Survives a
	// client crash (any client reads it later by task ID) and a worker
	// crash (the task is redelivered and the stored result reused). Costs a
	// result write per task (an S3 PUT on AWS).
	ResultDurable ResultPolicy = "durable"
	// ResultReply: the completion, with the result inline, is published to
	// the submitting client's inbox only; nothing is written to the result
	// backend. Survives a worker crash (the task is redelivered and runs
	// again: at-least-once), not the client's: once its inbox is gone the
	// result is dropped. A result that cannot travel that way is written
	// to the result backend after all (durable): one larger than the
	// completion inline limit, one of a task submitted by a client without
	// a completion inbox, and one whose completion could not be published.
	ResultReply ResultPolicy = "reply"
	// ResultNone (fire-and-forget): no result is written and no completion
	// published. Wait has nothing to wait for: it fails with ErrNoResult
	// while the client remembers the task (see ClientOptions.CacheSize).
	// A worker crash still redelivers the task (at-least-once).
	ResultNone ResultPolicy = "none"
)

// ErrNoResult: the task was submitted with ResultNone; no result will
// ever be recorded for it.
var ErrNoResult = errors.New("the task was submitted with result policy none: it records no result to wait for")

// Valid reports whether p is a result policy ("" means ResultDurable).
func (p ResultPolicy) Valid() bool {
	switch p {
	case "", ResultDurable, ResultReply, ResultNone:
		return true
	}
	return false
}

// resultPolicyOf is the policy a worker applies to an envelope's Result:
// an empty or unknown value is durable (it loses nothing).
func resultPolicyOf(s string) ResultPolicy {
	switch p := ResultPolicy(s); p {
	case ResultReply, ResultNone:
		return p
	}
	return ResultDurable
}

// RequestOption sets an optional field of a Request.
type RequestOption func(*Request)

// WithID sets the task ID (idempotency key).
func WithID(id string) RequestOption { return func(r *Request) { r.ID = id } }

// WithLabels adds labels.
func WithLabels(kv map[string]string) RequestOption {
	return func(r *Request) {
		if r.Labels == nil {
			r.Labels = make(map[string]string, len(kv))
		}
		for k, v := range kv {
			r.Labels[k] = v
		}
	}
}

// WithRun places the task in a DAG run.
func WithRun(runID, stepID string) RequestOption {
	return func(r *Request) { r.RunID, r.StepID = runID, stepID }
}

// WithGroupID sets the FIFO message group (see Request.GroupID).
func WithGroupID(group string) RequestOption { return func(r *Request) { r.GroupID = group } }

// WithInputs sets the upstream outputs handed to the handler (Task.Inputs).
func WithInputs(in map[string]json.RawMessage) RequestOption {
	return func(r *Request) { r.Inputs = in }
}

// WithParams sets the run parameters handed to the handler (Task.Params).
func WithParams(p map[string]string) RequestOption { return func(r *Request) { r.Params = p } }

// WithProgress asks for progress notifications (see Request.Progress).
func WithProgress() RequestOption { return func(r *Request) { r.Progress = true } }

// WithDeadline sets an absolute deadline.
func WithDeadline(t time.Time) RequestOption { return func(r *Request) { r.Deadline = t } }

// WithDelay postpones the task's start by d (see Request.Delay).
func WithDelay(d time.Duration) RequestOption { return func(r *Request) { r.Delay = d } }

// WithNotBefore sets the earliest time the task may start (see
// Request.NotBefore).
func WithNotBefore(t time.Time) RequestOption { return func(r *Request) { r.NotBefore = t } }

// WithResult sets the task's result policy (see ResultPolicy).
func WithResult(p ResultPolicy) RequestOption { return func(r *Request) { r.Result = p } }

// WithRetry overrides the retry policy.
func WithRetry(p RetryPolicy) RequestOption { return func(r *Request) { r.Retry = &p } }

// NewTaskID returns a random 128-bit ID in hex.
func NewTaskID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	var h [32]byte
	hex.Encode(h[:], b[:])
	return string(h[:]) // one allocation
}

// TaskError is the error of a task that did not succeed.
type TaskError struct {
	Result ports.Result
}

func (e *TaskError) Error() string {
	return fmt.Sprintf("task %s %s after %d attempt(s): %s", e.Result.TaskID, e.Result.State, e.Result.Attempts, e.Result.Error)
}

// Is makes errors.Is(err, ErrTaskCanceled) true for a cancelled task.
func (e *TaskError) Is(target error) bool {
	return target == ErrTaskCanceled && e.Result.State == ports.StateCancelled
}

// ResultErr returns nil for a succeeded result and a *TaskError otherwise.
func ResultErr(r ports.Result) error {
	if r.State == ports.StateSucceeded {
		return nil
	}
	return &TaskError{Result: r}
}
