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
	"strconv"
	"time"

	"github.com/dagq/dagq/ports"
)

// Version is the newest version of the envelope this build writes. Workers
// accept versions 1..Version and refuse newer ones with ErrVersion (so that
// during a rolling upgrade an old worker hands a newer message back instead
// of misreading it). Encode writes the lowest version that carries the
// envelope's fields (see MinVersion): an envelope a version-1 worker reads
// right stays version 1.
//
//   - 1: the original envelope.
//   - 2: a due time (not_before), or a retry policy whose max_backoff is
//     over ports.MaxLease (12h). A version-1 worker would run the first
//     early and refuse the second as malformed.
const Version = 2

// MaxTaskDelay is the furthest a task's due time (NotBefore) may lie ahead
// of its submission, and the largest retry max_backoff: 365 days. Each
// stretch of up to ports.MaxDelay is one message (the worker sends the task
// on again until it is due), so the limit is not the broker's: it catches
// a delay given in the wrong unit.
const MaxTaskDelay = 365 * 24 * time.Hour

// Envelope decoding errors.
var (
	// ErrMalformed: the body is not a dagq envelope (not JSON, wrong shape,
	// or a required field is missing or invalid).
	ErrMalformed = errors.New("malformed envelope")
	// ErrVersion: the envelope's version is newer than this build
	// understands.
	ErrVersion = errors.New("unsupported envelope version")
	// ErrLimit: a field of the envelope is over its limit (see the Max
	// constants). Errors that match it match ErrMalformed too.
	ErrLimit = errors.New("envelope field over its limit")
)

// Limits of the envelope's fields, in bytes (entries for maps). Encode and
// Decode refuse an envelope over one of them with an error matching ErrLimit
// (and ErrMalformed) that names the field, its size and the limit. They keep
// every field storable and printable wherever it goes: the task ID is the
// SQS message ID and FIFO deduplication ID (128 characters) and, under the
// store's key prefix, the S3 object key of the result (1,024 bytes) and of a
// claim-check payload ("<id>/<32 hex digits>"); names and IDs end up in
// logs, metrics and trace attributes. Args, inputs and param values are
// bounded only by the size of the whole envelope (the client's
// MaxEnvelopeBytes and the broker's message size).
const (
	// MaxTaskIDLen is the longest task ID (field "id").
	MaxTaskIDLen = 128
	// MaxTaskNameLen is the longest task name (field "task").
	MaxTaskNameLen = 128
	// MaxRunIDLen and MaxStepIDLen are the longest run and step IDs
	// (fields "run" and "step").
	MaxRunIDLen  = 128
	MaxStepIDLen = 128
	// MaxReplyToLen is the longest reply-to address (field "reply_to").
	MaxReplyToLen = 1024
	// MaxLabels is the largest number of entries in labels, and in meta.
	MaxLabels = 64
	// MaxKeyLen is the longest key of labels, meta, params and inputs.
	MaxKeyLen = 128
	// MaxLabelValueLen is the longest value in labels and in meta.
	MaxLabelValueLen = 1024
	// MaxResultPolicyLen is the longest result policy (field "result").
	MaxResultPolicyLen = 32
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
	// NotBefore, when set, is the task's due time: a worker that receives
	// the message earlier postpones it (a delayed requeue, no attempt
	// counted) instead of running it. It carries delays longer than the
	// broker's per-message maximum.
	NotBefore time.Time `json:"not_before,omitzero"`
	// Pool names the fleet-wide concurrency pool the task runs in: a
	// worker runs it only while it holds one of the pool's slots.
	Pool string `json:"pool,omitempty"`
}

// Encode returns the envelope's wire form, as json.Marshal writes it. A zero
// Version is written as MinVersion and a zero Attempt as 1; an envelope
// that could not be run is refused with ErrMalformed, one with a field over
// its limit also with ErrLimit (a *LimitError), and one whose Version is
// below MinVersion with ErrMalformed too (a worker of that version would
// misread it).
func (e Envelope) Encode() ([]byte, error) {
	if e.Version == 0 {
		e.Version = e.MinVersion()
	}
	if minV := e.MinVersion(); e.Version < minV {
		return nil, fmt.Errorf("%w: task %s has version %d but needs version %d (a due time, or a retry max_backoff over %v)",
			ErrMalformed, ShortID(e.TaskID), e.Version, minV, ports.MaxLease)
	}
	if e.Attempt == 0 {
		e.Attempt = 1
	}
	if err := e.validate(true); err != nil {
		return nil, err
	}
	return json.Marshal(e)
}

// MinVersion is the lowest envelope version that carries e's fields: 2
// when it has a due time (NotBefore) or a retry policy whose MaxBackoff is
// over ports.MaxLease, else 1.
func (e *Envelope) MinVersion() int {
	if !e.NotBefore.IsZero() || e.Retry != nil && e.Retry.MaxBackoff > ports.MaxLease {
		return 2
	}
	return 1
}

// Decode parses a message body: exactly one JSON object (whitespace around
// it allowed). Errors match ErrMalformed or ErrVersion and say what was
// wrong; a field over its limit (see CheckLimits) matches ErrMalformed and
// ErrLimit and wraps a *LimitError naming the field, its size and the
// limit. It never panics, whatever the input.
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
		return fmt.Errorf("%w: task %s has an empty task name (field \"task\")", ErrMalformed, ShortID(e.TaskID))
	case e.Attempt < 1:
		return fmt.Errorf("%w: task %s has attempt %d; attempts start at 1", ErrMalformed, ShortID(e.TaskID), e.Attempt)
	}
	if err := e.CheckLimits(); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if checkRaw {
		if len(e.Args) > 0 && !json.Valid(e.Args) {
			return fmt.Errorf("%w: task %s has args that are not valid JSON", ErrMalformed, ShortID(e.TaskID))
		}
		for name, in := range e.Inputs {
			if len(in) > 0 && !json.Valid(in) {
				return fmt.Errorf("%w: task %s has input %s that is not valid JSON", ErrMalformed, ShortID(e.TaskID), ShortID(name))
			}
		}
	}
	if e.Retry != nil {
		if err := e.Retry.Validate(); err != nil {
			return fmt.Errorf("%w: task %s: %v", ErrMalformed, ShortID(e.TaskID), err)
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
	case p.MaxBackoff < 0 || p.MaxBackoff > MaxTaskDelay:
		return fmt.Errorf("retry max_backoff is %v; it must be between 0 (a cap of %v) and %v", p.MaxBackoff, ports.MaxLease, MaxTaskDelay)
	case p.MaxBackoff != 0 && p.MaxBackoff < p.InitialBackoff:
		return fmt.Errorf("retry max_backoff %v is below initial_backoff %v", p.MaxBackoff, p.InitialBackoff)
	case p.Multiplier != 0 && (p.Multiplier < 1 || math.IsInf(p.Multiplier, 0)) || math.IsNaN(p.Multiplier):
		return fmt.Errorf("retry multiplier is %v; it must be 0 (constant) or a finite number ≥ 1", p.Multiplier)
	case p.Jitter < 0 || p.Jitter > 1 || math.IsNaN(p.Jitter):
		return fmt.Errorf("retry jitter is %v; it must be between 0 and 1", p.Jitter)
	}
	return nil
}

// CheckLimits reports the first field of e over its limit (see MaxTaskIDLen
// and the other Max constants), with an error matching ErrLimit that names
// the field, its size and the limit, e.g.
//
//	envelope field over its limit: task ID (field "id") is 1509 bytes; the limit is 128
//
// Fields are checked in a fixed order, the task ID first: a caller that
// finds the task ID over its limit (errors.As a *LimitError with Field
// "id") knows no result can be recorded under it.
func (e *Envelope) CheckLimits() error {
	if len(e.TaskID) > MaxTaskIDLen {
		return limitErr("task ID", "id", len(e.TaskID), MaxTaskIDLen, "")
	}
	if err := e.checkFieldLimits(); err != nil {
		return fmt.Errorf("task %s: %w", ShortID(e.TaskID), err)
	}
	return nil
}

func (e *Envelope) checkFieldLimits() error {
	switch {
	case len(e.Task) > MaxTaskNameLen:
		return limitErr("task name", "task", len(e.Task), MaxTaskNameLen, "")
	case len(e.RunID) > MaxRunIDLen:
		return limitErr("run ID", "run", len(e.RunID), MaxRunIDLen, "")
	case len(e.StepID) > MaxStepIDLen:
		return limitErr("step ID", "step", len(e.StepID), MaxStepIDLen, "")
	case len(e.ReplyTo) > MaxReplyToLen:
		return limitErr("reply-to address", "reply_to", len(e.ReplyTo), MaxReplyToLen, "")
	case len(e.Result) > MaxResultPolicyLen:
		return limitErr("result policy", "result", len(e.Result), MaxResultPolicyLen, "")
	}
	if err := checkStrings("label", "labels", e.Labels); err != nil {
		return err
	}
	if err := checkStrings("meta", "meta", e.Meta); err != nil {
		return err
	}
	for k := range e.Params {
		if len(k) > MaxKeyLen {
			return limitErr("param name", "params", len(k), MaxKeyLen, "")
		}
	}
	for k := range e.Inputs {
		if len(k) > MaxKeyLen {
			return limitErr("input name", "inputs", len(k), MaxKeyLen, "")
		}
	}
	return nil
}

// checkStrings checks labels or meta: the number of entries, each key and
// each value.
func checkStrings(what, field string, m map[string]string) error {
	if len(m) > MaxLabels {
		name := what + "s"
		if what == "meta" {
			name = what
		}
		return limitErr(name, field, len(m), MaxLabels, "entries")
	}
	for k, v := range m {
		if len(k) > MaxKeyLen {
			return limitErr(what+" key", field, len(k), MaxKeyLen, "")
		}
		if len(v) > MaxLabelValueLen {
			return limitErr(fmt.Sprintf("%s %s", what, ShortID(k)), field, len(v), MaxLabelValueLen, "")
		}
	}
	return nil
}

// LimitError is the error of a field over its limit (CheckLimits). It
// matches ErrLimit and ErrMalformed.
type LimitError struct {
	// What names the field for people ("task ID", "label \"k\""); Field is
	// its JSON name ("id", "labels").
	What, Field string
	// Size is the field's size and Limit its limit, in bytes, or in
	// entries when Unit is "entries".
	Size, Limit int
	Unit        string
}

func limitErr(what, field string, size, limit int, unit string) *LimitError {
	if unit == "" {
		unit = "bytes"
	}
	return &LimitError{What: what, Field: field, Size: size, Limit: limit, Unit: unit}
}

func (e *LimitError) Error() string {
	verb := "is"
	if e.Unit == "entries" {
		verb = "has"
	}
	return fmt.Sprintf("%v: %s (field %q) %s %d %s; the limit is %d", ErrLimit, e.What, e.Field, verb, e.Size, e.Unit, e.Limit)
}

// Is makes a LimitError match ErrLimit and ErrMalformed.
func (e *LimitError) Is(target error) bool { return target == ErrLimit || target == ErrMalformed }

// ShortID quotes id for a message, shortened to its first 32 bytes and its
// length when longer: an over-long ID is named, not copied.
func ShortID(id string) string {
	if len(id) <= 32 {
		return strconv.Quote(id)
	}
	return fmt.Sprintf("%q… (%d bytes)", id[:32], len(id))
}
