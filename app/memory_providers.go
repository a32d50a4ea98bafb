package app

import (
	"github.com/google/wire"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core/dag"
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

// ProvideMemoryQueues lists the queues the Transport is created with: the
// task queue and the run queue, each with a dead-letter queue and the
// redrive policy dagq queue init gives their SQS counterparts (DLQName,
// MaxReceiveCount), so that the embedded mode dead-letters the same way.
func ProvideMemoryQueues(cfg config.Config) memory.Queues {
	return memory.Queues{
		{Name: cfg.Queue, DeadLetterQueue: DLQName(cfg.Queue), MaxReceives: MaxReceiveCount(cfg.Retry.MaxAttempts)},
		{Name: cfg.Launcher.Queue, DeadLetterQueue: DLQName(cfg.Launcher.Queue),
			MaxReceives: MaxReceiveCount(dag.DefaultRunTaskRetry.MaxAttempts)},
	}
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
