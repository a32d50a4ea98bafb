package app

import (
	"github.com/google/wire"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/ports"
)

// MemorySet provides the Ports of the memory transport: one in-process
// memory.Transport holding the task queue (queue) and the run queue
// (launcher.queue), and a handle of each port on it. Every provider returns
// a cleanup that closes its handle.
//
// It belongs in package adapters/memory (as memory.Set, the Go CDK habit);
// it lives here until that package takes it.
var MemorySet = wire.NewSet(
	ProvideMemoryTransport,
	ProvideMemoryBroker,
	ProvideMemoryRunBroker,
	ProvideMemoryResults,
	ProvideMemoryCancels,
	ProvideMemoryCompletions,
	ProvideMemoryState,
)

// ProvideMemoryTransport creates the in-process transport, the task queue
// named by cfg.Queue and the run queue named by cfg.Launcher.Queue (each
// FIFO when its name ends in .fifo).
func ProvideMemoryTransport(cfg config.Config) (*memory.Transport, error) {
	tr := memory.NewTransport()
	for _, q := range []string{cfg.Queue, cfg.Launcher.Queue} {
		if err := tr.CreateQueue(q, memory.QueueOptions{FIFO: config.IsFIFO(q)}); err != nil {
			return nil, err
		}
	}
	return tr, nil
}

// ProvideMemoryBroker returns a Broker bound to the task queue.
func ProvideMemoryBroker(tr *memory.Transport, cfg config.Config) (ports.Broker, func(), error) {
	b := tr.Broker(cfg.Queue)
	return b, func() { _ = b.Close() }, nil
}

// ProvideMemoryRunBroker returns a Broker bound to the run queue.
func ProvideMemoryRunBroker(tr *memory.Transport, cfg config.Config) (RunBroker, func(), error) {
	b := tr.Broker(cfg.Launcher.Queue)
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

// ProvideMemoryState returns the transport's StateStore.
func ProvideMemoryState(tr *memory.Transport) (ports.StateStore, func(), error) {
	s := tr.StateStore()
	return s, func() { _ = s.Close() }, nil
}

// ProvideMemoryCompletions returns the transport's CompletionBus.
func ProvideMemoryCompletions(tr *memory.Transport) (ports.CompletionBus, func(), error) {
	c := tr.CompletionBus()
	return c, func() { _ = c.Close() }, nil
}
