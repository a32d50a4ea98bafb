// Package porttest is the conformance suite for dagq's ports. Every adapter
// runs it from a small _test.go harness:
//
//	func TestBroker(t *testing.T) { porttest.TestBroker(t, myHarness{}) }
//
// The suite defines the contract; adapters need no extra unit tests for the
// semantics it covers. Behaviour an adapter cannot match is declared in
// Features, and the subtests that need it are reported (t.Skip with the
// feature's name) rather than silently omitted.
//
// Subtests run in parallel (t.Parallel), each on fresh queues or stores, so
// harness methods must be safe for concurrent use. Against a real service,
// raise go test's -parallel flag to shorten real-time runs.
package porttest

import (
	"testing"
	"time"

	"github.com/dagq/dagq/ports"
)

// Features declares what an adapter supports. The zero value claims nothing
// optional.
type Features struct {
	// FIFO: the adapter has FIFO queues (ordering per message group,
	// deduplication by message ID).
	FIFO bool
	// Synctest: the adapter only uses the standard clock, timers and
	// goroutines it stops on Close, so the suite may run time-dependent
	// subtests inside a testing/synctest bubble (instant and deterministic).
	// Adapters over a network (emulators) leave it false and the suite uses
	// real time.
	Synctest bool
	// LeaseGranularity is the smallest lease/delay step the adapter honours
	// (SQS: one second). Time-based subtests use multiples of it. Zero means
	// one second.
	LeaseGranularity time.Duration
	// PollBound is the longest a Receive blocks when nothing is available.
	// Zero means one second.
	PollBound time.Duration
	// Requeue: the brokers implement the optional ports.Requeuer on standard
	// queues. Undeclared, the Requeue subtests are skipped, naming the flag.
	Requeue bool
	// RequeueFIFO: Requeue works on FIFO queues too. Undeclared (SQS: a copy
	// would be deduplicated away), FIFORequeue checks the declared
	// difference instead: Requeue on a FIFO queue fails with
	// ports.ErrUnsupported, sends nothing and leaves the lease alone.
	RequeueFIFO bool
	// DeadLetters: the brokers implement the optional ports.DeadLetterer,
	// and the BrokerHarness implements DeadLetterHarness. Undeclared, the
	// DeadLetters subtests are skipped, naming the flag.
	DeadLetters bool
	// ResultDelete: the result backends implement the optional
	// ports.ResultDeleter. Undeclared, the Delete subtest is skipped.
	ResultDelete bool
	// ListKeys: the state stores implement the optional ports.KeyLister.
	// Undeclared, the ListKeys subtest is skipped.
	ListKeys bool

	// Declared differences from the contract (emulator gaps). Each one
	// relaxes named assertions; the affected subtest logs or skips naming the
	// flag.

	// ExtendsExpiredLease: Extend and Nack with the receipt of a lease that
	// ended while nobody received the message again succeed (and lease the
	// message again) instead of failing with ErrLeaseLost. fauxqs 2.4.1 does
	// this; SQS answers MessageNotInflight. ExtendAfterLeaseExpiry skips its
	// remaining assertions when such an Extend succeeds.
	ExtendsExpiredLease bool
}

// BrokerHarness makes brokers for the Broker suite. Constructors are called
// from inside the subtest (inside its synctest bubble when Features.Synctest)
// and must register cleanup with t.Cleanup.
type BrokerHarness interface {
	Features() Features
	// NewQueue creates a fresh, empty queue (FIFO when fifo is true) and returns
	// n independent brokers bound to it (n ≥ 1), as n processes would have.
	NewQueue(t *testing.T, fifo bool, n int) []ports.Broker
	// MissingQueue returns a broker bound to a queue that does not exist.
	MissingQueue(t *testing.T) ports.Broker
}

// ResultHarness makes result backends.
type ResultHarness interface {
	Features() Features
	// NewBackend returns n backends sharing one fresh, empty store.
	NewBackend(t *testing.T, n int) []ports.ResultBackend
}

// CancelHarness makes cancel channels.
type CancelHarness interface {
	Features() Features
	// NewChannel returns n channels sharing one fresh cancellation domain, as n
	// processes (a client and workers) would have.
	NewChannel(t *testing.T, n int) []ports.CancelChannel
}

// CompletionHarness makes completion buses.
type CompletionHarness interface {
	Features() Features
	// NewBus returns n buses sharing one fresh domain (publisher and clients).
	NewBus(t *testing.T, n int) []ports.CompletionBus
}

// PayloadHarness makes payload stores.
type PayloadHarness interface {
	Features() Features
	// NewStore returns n stores sharing one fresh, empty key space.
	NewStore(t *testing.T, n int) []ports.PayloadStore
}

// StateHarness makes state stores.
type StateHarness interface {
	Features() Features
	// NewStateStore returns n stores sharing one fresh, empty key space.
	NewStateStore(t *testing.T, n int) []ports.StateStore
}
