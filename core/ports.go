package core

import (
	"errors"
	"fmt"

	"github.com/dagq/dagq/ports"
)

// Ports is the transport a Client, a Worker and the DAG layer (package
// core/dag) run on: the port handles, and the settings that every process
// sharing the transport must agree on (the claim-check threshold and
// signing). Build it once per process — by hand from an adapter's
// constructors (adapters/memory, adapters/sqs, adapters/s3), with one call
// on AWS (adapters/awsports.New), or from configuration (package app) — and
// hand the same value to every Client and Worker of the process.
//
// A port a constructor needs but finds nil is an error at construction
// (matching ports.ErrInvalidArgument and naming the field), never a warning
// at run time.
type Ports struct {
	// Broker is the task queue: Submit sends to it, a Worker receives from
	// it. Required.
	Broker ports.Broker
	// Results stores task results: workers write them, clients read them.
	// Required.
	Results ports.ResultBackend
	// Cancels carries cancellation requests: Client.Cancel sends them, a
	// Worker listens for them. Required unless NoCancel is set. Share one
	// channel's subscriptions between the workers of a process with
	// ShareSubscriptions (adapters/awsports and package app do).
	Cancels ports.CancelChannel
	// NoCancel switches cancellation off on purpose: Cancels must be nil,
	// Client.Cancel fails with an error matching ports.ErrUnsupported and a
	// Worker listens for no request. Without it a nil Cancels is an error.
	NoCancel bool
	// Completions, when set, makes waiting push-based: a Client opens one
	// inbox (on its first Submit) and puts its address in every task's
	// ReplyTo, and workers publish each finished task's completion there.
	// Optional: without it a Client waits by polling Results with backoff.
	Completions ports.CompletionBus
	// Payloads, when set, holds envelopes larger than PayloadThreshold (the
	// claim check): Submit stores the envelope there and sends a short
	// message naming its key (attribute "dagq-payload"); the worker fetches it and
	// deletes it once the task's message is acked. Optional: without it a
	// larger envelope is refused at Submit (ports.ErrInvalidArgument) and a
	// worker fails a claim-check message it receives (never runs it).
	Payloads ports.PayloadStore
	// PayloadThreshold is the largest encoded envelope (in bytes) sent on
	// the broker as it is; larger ones go through Payloads. Default
	// DefaultPayloadThreshold (200 KiB); must not be negative. Keep it below
	// the broker's message size limit (minus a few hundred bytes for the
	// attributes): a message between the two is refused by the broker.
	PayloadThreshold int
	// Signer, when set, signs every task a Client sends (message attribute
	// "dagq-sig"). Optional: without it tasks are sent unsigned.
	Signer *Signer
	// Verifier, when set, makes a Worker check the signature of every
	// delivery before it is decoded: a delivery without a valid signature by
	// one of its keys is never executed; a failed result with the reason
	// (matching ErrSignature) is recorded under the message ID and the
	// message is acked. Optional: without it signatures are ignored.
	Verifier *Verifier
	// State holds run records and heartbeats (the DAG layer's Launcher and
	// run task need it) and the slots of concurrency pools (a Worker with
	// WorkerOptions.Pools needs it); a Client ignores it.
	State ports.StateStore
	// RunBroker is the queue of launched runs: the DAG layer's Launcher
	// submits run tasks to it and run workers serve it. Used by the DAG layer
	// only; it must not be the task queue (a run task would hold a worker
	// slot its own steps need).
	RunBroker ports.Broker
}

// validate reports every port of p that who (e.g. "client options") needs
// and lacks, as one error matching ports.ErrInvalidArgument.
func (p Ports) validate() []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: Ports."+format, append([]any{ports.ErrInvalidArgument}, args...)...))
	}
	if p.Broker == nil {
		bad("Broker is required (the task queue)")
	}
	if p.Results == nil {
		bad("Results is required (the result backend)")
	}
	switch {
	case p.Cancels == nil && !p.NoCancel:
		bad("Cancels is nil: cancellation requests could not reach any task; " +
			"set it (every adapter provides a CancelChannel), or set Ports.NoCancel to run without cancellation")
	case p.Cancels != nil && p.NoCancel:
		bad("NoCancel is set but Cancels is not nil; set one of them")
	}
	if p.PayloadThreshold < 0 {
		bad("PayloadThreshold is %d; it must be 0 (default %d) or positive", p.PayloadThreshold, DefaultPayloadThreshold)
	}
	if n, ok := maxKeyLen(p.Results); ok && n < MaxTaskIDLen {
		bad("Results stores keys of at most %d bytes, but task IDs take up to %d: "+
			"shorten the store's key prefix (S3: s3.prefix) by %d bytes or more", n, MaxTaskIDLen, MaxTaskIDLen-n)
	}
	if n, ok := maxKeyLen(p.Payloads); ok && n < maxPayloadKeyLen {
		bad("Payloads stores keys of at most %d bytes, but claim-check keys take up to %d: "+
			"shorten the store's key prefix (S3: s3.prefix) by %d bytes or more", n, maxPayloadKeyLen, maxPayloadKeyLen-n)
	}
	return errs
}

// portsError joins the problems of a constructor's options into one error
// that names who reports them.
func portsError(who string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("dagq: %s: %w", who, errors.Join(errs...))
}

// maxKeyLen returns the key limit of a store that declares one
// (ports.KeyLimiter).
func maxKeyLen(store any) (int, bool) {
	if kl, ok := store.(ports.KeyLimiter); ok {
		return kl.MaxKeyLen(), true
	}
	return 0, false
}

// maxPayloadKeyLen is the longest claim-check key: "<task ID>/<NewTaskID>".
const maxPayloadKeyLen = MaxTaskIDLen + 1 + 32
