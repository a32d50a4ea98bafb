// Package app is the composition root of dagq: it takes a validated
// configuration (package app/config), builds the transport's adapters and
// the core Client, Executor, Launcher and workers with Wire (one injector
// per transport), and hands them over as a Runtime. It holds no command
// line, metrics or tracing exporters: the dagq command (package app/cli)
// builds those and passes them in as options (WithTracer,
// WithAWSAPIOptions), so an embedder depends on none of them.
//
// Steps travel on the task queue (queue); launched runs on the run queue
// (launcher.queue), served by run workers with slots of their own, since a
// run task holds its slot for the whole run.
//
// # Embedding the runtime
//
// A service that only needs the wiring calls New with a validated config:
//
//	rt, err := app.New(cfg, reg)
//	defer rt.Close()
//	err = rt.CheckTransport(ctx, app.CheckOptions{}) // queues, DLQs, bucket: usable? (*TransportError)
//	pool, err := rt.StartWorkers(ctx, 1) // memory transport: workers in process
//	res, err := rt.Executor.Run(ctx, job, dag.RunOptions{})
//
// or launches runs that run workers drive (on a shared transport, in any
// process that serves the run queue):
//
//	runs, err := rt.StartRunWorkers(ctx, 1)  // serve launcher.queue
//	runID, err := rt.Launcher.Launch(ctx, job, dag.LaunchOptions{})
//	rec, err := rt.Launcher.Wait(ctx, runID)
//
// While pools started by StartWorkers or StartRunWorkers run, the process
// has a record in the worker registry, which Workers lists (dagq workers;
// see WorkerInfo).
//
// A program that wants the whole dagq command line over its own tasks uses
// package app/cli (cli.Main) instead.
//
// # Transports
//
// The transport key picks the injector: memory (InitMemory) or sqs
// (InitSQS: SQS queues sqs.queue_url and sqs.run_queue_url, S3 bucket
// s3.bucket). Completions are pushed to a reply queue per client,
// cancellation requests are marked in the bucket and broadcast to a queue per
// worker, and large envelopes go to the bucket.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"

	"github.com/aws/smithy-go/middleware"
	"golang.org/x/term"

	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// RunBroker is a Broker bound to the run queue (launcher.queue). It is a
// type of its own so that Wire tells it from the task queue's Broker.
type RunBroker ports.Broker

// Runtime is a wired dagq: the adapters of the configured transport, a
// Client and an Executor over them, a Launcher, and a factory of workers.
// Close it when done.
type Runtime struct {
	Config   config.Config
	Logger   *slog.Logger
	Registry *core.Registry
	// Ports is the transport, with the config's cancellation switch
	// (Ports.NoCancel), claim-check threshold and signing applied.
	Ports core.Ports
	// Client submits to the task queue (queue); Executor runs jobs through
	// it from this process (dagq run), and run workers submit the steps of
	// launched runs through it.
	Client   *core.Client
	Executor *dag.Executor
	// Launcher launches runs as run tasks on the run queue
	// (launcher.queue) and answers for them from Ports.State: dagq launch,
	// status, health and terminate. Its own Client is bound to the run
	// queue.
	Launcher *dag.Launcher
	// WorkerFactory builds the workers StartWorkers and StartRunWorkers
	// start. (Workers, the method, lists the worker registry.)
	WorkerFactory *WorkerFactory

	check     transportChecker // CheckTransport (nil: nothing to check)
	cleanup   func()
	closeOnce sync.Once

	// version is published in the worker registry (WithVersion).
	version      string
	registryOnce sync.Once
	registry     *workerRegistry // see workerRegistry
}

// Embedded reports whether the transport lives in this process (memory):
// then only workers started by this process (StartWorkers, StartRunWorkers)
// can serve the tasks it submits, and only this process sees its runs.
func (r *Runtime) Embedded() bool { return config.Embedded(r.Config.Transport) }

// Close releases the Client and the adapters. Stop workers first: Close
// deletes the process's worker record (see Workers) if a pool left it.
func (r *Runtime) Close() {
	r.closeOnce.Do(func() {
		r.workerRegistry().close()
		if r.cleanup != nil {
			r.cleanup()
		}
	})
}

// Option configures New.
type Option func(*options)

type options struct {
	logger        *slog.Logger
	awsAPIOptions []func(*middleware.Stack) error
	tracer        core.Tracer
	noticesShown  bool // the caller printed cfg.Notices (the CLI)
	version       string
}

// WithVersion sets the version the runtime's worker processes publish in
// the worker registry (WorkerInfo.Version). Default: the version of the
// dagq module in the program's build info, else "dev". The dagq command
// passes its own (cli.Version).
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithNoticesShown tells New that the caller printed the configuration's
// notices (config.Config.Notices) already, so New does not log them again:
// the dagq command prints them as warnings when it loads the configuration.
func WithNoticesShown() Option { return func(o *options) { o.noticesShown = true } }

// WithLogger sets the logger of the client, executor and workers (default:
// NewLogger(cfg.Log, os.Stderr)).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithAWSAPIOptions appends fns to the API options (aws.Config.APIOptions)
// of the AWS SDK clients of the sqs transport, so that they apply to every
// SQS and S3 request the runtime's client, launcher and workers make:
// middleware that counts requests (the dagq command's cli.AWSCounter),
// traces or adds headers.
// The memory transport makes no AWS request and ignores them.
func WithAWSAPIOptions(fns ...func(*middleware.Stack) error) Option {
	return func(o *options) { o.awsAPIOptions = append(o.awsAPIOptions, fns...) }
}

// WithTracer traces the runtime's clients, executor, launcher and workers
// with tracer (see docs/tracing.md): a span per submission, per handler
// attempt, per run and per launch, the trace context travelling to the
// workers in the envelope. Without it (or with a nil tracer) nothing is
// traced. Package app/telemetry implements core.Tracer with OpenTelemetry:
//
//	app.WithTracer(telemetry.NewTracer(tp, telemetry.WithMessagingSystem("aws_sqs")))
//
// New does not shut the tracer's provider down; its owner does, after
// closing the runtime.
func WithTracer(tracer core.Tracer) Option {
	return func(o *options) { o.tracer = tracer }
}

// New validates cfg and wires the runtime of its transport.
func New(cfg config.Config, reg *core.Registry, opts ...Option) (*Runtime, error) {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if reg == nil {
		return nil, errors.New("app: a task registry is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	if o.logger == nil {
		var err error
		if o.logger, err = NewLogger(cfg.Log, os.Stderr); err != nil {
			return nil, err
		}
	}
	if !o.noticesShown {
		for _, n := range cfg.Notices() {
			o.logger.Warn("dagq: configuration notice: " + n)
		}
	}
	var (
		rt      *Runtime
		cleanup func()
		err     error
		tracer  = o.tracer // nil: no tracing
	)
	switch cfg.Transport {
	case config.TransportMemory:
		rt, cleanup, err = InitMemory(cfg, reg, o.logger, tracer)
	case config.TransportSQS:
		rt, cleanup, err = InitSQS(cfg, reg, o.logger, tracer, o.awsAPIOptions...)
	default: // Validate lets only supported transports through
		return nil, fmt.Errorf("transport %q is not supported by this build; valid values: %s",
			cfg.Transport, strings.Join(config.SupportedTransports, ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("wire transport %s: %w", cfg.Transport, err)
	}
	rt.cleanup = cleanup
	rt.version = o.version
	return rt, nil
}

// NewLogger builds the process logger of the log keys, writing to w.
// Durations are written as strings ("10ms") in both formats. Format auto
// (and "") writes text when w is a terminal and JSON otherwise (a file, a pipe, a log collector); a writer that wraps another
// (an Unwrap() io.Writer method, as dagq run's live view has) is judged by
// the writer it wraps.
func NewLogger(c config.LogConfig, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %q: valid values: %s", c.Level, strings.Join(config.LogLevels, ", "))
	}
	hopts := &slog.HandlerOptions{Level: level, ReplaceAttr: humanDurations}
	format := strings.ToLower(c.Format)
	if format == config.LogFormatAuto || format == "" {
		format = config.LogFormatJSON
		if logTerminal(w) {
			format = config.LogFormatText
		}
	}
	switch format {
	case config.LogFormatJSON:
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	case config.LogFormatText:
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("log.format: %q: valid values: %s", c.Format, strings.Join(config.LogFormats, ", "))
}

// humanDurations writes a duration as people read it ("10ms", "1m30s") in
// both formats: the JSON handler would write its nanoseconds.
func humanDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// logTerminal reports whether w, or the writer it wraps, is a terminal.
func logTerminal(w io.Writer) bool {
	for range 8 { // a bound, against a wrapper that wraps itself
		if f, ok := w.(*os.File); ok {
			return term.IsTerminal(int(f.Fd()))
		}
		u, ok := w.(interface{ Unwrap() io.Writer })
		if !ok {
			return false
		}
		w = u.Unwrap()
	}
	return false
}

// RunWorkerMaxExtensions is the lease extension cap of run workers: a run
// task holds its lease for as long as its run runs, so the cap is out of
// reach (with a 10s heartbeat, centuries). A run task whose worker dies is
// still redelivered once its lease runs out (worker.lease).
const RunWorkerMaxExtensions = math.MaxInt32

// WorkerFactory builds workers with the configured options over the
// runtime's ports: step workers (New) serve the task queue with the
// registered tasks; run workers (NewRun) serve the run queue with only the
// Launcher's run task.
type WorkerFactory struct {
	opts    core.WorkerOptions
	runOpts core.WorkerOptions
}

// New returns a step worker; id names it in logs and results ("" for the
// default hostname-pid-random).
func (f *WorkerFactory) New(id string) (*core.Worker, error) {
	o := f.opts
	o.ID = id
	return core.NewWorker(o)
}

// NewRun returns a run worker: it serves the run queue (launcher.queue)
// with launcher.concurrency slots and a registry holding only the run task
// (dag.RegisterRunTask), which submits the run's steps to the task queue.
func (f *WorkerFactory) NewRun(id string) (*core.Worker, error) {
	o := f.runOpts
	o.ID = id
	return core.NewWorker(o)
}

// Options returns the options of step workers.
func (f *WorkerFactory) Options() core.WorkerOptions { return f.opts }

// RunOptions returns the options of run workers.
func (f *WorkerFactory) RunOptions() core.WorkerOptions { return f.runOpts }

// Pool is a set of running workers.
type Pool struct {
	stop context.CancelFunc
	// done is closed once every worker returned and the pool left the
	// worker registry; err then holds the workers' errors.
	done chan struct{}
	ids  []string

	mu  sync.Mutex
	err error
}

// IDs returns the workers' IDs.
func (p *Pool) IDs() []string { return p.ids }

// Stop shuts the workers down gracefully (see core.Worker) and waits for
// them; it returns their errors joined (once: a later Stop returns nil).
// Stop is idempotent.
func (p *Pool) Stop() error {
	p.stop()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.err
	p.err = nil
	return err
}

// PoolOption adjusts the worker options of a pool that StartWorkers or
// StartRunWorkers starts.
type PoolOption func(*core.WorkerOptions)

// WithWorkerObserver gives the pool's workers obs as their Observer (the
// metrics of dagq worker); nil keeps the factory's.
func WithWorkerObserver(obs core.WorkerObserver) PoolOption {
	return func(o *core.WorkerOptions) {
		if obs != nil {
			o.Observer = obs
		}
	}
}

// StartWorkers starts n step workers that serve the task queue (queue)
// until ctx is done or Stop is called. While they run, the process has a
// record in the worker registry (see Workers; worker.registry_interval):
// StartWorkers writes it before it returns (one state store write, at most
// 10s; a failure is logged, not returned), and Stop deletes it once the
// process's last pool stopped.
func (r *Runtime) StartWorkers(ctx context.Context, n int, opts ...PoolOption) (*Pool, error) {
	return r.startPool(ctx, n, QueueTasks, r.WorkerFactory.opts, opts)
}

// StartRunWorkers starts n run workers that serve the run queue
// (launcher.queue), each driving up to launcher.concurrency launched runs,
// until ctx is done or Stop is called. The runs' steps go to the task
// queue: some process must serve it too (StartWorkers). Like StartWorkers,
// it keeps the process in the worker registry while they run.
func (r *Runtime) StartRunWorkers(ctx context.Context, n int, opts ...PoolOption) (*Pool, error) {
	return r.startPool(ctx, n, QueueRuns, r.WorkerFactory.runOpts, opts)
}

// startPool starts n workers with base adjusted by opts on the queue of
// role, entered in the worker registry.
func (r *Runtime) startPool(ctx context.Context, n int, role string, base core.WorkerOptions, opts []PoolOption) (*Pool, error) {
	for _, opt := range opts {
		opt(&base)
	}
	_, queue, err := r.broker(role)
	if err != nil {
		return nil, err
	}
	newWorker := func(id string) (*core.Worker, error) {
		o := base
		o.ID = id
		return core.NewWorker(o)
	}
	concurrency := cmp.Or(base.Concurrency, core.DefaultWorkerConcurrency)
	return startPool(ctx, n, newWorker, func(ws []*core.Worker) func() {
		return r.workerRegistry().enter(&registeredPool{workers: ws, queue: queue, concurrency: concurrency})
	})
}

// StartPool starts n workers built by newWorker (called with "" for the
// default ID) that serve until ctx is done or Stop is called, with options
// of the caller's own. Unlike StartWorkers and StartRunWorkers it does not
// enter them in the worker registry.
func StartPool(ctx context.Context, n int, newWorker func(id string) (*core.Worker, error)) (*Pool, error) {
	return startPool(ctx, n, newWorker, nil)
}

// startPool starts the workers, then calls enter (when not nil) with them;
// the function enter returns is called once they all returned.
func startPool(ctx context.Context, n int, newWorker func(id string) (*core.Worker, error),
	enter func([]*core.Worker) (leave func())) (*Pool, error) {
	if n < 1 {
		return nil, fmt.Errorf("app: start workers: n is %d; it must be at least 1", n)
	}
	workers := make([]*core.Worker, n)
	ids := make([]string, n)
	for i := range n {
		w, err := newWorker("")
		if err != nil {
			return nil, err
		}
		workers[i], ids[i] = w, w.ID()
	}
	ctx, stop := context.WithCancel(ctx)
	p := &Pool{stop: stop, done: make(chan struct{}), ids: ids}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() { errs[i] = w.Run(ctx) })
	}
	leave := func() {}
	if enter != nil {
		leave = enter(workers)
	}
	go func() {
		wg.Wait()
		leave()
		p.mu.Lock()
		p.err = errors.Join(errs...)
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}
