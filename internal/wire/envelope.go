// Package wire is dagq's wire format: the envelope a task travels in (its
// JSON form, version and validation), the claim-check message that stands
// in for a large envelope, and the message signature. Package core is its
// user; none of it is API. Operators see the wire format in queues and
// dead-letter queues: docs/semantics.md describes it.
//
// Compatibility: fields are only ever added; a change that older workers
// must not misread bumps Version. A body that does not decode is never
// executed.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dagq/dagq/ports"
)

// Version is the version of the envelope this build writes. Workers accept
// versions 1..Version and refuse newer ones with ErrVersion (so that during
// a rolling upgrade an old worker hands a newer message back instead of
// misreading it).
const Version = 1

// Envelope decoding errors.
var (
	// ErrMalformed: the body is not a dagq envelope (not JSON, wrong shape,
	// or a required field is missing or invalid).
	ErrMalformed = errors.New("malformed envelope")
	// ErrVersion: the envelope's version is newer than this build
	// understands.
	ErrVersion = errors.New("unsupported envelope version")
)

// Envelope is the message body dagq puts on the broker: one task invocation.
// It is JSON with short, stable field names; fields are only ever added, and a
// change that older workers must not misread bumps Version.
//
//	{"v":1,"id":"…","task":"resize","attempt":1,"args":{…},
//	 "labels":{…},"meta":{…},"run":"…","step":"…",
//	 "inputs":{"fetch":{…}},"params":{"date":"…"},
//	 "deadline":"2026-…Z","reply_to":"…","progress":true,
//	 "retry":{…},"result":"reply","sent_at":"…"}
type Envelope struct {
	// Version is the envelope format version (the constant Version when
	// written).
	Version int `json:"v"`
	// TaskID identifies the task; it is also the broker message ID, stable
	// across redeliveries, and the key of the task's result.
	TaskID string `json:"id"`
	// Task is the registered task name that handles it.
	Task string `json:"task"`
	// Attempt is the attempt number of this message's first delivery: 1 for a
	// new task; a producer that re-submits a task after n attempts writes n+1.
	// The worker's attempt number is Attempt + Delivery.Attempt - 1, plus
	// the attempts a requeued message carries (PriorAttemptsAttribute).
	Attempt int `json:"attempt,omitempty"`
	// Args is the JSON-encoded argument of the handler.
	Args json.RawMessage `json:"args,omitempty"`
	// Labels are user key/values, visible to handlers and in logs.
	Labels map[string]string `json:"labels,omitempty"`
	// Meta carries framework metadata (e.g. trace context); not for users.
	Meta map[string]string `json:"meta,omitempty"`
	// RunID and StepID place the task in a DAG run (optional).
	RunID  string `json:"run,omitempty"`
	StepID string `json:"step,omitempty"`
	// Inputs are the outputs of the step's upstream steps, keyed by step
	// name (DAG runs only; each value is JSON, possibly null).
	Inputs map[string]json.RawMessage `json:"inputs,omitempty"`
	// Params are the run's parameters, the same for every step of a run.
	Params map[string]string `json:"params,omitempty"`
	// Deadline, when set, is when the task stops being worth running: a worker
	// fails it without running it after the deadline, and the handler's
	// context carries it.
	Deadline time.Time `json:"deadline,omitzero"`
	// ReplyTo is the completion inbox address of the submitting client.
	ReplyTo string `json:"reply_to,omitempty"`
	// Progress asks the worker to publish progress notifications to ReplyTo
	// as well: ports.StateRunning when an attempt's handler starts and
	// ports.StateRetrying when a failed attempt is retried. Best-effort, one
	// Publish each.
	Progress bool `json:"progress,omitempty"`
	// Retry overrides the worker's retry policy for this task (optional).
	Retry *Retry `json:"retry,omitempty"`
	// Result is the task's result policy: "" or "durable" (the result is
	// written to the result backend and its completion published to
	// ReplyTo), "reply" (the completion only, result inline; written to
	// the backend only when it cannot be delivered so) or "none" (neither).
	// A worker that does not know the value treats it as durable: the
	// policy that loses nothing.
	Result string `json:"result,omitempty"`
	// SentAt is when the producer submitted the task.
	SentAt time.Time `json:"sent_at,omitzero"`
}

// Encode returns the envelope's wire form, as json.Marshal writes it. A zero
// Version is written as the constant Version and a zero Attempt as 1; an
// envelope that could not be run is refused with ErrMalformed.
func (e Envelope) Encode() ([]byte, error) {
	if e.Version == 0 {
		e.Version = Version
	}
	if e.Attempt == 0 {
		e.Attempt = 1
	}
	if err := e.validate(true); err != nil {
		return nil, err
	}
	return json.Marshal(e)
}

// Decode parses a message body: exactly one JSON object (whitespace around
// it allowed). Errors match ErrMalformed or ErrVersion and say what was
// wrong. It never panics, whatever the input.
func Decode(body []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(body, &e); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if e.Attempt == 0 {
		e.Attempt = 1
	}
	// Args and Inputs are valid JSON: json.Unmarshal checked all of body.
	if err := e.validate(false); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// validate reports what makes the envelope unfit to send or run, checking
// that Args and Inputs are valid JSON only if checkRaw.
func (e Envelope) validate(checkRaw bool) error {
	switch {
	case e.Version > Version:
		return fmt.Errorf("%w: version %d is newer than the %d this worker understands (upgrade the worker)",
			ErrVersion, e.Version, Version)
	case e.Version < 1:
		return fmt.Errorf("%w: version %d; valid versions are 1..%d", ErrMalformed, e.Version, Version)
	case e.TaskID == "":
		return fmt.Errorf("%w: empty task ID (field \"id\")", ErrMalformed)
	case e.Task == "":
		return fmt.Errorf("%w: task %q has an empty task name (field \"task\")", ErrMalformed, e.TaskID)
	case e.Attempt < 1:
		return fmt.Errorf("%w: task %q has attempt %d; attempts start at 1", ErrMalformed, e.TaskID, e.Attempt)
	}
	if checkRaw {
		if len(e.Args) > 0 && !json.Valid(e.Args) {
			return fmt.Errorf("%w: task %q has args that are not valid JSON", ErrMalformed, e.TaskID)
		}
		for name, in := range e.Inputs {
			if len(in) > 0 && !json.Valid(in) {
				return fmt.Errorf("%w: task %q has input %q that is not valid JSON", ErrMalformed, e.TaskID, name)
			}
		}
	}
	if e.Retry != nil {
		if err := e.Retry.Validate(); err != nil {
			return fmt.Errorf("%w: task %q: %v", ErrMalformed, e.TaskID, err)
		}
	}
	return nil
}

// Retry is a task's retry policy as it travels (field "retry"): the fields
// of core.RetryPolicy, which converts to and from it and documents them.
type Retry struct {
	MaxAttempts    int           `json:"max_attempts"`
	InitialBackoff time.Duration `json:"initial_backoff"`
	MaxBackoff     time.Duration `json:"max_backoff"`
	Multiplier     float64       `json:"multiplier"`
	Jitter         float64       `json:"jitter"`
}

// Validate reports a policy that cannot be used, naming the field and the
// valid range (core.RetryPolicy.Validate).
func (p Retry) Validate() error {
	switch {
	case p.MaxAttempts < 1:
		return fmt.Errorf("retry max_attempts is %d; it must be at least 1", p.MaxAttempts)
	case p.InitialBackoff < 0:
		return fmt.Errorf("retry initial_backoff is %v; it must be 0 or more", p.InitialBackoff)
	case p.MaxBackoff < 0 || p.MaxBackoff > ports.MaxLease:
		return fmt.Errorf("retry max_backoff is %v; it must be between 0 (no cap) and %v", p.MaxBackoff, ports.MaxLease)
	case p.MaxBackoff != 0 && p.MaxBackoff < p.InitialBackoff:
		return fmt.Errorf("retry max_backoff %v is below initial_backoff %v", p.MaxBackoff, p.InitialBackoff)
	case p.Multiplier != 0 && (p.Multiplier < 1 || math.IsInf(p.Multiplier, 0)) || math.IsNaN(p.Multiplier):
		return fmt.Errorf("retry multiplier is %v; it must be 0 (constant) or a finite number ≥ 1", p.Multiplier)
	case p.Jitter < 0 || p.Jitter > 1 || math.IsNaN(p.Jitter):
		return fmt.Errorf("retry jitter is %v; it must be between 0 and 1", p.Jitter)
	}
	return nil
}
