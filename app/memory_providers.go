package app

import (
	"strings"

	"github.com/google/wire"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/ports"
)

// MemorySet provides the Ports of the memory transport: one in-process
// memory.Transport holding the configured queue, and a handle of each port
// on it. Every provider returns a cleanup that closes its handle.
//
// It belongs in package adapters/memory (as memory.Set, the Go CDK habit);
// it lives here until that package takes it.
var MemorySet = wire.NewSet(
	ProvideMemoryTransport,
	ProvideMemoryBroker,
	ProvideMemoryResults,
	ProvideMemoryCancels,
	ProvideMemoryCompletions,
)

// ProvideMemoryTransport creates the in-process transport and the queue
// named by cfg.Queue (FIFO when the name ends in .fifo).
func ProvideMemoryTransport(cfg config.Config) (*memory.Transport, error) {
	tr := memory.NewTransport()
	if err := tr.CreateQueue(cfg.Queue, memory.QueueOptions{FIFO: strings.HasSuffix(cfg.Queue, ".fifo")}); err != nil {
		return nil, err
	}
	return tr, nil
}

// ProvideMemoryBroker returns a Broker bound to the configured queue.
func ProvideMemoryBroker(tr *memory.Transport, cfg config.Config) (ports.Broker, func(), error) {
	b := tr.Broker(cfg.Queue)
	return b, func() { _ = b.Close() }, nil
}

// ProvideMemoryResults returns the transport's ResultBackend.
func ProvideMemoryResults(tr *memory.Transport) (ports.ResultBackend, func(), error) {
	r := tr.ResultBackend()
	return r, func() { _ = r.Close() }, nil
}

// ProvideMemoryCancels returns the transport's CancelChannel, or nil when
// cancellation is disabled (cancellation.enabled: false).
func ProvideMemoryCancels(tr *memory.Transport, cfg config.Config) (ports.CancelChannel, func(), error) {
	if !cfg.Cancellation.Enabled {
		return nil, func() {}, nil
	}
	c := tr.CancelChannel()
	return c, func() { _ = c.Close() }, nil
}

// ProvideMemoryCompletions returns the transport's CompletionBus.
func ProvideMemoryCompletions(tr *memory.Transport) (ports.CompletionBus, func(), error) {
	c := tr.CompletionBus()
	return c, func() { _ = c.Close() }, nil
}
