package memory

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dagq/dagq/ports"
)

// queue is the shared state of one named queue. Lease ends and delays are
// not timers: a message is available once time.Now reaches its availableAt.
//
// Every message is in one of three containers, so that take finds available
// messages without looking at leased or delayed ones:
//
//   - queued: available messages in ascending position (sent without a
//     delay, redriven, or put back by take);
//   - returned: available messages that came back from waiting (a lease or
//     delay that ended, a Nack without delay), a heap by position;
//   - waiting: messages whose availableAt is in the future (leased, or
//     waiting out a Send or Nack delay), a heap by availableAt. take first
//     moves the ones that became available to returned.
//
// take delivers available messages in ascending position, merging queued
// and returned: the queue order of the package doc.
type queue struct {
	name string
	opts QueueOptions // with defaults applied
	seq  *atomic.Uint64

	mu       sync.Mutex
	lastPos  uint64 // position of the last message sent or redriven
	queued   deque
	returned msgHeap // by pos
	waiting  waitHeap
	leases   map[uint64]*message  // latest delivery of each delivered message, by delivery number
	held     map[string][]uint64  // FIFO: group -> positions of its waiting messages
	dedup    map[string]time.Time // FIFO: message ID -> first Send
	dedupQ   []dedupEntry         // dedup in Send order, for pruning
	changed  signal               // a message may have become available
	deleted  atomic.Bool          // set once, by delete
}

type dedupEntry struct {
	id string
	at time.Time
}

type message struct {
	pos    uint64        // order in the queue: messages are delivered by ascending pos
	seq    uint64        // Transport-wide message number
	msg    ports.Message // owned copy; GroupID is the effective group on FIFO queues
	sentAt time.Time
	// availableAt is when the message can be received: the end of its Send
	// delay, Nack delay or current lease.
	availableAt time.Time
	// receipt is the latest delivery's receipt and delivery its number (the
	// key in queue.leases); empty and 0 before the first delivery and after
	// a Nack.
	receipt  ports.Receipt
	delivery uint64
	receives int
	where    place  // the container holding the message
	waitGen  uint32 // numbers the message's entries in waiting
	index    int    // position in returned
}

func newQueue(name string, opts QueueOptions, seq *atomic.Uint64) *queue {
	q := &queue{name: name, opts: opts, seq: seq}
	q.reset()
	if opts.FIFO {
		q.dedup = make(map[string]time.Time)
	}
	return q
}

// reset empties the queue's containers.
func (q *queue) reset() {
	q.queued = deque{}
	q.returned = msgHeap{less: byPos}
	q.waiting = waitHeap{}
	q.leases = make(map[uint64]*message)
	if q.opts.FIFO {
		q.held = make(map[string][]uint64)
	}
}

// leased reports whether m is held by a live lease at now.
func (m *message) leased(now time.Time) bool {
	return m.receipt != "" && now.Before(m.availableAt)
}

func (q *queue) delete() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deleted.Store(true)
	q.reset()
	q.changed.notify()
}

// wake wakes the receivers waiting on q (e.g. when a broker closes).
func (q *queue) wake() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.changed.notify()
}

// send enqueues validated messages. The messages of one call share one
// allocation, and so do their bodies (each body's capacity ends where it
// does, so no body can grow into the next).
func (q *queue) send(now time.Time, msgs []ports.Message) {
	size := 0
	for _, in := range msgs {
		size += len(in.Body)
	}
	bodies := make([]byte, 0, size)
	ms := make([]message, len(msgs))

	q.mu.Lock()
	defer q.mu.Unlock()
	if q.opts.FIFO {
		q.pruneDedup(now)
	}
	for i, in := range msgs {
		if q.opts.FIFO {
			if _, dup := q.dedup[in.ID]; dup {
				continue
			}
			q.dedup[in.ID] = now
			q.dedupQ = append(q.dedupQ, dedupEntry{id: in.ID, at: now})
		}
		var body []byte
		if in.Body != nil {
			start := len(bodies)
			bodies = append(bodies, in.Body...)
			body = bodies[start:len(bodies):len(bodies)]
		}
		m := &ms[i]
		*m = message{
			seq:         q.seq.Add(1),
			sentAt:      now,
			availableAt: now.Add(in.Delay),
			msg: ports.Message{
				ID:         in.ID,
				Body:       body,
				Attributes: cloneAttrs(in.Attributes),
				GroupID:    in.GroupID,
			},
		}
		if q.opts.FIFO && m.msg.GroupID == "" {
			m.msg.GroupID = in.ID
		}
		q.lastPos++
		m.pos = q.lastPos
		if in.Delay > 0 {
			q.wait(m)
		} else {
			m.where = placeQueued
			q.queued.pushBack(m)
		}
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
	if q.deleted.Load() {
		return
	}
	for _, m := range ms {
		m.receipt, m.delivery = "", 0
		m.receives = 0
		m.availableAt = now
		q.lastPos++
		m.pos = q.lastPos
		m.where = placeQueued
		q.queued.pushBack(m)
	}
	q.changed.notify()
}

// wait puts m, which is in no container, in waiting.
func (q *queue) wait(m *message) {
	m.where = placeWaiting
	q.waiting.push(m)
	q.hold(m)
}

// hold records on a FIFO queue that m, which is waiting, holds back the
// later messages of its group.
func (q *queue) hold(m *message) {
	if q.held != nil {
		g := m.msg.GroupID
		q.held[g] = append(q.held[g], m.pos)
	}
}

// unwait takes m out of waiting.
func (q *queue) unwait(m *message) {
	q.waiting.invalidate(m)
	m.where = placeNone
	q.unhold(m)
}

// unhold undoes hold, as m leaves waiting.
func (q *queue) unhold(m *message) {
	if q.held != nil {
		g := m.msg.GroupID
		ps := q.held[g]
		for i, p := range ps {
			if p == m.pos {
				ps[i] = ps[len(ps)-1]
				ps = ps[:len(ps)-1]
				break
			}
		}
		if len(ps) == 0 {
			delete(q.held, g)
		} else {
			q.held[g] = ps
		}
	}
}

// heldBack reports whether m's FIFO group holds an earlier message that is
// not available: m must wait for it.
func (q *queue) heldBack(m *message) bool {
	for _, p := range q.held[m.msg.GroupID] {
		if p < m.pos {
			return true
		}
	}
	return false
}

// release moves the waiting messages available at now to returned.
func (q *queue) release(now time.Time) {
	for {
		m := q.waiting.min()
		if m == nil || now.Before(m.availableAt) {
			return
		}
		q.waiting.popMin()
		q.unhold(m)
		m.where = placeReturned
		q.returned.push(m)
	}
}

// next removes and returns the available message of least position, or
// nil if there is none.
func (q *queue) next() *message {
	var m *message
	for q.queued.len() > 0 {
		if m = q.queued.popFront(); m.where == placeQueued {
			break // not acked while queued
		}
		m = nil
	}
	if q.returned.len() > 0 && (m == nil || q.returned.min().pos < m.pos) {
		if m != nil {
			q.queued.pushFront(m)
		}
		m = q.returned.min()
		q.returned.remove(m)
	}
	if m != nil {
		m.where = placeNone
	}
	return m
}

// take leases up to max available messages. Messages due for the
// dead-letter queue (when redrive is true) are removed and returned in moved.
// When nothing was taken, next is the earliest time a message becomes
// available (zero if none will by itself), and wake is closed by the next
// change of q.
func (q *queue) take(now time.Time, max int, lease time.Duration, redrive bool) (ds []ports.Delivery, moved []*message, next time.Time, wake <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.release(now)
	var taken [ports.MaxBatch]*message
	n := 0
	var skipped []*message // FIFO messages held back by their group, by position
	for n < max {
		m := q.next()
		if m == nil {
			break
		}
		if q.held != nil && q.heldBack(m) {
			skipped = append(skipped, m)
			continue
		}
		if redrive && m.receives >= q.opts.MaxReceives {
			delete(q.leases, m.delivery)
			moved = append(moved, m)
			continue
		}
		if m.delivery != 0 {
			delete(q.leases, m.delivery)
		}
		m.receives++
		m.delivery = q.seq.Add(1)
		m.availableAt = now.Add(lease)
		q.leases[m.delivery] = m
		// Held back below, as one Receive may take several messages of a group.
		m.where = placeWaiting
		q.waiting.push(m)
		taken[n] = m
		n++
	}
	for _, m := range taken[:n] {
		q.hold(m)
	}
	// The skipped messages precede every available one left: put them back
	// in front, in order.
	for i := len(skipped) - 1; i >= 0; i-- {
		skipped[i].where = placeQueued
		q.queued.pushFront(skipped[i])
	}
	if n == 0 {
		if m := q.waiting.min(); m != nil {
			next = m.availableAt
		}
		return nil, moved, next, q.changed.wait()
	}
	return deliveries(taken[:n]), moved, time.Time{}, nil
}

// deliveries returns the deliveries of messages just leased, giving the
// messages their receipts. The receipts of one call share one string and
// the body copies one byte slice (each body's capacity ends where it does).
func deliveries(ms []*message) []ports.Delivery {
	size := 0
	for _, m := range ms {
		size += len(m.msg.Body)
	}
	bodies := make([]byte, 0, size)
	// A receipt is "<message number>.<delivery number>".
	var buf [ports.MaxBatch * 41]byte
	var ends [ports.MaxBatch]int
	rs := buf[:0]
	for i, m := range ms {
		rs = strconv.AppendUint(rs, m.seq, 10)
		rs = append(rs, '.')
		rs = strconv.AppendUint(rs, m.delivery, 10)
		ends[i] = len(rs)
	}
	receipts := string(rs)
	ds := make([]ports.Delivery, len(ms))
	start := 0
	for i, m := range ms {
		m.receipt = ports.Receipt(receipts[start:ends[i]])
		start = ends[i]
		var body []byte
		if m.msg.Body != nil {
			b := len(bodies)
			bodies = append(bodies, m.msg.Body...)
			body = bodies[b:len(bodies):len(bodies)]
		}
		ds[i] = ports.Delivery{
			Message: ports.Message{
				ID:         m.msg.ID,
				Body:       body,
				Attributes: cloneAttrs(m.msg.Attributes),
				GroupID:    m.msg.GroupID,
			},
			Receipt: m.receipt,
			Attempt: m.receives,
			SentAt:  m.sentAt,
		}
	}
	return ds
}

// lease returns the message whose latest delivery r is, if any.
func (q *queue) lease(r ports.Receipt) (*message, bool) {
	i := strings.LastIndexByte(string(r), '.')
	delivery, err := strconv.ParseUint(string(r[i+1:]), 10, 64)
	if err != nil {
		return nil, false
	}
	m, ok := q.leases[delivery]
	if !ok || m.receipt != r {
		return nil, false
	}
	return m, true
}

// remove deletes m from the queue.
func (q *queue) remove(m *message) {
	switch m.where {
	case placeWaiting:
		q.unwait(m)
	case placeReturned:
		q.returned.remove(m)
	case placeQueued:
		// deque cannot remove in the middle: next skips it
	}
	m.where = placeNone
	if m.delivery != 0 {
		delete(q.leases, m.delivery)
	}
}

// ack deletes the messages whose latest delivery the receipts are.
func (q *queue) ack(receipts []ports.Receipt) {
	q.mu.Lock()
	defer q.mu.Unlock()
	removed := false
	for _, r := range receipts {
		if m, ok := q.lease(r); ok {
			q.remove(m)
			removed = true
		}
	}
	if removed && q.opts.FIFO {
		q.changed.notify() // a group may be unblocked
	}
}

// live returns the message that r holds a live lease on. A message that a
// take with a later clock reading already released from waiting (callers
// read time.Now before they lock q) is no longer leased.
func (q *queue) live(now time.Time, r ports.Receipt) (*message, error) {
	m, ok := q.lease(r)
	if !ok || !m.leased(now) || m.where != placeWaiting {
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
	q.unwait(m)
	delete(q.leases, m.delivery)
	m.receipt, m.delivery = "", 0
	m.availableAt = now.Add(delay)
	if delay > 0 {
		q.wait(m)
	} else {
		m.where = placeReturned
		q.returned.push(m)
	}
	q.changed.notify()
	return nil
}

// requeue replaces the message r holds a live lease on by the validated
// message in: a new message at the back of the queue, available at once,
// never received. The original's receipts go stale.
func (q *queue) requeue(now time.Time, r ports.Receipt, in ports.Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	m, err := q.live(now, r)
	if err != nil {
		return err
	}
	if m.msg.ID != in.ID {
		return fmt.Errorf("%w: receipt %q holds message %q, not %q", ports.ErrInvalidArgument, r, m.msg.ID, in.ID)
	}
	// The original leaves the queue (its stale entries in waiting die with
	// it); the copy is a message of its own.
	q.unwait(m)
	delete(q.leases, m.delivery)
	m.receipt, m.delivery = "", 0
	var body []byte
	if in.Body != nil {
		body = append([]byte(nil), in.Body...)
	}
	q.lastPos++
	c := &message{
		pos:         q.lastPos,
		seq:         q.seq.Add(1),
		sentAt:      now,
		availableAt: now.Add(in.Delay),
		msg:         ports.Message{ID: in.ID, Body: body, Attributes: cloneAttrs(in.Attributes), GroupID: in.GroupID},
	}
	if in.Delay > 0 {
		q.wait(c)
	} else {
		c.where = placeQueued
		q.queued.pushBack(c)
	}
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
		q.waiting.invalidate(m)
		m.availableAt = now.Add(lease)
		q.waiting.push(m)
	}
	return errs
}

func (q *queue) stats(now time.Time) QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	var s QueueStats
	count := func(m *message) {
		switch {
		case !now.Before(m.availableAt):
			s.Visible++
		case m.receipt != "":
			s.InFlight++
		default:
			s.Delayed++
		}
	}
	for i := range q.queued.len() {
		if m := q.queued.at(i); m.where == placeQueued {
			count(m)
		}
	}
	for _, m := range q.returned.ms {
		count(m)
	}
	q.waiting.each(count)
	return s
}
