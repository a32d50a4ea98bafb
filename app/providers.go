package app

import (
	"time"

	"log/slog"

	"github.com/google/wire"

	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
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
	wire.Struct(new(Runtime), "Config", "Logger", "Registry", "Ports", "Client", "Executor", "Launcher", "WorkerFactory", "check"),
)

// ProvidePorts gathers the ports a transport set provides into the port
// set every client and worker of the process shares, with the settings of
// the config that all of them must agree on: the cancellation switch (with
// cancellation.enabled false, Ports.NoCancel is set and Cancels is nil, so
// no Client sends and no Worker listens for cancellation requests; the
// switch lives here, not in a transport set, so every transport obeys it),
// the claim-check threshold (payload.threshold) and signing (signing.*).
// The channel's subscriptions are shared (core.ShareSubscriptions); the
// transport's cleanup closes the channel underneath.
func ProvidePorts(cfg config.Config, broker ports.Broker, runBroker RunBroker, results ports.ResultBackend,
	cancels ports.CancelChannel, completions ports.CompletionBus, state ports.StateStore, payloads ports.PayloadStore) (core.Ports, error) {
	signer, err := cfg.Signing.Signer()
	if err != nil {
		return core.Ports{}, err
	}
	verifier, err := cfg.Signing.Verifier()
	if err != nil {
		return core.Ports{}, err
	}
	p := core.Ports{Broker: broker, RunBroker: runBroker, Results: results, Completions: completions,
		State: state, Payloads: payloads, PayloadThreshold: cfg.Payload.Threshold, Signer: signer, Verifier: verifier}
	if !cfg.Cancellation.Enabled || cancels == nil {
		p.NoCancel = true
	} else {
		// The process's workers (step and run workers) share one listener
		// on the transport: on SQS one cancel queue and one long poll per
		// process instead of one per worker.
		p.Cancels = core.ShareSubscriptions(cancels)
	}
	return p, nil
}

// ProvideClient builds the Client on the task queue; the cleanup closes it.
func ProvideClient(cfg config.Config, p core.Ports, log *slog.Logger, tracer core.Tracer) (*core.Client, func(), error) {
	c, err := core.NewClient(core.ClientOptions{
		Ports:    p,
		GroupBy:  core.GroupBy(cfg.SQS.MessageGroup),
		MaxDelay: cfg.SQS.MaxDelay,
		Tracer:   tracer,
		Logger:   log,
	})
	if err != nil {
		return nil, nil, err
	}
	return c, func() { _ = c.Close() }, nil
}

// ProvideExecutor builds the DAG executor over the Client.
func ProvideExecutor(c *core.Client, log *slog.Logger) (*dag.Executor, error) {
	return dag.NewExecutor(c, dag.ExecutorOptions{Logger: log})
}

// ProvideLauncher builds the Launcher over a Client of its own, bound to
// the run queue (Ports.RunBroker), and the StateStore; the cleanup closes
// that Client. Run tasks are signed like steps: run workers verify them.
func ProvideLauncher(cfg config.Config, p core.Ports, log *slog.Logger, tracer core.Tracer) (*dag.Launcher, func(), error) {
	runs := p
	runs.Broker = p.RunBroker
	c, err := core.NewClient(core.ClientOptions{Ports: runs, MaxDelay: cfg.SQS.MaxDelay, Tracer: tracer, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	l, err := dag.NewLauncher(dag.LauncherOptions{
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
func ProvideWorkerFactory(cfg config.Config, reg *core.Registry, p core.Ports, c *core.Client, log *slog.Logger,
	tracer core.Tracer) (*WorkerFactory, error) {
	w := cfg.Worker
	steps := core.WorkerOptions{
		Ports:             p,
		Registry:          reg,
		Concurrency:       w.Concurrency,
		Lease:             w.Lease,
		HeartbeatInterval: w.HeartbeatInterval,
		MaxExtensions:     w.MaxExtensions,
		MaxDelay:          cfg.SQS.MaxDelay,
		ShutdownTimeout:   w.ShutdownTimeout,
		SettleDepth:       w.SettleDepth,
		Prefetch:          prefetchOption(w.Prefetch),
		DeadLetterSweep:   durationOrNever(w.DeadLetterSweep),
		Retry:             cfg.Retry.Policy(),
		Pools:             cfg.PoolOptions(),
		Tracer:            tracer,
		Logger:            log,
	}
	runReg := core.NewRegistry()
	err := dag.RegisterRunTask(runReg, dag.RunTaskDeps{
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
	runs.Ports.Broker = p.RunBroker
	runs.Registry = runReg
	runs.Pools = core.PoolOptions{} // run tasks name no pool
	runs.Concurrency = cfg.Launcher.Concurrency
	runs.MaxExtensions = RunWorkerMaxExtensions
	// The run task's lease is launcher.stale_after, extended every third of
	// it while the run runs: once its worker dies, the run task is visible
	// again about when the run's heartbeat counts as stale, so another run
	// worker takes the run over within stale_after plus a poll, not after a
	// step lease (worker.lease, 30s by default).
	runs.Lease, runs.HeartbeatInterval = cfg.Launcher.StaleAfter, 0
	// A launched run holds its slot for the whole run: a prefetched run
	// would wait behind it while another run worker is idle.
	runs.Prefetch = -1
	return &WorkerFactory{opts: steps, runOpts: runs}, nil
}

// durationOrNever maps a configured interval (0: never) to a WorkerOptions
// interval (0: the default, negative: never).
func durationOrNever(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// prefetchOption maps worker.prefetch (0: none) to WorkerOptions.Prefetch
// (0: the default, negative: none).
func prefetchOption(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
