package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dagq/dagq/ports"
)

// Worker defaults (see WorkerOptions).
const (
	DefaultWorkerConcurrency = 10
	DefaultLease             = 30 * time.Second
	DefaultMaxExtensions     = 360
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultInlineResultLimit = 64 << 10
	// DefaultMaxResultBytes is the default WorkerOptions.MaxResultBytes:
	// 4 MiB of JSON output per task.
	DefaultMaxResultBytes = 4 << 20
	// DefaultSettleDepth is the default WorkerOptions.SettleDepth: how many
	// finished tasks may be settling (result write, completion, delete) at
	// once after their slots were freed.
	DefaultSettleDepth = 64
	// DefaultPrefetch is the default WorkerOptions.Prefetch: received
	// messages a worker may hold, not started, beyond its Concurrency.
	DefaultPrefetch = 10
)

// Tuning of the worker's internal loops.
const (
	// recentCancelsSize bounds the set of recently requested cancellations a
	// worker remembers from its subscription.
	recentCancelsSize = 10000
	// putAttempts is how often a result Put is tried before the task is
	// released for a later redelivery.
	putAttempts = 4
	// putRetryDelay is the delay before the second Put attempt (doubling).
	putRetryDelay = 100 * time.Millisecond
	// putFailedNackDelay is the Nack delay of a task whose result could not
	// be stored.
	putFailedNackDelay = 5 * time.Second
	// durableCheckAttempts is how often the per-batch Canceled call is tried.
	durableCheckAttempts = 3
)

// loopBackoff paces the retries of the receive and cancel-subscription loops
// after an error: 100ms doubling up to 30s, minus up to 20% jitter.
var loopBackoff = RetryPolicy{
	MaxAttempts:    1,
	InitialBackoff: 100 * time.Millisecond,
	MaxBackoff:     30 * time.Second,
	Multiplier:     2,
	Jitter:         0.2,
}

// WorkerOptions configures a Worker. Ports (see Ports for which of its fields)
// and Registry are required; every other zero value takes the default named
// on its field.
type WorkerOptions struct {
	// Ports is the transport (see Ports): Broker and Results are required,
	// and Cancels unless Ports.NoCancel is set. The worker receives from
	// Broker, stores results in Results, listens on Cancels, publishes
	// completions on Completions, fetches claim-check envelopes from Payloads
	// and verifies signatures with Verifier.
	Ports Ports
	// Registry holds the handlers the worker runs. Required.
	Registry *Registry
	// ID names the worker in logs and in the results it records. Default:
	// hostname-pid-random.
	ID string
	// Concurrency is the most handlers running at once. A slot is taken when
	// a task is received (or, with Prefetch, when it starts) and freed when
	// its handler returns; the task's settlement (result write, completion,
	// delete) then goes on in the settlement pipeline (SettleDepth). Default
	// DefaultWorkerConcurrency (10); must not be negative.
	Concurrency int
	// SettleDepth is the most finished tasks settling at once: their result
	// written, their completion published and their message deleted after
	// their slot was freed. Their leases are extended like running ones
	// until the delete. When the pipeline is full, a finishing task keeps its
	// slot until there is room (back-pressure). Concurrent settlements are
	// what the SQS adapter's group commit batches together. Default
	// DefaultSettleDepth (64); must not be negative.
	SettleDepth int
	// Prefetch is the most received messages the worker holds not yet
	// started, beyond Concurrency, so that one Receive of up to ten serves a
	// worker of any concurrency. A prefetched message's lease is extended
	// like a running one's, and it is handed back at once when shutdown
	// begins: requeued as a new message where the broker can
	// (ports.Requeuer), so the release costs no attempt; on a FIFO queue
	// (or a broker without Requeue) released with Nack 0, so its next
	// delivery counts one more receive, and attempt. Prefetched
	// messages wait for this worker's slots, in the order received, even
	// while another worker is idle: with long tasks and few of them, turn it
	// off. Default DefaultPrefetch (10); negative means none.
	Prefetch int
	// Lease is the lease (visibility timeout) of every Receive and Extend,
	// 0 < Lease ≤ ports.MaxLease. Default DefaultLease (30s).
	Lease time.Duration
	// HeartbeatInterval is how often the worker extends the leases of its
	// in-flight tasks, 0 < HeartbeatInterval ≤ Lease/2. Default Lease/3.
	HeartbeatInterval time.Duration
	// MaxExtensions caps the lease extensions of one task. After the cap the
	// lease is left to run out, and when it does the handler's context is
	// cancelled with cause ports.ErrLeaseLost. Default DefaultMaxExtensions
	// (360: 1 hour with the default lease); must not be negative.
	MaxExtensions int
	// MaxDelay is the longest delay of one message the worker sends, 1s ≤
	// MaxDelay ≤ ports.MaxDelay. A task received before its due time (see
	// Worker, Due times) is sent on delayed by the whole seconds left, at
	// most MaxDelay; a retry backoff longer than MaxDelay sends the failed
	// task on the same way instead of a Nack. Lower it only to try the hops
	// out (tests); each hop costs a send, a receive and a delete. Default
	// ports.MaxDelay (15 minutes, the SQS limit).
	MaxDelay time.Duration
	// Retry is the retry policy of tasks whose envelope carries none. The
	// zero value means DefaultRetryPolicy. It also bounds how often a
	// message with a newer envelope version is handed back.
	Retry RetryPolicy
	// ShutdownTimeout is how long Run waits for in-flight tasks, and for the
	// Receive in flight, after its context is done before it cancels them
	// (cause ErrShutdown) and releases their messages. Default DefaultShutdownTimeout (30s); must not be
	// negative.
	ShutdownTimeout time.Duration
	// ReceiveBatch is the most messages one Receive asks for,
	// 1 ≤ ReceiveBatch ≤ min(ports.MaxBatch, Concurrency+Prefetch). Default
	// min(ports.MaxBatch, Concurrency+Prefetch).
	ReceiveBatch int
	// InlineResultLimit is the largest Output (in bytes) of a result inlined
	// in its completion; larger results are fetched by the client from
	// Results. Default DefaultInlineResultLimit (64 KiB); negative means never
	// inline.
	InlineResultLimit int
	// MaxResultBytes is the largest Output (in bytes of JSON) a handler may
	// return. A larger output is not stored: the task is recorded as failed,
	// without retry, with the error "result of N bytes exceeds the limit of
	// M (WorkerOptions.MaxResultBytes)", so that its waiter learns why
	// instead of the task being lost or retried forever. Default
	// DefaultMaxResultBytes (4 MiB); negative means no limit. Results also
	// travel to downstream steps as inputs, inside their envelopes (see
	// ClientOptions.MaxEnvelopeBytes).
	MaxResultBytes int
	// DeadLetterSweep is how often the worker reads the dead-letter queue
	// behind its Broker (where the broker has the ports.DeadLetterer
	// capability and the queue a redrive policy) and records a failed
	// result for every dead-lettered task that has none, so that its
	// waiters end (see Worker, Dead letters). The first sweep runs when Run
	// starts. Default DefaultDeadLetterSweep (5m); negative means never.
	DeadLetterSweep time.Duration
	// Logger receives the worker's logs. Default slog.Default().
	Logger *slog.Logger
	// Observer receives the worker's events (tasks received and finished,
	// lease extensions, cancel requests), for metrics. Optional: nil
	// observes nothing.
	Observer WorkerObserver
	// Pools configures fleet-wide concurrency pools (see PoolOptions): the
	// limit of each pool whose tasks this worker runs, kept in Ports.State.
	// Optional: without it a task that names a pool is failed.
	Pools PoolOptions
	// Tracer, when set, wraps every attempt of a handler in a span that
	// continues the trace of the task's submission (Task.Meta), and
	// hands the handler a context carrying it (see Tracer). Optional: nil
	// traces nothing.
	Tracer Tracer
}

// Worker receives tasks from a Broker and runs their handlers.
//
// # Delivery
//
// At most Concurrency handlers run at once, and at most Prefetch more
// received messages wait, not started, for a slot, in the order received
// (their leases extended). A slot is freed when the handler returns: the
// task's result write, completion and delete go on in the settlement
// pipeline (at most SettleDepth tasks; their leases are extended until the
// delete). Without prefetch the worker asks the broker for more only when a
// slot is free; with it, when a batch of up to Prefetch fits. A delivery's body is decoded as an envelope;
// a body that is not one, or one with a field over its limit (MaxTaskIDLen
// and the other limits: the reason names the field, its size and the
// limit), is never executed: a failed result is recorded under the message
// ID and the message is acked. When the message ID itself is longer than
// MaxTaskIDLen no result is recorded (no client could ask for it, and no
// store need accept it): the message is handed back with the Retry backoff,
// never executed, until the queue's redrive policy moves it to its
// dead-letter queue; each delivery counts as rejected
// (WorkerObserver.MessageRejected). A newer envelope version is
// handed back (Nack with backoff) for a newer worker, until the message was
// delivered Retry.MaxAttempts times (when the broker reports no delivery
// count, Delivery.Attempt 0, estimated from the message's age and the
// backoff); then it is failed the same way.
//
// A task's attempt is its envelope's first attempt (1 for a new task) plus
// the attempts its earlier messages used (a requeued message carries them in
// the attribute "dagq-prior-attempts") plus this message's deliveries before
// this one: the broker's receive count minus one. An attempt is one
// execution of the handler: a message handed back without having started is
// requeued (see Shutdown), which keeps its attempt number. The receive count
// also still counts retries (a Nack with backoff) and deliveries whose lease
// was lost (a crashed worker), which are attempts, and the queue's redrive
// policy (a DLQ) stays the backstop on it.
//
// With a Verifier, a delivery whose signature (attribute "dagq-sig",
// checked over the envelope, after a claim check is resolved) is missing or
// not valid is never decoded or executed: a failed result with the reason is
// recorded under the message ID and the message is acked; its claim-check
// object, if any, is left to the store's lifecycle rule.
//
// A claim-check message (attribute "dagq-payload") has its envelope
// fetched from Payloads first. When the object is missing the task is never
// executed: a failed result "claim-check object <key> is missing" is recorded
// under the message ID and the message is acked, and so is a key the store
// refuses (ports.ErrInvalidArgument: it could never be read); any other
// fetch error hands the message back (Nack with the Retry backoff) to be
// tried again later. The
// object is deleted (best effort) once the message is acked, whatever the
// outcome; a message handed back keeps it.
//
// # Before a task starts
//
// The worker fails or skips a task without running its handler when a
// cancellation was requested (result cancelled), when a redelivered task,
// or one whose delivery count the broker could not tell (Delivery.Attempt
// 0), or a requeued message, already has a result (its completion is
// published again), when its deadline has passed, when no handler is
// registered for its name, or when its attempt exceeds its retry policy's
// MaxAttempts (a task whose runs keep losing their lease, e.g. because they
// crash the worker; on a FIFO queue, releases at shutdown count too).
//
// # Due times
//
// A task may carry a due time: the envelope's NotBefore (a Request.Delay or
// NotBefore further ahead than the client's MaxDelay) or the attribute
// "dagq-not-before" (a retry backoff longer than MaxDelay); the later
// counts. A task received more than a second before it is due is sent on
// at once, before it waits for a slot: requeued as a new message (the same
// body and attributes, its attempts so far in "dagq-prior-attempts")
// delayed by the whole seconds left, at most MaxDelay, and acked — no
// attempt counted, no slot held while it waits, outcome OutcomeDelayed.
// A task due within the second is waited for in its slot and starts on
// time. A cancelled task is not sent on: its cancellation is recorded when
// it is received. Where the broker cannot requeue (a FIFO queue), a task
// not due is released with Nack, which counts a receive.
//
// # Concurrency pools
//
// A task of a concurrency pool (Request.Pool) takes a slot of its pool
// right before it starts, or is postponed — requeued with a delay, not counting an attempt,
// holding no slot of the worker — until one is free for it (see
// PoolOptions); a task whose pool the worker has no limit for fails.
//
// # Running
//
// The handler's context carries the task's deadline and is cancelled, with a
// cause readable by context.Cause, on a cancellation request
// (ErrTaskCanceled), when the lease is lost or runs out after MaxExtensions
// (ports.ErrLeaseLost) and when shutdown aborts it (ErrShutdown). A panic in a
// handler is recovered and counts as the error "panic: <value>".
//
// # Outcomes
//
// An output that is not JSON, or larger than MaxResultBytes, fails the task
// without retry (its error says why).
//
// Success and final failures are stored in Results (write-once), published
// to the task's ReplyTo inbox when Completions is set, and acked. A failure
// that may be retried is nacked with the retry policy's backoff; a backoff
// longer than MaxDelay sends the task on instead, as a new message due
// after the backoff (see Due times), counting the attempt made. A task whose
// lease was lost or that was released at shutdown records nothing (unless
// its handler succeeded): another delivery owns it.
//
// # Shutdown
//
// When Run's context is done the worker stops receiving, hands back its
// prefetched messages that have not started at once, waits up to
// ShutdownTimeout for running and settling tasks (heartbeats continue), then
// cancels the rest with cause ErrShutdown, releases their messages at once
// and waits for their handlers to return. Handlers must therefore honour
// their context. A Receive in flight is not cut short (a long poll
// abandoned by its caller may still be handed a message, which would stay
// leased for a whole lease): it is let end, within the same ShutdownTimeout,
// and what it returns is handed back at once. An idle worker over SQS so
// takes up to the long-poll wait to stop.
//
// A message whose handler never started (prefetched, returned by the
// Receive in flight, or still in its checks at the abort) is handed back
// without costing an attempt: where the broker implements ports.Requeuer it
// is requeued as a new message (receive count 1) carrying its attempts so
// far in "dagq-prior-attempts", with its body and attributes as received (a
// signature still verifies; a claim-check object is kept). Where it cannot
// (ports.ErrUnsupported: SQS FIFO queues) or the requeue fails, it is
// released with Nack 0, and there the release does count one receive, so one
// attempt. A task whose handler ran and was cancelled by the abort is
// released with Nack 0 on every queue: that was an attempt.
// WorkerObserver.MessageHandedBack reports each hand-back and how.
//
// # Dead letters
//
// A message that the queue's redrive policy moved to its dead-letter queue
// (received maxReceiveCount times without being deleted: its workers
// crashed, or could not store its result, or its retry policy allows more
// attempts than the redrive policy receives) would leave its waiters
// waiting forever. Every DeadLetterSweep, where the Broker implements
// ports.DeadLetterer and the queue has a redrive policy, the worker reads
// its DLQ through (at most 1,000 messages per sweep, each hidden while the
// sweep lasts, then handed back) and records for each task without
// a result a failed result "dead-lettered after N receives: …"
// (ports.Result.DeadLettered; N is the policy's maxReceiveCount), and
// publishes its completion. A task whose result policy is none gets none.
// The messages stay in the DLQ, for an operator to look at, redrive or
// purge; a message swept before costs no request until the worker
// restarts (then one conditional Put) but its share of one Receive and one
// Extend (the hand-back) per ten messages per sweep. An empty DLQ costs one
// Receive per sweep; opening it, once per Run, one or two requests.
//
// # Requests per task
//
// A first delivery that succeeds costs its share of one Receive and of one
// Canceled check (both per batch), one Put, one Publish (with a ReplyTo) and
// one Ack; a redelivery adds one Get (so does every delivery from a broker
// that reports no delivery count). Heartbeats cost one Extend per ten
// leases per HeartbeatInterval, and only for tasks running longer than about
// half an interval. A task that asks for progress notifications
// (Request.Progress) adds one Publish per attempt started and one per retry.
// A claim-check message adds one payload Get per delivery and one Delete after
// its ack. A message handed back at shutdown without having started costs a
// send and a delete (both shared with concurrent ones on SQS) where it is
// requeued, one Nack where it is not; its requeued copy is looked up (one
// Get) when it is delivered. A task of a concurrency pool (Pools) adds a
// listing, a Get and a Put of the StateStore to take its slot, a Put per
// third of the pool lease it runs and a Put to free it; each re-check of a
// task waiting for a slot costs a few more and a requeue (see PoolOptions).
type Worker struct {
	broker      ports.Broker
	results     ports.ResultBackend
	registry    *Registry
	cancels     ports.CancelChannel
	completions ports.CompletionBus
	payloads    ports.PayloadStore
	verifier    *Verifier

	id              string
	concurrency     int
	settleDepth     int
	prefetch        int // 0: none
	lease           time.Duration
	heartbeat       time.Duration
	maxExtensions   int
	maxDelay        time.Duration // longest delay of one message sent on
	retry           RetryPolicy
	shutdownTimeout time.Duration
	batch           int
	inlineLimit     int
	maxResult       int           // < 0: no limit
	deadLetterSweep time.Duration // ≤ 0: never
	log             *slog.Logger
	obs             WorkerObserver // never nil
	tracer          Tracer         // nil: no tracing
	pools           *pools         // nil: none configured

	started atomic.Bool
	// running counts the tasks whose handler runs (InFlight).
	running atomic.Int64
	// receiving is set while the receive loop waits in Receive.
	receiving atomic.Bool
	// gatherTimer bounds gatherSlots (receive loop only).
	gatherTimer *time.Timer
	// op is the call context shared by port calls (see opContext).
	op atomic.Pointer[sharedOp]

	// slots counts the deliveries received and not yet settling (pending,
	// prefetched or running) against Concurrency+Prefetch: the receive
	// loop's budget.
	slots *slots
	// runSem holds a token per running handler (only with prefetch: without
	// it, slots bounds the running handlers). settleSem holds a token per
	// settling task. Both are made in Run (so that they belong to Run's
	// synctest bubble, if any).
	runSem    chan struct{}
	settleSem chan struct{}
	// startTurn is closed once the last dispatched batch has taken its run
	// tokens (receive loop only; with prefetch).
	startTurn chan struct{}
	// stopping is Run's context's Done: shutdown has begun.
	stopping <-chan struct{}
	// tasks counts the goroutines that handle deliveries.
	tasks sync.WaitGroup
	// pool runs the functions counted in tasks.
	pool runnerPool

	// base carries the values of Run's context but is never cancelled; the
	// worker's own calls derive from it. abortCtx, the parent of every task
	// context, is cancelled with ErrShutdown in the abort phase of shutdown.
	base     context.Context
	abortCtx context.Context
	abort    context.CancelCauseFunc

	mu   sync.Mutex
	held map[*workerLease]struct{} // every held delivery
	// expiryTimer marks leases lost when their end passes; it is armed for
	// expiryAt (zero: not armed).
	expiryTimer *time.Timer
	expiryAt    time.Time
	recent      recentSet // recently requested cancellations
}

// NewWorker validates opts, applies the defaults and returns a worker ready
// to Run. An invalid option fails with an error naming the field and its
// valid range.
func NewWorker(opts WorkerOptions) (*Worker, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	errs = append(errs, opts.Ports.validate()...)
	if opts.Registry == nil {
		bad("Registry is required")
	}
	if opts.Concurrency < 0 {
		bad("Concurrency is %d; it must be 0 (default %d) or more", opts.Concurrency, DefaultWorkerConcurrency)
	} else if opts.Concurrency == 0 {
		opts.Concurrency = DefaultWorkerConcurrency
	}
	if opts.Lease < 0 || opts.Lease > ports.MaxLease {
		bad("Lease is %v; it must be between 0 (default %v) and %v", opts.Lease, DefaultLease, ports.MaxLease)
	} else if opts.Lease == 0 {
		opts.Lease = DefaultLease
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = opts.Lease / 3
	}
	if opts.HeartbeatInterval <= 0 || opts.HeartbeatInterval > opts.Lease/2 {
		bad("HeartbeatInterval is %v; it must be 0 (default Lease/3) or between 1ns and half the Lease (%v)",
			opts.HeartbeatInterval, opts.Lease/2)
	}
	if opts.MaxExtensions < 0 {
		bad("MaxExtensions is %d; it must be 0 (default %d) or more", opts.MaxExtensions, DefaultMaxExtensions)
	} else if opts.MaxExtensions == 0 {
		opts.MaxExtensions = DefaultMaxExtensions
	}
	if opts.MaxDelay == 0 {
		opts.MaxDelay = ports.MaxDelay
	} else if opts.MaxDelay < time.Second || opts.MaxDelay > ports.MaxDelay {
		bad("MaxDelay is %v; it must be 0 (default %v) or between 1s and %v", opts.MaxDelay, ports.MaxDelay, ports.MaxDelay)
	}
	if opts.Retry == (RetryPolicy{}) {
		opts.Retry = DefaultRetryPolicy
	} else if err := opts.Retry.Validate(); err != nil {
		bad("Retry: %v", err)
	}
	if opts.ShutdownTimeout < 0 {
		bad("ShutdownTimeout is %v; it must be 0 (default %v) or more", opts.ShutdownTimeout, DefaultShutdownTimeout)
	} else if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.SettleDepth < 0 {
		bad("SettleDepth is %d; it must be 0 (default %d) or more", opts.SettleDepth, DefaultSettleDepth)
	} else if opts.SettleDepth == 0 {
		opts.SettleDepth = DefaultSettleDepth
	}
	if opts.Prefetch == 0 {
		opts.Prefetch = DefaultPrefetch
	} else if opts.Prefetch < 0 {
		opts.Prefetch = 0
	}
	maxBatch := min(ports.MaxBatch, max(opts.Concurrency+opts.Prefetch, 1))
	if opts.ReceiveBatch < 0 || opts.ReceiveBatch > maxBatch {
		bad("ReceiveBatch is %d; it must be 0 (default %d) or between 1 and %d (min of %d and Concurrency+Prefetch)",
			opts.ReceiveBatch, maxBatch, maxBatch, ports.MaxBatch)
	} else if opts.ReceiveBatch == 0 {
		opts.ReceiveBatch = maxBatch
	}
	if opts.InlineResultLimit == 0 {
		opts.InlineResultLimit = DefaultInlineResultLimit
	}
	if opts.MaxResultBytes == 0 {
		opts.MaxResultBytes = DefaultMaxResultBytes
	}
	if opts.DeadLetterSweep == 0 {
		opts.DeadLetterSweep = DefaultDeadLetterSweep
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ID == "" {
		opts.ID = defaultWorkerID()
	}
	if opts.Observer == nil {
		opts.Observer = NopWorkerObserver{}
	}
	pools, perrs := newPools(opts.Pools, opts.Ports.State)
	errs = append(errs, perrs...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("dagq: worker options: %w", errors.Join(errs...))
	}
	return &Worker{
		broker:          opts.Ports.Broker,
		results:         opts.Ports.Results,
		registry:        opts.Registry,
		cancels:         opts.Ports.Cancels,
		completions:     opts.Ports.Completions,
		payloads:        opts.Ports.Payloads,
		verifier:        opts.Ports.Verifier,
		id:              opts.ID,
		concurrency:     opts.Concurrency,
		settleDepth:     opts.SettleDepth,
		prefetch:        opts.Prefetch,
		lease:           opts.Lease,
		heartbeat:       opts.HeartbeatInterval,
		maxExtensions:   opts.MaxExtensions,
		maxDelay:        opts.MaxDelay,
		retry:           opts.Retry,
		shutdownTimeout: opts.ShutdownTimeout,
		batch:           opts.ReceiveBatch,
		inlineLimit:     opts.InlineResultLimit,
		maxResult:       opts.MaxResultBytes,
		deadLetterSweep: opts.DeadLetterSweep,
		log:             opts.Logger.With("worker", opts.ID),
		obs:             opts.Observer,
		tracer:          opts.Tracer,
		pools:           pools,
		slots:           newSlots(opts.Concurrency + opts.Prefetch),
		held:            make(map[*workerLease]struct{}),
		recent:          newRecentSet(recentCancelsSize),
	}, nil
}

func defaultWorkerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	var b [3]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// ID returns the worker's ID (WorkerOptions.ID or the generated default).
func (w *Worker) ID() string { return w.id }

// InFlight returns the number of tasks whose handler runs now: not those
// prefetched or in their checks before the start, nor those whose outcome is
// being recorded after their handler returned. It is safe to call at any
// time, from any goroutine (the worker registry of package app reads it).
func (w *Worker) InFlight() int { return int(w.running.Load()) }

// Run receives and runs tasks until ctx is done, then shuts down gracefully
// (see Worker) and returns nil. It returns an error wrapping ports.ErrClosed,
// after draining in-flight tasks the same way, when the broker is closed
// under it. Run may be called once per Worker.
func (w *Worker) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("dagq: worker: Run called more than once")
	}
	w.base = context.WithoutCancel(ctx)
	w.abortCtx, w.abort = context.WithCancelCause(w.base)
	defer w.abort(nil)
	w.pool.start()
	defer w.pool.close() // after the drain: every task is done
	w.settleSem = make(chan struct{}, w.settleDepth)
	if w.prefetch > 0 {
		w.runSem = make(chan struct{}, w.concurrency)
	}
	w.stopping = ctx.Done()

	// Background loops: heartbeat and cancel subscription. They run until
	// every task is done, through the shutdown drain.
	bgCtx, stopBg := context.WithCancel(w.base)
	var bg sync.WaitGroup
	if w.cancels != nil { // nil only with Ports.NoCancel
		// Subscribe before receiving, so that every request made after a
		// task's durable check reaches it.
		// The subscription lives through the shutdown drain: bgCtx, not ctx.
		sub, err := w.cancels.Subscribe(bgCtx)
		if err != nil {
			w.log.Error("cancel subscription failed; retrying in the background", "err", err)
			sub = nil
		}
		bg.Go(func() { w.cancelLoop(bgCtx, sub) })
	}
	bg.Go(func() { w.heartbeatLoop(bgCtx) })
	bg.Go(func() { w.deadLetterLoop(ctx) })

	w.log.Info("worker started", "concurrency", w.concurrency, "prefetch", w.prefetch,
		"settle_depth", w.settleDepth, "lease", w.lease, "tasks", w.registry.Names())
	// The receive in flight when ctx ends is let finish, up to the shutdown
	// timeout: a long poll cut short may still be handed a message by the
	// broker (SQS does), which would then stay leased, stranded, for a whole
	// lease. What it returns is handed back at once.
	recvCtx, stopRecv := context.WithCancel(w.base)
	defer stopRecv()
	clock := w.shutdownClock(ctx, stopRecv)
	defer clock.stop()
	err := w.receiveLoop(ctx, recvCtx)

	w.drain(clock.deadline())
	stopBg()
	bg.Wait()
	w.mu.Lock()
	if w.expiryTimer != nil {
		w.expiryTimer.Stop() // every lease is forgotten
		w.expiryAt = time.Time{}
	}
	w.mu.Unlock()
	if err != nil {
		w.log.Error("worker stopped", "err", err)
		return err
	}
	w.log.Info("worker stopped")
	return nil
}

// shutdownClock measures the shutdown timeout from when Run's context ends,
// and then cuts the receive in flight short (stopRecv) when the timeout ends.
type shutdownClock struct {
	timeout time.Duration
	unwatch func() bool   // stops watching the context; false once it ended
	ended   bool          // the context ended (known once unwatched)
	checked bool          // unwatch was called
	armed   chan struct{} // closed once at and timer are set
	at      time.Time     // when the context ended
	timer   *time.Timer   // calls stopRecv at at+timeout
}

func (w *Worker) shutdownClock(ctx context.Context, stopRecv context.CancelFunc) *shutdownClock {
	c := &shutdownClock{timeout: w.shutdownTimeout, armed: make(chan struct{})}
	c.unwatch = context.AfterFunc(ctx, func() {
		c.at = time.Now()
		c.timer = time.AfterFunc(c.timeout, stopRecv)
		if w.receiving.Load() {
			w.log.Info("worker shutting down: letting the receive in flight end; what it returns is handed back at once",
				"timeout", c.timeout)
		}
		close(c.armed)
	})
	return c
}

// deadline returns when the drain must end: the shutdown timeout after Run's
// context ended, or from now when it has not (the broker was closed).
func (c *shutdownClock) deadline() time.Time {
	if !c.check() {
		return time.Now().Add(c.timeout)
	}
	return c.at.Add(c.timeout)
}

// check stops watching the context (once) and reports whether it ended;
// then the clock is armed.
func (c *shutdownClock) check() bool {
	if !c.checked {
		c.checked = true
		c.ended = !c.unwatch()
		if c.ended {
			<-c.armed
		}
	}
	return c.ended
}

// stop releases the clock's timer.
func (c *shutdownClock) stop() {
	if c.check() {
		c.timer.Stop()
	}
}

// drain waits for in-flight tasks until deadline, then aborts the rest and
// waits for their goroutines.
func (w *Worker) drain(deadline time.Time) {
	done := make(chan struct{})
	go func() {
		w.tasks.Wait()
		close(done)
	}()
	if n := w.slots.inUse(); n > 0 {
		w.log.Info("worker shutting down: waiting for in-flight tasks",
			"in_flight", n, "timeout", w.shutdownTimeout)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
		return
	case <-timer.C:
		select {
		case <-done: // finished while the receive in flight ended
			return
		default:
		}
	}
	w.abortInFlight()
	<-done
}

// abortInFlight cancels every task not yet finishing with cause ErrShutdown
// and releases its message at once.
func (w *Worker) abortInFlight() {
	type release struct {
		receipt ports.Receipt
		log     *slog.Logger
		// started: the handler ran (an attempt: Nack 0); otherwise orig is
		// handed back without counting one (handBack).
		started bool
		orig    ports.Delivery
	}
	var rel []release
	w.mu.Lock()
	for l := range w.held {
		if l.state == leaseFinishing || l.lost || l.released {
			continue
		}
		l.released = true // a pending task never starts now (runJob checks)
		rel = append(rel, release{l.receipt, w.leaseLogLocked(l), l.state == leaseRunning, l.orig})
	}
	w.mu.Unlock()
	sort.Slice(rel, func(i, j int) bool { return rel[i].receipt < rel[j].receipt })
	w.log.Warn("shutdown timeout reached: cancelling and releasing unfinished tasks",
		"tasks", len(rel), "timeout", w.shutdownTimeout)
	w.abort(ErrShutdown) // cancels every task context
	for _, r := range rel {
		if !r.started {
			r.log.Info("task not started: handed back at shutdown")
			w.handBack(r.orig, r.log)
			continue
		}
		ctx, cancel := w.opContext()
		if err := w.broker.Nack(ctx, r.receipt, 0); err != nil {
			r.log.Warn("releasing a task at shutdown failed; it is redelivered when its lease ends", "err", err)
		} else {
			r.log.Info("task released at shutdown")
		}
		cancel()
	}
}

// opContext bounds one call of the worker to a port: it is not cancelled by
// shutdown, and lasts at most one lease (a call outliving it is moot) and at
// least seven eighths of one. The returned cancel function is a
// no-op: the context is shared by every call started within an eighth of a
// lease (one context per period instead of one per Put, Publish and Ack).
func (w *Worker) opContext() (context.Context, context.CancelFunc) {
	if op := w.op.Load(); op != nil && !op.stale.Load() {
		return op.ctx, noCancel
	}
	// One deadline timer per period, and Err is an atomic load. The context
	// is never cancelled: it ends at its deadline, after its last user
	// (w.base is never cancelled, so nothing else holds it).
	op := &sharedOp{}
	op.ctx, op.end = context.WithDeadline(w.base, time.Now().Add(w.lease))
	op.timer = time.AfterFunc(w.lease/opShareFraction, func() { op.stale.Store(true) })
	w.op.Store(op) // racing refreshes: either context is as good
	return op.ctx, noCancel
}

// opShareFraction: a shared call context is handed out during the first
// 1/opShareFraction of its lifetime.
const opShareFraction = 8

// sharedOp is the call context shared by the worker's port calls (see
// Worker.opContext); stale is set (by timer) when it stops being handed out.
type sharedOp struct {
	ctx   context.Context
	end   context.CancelFunc // not called: the deadline ends ctx
	stale atomic.Bool
	timer *time.Timer
}

func noCancel() {}

// receiveLoop receives deliveries while slots are free until ctx is done (nil)
// or the broker is closed (an error).
//
// Receive is called with recvCtx, which outlives ctx (see Run): a receive in
// flight when ctx ends is let finish, and what it returns is released.
func (w *Worker) receiveLoop(ctx, recvCtx context.Context) error {
	failures := 0
	for {
		// Wait for one free slot (with prefetch: room for a batch), then
		// take as many more as are free, up to the batch size.
		n := w.slots.take(ctx, w.receiveNeed(), w.batch, nil, 0)
		if n == 0 { // ctx is done
			return nil
		}
		// Busy (some slots still held): give slots that are about to free
		// up (handlers returning) a moment to join, so that a receive
		// fetches a fuller batch: fewer requests per task under load, no
		// delay when idle (every slot is free at once). With prefetch the
		// wait for room above does that, without a timer.
		if want := w.gatherTarget(); w.prefetch == 0 && n < want {
			n += w.gatherSlots(ctx, want-n)
		}

		w.receiving.Store(true)
		ds, err := w.broker.Receive(recvCtx, n, w.lease)
		w.receiving.Store(false)
		// The lease runs from when the broker hands the messages over, not
		// from when the call began: a long poll may wait longer than a
		// lease before a message arrives (see ports.Broker.Receive).
		received := time.Now()
		if len(ds) > n { // a broker breaking its contract; hand the extra back
			w.release(ds[n:])
			ds = ds[:n]
		}
		w.slots.release(n - len(ds))
		if ctx.Err() != nil {
			// Stopping: hand back at once what the last receive returned.
			if len(ds) > 0 {
				w.log.Info("releasing messages received while shutting down", "messages", len(ds))
			}
			w.release(ds)
			w.slots.release(len(ds))
			return nil
		}
		if len(ds) > 0 {
			w.dispatch(ds, received)
		}
		if err == nil {
			failures = 0
			continue
		}
		if errors.Is(err, ports.ErrClosed) {
			return fmt.Errorf("dagq: worker: receive: %w", err)
		}
		failures++
		delay := loopBackoff.Backoff(failures)
		w.log.Error("receive failed; backing off", "err", err, "failures", failures, "backoff", delay)
		w.obs.ReceiveFailed()
		if !sleepCtx(ctx, delay) {
			return nil
		}
	}
}

// receiveGather bounds how long a busy worker waits for more free slots
// before a receive (see Worker.receiveLoop): at most this much added
// latency, only while some slots are taken.
const receiveGather = 5 * time.Millisecond

// receiveNeed is how many free slots the receive loop waits for before a
// receive. Without prefetch: one. With prefetch: room for a batch of up to
// Prefetch messages; a worker whose prefetched messages have all started
// always has that room (Concurrency+Prefetch slots, at most Concurrency
// running), so receiving is never starved, and a busy worker receives full
// batches as its buffer drains.
func (w *Worker) receiveNeed() int {
	if w.prefetch == 0 {
		return 1
	}
	return min(w.batch, w.prefetch)
}

// gatherTarget is the batch a busy worker waits (up to receiveGather) to
// fill before receiving: half its slots, at most its receive batch.
func (w *Worker) gatherTarget() int {
	return min(w.batch, max(1, w.concurrency/2))
}

// gatherSlots takes up to k more slots as they free up within
// receiveGather and returns how many it took.
func (w *Worker) gatherSlots(ctx context.Context, k int) int {
	if w.gatherTimer == nil {
		w.gatherTimer = time.NewTimer(time.Hour)
		w.gatherTimer.Stop() // Go ≥ 1.23 timers need no drain
	}
	return w.slots.take(ctx, k, k, w.gatherTimer, receiveGather)
}

// release hands deliveries that were never started back to the queue
// (handBack: requeued where the broker can, so that no attempt is counted).
func (w *Worker) release(ds []ports.Delivery) {
	for _, d := range ds {
		w.handBack(d, w.log.With("message_id", d.ID))
	}
}

// sleepCtx sleeps for d; it returns false when ctx ended the sleep.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
