package memory

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dagq/dagq/ports"
)

// Defaults of the Transport and of QueueOptions.
const (
	DefaultPollWait     = time.Second
	DefaultMaxBodyBytes = 1 << 20 // the SQS limit (since 2025)
	DefaultDedupWindow  = 5 * time.Minute
)

// Transport is one in-memory namespace of queues, results, cancellation
// requests, completion inboxes and payloads. It is safe for concurrent use;
// the zero value is not usable, call NewTransport.
type Transport struct {
	pollWait time.Duration
	// seq numbers messages and deliveries, so that receipts are unique across
	// the Transport, even across a queue deleted and created again.
	seq atomic.Uint64

	mu     sync.RWMutex
	queues map[string]*queue

	results     *resultStore
	cancels     *cancelHub
	completions *completionHub
	payloads    *payloadStore
	states      *stateStore
}

// Option configures a Transport.
type Option func(*Transport)

// WithPollWait sets the poll bound of cancel subscriptions and completion
// inboxes and the default PollWait of queues. A d ≤ 0 keeps the default,
// DefaultPollWait.
func WithPollWait(d time.Duration) Option {
	return func(t *Transport) {
		if d > 0 {
			t.pollWait = d
		}
	}
}

// NewTransport returns an empty Transport.
func NewTransport(opts ...Option) *Transport {
	t := &Transport{pollWait: DefaultPollWait, queues: make(map[string]*queue)}
	for _, o := range opts {
		o(t)
	}
	t.results = newResultStore()
	t.cancels = &cancelHub{
		pollWait:  t.pollWait,
		requested: make(map[string]struct{}),
		subs:      make(map[*subscription]struct{}),
	}
	t.completions = &completionHub{pollWait: t.pollWait, inboxes: make(map[string]*inbox)}
	t.payloads = &payloadStore{data: make(map[string][]byte)}
	t.states = &stateStore{records: make(map[string]ports.Record)}
	return t
}

// QueueOptions configure a queue; the zero value is a standard queue with the
// defaults. See the package doc, section Configuration.
type QueueOptions struct {
	// FIFO makes a FIFO queue; its name must end in ".fifo".
	FIFO bool
	// PollWait is the longest a Receive blocks when no message is available.
	// Zero means the Transport's poll wait.
	PollWait time.Duration
	// MaxBodyBytes limits the body plus attribute names and values of a
	// message. Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int
	// DedupWindow is how long a FIFO queue drops a message ID it accepted
	// before. Zero means DefaultDedupWindow. Ignored by standard queues.
	DedupWindow time.Duration
	// MaxReceives, when positive, moves a message received MaxReceives times
	// to DeadLetterQueue on its next receive.
	MaxReceives int
	// DeadLetterQueue names the queue of the redrive policy.
	DeadLetterQueue string
}

// QueueStats counts a queue's messages at one instant.
type QueueStats struct {
	// Visible messages can be received now (on a FIFO queue, possibly held
	// back by their group).
	Visible int
	// InFlight messages are leased.
	InFlight int
	// Delayed messages wait out a Send delay or a Nack delay.
	Delayed int
}

func (t *Transport) withDefaults(o QueueOptions) QueueOptions {
	if o.PollWait == 0 {
		o.PollWait = t.pollWait
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.DedupWindow == 0 {
		o.DedupWindow = DefaultDedupWindow
	}
	if !o.FIFO {
		o.DedupWindow = 0
	}
	return o
}

func validQueueName(name string, fifo bool) error {
	base := name
	if fifo {
		if !strings.HasSuffix(name, ".fifo") {
			return fmt.Errorf(`%w: FIFO queue name %q must end in ".fifo"`, ports.ErrInvalidArgument, name)
		}
		base = strings.TrimSuffix(name, ".fifo")
	} else if strings.HasSuffix(name, ".fifo") {
		return fmt.Errorf(`%w: queue name %q ends in ".fifo" but the queue is not FIFO`, ports.ErrInvalidArgument, name)
	}
	if base == "" || len(name) > 80 {
		return fmt.Errorf("%w: queue name %q must have 1 to 80 characters", ports.ErrInvalidArgument, name)
	}
	for _, c := range base {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: queue name %q may only hold [A-Za-z0-9_-]", ports.ErrInvalidArgument, name)
		}
	}
	return nil
}

// CreateQueue creates the queue name. Creating an existing queue with the same
// options (after defaults) is a no-op; with different options it fails with
// ErrAlreadyExists. Invalid options or names fail with ErrInvalidArgument.
func (t *Transport) CreateQueue(name string, opts QueueOptions) error {
	if err := validQueueName(name, opts.FIFO); err != nil {
		return fmt.Errorf("memory: create queue: %w", err)
	}
	switch {
	case opts.PollWait < 0, opts.MaxBodyBytes < 0, opts.DedupWindow < 0, opts.MaxReceives < 0:
		return fmt.Errorf("memory: create queue %q: %w: negative option in %+v", name, ports.ErrInvalidArgument, opts)
	case (opts.MaxReceives > 0) != (opts.DeadLetterQueue != ""):
		return fmt.Errorf("memory: create queue %q: %w: set both MaxReceives and DeadLetterQueue, or neither",
			name, ports.ErrInvalidArgument)
	case opts.DeadLetterQueue == name:
		return fmt.Errorf("memory: create queue %q: %w: a queue cannot be its own dead-letter queue",
			name, ports.ErrInvalidArgument)
	}
	opts = t.withDefaults(opts)

	t.mu.Lock()
	defer t.mu.Unlock()
	if q, ok := t.queues[name]; ok {
		if q.opts != opts {
			return fmt.Errorf("memory: create queue %q: %w with other options", name, ports.ErrAlreadyExists)
		}
		return nil
	}
	if opts.DeadLetterQueue != "" {
		dlq, ok := t.queues[opts.DeadLetterQueue]
		if !ok {
			return fmt.Errorf("memory: create queue %q: dead-letter queue %q: %w",
				name, opts.DeadLetterQueue, ports.ErrNotFound)
		}
		if dlq.opts.FIFO != opts.FIFO {
			return fmt.Errorf("memory: create queue %q: %w: dead-letter queue %q must be FIFO exactly when the queue is",
				name, ports.ErrInvalidArgument, opts.DeadLetterQueue)
		}
	}
	t.queues[name] = newQueue(name, opts, &t.seq)
	return nil
}

// DeleteQueue deletes the queue name and its messages; Brokers bound to it
// fail with ErrNotFound from then on (until a queue of that name is created
// again). A missing queue fails with ErrNotFound.
func (t *Transport) DeleteQueue(name string) error {
	t.mu.Lock()
	q, ok := t.queues[name]
	delete(t.queues, name)
	t.mu.Unlock()
	if !ok {
		return fmt.Errorf("memory: delete queue %q: %w", name, ports.ErrNotFound)
	}
	q.delete()
	return nil
}

// Stats counts the messages of the queue name, or fails with ErrNotFound.
func (t *Transport) Stats(name string) (QueueStats, error) {
	q, _, err := t.lookup(name)
	if err != nil {
		return QueueStats{}, fmt.Errorf("memory: stats: %w", err)
	}
	return q.stats(time.Now()), nil
}

// lookup returns the queue name and its dead-letter queue (nil without a
// redrive policy or when the dead-letter queue is gone).
func (t *Transport) lookup(name string) (q, dlq *queue, err error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	q, ok := t.queues[name]
	if !ok {
		return nil, nil, fmt.Errorf("queue %q: %w", name, ports.ErrNotFound)
	}
	if q.opts.DeadLetterQueue != "" {
		dlq = t.queues[q.opts.DeadLetterQueue]
	}
	return q, dlq, nil
}

// deadLetterQueue returns the dead-letter queue of q, nil when it is gone.
func (t *Transport) deadLetterQueue(q *queue) *queue {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.queues[q.opts.DeadLetterQueue]
}

// Broker returns a new Broker handle bound to the queue name. The queue need
// not exist yet: operations on a missing queue fail with ErrNotFound.
func (t *Transport) Broker(name string) ports.Broker {
	return &broker{tr: t, name: name}
}

// ResultBackend returns a new handle on the Transport's result store.
func (t *Transport) ResultBackend() ports.ResultBackend {
	return &resultBackend{store: t.results}
}

// CancelChannel returns a new handle on the Transport's cancellation domain.
func (t *Transport) CancelChannel() ports.CancelChannel {
	return &cancelChannel{hub: t.cancels, subs: make(map[*subscription]struct{})}
}

// CompletionBus returns a new handle on the Transport's completion inboxes.
func (t *Transport) CompletionBus() ports.CompletionBus {
	return &completionBus{hub: t.completions, inboxes: make(map[*inbox]struct{})}
}

// PayloadStore returns a new handle on the Transport's payload key space.
func (t *Transport) PayloadStore() ports.PayloadStore {
	return &payloadHandle{store: t.payloads}
}

// StateStore returns a new handle on the Transport's versioned records (run
// records, heartbeats).
func (t *Transport) StateStore() ports.StateStore {
	return &stateHandle{store: t.states}
}
