package memory

import (
	"strings"

	"github.com/google/wire"

	"github.com/dagq/dagq/ports"
)

// Queues lists the queues the Transport of Set is created with, in order (a
// dead-letter queue before the queue whose redrive policy names it).
type Queues []QueueSpec

// QueueSpec is one queue of Queues: its name (ending in ".fifo": a FIFO
// queue) and, optionally, its redrive policy: DeadLetterQueue, created
// with the queue unless an earlier spec created it, receives a message
// received MaxReceives times.
type QueueSpec struct {
	Name            string
	DeadLetterQueue string
	MaxReceives     int
}

// Set is the Wire provider set of the memory transport: a *Transport holding
// Queues, and one handle of each port that is not bound to a queue, each with
// a cleanup that closes the handle. Brokers are bound to queue names by the
// application, which knows what each queue is for (tr.Broker(name)).
var Set = wire.NewSet(
	ProvideTransport,
	ProvideResultBackend,
	ProvideCancelChannel,
	ProvideCompletionBus,
	ProvidePayloadStore,
	ProvideStateStore,
)

// ProvideTransport creates a Transport and its queues.
func ProvideTransport(qs Queues) (*Transport, error) {
	tr := NewTransport()
	for _, q := range qs {
		fifo := strings.HasSuffix(q.Name, ".fifo")
		if q.DeadLetterQueue != "" {
			if _, err := tr.Stats(q.DeadLetterQueue); err != nil {
				if err := tr.CreateQueue(q.DeadLetterQueue, QueueOptions{FIFO: fifo}); err != nil {
					return nil, err
				}
			}
		}
		if err := tr.CreateQueue(q.Name, QueueOptions{FIFO: fifo, MaxReceives: q.MaxReceives, DeadLetterQueue: q.DeadLetterQueue}); err != nil {
			return nil, err
		}
	}
	return tr, nil
}

// ProvideResultBackend returns a ResultBackend handle and its cleanup.
func ProvideResultBackend(tr *Transport) (ports.ResultBackend, func(), error) {
	return closing(tr.ResultBackend())
}

// ProvideCancelChannel returns a CancelChannel handle and its cleanup.
func ProvideCancelChannel(tr *Transport) (ports.CancelChannel, func(), error) {
	return closing(tr.CancelChannel())
}

// ProvideCompletionBus returns a CompletionBus handle and its cleanup.
func ProvideCompletionBus(tr *Transport) (ports.CompletionBus, func(), error) {
	return closing(tr.CompletionBus())
}

// ProvidePayloadStore returns a PayloadStore handle and its cleanup.
func ProvidePayloadStore(tr *Transport) (ports.PayloadStore, func(), error) {
	return closing(tr.PayloadStore())
}

// ProvideStateStore returns a StateStore handle and its cleanup.
func ProvideStateStore(tr *Transport) (ports.StateStore, func(), error) {
	return closing(tr.StateStore())
}

func closing[T interface{ Close() error }](h T) (T, func(), error) {
	return h, func() { _ = h.Close() }, nil
}
