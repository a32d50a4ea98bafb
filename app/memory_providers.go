package app

import (
	"github.com/google/wire"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/ports"
)

// MemorySet provides the ports of the memory transport: memory.Set (one
// in-process Transport and a handle of each port) plus the two brokers this
// application binds by name: the task queue (queue) and the run queue
// (launcher.queue).
var MemorySet = wire.NewSet(
	memory.Set,
	ProvideMemoryQueues,
	ProvideMemoryBroker,
	ProvideMemoryRunBroker,
	ProvideMemoryChecker,
)

// ProvideMemoryQueues names the queues the Transport is created with.
func ProvideMemoryQueues(cfg config.Config) memory.Queues {
	return memory.Queues{cfg.Queue, cfg.Launcher.Queue}
}

// ProvideMemoryBroker returns a Broker bound to the task queue (it also
// reads the queue's depth, for dagq worker --metrics-addr).
func ProvideMemoryBroker(tr *memory.Transport, cfg config.Config) (ports.Broker, func(), error) {
	b := tr.Broker(cfg.Queue)
	return memoryQueue{b, tr, cfg.Queue}, func() { _ = b.Close() }, nil
}

// ProvideMemoryRunBroker returns a Broker bound to the run queue.
func ProvideMemoryRunBroker(tr *memory.Transport, cfg config.Config) (RunBroker, func(), error) {
	b := tr.Broker(cfg.Launcher.Queue)
	return memoryQueue{b, tr, cfg.Launcher.Queue}, func() { _ = b.Close() }, nil
}
