package memory

import (
	"container/list"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dagq/dagq/ports"
)

// queue is the shared state of one named queue. Lease ends and delays are
// not timers: a message is available once time.Now reaches its availableAt.
type queue struct {
	name string
	opts QueueOptions // with defaults applied
	seq  *atomic.Uint64

	mu      sync.Mutex
	msgs    list.List                  // *message, in send order
	leases  map[ports.Receipt]*message // latest receipt of each delivered message
	dedup   map[string]time.Time       // FIFO: message ID -> first Send
	dedupQ  []dedupEntry               // dedup in Send order, for pruning
	changed signal                     // a message may have become available
	deleted bool
}

type dedupEntry struct {
	id string
	at time.Time
}

type message struct {
	seq    uint64
	msg    ports.Message // owned copy; GroupID is the effective group on FIFO queues
	sentAt time.Time
	// availableAt is when the message can be received: the end of its Send
	// delay, Nack delay or current lease.
	availableAt time.Time
	// receipt is the latest delivery's receipt; empty before the first
	// delivery and after a Nack.
	receipt  ports.Receipt
	receives int
	elem     *list.Element
}

func newQueue(name string, opts QueueOptions, seq *atomic.Uint64) *queue {
	return &queue{
		name:   name,
		opts:   opts,
		seq:    seq,
		leases: make(map[ports.Receipt]*message),
		dedup:  make(map[string]time.Time),
	}
}

// leased reports whether m is held by a live lease at now.
func (m *message) leased(now time.Time) bool {
	return m.receipt != "" && now.Before(m.availableAt)
}

func (q *queue) delete() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deleted = true
	q.msgs.Init()
	q.leases = make(map[ports.Receipt]*message)
	q.changed.notify()
}

// wake wakes the receivers waiting on q (e.g. when a broker closes).
func (q *queue) wake() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.changed.notify()
}

// send enqueues validated messages.
func (q *queue) send(now time.Time, msgs []ports.Message) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.opts.FIFO {
		q.pruneDedup(now)
	}
	for _, in := range msgs {
		m := &message{
			seq:         q.seq.Add(1),
			sentAt:      now,
			availableAt: now.Add(in.Delay),
			msg: ports.Message{
				ID:         in.ID,
				Body:       cloneBytes(in.Body),
				Attributes: cloneAttrs(in.Attributes),
				GroupID:    in.GroupID,
			},
		}
		if q.opts.FIFO {
			if _, dup := q.dedup[in.ID]; dup {
				continue
			}
			q.dedup[in.ID] = now
			q.dedupQ = append(q.dedupQ, dedupEntry{id: in.ID, at: now})
			if m.msg.GroupID == "" {
				m.msg.GroupID = in.ID
			}
		}
		m.elem = q.msgs.PushBack(m)
	}
	q.changed.notify()
}

func (q *queue) pruneDedup(now time.Time) {
	n := 0
	for n < len(q.dedupQ) && !now.Before(q.dedupQ[n].at.Add(q.opts.DedupWindow)) {
		delete(q.dedup, q.dedupQ[n].id)
		n++
	}
	q.dedupQ = q.dedupQ[n:]
}

// redrive appends messages moved from another queue's redrive policy.
func (q *queue) redrive(now time.Time, ms []*message) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return
	}
	for _, m := range ms {
		m.receipt = ""
		m.receives = 0
		m.availableAt = now
		m.elem = q.msgs.PushBack(m)
	}
	q.changed.notify()
}

// take leases up to max available messages. Messages due for the
// dead-letter queue (when redrive is true) are removed and returned in moved.
// When nothing was taken, next is the earliest time a message becomes
// available (zero if none will by itself), and wake is closed by the next
// change of q.
func (q *queue) take(now time.Time, max int, lease time.Duration, redrive bool) (ds []ports.Delivery, moved []*message, next time.Time, wake <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var blocked map[string]bool // FIFO groups held back
	if q.opts.FIFO {
		blocked = make(map[string]bool)
	}
	for e := q.msgs.Front(); e != nil && len(ds) < max; {
		m := e.Value.(*message)
		e = e.Next()
		if blocked[m.msg.GroupID] {
			continue
		}
		if now.Before(m.availableAt) {
			if next.IsZero() || m.availableAt.Before(next) {
				next = m.availableAt
			}
			if blocked != nil {
				blocked[m.msg.GroupID] = true
			}
			continue
		}
		if redrive && m.receives >= q.opts.MaxReceives {
			q.remove(m)
			moved = append(moved, m)
			continue
		}
		if m.receipt != "" {
			delete(q.leases, m.receipt)
		}
		m.receives++
		m.receipt = ports.Receipt(strconv.FormatUint(m.seq, 10) + "." + strconv.FormatUint(q.seq.Add(1), 10))
		m.availableAt = now.Add(lease)
		q.leases[m.receipt] = m
		d := ports.Delivery{
			Message: ports.Message{
				ID:         m.msg.ID,
				Body:       cloneBytes(m.msg.Body),
				Attributes: cloneAttrs(m.msg.Attributes),
				GroupID:    m.msg.GroupID,
			},
			Receipt: m.receipt,
			Attempt: m.receives,
			SentAt:  m.sentAt,
		}
		ds = append(ds, d)
	}
	if len(ds) == 0 {
		wake = q.changed.wait()
	}
	return ds, moved, next, wake
}

func (q *queue) remove(m *message) {
	q.msgs.Remove(m.elem)
	if m.receipt != "" && q.leases[m.receipt] == m {
		delete(q.leases, m.receipt)
	}
}

// ack deletes the messages whose latest delivery the receipts are.
func (q *queue) ack(receipts []ports.Receipt) {
	q.mu.Lock()
	defer q.mu.Unlock()
	removed := false
	for _, r := range receipts {
		if m, ok := q.leases[r]; ok {
			q.remove(m)
			removed = true
		}
	}
	if removed && q.opts.FIFO {
		q.changed.notify() // a group may be unblocked
	}
}

// live returns the message that r holds a live lease on.
func (q *queue) live(now time.Time, r ports.Receipt) (*message, error) {
	m, ok := q.leases[r]
	if !ok || !m.leased(now) {
		return nil, fmt.Errorf("receipt %q: %w", r, ports.ErrLeaseLost)
	}
	return m, nil
}

func (q *queue) nack(now time.Time, r ports.Receipt, delay time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	m, err := q.live(now, r)
	if err != nil {
		return err
	}
	delete(q.leases, r)
	m.receipt = ""
	m.availableAt = now.Add(delay)
	q.changed.notify()
	return nil
}

// extend returns the error of each receipt, nil where the lease was extended.
func (q *queue) extend(now time.Time, lease time.Duration, receipts []ports.Receipt) []error {
	q.mu.Lock()
	defer q.mu.Unlock()
	errs := make([]error, len(receipts))
	for i, r := range receipts {
		m, err := q.live(now, r)
		if err != nil {
			errs[i] = err
			continue
		}
		m.availableAt = now.Add(lease)
	}
	return errs
}

func (q *queue) stats(now time.Time) QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	var s QueueStats
	for e := q.msgs.Front(); e != nil; e = e.Next() {
		m := e.Value.(*message)
		switch {
		case !now.Before(m.availableAt):
			s.Visible++
		case m.receipt != "":
			s.InFlight++
		default:
			s.Delayed++
		}
	}
	return s
}
