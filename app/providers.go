package app

import (
	"log/slog"

	"github.com/google/wire"

	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// CoreSet builds the transport-independent part of a Runtime from the Ports
// a transport set provides (Broker, RunBroker, ResultBackend, CancelChannel,
// CompletionBus, StateStore), the Config, the Registry and a logger.
var CoreSet = wire.NewSet(
	ProvidePorts,
	ProvideClient,
	ProvideExecutor,
	ProvideLauncher,
	ProvideWorkerFactory,
	wire.Struct(new(Runtime), "Config", "Logger", "Registry", "Ports", "Client", "Executor", "Launcher", "Workers"),
)

// ProvidePorts gathers the ports a transport set provides and applies the
// cancellation switch: with cancellation.enabled false, Ports.Cancels is nil,
// so no Client sends and no Worker listens for cancellation requests. The
// switch lives here, not in a transport set, so every transport obeys it.
func ProvidePorts(cfg config.Config, broker ports.Broker, runBroker RunBroker, results ports.ResultBackend,
	cancels ports.CancelChannel, completions ports.CompletionBus, state ports.StateStore, payloads ports.PayloadStore) Ports {
	if !cfg.Cancellation.Enabled {
		cancels = nil
	}
	return Ports{Broker: broker, RunBroker: runBroker, Results: results, Cancels: cancels, Completions: completions,
		State: state, Payloads: payloads}
}

// ProvideClient builds the Client; the cleanup closes it.
func ProvideClient(cfg config.Config, p Ports, log *slog.Logger) (*core.Client, func(), error) {
	c, err := core.NewClient(core.ClientOptions{
		Broker:           p.Broker,
		Results:          p.Results,
		Cancels:          p.Cancels,
		Completions:      p.Completions,
		Payloads:         p.Payloads,
		PayloadThreshold: cfg.Payload.Threshold,
		GroupBy:          core.GroupBy(cfg.SQS.MessageGroup),
		Logger:           log,
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

// ProvideLauncher builds the Launcher over a Client of its own, bound to
// the run queue (Ports.RunBroker), and the StateStore; the cleanup closes
// that Client.
func ProvideLauncher(cfg config.Config, p Ports, log *slog.Logger) (*core.Launcher, func(), error) {
	c, err := core.NewClient(core.ClientOptions{
		Broker:           p.RunBroker,
		Results:          p.Results,
		Cancels:          p.Cancels,
		Completions:      p.Completions,
		Payloads:         p.Payloads,
		PayloadThreshold: cfg.Payload.Threshold,
		Logger:           log,
	})
	if err != nil {
		return nil, nil, err
	}
	l, err := core.NewLauncher(core.LauncherOptions{
		Client:            c,
		State:             p.State,
		HeartbeatInterval: cfg.Launcher.HeartbeatInterval,
		StaleAfter:        cfg.Launcher.StaleAfter,
		Logger:            log,
	})
	if err != nil {
		_ = c.Close()
		return nil, nil, err
	}
	return l, func() { _ = c.Close() }, nil
}

// ProvideWorkerFactory captures the worker options of the config: step
// workers on the task queue with reg, and run workers on the run queue with
// a registry of their own that holds only the run task, whose steps go
// through c (the task queue's Client).
func ProvideWorkerFactory(cfg config.Config, reg *core.Registry, p Ports, c *core.Client, log *slog.Logger) (*WorkerFactory, error) {
	w := cfg.Worker
	steps := core.WorkerOptions{
		Broker:            p.Broker,
		Results:           p.Results,
		Cancels:           p.Cancels,
		Completions:       p.Completions,
		Payloads:          p.Payloads,
		Registry:          reg,
		Concurrency:       w.Concurrency,
		Lease:             w.Lease,
		HeartbeatInterval: w.HeartbeatInterval,
		MaxExtensions:     w.MaxExtensions,
		ShutdownTimeout:   w.ShutdownTimeout,
		Retry:             cfg.Retry.Policy(),
		Logger:            log,
	}
	runReg := core.NewRegistry()
	err := core.RegisterRunTask(runReg, core.RunTaskDeps{
		Client:            c,
		State:             p.State,
		HeartbeatInterval: cfg.Launcher.HeartbeatInterval,
		StaleAfter:        cfg.Launcher.StaleAfter,
		Logger:            log,
	})
	if err != nil {
		return nil, err
	}
	runs := steps
	runs.Broker = p.RunBroker
	runs.Registry = runReg
	runs.Concurrency = cfg.Launcher.Concurrency
	runs.MaxExtensions = RunWorkerMaxExtensions
	return &WorkerFactory{opts: steps, runOpts: runs}, nil
}
