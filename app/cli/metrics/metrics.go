// Package metrics serves the Prometheus metrics and the health probes of a
// dagq worker process (dagq worker --metrics-addr): /metrics, /healthz and
// /readyz on one listener.
//
// Metrics has its own registry (not the global one) with the Go and process
// collectors; Observer returns the core.WorkerObserver that turns a worker's
// events into the dagq_worker_* metrics; Options.Queues are polled for the
// dagq_queue_messages gauge; Options.AWSRequests exposes the AWS request
// counts of the process (dagq_aws_*). docs/metrics.md lists every metric.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dagq/dagq/core"
)

// Defaults of Options.
const (
	DefaultDepthInterval = 30 * time.Second
	DefaultReadyTTL      = 5 * time.Second
	DefaultReadyTimeout  = 3 * time.Second
)

// DurationBuckets are the buckets (seconds) of dagq_worker_task_duration_seconds:
// 5ms to 1h.
var DurationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// PoolWaitBuckets are the buckets (seconds) of dagq_worker_pool_wait_seconds:
// no wait (0) to 1h.
var PoolWaitBuckets = []float64{0, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// QueueDepth counts a queue's messages, as SQS's approximate attributes do.
type QueueDepth struct {
	// Visible can be received now (ApproximateNumberOfMessages).
	Visible int64
	// InFlight are leased by a worker (ApproximateNumberOfMessagesNotVisible).
	InFlight int64
	// Delayed wait out a send or retry delay (ApproximateNumberOfMessagesDelayed).
	Delayed int64
}

// Queue is a queue whose depth is polled.
type Queue struct {
	// Name is the value of the queue label.
	Name string
	// Depth reads the queue's depth.
	Depth func(ctx context.Context) (QueueDepth, error)
}

// AWSRequests are the requests of one AWS operation (app.AWSCount).
type AWSRequests struct {
	Service, Operation string
	Requests, Errors   int64
}

// Options configures New. Every field is optional.
type Options struct {
	// Queues are polled every DepthInterval (and once at Start) for
	// dagq_queue_messages.
	Queues []Queue
	// DepthInterval is the queue depth polling interval. Default
	// DefaultDepthInterval (30s).
	DepthInterval time.Duration
	// Ready checks that the broker is reachable, for /readyz. Its answer is
	// kept ReadyTTL, so that probes do not multiply requests. nil: always
	// reachable.
	Ready func(ctx context.Context) error
	// ReadyTTL is how long an answer of Ready is reused. Default
	// DefaultReadyTTL (5s).
	ReadyTTL time.Duration
	// ReadyTimeout bounds one Ready call. Default DefaultReadyTimeout (3s).
	ReadyTimeout time.Duration
	// AWSRequests returns the AWS request counts of the process, read at
	// every scrape (dagq_aws_requests_total, dagq_aws_request_errors_total).
	AWSRequests func() []AWSRequests
	// Version is the value of dagq_build_info's version label.
	Version string
	// Logger receives the server's and the poller's logs. Default
	// slog.Default().
	Logger *slog.Logger
}

// Metrics holds the registry, the worker metrics and the probe state of one
// process.
type Metrics struct {
	opts Options
	reg  *prometheus.Registry
	log  *slog.Logger

	msgsReceived  *prometheus.CounterVec
	msgsRejected  *prometheus.CounterVec
	msgsHanded    *prometheus.CounterVec
	inFlight      *prometheus.GaugeVec
	concurrency   *prometheus.GaugeVec
	tasksReceived *prometheus.CounterVec
	tasksFinished *prometheus.CounterVec
	running       *prometheus.GaugeVec
	duration      *prometheus.HistogramVec
	leaseExt      *prometheus.CounterVec
	leaseExtFail  *prometheus.CounterVec
	cancels       *prometheus.CounterVec
	recvFail      *prometheus.CounterVec
	storeFail     *prometheus.CounterVec
	publishFail   *prometheus.CounterVec
	deadLettered  *prometheus.CounterVec
	poolWaits     *prometheus.CounterVec
	poolHeld      *prometheus.GaugeVec
	poolLost      *prometheus.CounterVec
	poolWaited    *prometheus.HistogramVec
	depth         *prometheus.GaugeVec
	depthErrors   *prometheus.CounterVec
	ready         prometheus.Gauge

	serving      atomic.Bool
	shuttingDown atomic.Bool

	readyMu  sync.Mutex
	readyAt  time.Time // when readyErr was found; zero: never checked
	readyErr error
}

// Outcomes are the values of the outcome label of
// dagq_worker_tasks_finished_total.
var Outcomes = []core.TaskOutcome{core.OutcomeSucceeded, core.OutcomeFailed, core.OutcomeRetried,
	core.OutcomeCancelled, core.OutcomeLeaseLost, core.OutcomeReleased, core.OutcomeDuplicate, core.OutcomeDelayed,
	core.OutcomePostponed}

// New returns Metrics with a registry of its own holding the dagq metrics
// and the Go and process collectors.
func New(opts Options) *Metrics {
	if opts.DepthInterval <= 0 {
		opts.DepthInterval = DefaultDepthInterval
	}
	if opts.ReadyTTL <= 0 {
		opts.ReadyTTL = DefaultReadyTTL
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	m := &Metrics{opts: opts, reg: prometheus.NewRegistry(), log: opts.Logger}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(v)
		return v
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(v)
		return v
	}
	m.msgsReceived = counter("dagq_worker_messages_received_total",
		"Messages received from the queue by the worker (each takes a worker slot).", "queue")
	m.msgsRejected = counter("dagq_worker_messages_rejected_total",
		"Messages never executed: not a valid envelope, a field over its limit, a newer envelope version given up on, a missing claim-check object, a bad signature. Recorded as failed and deleted; one whose message ID cannot hold a result is handed back for the queue's DLQ instead, and counted at every delivery.", "queue")
	m.msgsHanded = counter("dagq_worker_messages_handed_back_total",
		"Messages handed back without having run, at shutdown or not due yet (outcome delayed): how=\"requeued\" as a new message (no attempt counted), how=\"nacked\" where the broker cannot requeue (FIFO queues) or the requeue failed (the next delivery counts one more attempt).", "queue", "how")
	m.inFlight = gauge("dagq_worker_messages_in_flight",
		"Messages the worker holds (received, not yet deleted or handed back): worker slots in use.", "queue")
	m.concurrency = gauge("dagq_worker_concurrency",
		"Worker slots (worker.concurrency, launcher.concurrency for the run queue).", "queue")
	m.tasksReceived = counter("dagq_worker_tasks_received_total",
		"Tasks received (messages decoded into a task), by task name.", "queue", "task")
	m.tasksFinished = counter("dagq_worker_tasks_finished_total",
		"Tasks finished by the worker, by task name and outcome: succeeded, failed (final), retried (handed back for another attempt), cancelled, lease_lost, released (at shutdown), duplicate (a redelivery that had a result), delayed (received before its due time and sent on; once per sqs.max_delay while a task waits), postponed (handed back to wait for a pool slot, no attempt counted).", "queue", "task", "outcome")
	m.running = gauge("dagq_worker_tasks_running",
		"Task handlers running now, by task name.", "queue", "task")
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "dagq_worker_task_duration_seconds",
		Help:    "Run time of task handlers (every attempt that ran, whatever its outcome), by task name.",
		Buckets: DurationBuckets,
	}, []string{"queue", "task"})
	m.reg.MustRegister(m.duration)
	m.leaseExt = counter("dagq_worker_lease_extensions_total",
		"Leases (visibility timeouts) of running tasks extended by the heartbeat.", "queue")
	m.leaseExtFail = counter("dagq_worker_lease_extension_failures_total",
		"Lease extensions that failed (the call or its item failed, or the lease was lost).", "queue")
	m.cancels = counter("dagq_worker_cancel_requests_total",
		"Cancellation requests received from the cancel subscription (task IDs, whether or not they run here).", "queue")
	m.recvFail = counter("dagq_worker_receive_failures_total",
		"Receive calls of the worker that failed (it backs off and tries again): the worker gets no work meanwhile.", "queue")
	m.storeFail = counter("dagq_worker_result_store_failures_total",
		"Results the worker could not store in the result backend after its retries; the task is handed back for redelivery.", "queue")
	m.publishFail = counter("dagq_worker_completion_publish_failures_total",
		"Completions that could not be pushed to their reply inbox (the result is stored; waiters read it from the result backend).", "queue")
	m.deadLettered = counter("dagq_worker_dead_lettered_total",
		"Tasks found in the queue's dead-letter queue without a result, recorded as failed by the worker's dead-letter sweep.", "queue")
	m.poolWaits = counter("dagq_worker_pool_waits_total",
		"Tasks of a concurrency pool postponed because the pool had no slot for them (each re-check that finds none counts); no attempt is counted.", "queue", "pool")
	m.poolHeld = gauge("dagq_worker_pool_slots_held",
		"Slots of a concurrency pool the worker's tasks hold now.", "queue", "pool")
	m.poolLost = counter("dagq_worker_pool_slots_lost_total",
		"Pool slots whose lease the worker could not renew in time (or another task took): the task's handler was cancelled and its attempt retried.", "queue", "pool")
	m.poolWaited = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "dagq_worker_pool_wait_seconds",
		Help:    "How long a task of a concurrency pool waited for its slot (from its first wait to the slot; 0 when it did not wait).",
		Buckets: PoolWaitBuckets,
	}, []string{"queue", "pool"})
	m.reg.MustRegister(m.poolWaited)
	m.depth = gauge("dagq_queue_messages",
		"Messages in the queue by state, polled: visible (ApproximateNumberOfMessages), in_flight (ApproximateNumberOfMessagesNotVisible), delayed (ApproximateNumberOfMessagesDelayed).", "queue", "state")
	m.depthErrors = counter("dagq_queue_depth_errors_total",
		"Queue depth polls that failed (the gauge keeps its last value).", "queue")
	m.ready = prometheus.NewGauge(prometheus.GaugeOpts{Name: "dagq_ready",
		Help: "1 when the last /readyz answer was ready (serving, broker reachable, not shutting down), else 0."})
	m.reg.MustRegister(m.ready)
	buildInfo := gauge("dagq_build_info", "Always 1; the version label is the dagq version.", "version")
	buildInfo.WithLabelValues(opts.Version).Set(1)
	for _, q := range opts.Queues {
		m.depthErrors.WithLabelValues(q.Name)
	}
	if opts.AWSRequests != nil {
		m.reg.MustRegister(awsCollector{opts.AWSRequests})
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry, to add collectors of one's own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// WorkerInfo describes the workers of one queue for Observer.
type WorkerInfo struct {
	// Queue is the value of the queue label.
	Queue string
	// Concurrency is the slots of a worker (dagq_worker_concurrency; added
	// up when several observed workers serve the queue).
	Concurrency int
	// Tasks are the registered task names, whose series are created at 0 so
	// that rates work from the first event.
	Tasks []string
	// Pools are the concurrency pools the workers have a limit for, whose
	// series are created at 0 likewise.
	Pools []string
}

// Observer returns the observer of the workers of one queue: set it as
// core.WorkerOptions.Observer. Its methods are safe for concurrent use and
// may be shared by several workers.
func (m *Metrics) Observer(info WorkerInfo) core.WorkerObserver {
	q := info.Queue
	o := &observer{
		m:            m,
		queue:        q,
		msgsReceived: m.msgsReceived.WithLabelValues(q),
		msgsRejected: m.msgsRejected.WithLabelValues(q),
		requeued:     m.msgsHanded.WithLabelValues(q, "requeued"),
		nacked:       m.msgsHanded.WithLabelValues(q, "nacked"),
		inFlight:     m.inFlight.WithLabelValues(q),
		leaseExt:     m.leaseExt.WithLabelValues(q),
		leaseExtFail: m.leaseExtFail.WithLabelValues(q),
		cancels:      m.cancels.WithLabelValues(q),
		recvFail:     m.recvFail.WithLabelValues(q),
		storeFail:    m.storeFail.WithLabelValues(q),
		publishFail:  m.publishFail.WithLabelValues(q),
		deadLettered: m.deadLettered.WithLabelValues(q),
	}
	m.concurrency.WithLabelValues(q).Add(float64(info.Concurrency))
	for _, t := range info.Tasks {
		m.tasksReceived.WithLabelValues(q, t)
		for _, oc := range Outcomes {
			m.tasksFinished.WithLabelValues(q, t, oc.String())
		}
		m.running.WithLabelValues(q, t)
		m.duration.WithLabelValues(q, t)
	}
	for _, p := range info.Pools {
		m.poolWaits.WithLabelValues(q, p)
		m.poolHeld.WithLabelValues(q, p)
		m.poolLost.WithLabelValues(q, p)
		m.poolWaited.WithLabelValues(q, p)
	}
	return o
}

type observer struct {
	m     *Metrics
	queue string

	msgsReceived, msgsRejected, leaseExt, leaseExtFail, cancels prometheus.Counter
	recvFail, storeFail, publishFail, requeued, nacked          prometheus.Counter
	deadLettered                                                prometheus.Counter
	inFlight                                                    prometheus.Gauge
}

var _ core.WorkerObserver = (*observer)(nil)

func (o *observer) MessagesReceived(n int) {
	o.msgsReceived.Add(float64(n))
	o.inFlight.Add(float64(n))
}

func (o *observer) MessageDone()     { o.inFlight.Dec() }
func (o *observer) MessageRejected() { o.msgsRejected.Inc() }

func (o *observer) MessageHandedBack(requeued bool) {
	if requeued {
		o.requeued.Inc()
	} else {
		o.nacked.Inc()
	}
}

func (o *observer) TaskReceived(t core.TaskInfo) {
	o.m.tasksReceived.WithLabelValues(o.queue, t.Name).Inc()
}

func (o *observer) TaskStarted(t core.TaskInfo) {
	o.m.running.WithLabelValues(o.queue, t.Name).Inc()
}

func (o *observer) TaskFinished(t core.TaskInfo, r core.TaskResult) {
	if r.Ran {
		o.m.running.WithLabelValues(o.queue, t.Name).Dec()
		o.m.duration.WithLabelValues(o.queue, t.Name).Observe(r.Duration.Seconds())
	}
	o.m.tasksFinished.WithLabelValues(o.queue, t.Name, r.Outcome.String()).Inc()
}

func (o *observer) LeasesExtended(extended, failed int) {
	o.leaseExt.Add(float64(extended))
	o.leaseExtFail.Add(float64(failed))
}

func (o *observer) CancelRequested(n int) { o.cancels.Add(float64(n)) }

func (o *observer) ReceiveFailed()           { o.recvFail.Inc() }
func (o *observer) ResultStoreFailed()       { o.storeFail.Inc() }
func (o *observer) CompletionPublishFailed() { o.publishFail.Inc() }
func (o *observer) DeadLettered()            { o.deadLettered.Inc() }

func (o *observer) PoolWaited(pool string) { o.m.poolWaits.WithLabelValues(o.queue, pool).Inc() }

func (o *observer) PoolAcquired(pool string, waited time.Duration) {
	o.m.poolHeld.WithLabelValues(o.queue, pool).Inc()
	o.m.poolWaited.WithLabelValues(o.queue, pool).Observe(waited.Seconds())
}

func (o *observer) PoolReleased(pool string, lost bool) {
	o.m.poolHeld.WithLabelValues(o.queue, pool).Dec()
	if lost {
		o.m.poolLost.WithLabelValues(o.queue, pool).Inc()
	}
}

// awsCollector exposes the AWS request counts read at each scrape.
type awsCollector struct{ read func() []AWSRequests }

var (
	awsRequestsDesc = prometheus.NewDesc("dagq_aws_requests_total",
		"AWS API requests (HTTP attempts, retries included) of this process, by service and operation.",
		[]string{"service", "operation"}, nil)
	awsErrorsDesc = prometheus.NewDesc("dagq_aws_request_errors_total",
		"AWS API requests that failed (an error response, a transport error, a cancelled call: a long poll cut short at shutdown counts), by service and operation.",
		[]string{"service", "operation"}, nil)
)

func (c awsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- awsRequestsDesc
	ch <- awsErrorsDesc
}

func (c awsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.read() {
		ch <- prometheus.MustNewConstMetric(awsRequestsDesc, prometheus.CounterValue, float64(r.Requests), r.Service, r.Operation)
		ch <- prometheus.MustNewConstMetric(awsErrorsDesc, prometheus.CounterValue, float64(r.Errors), r.Service, r.Operation)
	}
}

// MarkServing makes /readyz check the broker: call it once the workers
// run. Before, /readyz answers 503 "starting".
func (m *Metrics) MarkServing() { m.serving.Store(true) }

// MarkShuttingDown makes /readyz answer 503 from now on: call it when
// shutdown begins (SIGTERM), before in-flight tasks drain.
func (m *Metrics) MarkShuttingDown() {
	m.shuttingDown.Store(true)
	m.ready.Set(0)
}

// Ready returns nil when the process is ready to serve (workers running,
// broker reachable, not shutting down), else the reason.
func (m *Metrics) Ready(ctx context.Context) error {
	err := m.readiness(ctx)
	if err == nil {
		m.ready.Set(1)
	} else {
		m.ready.Set(0)
	}
	return err
}

func (m *Metrics) readiness(ctx context.Context) error {
	switch {
	case m.shuttingDown.Load():
		return errors.New("shutting down: draining in-flight tasks")
	case !m.serving.Load():
		return errors.New("starting: workers not running yet")
	case m.opts.Ready == nil:
		return nil
	}
	m.readyMu.Lock()
	defer m.readyMu.Unlock()
	if !m.readyAt.IsZero() && time.Since(m.readyAt) < m.opts.ReadyTTL {
		return m.readyErr
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.ReadyTimeout)
	err := m.opts.Ready(cctx)
	cancel()
	if err != nil {
		err = fmt.Errorf("broker unreachable: %w", err)
		m.log.Warn("readiness check failed", "err", err)
	}
	m.readyAt, m.readyErr = time.Now(), err
	return err
}

// Handler serves /metrics, /healthz (200 while the process is alive) and
// /readyz (200 when ready, else 503 with a one-line reason).
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeLine(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Ready(r.Context()); err != nil {
			writeLine(w, http.StatusServiceUnavailable, "not ready: "+oneLine(err.Error()))
			return
		}
		writeLine(w, http.StatusOK, "ready")
	})
	return mux
}

func writeLine(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, s)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// PollDepth reads the depth of every queue once and sets
// dagq_queue_messages.
func (m *Metrics) PollDepth(ctx context.Context) {
	for _, q := range m.opts.Queues {
		cctx, cancel := context.WithTimeout(ctx, m.opts.DepthInterval)
		d, err := q.Depth(cctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				m.depthErrors.WithLabelValues(q.Name).Inc()
				m.log.Warn("reading the queue depth failed", "queue", q.Name, "err", err)
			}
			continue
		}
		m.depth.WithLabelValues(q.Name, "visible").Set(float64(d.Visible))
		m.depth.WithLabelValues(q.Name, "in_flight").Set(float64(d.InFlight))
		m.depth.WithLabelValues(q.Name, "delayed").Set(float64(d.Delayed))
	}
}

// pollLoop polls the queue depths at once, then every DepthInterval, until
// ctx is done.
func (m *Metrics) pollLoop(ctx context.Context) {
	if len(m.opts.Queues) == 0 {
		return
	}
	t := time.NewTicker(m.opts.DepthInterval)
	defer t.Stop()
	for {
		m.PollDepth(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Server is a running metrics and probes listener (Start).
type Server struct {
	srv    *http.Server
	ln     net.Listener
	stop   context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
	err    error
}

// Start listens on addr (host:port; ":0" picks a port), serves Handler on
// it and starts the queue depth poller. The listener is bound before Start
// returns, so a bad or busy address fails here.
func (m *Metrics) Start(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{
		srv:  &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn)},
		ln:   ln,
		stop: stop,
	}
	s.wg.Go(func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("metrics server stopped", "addr", ln.Addr().String(), "err", err)
		}
	})
	s.wg.Go(func() { m.pollLoop(ctx) })
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the poller and shuts the server down, waiting up to ctx for
// requests in progress. Close is idempotent.
func (s *Server) Close(ctx context.Context) error {
	s.closed.Do(func() {
		s.stop()
		s.err = s.srv.Shutdown(ctx)
		s.wg.Wait()
	})
	return s.err
}
