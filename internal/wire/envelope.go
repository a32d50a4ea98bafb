package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// EnvelopeVersion is the version of the envelope this build writes. Workers
// accept versions 1..EnvelopeVersion and refuse newer ones with
// ErrEnvelopeVersion (so that during a rolling upgrade an old worker hands a
// newer message back instead of misreading it).
const EnvelopeVersion = 1

// Envelope decoding errors.
var (
	// ErrMalformedEnvelope: the body is not a dagq envelope (not JSON, wrong
	// shape, or a required field is missing).
	ErrMalformedEnvelope = errors.New("malformed envelope")
	// ErrEnvelopeVersion: the envelope's version is newer than this build
	// understands.
	ErrEnvelopeVersion = errors.New("unsupported envelope version")
)

// PayloadAttribute is the message attribute of a claim-check message: an
// envelope larger than ClientOptions.PayloadThreshold is stored in the
// ports.PayloadStore under the key "<task ID>/<random ID>" and the message
// carries that key in this attribute, with a short placeholder body (JSON
// with the task ID, name, key and reply_to, but no "v": a worker that knows
// nothing of claim checks fails it as undecodable instead of running it
// without its arguments). A worker with WorkerOptions.Payloads fetches the
// envelope and deletes the object once the message is acked.
const PayloadAttribute = "dagq-payload"

// claimCheck is the placeholder body of a claim-check message.
type claimCheck struct {
	TaskID  string `json:"id"`
	Task    string `json:"task"`
	Payload string `json:"payload"`
	ReplyTo string `json:"reply_to,omitempty"`
}

// Envelope is the message body dagq puts on the broker: one task invocation.
// It is JSON with short, stable field names; fields are only ever added, and a
// change that older workers must not misread bumps EnvelopeVersion.
//
//	{"v":1,"id":"…","task":"resize","attempt":1,"args":{…},
//	 "labels":{…},"meta":{…},"run":"…","step":"…",
//	 "inputs":{"fetch":{…}},"params":{"date":"…"},
//	 "deadline":"2026-…Z","reply_to":"…","progress":true,
//	 "retry":{…},"sent_at":"…"}
type Envelope struct {
	// Version is the envelope format version (EnvelopeVersion when written).
	Version int `json:"v"`
	// TaskID identifies the task; it is also the broker message ID, stable
	// across redeliveries, and the key of the task's result.
	TaskID string `json:"id"`
	// Task is the registered task name that handles it.
	Task string `json:"task"`
	// Attempt is the attempt number of this message's first delivery: 1 for a
	// new task; a producer that re-submits a task after n attempts writes n+1.
	// The worker's attempt number is Attempt + Delivery.Attempt - 1.
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
	Retry *RetryPolicy `json:"retry,omitempty"`
	// SentAt is when the producer submitted the task.
	SentAt time.Time `json:"sent_at,omitzero"`
}

// Encode returns the envelope's wire form, as json.Marshal writes it. A zero
// Version is written as EnvelopeVersion and a zero Attempt as 1; an envelope
// that could not be run is refused with ErrMalformedEnvelope.
func (e Envelope) Encode() ([]byte, error) {
	if e.Version == 0 {
		e.Version = EnvelopeVersion
	}
	if e.Attempt == 0 {
		e.Attempt = 1
	}
	if err := e.validate(true); err != nil {
		return nil, err
	}
	return json.Marshal(e)
}

// DecodeEnvelope parses a message body: exactly one JSON object (whitespace
// around it allowed). Errors match ErrMalformedEnvelope or ErrEnvelopeVersion
// and say what was wrong. It never panics, whatever the input.
func DecodeEnvelope(body []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(body, &e); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrMalformedEnvelope, err)
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
	case e.Version > EnvelopeVersion:
		return fmt.Errorf("%w: version %d is newer than the %d this worker understands (upgrade the worker)",
			ErrEnvelopeVersion, e.Version, EnvelopeVersion)
	case e.Version < 1:
		return fmt.Errorf("%w: version %d; valid versions are 1..%d", ErrMalformedEnvelope, e.Version, EnvelopeVersion)
	case e.TaskID == "":
		return fmt.Errorf("%w: empty task ID (field \"id\")", ErrMalformedEnvelope)
	case e.Task == "":
		return fmt.Errorf("%w: task %q has an empty task name (field \"task\")", ErrMalformedEnvelope, e.TaskID)
	case e.Attempt < 1:
		return fmt.Errorf("%w: task %q has attempt %d; attempts start at 1", ErrMalformedEnvelope, e.TaskID, e.Attempt)
	}
	if checkRaw {
		if len(e.Args) > 0 && !json.Valid(e.Args) {
			return fmt.Errorf("%w: task %q has args that are not valid JSON", ErrMalformedEnvelope, e.TaskID)
		}
		for name, in := range e.Inputs {
			if len(in) > 0 && !json.Valid(in) {
				return fmt.Errorf("%w: task %q has input %q that is not valid JSON", ErrMalformedEnvelope, e.TaskID, name)
			}
		}
	}
	if e.Retry != nil {
		if err := e.Retry.Validate(); err != nil {
			return fmt.Errorf("%w: task %q: %v", ErrMalformedEnvelope, e.TaskID, err)
		}
	}
	return nil
}
