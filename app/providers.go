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
// CompletionBus, StateStore), the Config, the Registry, a logger and a
// core.Tracer (nil: no tracing) for the clients and workers.
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
// The channel's subscriptions are shared (core.ShareSubscriptions); the
// transport's cleanup closes the channel underneath.
func ProvidePorts(cfg config.Config, broker ports.Broker, runBroker RunBroker, results ports.ResultBackend,
	cancels ports.CancelChannel, completions ports.CompletionBus, state ports.StateStore, payloads ports.PayloadStore) Ports {
	if !cfg.Cancellation.Enabled {
		cancels = nil
	} else if cancels != nil {
		// The process's workers (step and run workers) share one listener
		// on the transport: on SQS one cancel queue and one long poll per
		// process instead of one per worker.
		cancels = core.ShareSubscriptions(cancels)
	}
	return Ports{Broker: broker, RunBroker: runBroker, Results: results, Cancels: cancels, Completions: completions,
		State: state, Payloads: payloads}
}

// ProvideClient builds the Client, signing with signing.key_id when signing
// is on; the cleanup closes it.
func ProvideClient(cfg config.Config, p Ports, log *slog.Logger, tracer core.Tracer) (*core.Client, func(), error) {
	signer, err := cfg.Signing.Signer()
	if err != nil {
		return nil, nil, err
	}
	c, err := core.NewClient(core.ClientOptions{
		Broker:           p.Broker,
		Results:          p.Results,
		Cancels:          p.Cancels,
		Completions:      p.Completions,
		Payloads:         p.Payloads,
		PayloadThreshold: cfg.Payload.Threshold,
		GroupBy:          core.GroupBy(cfg.SQS.MessageGroup),
		Signer:           signer,
		Tracer:           tracer,
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
// that Client. Run tasks are signed like steps: run workers verify them.
func ProvideLauncher(cfg config.Config, p Ports, log *slog.Logger, tracer core.Tracer) (*core.Launcher, func(), error) {
	signer, err := cfg.Signing.Signer()
	if err != nil {
		return nil, nil, err
	}
	c, err := core.NewClient(core.ClientOptions{
		Broker:           p.RunBroker,
		Results:          p.Results,
		Cancels:          p.Cancels,
		Completions:      p.Completions,
		Payloads:         p.Payloads,
		PayloadThreshold: cfg.Payload.Threshold,
		Signer:           signer,
		Tracer:           tracer,
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
// through c (the task queue's Client). With signing on, both verify every
// task they receive (signing.keys, signing.required).
func ProvideWorkerFactory(cfg config.Config, reg *core.Registry, p Ports, c *core.Client, log *slog.Logger,
	tracer core.Tracer) (*WorkerFactory, error) {
	verifier, err := cfg.Signing.Verifier()
	if err != nil {
		return nil, err
	}
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
		Verifier:          verifier,
		Tracer:            tracer,
		Logger:            log,
	}
	runReg := core.NewRegistry()
	err = core.RegisterRunTask(runReg, core.RunTaskDeps{
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
