package app

import (
	"log/slog"

	"github.com/google/wire"

	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
)

// CoreSet builds the transport-independent part of a Runtime from the Ports
// a transport set provides (Broker, ResultBackend, CancelChannel,
// CompletionBus), the Config, the Registry and a logger.
var CoreSet = wire.NewSet(
	wire.Struct(new(Ports), "*"),
	ProvideClient,
	ProvideExecutor,
	ProvideWorkerFactory,
	wire.Struct(new(Runtime), "Config", "Logger", "Registry", "Ports", "Client", "Executor", "Workers"),
)

// ProvideClient builds the Client; the cleanup closes it.
func ProvideClient(p Ports, log *slog.Logger) (*core.Client, func(), error) {
	c, err := core.NewClient(core.ClientOptions{
		Broker:      p.Broker,
		Results:     p.Results,
		Cancels:     p.Cancels,
		Completions: p.Completions,
		Logger:      log,
	})
	if err != nil {
		return nil, nil, err
	}
	return c, func() { _ = c.Close() }, nil
}

// ProvideExecutor builds the DAG executor over the Client.
func ProvideExecutor(c *core.Client, log *slog.Logger) (*core.Executor, error) {
	return core.NewExecutor(c, core.ExecutorOptions{Logger: log})
}

// ProvideWorkerFactory captures the worker options of the config.
func ProvideWorkerFactory(cfg config.Config, reg *core.Registry, p Ports, log *slog.Logger) *WorkerFactory {
	w := cfg.Worker
	return &WorkerFactory{opts: core.WorkerOptions{
		Broker:            p.Broker,
		Results:           p.Results,
		Cancels:           p.Cancels,
		Completions:       p.Completions,
		Registry:          reg,
		Concurrency:       w.Concurrency,
		Lease:             w.Lease,
		HeartbeatInterval: w.HeartbeatInterval,
		MaxExtensions:     w.MaxExtensions,
		ShutdownTimeout:   w.ShutdownTimeout,
		Retry:             cfg.Retry.Policy(),
		Logger:            log,
	}}
}
