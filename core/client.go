package core

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/dagq/dagq/ports"
)

// Client defaults (see ClientOptions).
const (
	DefaultPollInterval    = 100 * time.Millisecond
	DefaultPollMaxInterval = 5 * time.Second
	DefaultReconcile       = 30 * time.Second
	DefaultCacheSize       = 10000
	// DefaultPendingLimit is the default ClientOptions.PendingLimit.
	DefaultPendingLimit = 1_000_000
	// DefaultPayloadThreshold is the default Ports.PayloadThreshold:
	// 200 KiB, below the 256 KiB SQS used to accept and the memory broker's
	// default.
	DefaultPayloadThreshold = 200 << 10
	// DefaultMaxEnvelopeBytes is the default ClientOptions.MaxEnvelopeBytes:
	// 64 MiB, a hard cap on one encoded task envelope even when it can go
	// through a payload store.
	DefaultMaxEnvelopeBytes = 64 << 20
	// ReconcileMaxInterval caps the doubling reconcile interval of a waiter
	// that gets no completion (unless Reconcile itself is longer).
	ReconcileMaxInterval = 5 * time.Minute
)

// GroupBy is the FIFO message group policy of a Client (see
// ClientOptions.GroupBy).
type GroupBy string

// Group policies.
const (
	// GroupByRun: the run ID (the default).
	GroupByRun GroupBy = "run"
	// GroupByTask: the task ID.
	GroupByTask GroupBy = "task"
)

// GroupPolicies lists the valid GroupBy values.
var GroupPolicies = []GroupBy{GroupByRun, GroupByTask}

// ClientOptions configures a Client. Only Ports is required (see Ports for
// which of its fields); zero durations and sizes take the defaults named on
// each field.
type ClientOptions struct {
	// Ports is the transport (see Ports): Broker and Results are required,
	// and Cancels unless Ports.NoCancel is set.
	Ports Ports
	// MaxEnvelopeBytes is the largest encoded envelope (in bytes; arguments,
	// inputs, params and labels included) Submit accepts at all, with or
	// without Payloads: a larger request is refused with an error matching
	// ports.ErrInvalidArgument that names its size and this limit, and
	// nothing is sent or stored. Default DefaultMaxEnvelopeBytes (64 MiB);
	// negative means no limit. Large data belongs in a store the task reads,
	// with a reference in the arguments.
	MaxEnvelopeBytes int
	// MaxDelay is the longest delay of one message the client sends, 1s ≤
	// MaxDelay ≤ ports.MaxDelay. A task due further ahead (Request.Delay or
	// NotBefore) is sent delayed by MaxDelay with its due time in the
	// envelope, and workers send it on until it is due (see Request.Delay).
	// Lower it only to try the hops out (tests). Default ports.MaxDelay (15
	// minutes, the SQS limit).
	MaxDelay time.Duration
	// GroupBy chooses the FIFO message group of a request that names none
	// (Request.GroupID): GroupByRun (the default) puts a run's steps in one
	// group — a FIFO queue then runs them one at a time, in order, and
	// interleaves runs fairly — and GroupByTask gives every task its own
	// group, so a run's independent steps run in parallel. Tasks outside a
	// run are their own group either way. Standard queues ignore groups.
	GroupBy GroupBy
	// Tracer, when set, traces submissions and carries their trace context
	// to the workers in Request.Meta; Executors and Launchers over this
	// client trace their runs and launches with it (see Tracer). Optional:
	// nil traces nothing.
	Tracer Tracer

	// PollInterval is the first delay between two Results checks of a task
	// that is polled (default DefaultPollInterval); the delay doubles after
	// every miss up to PollMaxInterval (default DefaultPollMaxInterval, or
	// PollInterval when that is longer).
	PollInterval    time.Duration
	PollMaxInterval time.Duration
	// Reconcile is, with Completions, how long a waiter waits for a push
	// before it checks Results once anyway (default DefaultReconcile): the
	// safety net for a lost completion. Later checks double the interval up
	// to ReconcileMaxInterval.
	Reconcile time.Duration
	// CacheSize bounds the number of finished tasks the client remembers
	// once they were waited for (or read, or not submitted here), least
	// recently used first out; default DefaultCacheSize. Forgetting is safe:
	// a forgotten task is read from Results when waited for. Tasks this
	// client submitted are not subject to it until they are waited for (see
	// PendingLimit).
	CacheSize int
	// PendingLimit bounds the number of tasks submitted by this client whose
	// outcome it has not seen yet (about 100 bytes each); default
	// DefaultPendingLimit. It tracks them so that waiting for them relies on
	// their pushed completions, however many are in flight; beyond the
	// limit the oldest are forgotten (a task that never completes, e.g.
	// dead-lettered, stays until then) and are read from Results when
	// waited for, like tasks submitted elsewhere. The results of such tasks
	// that arrive before anyone waits are held until waited for, within a
	// fixed memory budget (64 MiB, the oldest first out to the CacheSize
	// cache).
	PendingLimit int

	// Logger receives the client's diagnostics (default slog.Default()).
	Logger *slog.Logger
}

// Client submits tasks, waits for their results, cancels them and reports
// their status. It is safe for concurrent use. It owns at most two long-lived
// goroutines, whatever the number of waiters: the completion dispatcher
// (running while the inbox is open) and the result checker (running while
// some waiter needs a Results read scheduled; it reads with up to 8
// short-lived goroutines per round). With Completions it also owns one inbox.
// Close releases them all; it does not close the ports it was given.
//
// # Waiting
//
// With Completions, a task submitted by this client is finished when its
// completion arrives; the client reads Results only when the completion does
// not carry the result, when no completion arrived within Reconcile (then
// with doubling intervals up to ReconcileMaxInterval), or for a task it does
// not know (submitted elsewhere, or forgotten: see PendingLimit and
// CacheSize): such a task is read at once and then polled like below. A
// completion that arrives before anyone waits is kept for the waiter (see
// PendingLimit).
//
// Without Completions, waited-for tasks are polled from one shared goroutine:
// each task is checked after PollInterval, then at doubling intervals up to
// PollMaxInterval; a task unknown to this client is checked at once.
// Nothing polls while nobody waits.
//
// # Errors
//
// Errors from the ports are wrapped, so errors.Is(err, ports.ErrX) and
// errors.As(err, &adapterErr) both work. Invalid arguments match
// ports.ErrInvalidArgument; every method of a closed client fails with an
// error matching ports.ErrClosed.
type Client struct {
	broker      ports.Broker
	results     ports.ResultBackend
	cancels     ports.CancelChannel
	completions ports.CompletionBus
	payloads    ports.PayloadStore
	threshold   int
	maxEnvelope int // < 0: no limit
	maxDelay    time.Duration
	signer      *Signer
	tracer      Tracer // nil: no tracing
	log         *slog.Logger

	pollMin, pollMax           time.Duration
	reconcileMin, reconcileMax time.Duration

	bg   context.Context // cancelled by Close; used by the background goroutines
	stop context.CancelFunc
	wg   sync.WaitGroup // background goroutines
	kick chan struct{}  // wakes the checker when its schedule changed

	openMu sync.Mutex // serialises opening the inbox

	groupBy GroupBy

	mu        sync.Mutex
	closed    bool
	inbox     ports.Inbox // nil until the first Submit with Completions
	pushLive  bool        // inbox open and its dispatcher running
	replyTo   string      // inbox address while pushLive
	entries   map[string]*waitEntry
	sched     entryHeap // entries waiting for their next Results read
	checkerOn bool
	memo      *memoCache
	watches   map[*Watch]struct{} // open watches
}

// NewClient returns a Client for opts. Invalid options fail with an error
// matching ports.ErrInvalidArgument that names the field. It starts no
// goroutine and makes no request.
func NewClient(opts ClientOptions) (*Client, error) {
	bad := func(format string, args ...any) (*Client, error) {
		return nil, fmt.Errorf("dagq: client options: %w: "+format, append([]any{ports.ErrInvalidArgument}, args...)...)
	}
	if err := portsError("client options", opts.Ports.validate()); err != nil {
		return nil, err
	}
	switch {
	case opts.PollInterval < 0:
		return bad("PollInterval is %v; it must be 0 (default %v) or positive", opts.PollInterval, DefaultPollInterval)
	case opts.PollMaxInterval < 0:
		return bad("PollMaxInterval is %v; it must be 0 (default %v) or positive", opts.PollMaxInterval, DefaultPollMaxInterval)
	case opts.Reconcile < 0:
		return bad("Reconcile is %v; it must be 0 (default %v) or positive", opts.Reconcile, DefaultReconcile)
	case opts.CacheSize < 0:
		return bad("CacheSize is %d; it must be 0 (default %d) or positive", opts.CacheSize, DefaultCacheSize)
	case opts.PendingLimit < 0:
		return bad("PendingLimit is %d; it must be 0 (default %d) or positive", opts.PendingLimit, DefaultPendingLimit)
	case opts.GroupBy != "" && !slices.Contains(GroupPolicies, opts.GroupBy):
		return bad("GroupBy is %q; valid: %q (default) or %q", opts.GroupBy, GroupByRun, GroupByTask)
	case opts.MaxDelay != 0 && (opts.MaxDelay < time.Second || opts.MaxDelay > ports.MaxDelay):
		return bad("MaxDelay is %v; it must be 0 (default %v) or between 1s and %v", opts.MaxDelay, ports.MaxDelay, ports.MaxDelay)
	}
	maxEnvelope := opts.MaxEnvelopeBytes
	if maxEnvelope == 0 {
		maxEnvelope = DefaultMaxEnvelopeBytes
	}
	c := &Client{
		broker:       opts.Ports.Broker,
		results:      opts.Ports.Results,
		cancels:      opts.Ports.Cancels,
		completions:  opts.Ports.Completions,
		payloads:     opts.Ports.Payloads,
		threshold:    opts.Ports.PayloadThreshold,
		maxEnvelope:  maxEnvelope,
		maxDelay:     cmp.Or(opts.MaxDelay, ports.MaxDelay),
		groupBy:      opts.GroupBy,
		signer:       opts.Ports.Signer,
		tracer:       opts.Tracer,
		log:          opts.Logger,
		pollMin:      opts.PollInterval,
		pollMax:      opts.PollMaxInterval,
		reconcileMin: opts.Reconcile,
		kick:         make(chan struct{}, 1),
		entries:      make(map[string]*waitEntry),
		watches:      make(map[*Watch]struct{}),
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.pollMin == 0 {
		c.pollMin = DefaultPollInterval
	}
	if c.pollMax == 0 {
		c.pollMax = max(DefaultPollMaxInterval, c.pollMin)
	}
	if c.pollMax < c.pollMin {
		return bad("PollMaxInterval %v is below PollInterval %v", c.pollMax, c.pollMin)
	}
	if c.threshold == 0 {
		c.threshold = DefaultPayloadThreshold
	}
	if c.reconcileMin == 0 {
		c.reconcileMin = DefaultReconcile
	}
	c.reconcileMax = max(ReconcileMaxInterval, c.reconcileMin)
	size := opts.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	pending := opts.PendingLimit
	if pending == 0 {
		pending = DefaultPendingLimit
	}
	c.memo = newMemoCache(size, pending, memoOutputBudget)
	c.bg, c.stop = context.WithCancel(context.Background())
	return c, nil
}

// Close stops the client: pending Wait and WaitAll calls return an error
// matching ports.ErrClosed, open Watches report every task they watch as
// final with that error and then end, the background goroutines stop (Close waits for
// them, which takes at most one in-flight Results read or inbox receive,
// both cancelled), and the inbox is closed. Completions published to it
// afterwards are lost, which is harmless: results stay in Results. Close is
// idempotent and does not close the ports in ClientOptions.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	errClosed := fmt.Errorf("dagq: client: %w", ports.ErrClosed)
	for _, e := range c.entries {
		c.finishLocked(e, ports.Result{}, errClosed)
	}
	for w := range c.watches {
		w.endLocked(errClosed) // after their final events
	}
	c.sched = nil
	inbox := c.inbox
	c.pushLive, c.replyTo = false, ""
	c.mu.Unlock()

	c.stop()
	c.wg.Wait()
	if inbox != nil {
		if err := inbox.Close(); err != nil && !errors.Is(err, ports.ErrClosed) && !errors.Is(err, ports.ErrNotFound) {
			return fmt.Errorf("dagq: client: close inbox: %w", err)
		}
	}
	return nil
}

func (c *Client) errIfClosed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("dagq: client: %w", ports.ErrClosed)
	}
	return nil
}

// Cancel requests the cancellation of the tasks ids through the
// CancelChannel, in calls of at most ports.MaxBatch IDs. The request is
// durable once Cancel returns nil: a queued task never starts, a running one
// has its context cancelled, a finished one is unaffected. Waiters of a
// cancelled task get its result with State ports.StateCancelled once the
// worker records it. Cancelling a task again, or an unknown ID, is not an
// error. With Ports.NoCancel (cancellation off) it fails with an error matching
// ports.ErrUnsupported; an empty ID fails the call (nothing is sent) with
// ports.ErrInvalidArgument. When some calls fail the error wraps a
// *ports.BatchError whose indexes are positions in ids; IDs not named were
// requested.
func (c *Client) Cancel(ctx context.Context, ids ...string) error {
	if c.cancels == nil {
		return fmt.Errorf("dagq: cancel: %w: cancellation is switched off (Ports.NoCancel)", ports.ErrUnsupported)
	}
	for i, id := range ids {
		if id == "" {
			return fmt.Errorf("dagq: cancel: %w: task ID %d of %d is empty", ports.ErrInvalidArgument, i, len(ids))
		}
	}
	if err := c.errIfClosed(); err != nil {
		return err
	}
	failed := make(map[int]error)
	for start := 0; start < len(ids); start += ports.MaxBatch {
		chunk := ids[start:min(start+ports.MaxBatch, len(ids))]
		var err error
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		} else {
			err = c.cancels.Cancel(ctx, chunk...)
		}
		for i, id := range chunk {
			if ie := ports.ItemError(err, i); ie != nil {
				failed[start+i] = fmt.Errorf("task %s: %w", id, ie)
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("dagq: cancel: %w", &ports.BatchError{Failed: failed})
	}
	return nil
}

// TaskState is what Status knows about a task.
type TaskState string

// Task states. The last three are final and equal the ports.State of the
// task's result.
const (
	// TaskPending: no result yet and no cancellation request. The task may
	// be queued, running, waiting for a retry, or unknown: dagq keeps no
	// record of submissions.
	TaskPending TaskState = "pending"
	// TaskCancelRequested: no result yet, but a cancellation was requested.
	TaskCancelRequested TaskState = "cancel_requested"
	TaskSucceeded       TaskState = TaskState(ports.StateSucceeded)
	TaskFailed          TaskState = TaskState(ports.StateFailed)
	TaskCancelled       TaskState = TaskState(ports.StateCancelled)
)

// Final reports whether s is a final state (the task has a result).
func (s TaskState) Final() bool { return ports.State(s).Valid() }

// Status is a snapshot of one task.
type Status struct {
	TaskID string
	State  TaskState
	// Result is the task's result when State is final, nil otherwise.
	Result *ports.Result
}

// Status reports the state of task id without waiting: its result when one
// is stored (or remembered by the client), otherwise TaskCancelRequested
// when the CancelChannel has a request for it, otherwise TaskPending. It
// makes at most one Results read and one CancelChannel check.
func (c *Client) Status(ctx context.Context, id string) (Status, error) {
	if err := ValidateTaskID(id); err != nil {
		return Status{}, fmt.Errorf("dagq: status: %w", err)
	}
	if err := c.errIfClosed(); err != nil {
		return Status{}, err
	}
	c.mu.Lock()
	cached := c.memo.result(id)
	c.mu.Unlock()
	if cached != nil {
		return Status{TaskID: id, State: TaskState(cached.State), Result: cached}, nil
	}
	res, err := c.results.Get(ctx, id)
	switch {
	case err == nil:
		c.mu.Lock()
		c.memo.putResult(id, res, false)
		c.mu.Unlock()
		return Status{TaskID: id, State: TaskState(res.State), Result: &res}, nil
	case !errors.Is(err, ports.ErrNotFound):
		return Status{}, fmt.Errorf("dagq: status of task %s: read result: %w", id, err)
	}
	if c.cancels != nil {
		got, err := c.cancels.Canceled(ctx, id)
		if err != nil {
			return Status{}, fmt.Errorf("dagq: status of task %s: check cancellation: %w", id, err)
		}
		for _, g := range got {
			if g == id {
				return Status{TaskID: id, State: TaskCancelRequested}, nil
			}
		}
	}
	return Status{TaskID: id, State: TaskPending}, nil
}

// ValidateTaskID reports whether id is a valid task ID (as given to Submit
// with WithID, Wait or Status): 1 to MaxTaskIDLen bytes of printable ASCII
// without spaces. A bad ID fails with an error matching
// ports.ErrInvalidArgument that names the problem.
func ValidateTaskID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty task ID", ports.ErrInvalidArgument)
	}
	if len(id) > MaxTaskIDLen {
		return fmt.Errorf("%w: task ID %.20q… is %d bytes; the limit is %d", ports.ErrInvalidArgument, id, len(id), MaxTaskIDLen)
	}
	for i := 0; i < len(id); i++ {
		if b := id[i]; b < 0x21 || b > 0x7e {
			return fmt.Errorf("%w: task ID %q has byte %#x at %d; IDs are printable ASCII without spaces", ports.ErrInvalidArgument, id, b, i)
		}
	}
	return nil
}

// Tracer returns the client's tracer (ClientOptions.Tracer; nil: none). It is
// the hook through which layers built on the Client (package core/dag) trace
// their runs and launches in the same trace as the submissions.
func (c *Client) Tracer() Tracer { return c.tracer }

// StoredResults reads the stored results of ids (those the client remembers
// from memory, the rest from the result backend, a few at a time) and
// returns those found, with the number of reads that failed other than with
// ports.ErrNotFound. It waits for nothing: a task without a result is simply
// absent. The DAG layer uses it to resume a run from what its steps left.
func (c *Client) StoredResults(ctx context.Context, ids []string) (map[string]ports.Result, int) {
	found := make(map[string]ports.Result, len(ids))
	var todo []string
	c.mu.Lock()
	for _, id := range ids {
		if r := c.memo.result(id); r != nil {
			found[id] = *r
		} else {
			todo = append(todo, id)
		}
	}
	c.mu.Unlock()
	if len(todo) == 0 {
		return found, 0
	}
	var (
		mu     sync.Mutex
		failed int
		next   = make(chan string)
		wg     sync.WaitGroup
	)
	for range min(len(todo), checkParallelism) {
		wg.Go(func() {
			for id := range next {
				gctx, cancel := context.WithTimeout(ctx, checkTimeout)
				res, err := c.results.Get(gctx, id)
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					found[id] = res
				case !errors.Is(err, ports.ErrNotFound):
					failed++
				}
				mu.Unlock()
			}
		})
	}
	for _, id := range todo {
		next <- id
	}
	close(next)
	wg.Wait()
	c.mu.Lock()
	for _, id := range todo {
		if r, ok := found[id]; ok {
			c.memo.putResult(id, r, false)
		}
	}
	c.mu.Unlock()
	return found, failed
}
