package memory

import "time"

// The containers a queue keeps its messages in. Each message is in at most
// one of them at a time (message.where says which).

// place is the container a message is in.
type place uint8

const (
	placeNone     place = iota // in no container: being handled by take, acked or redriven
	placeQueued                // in queue.queued
	placeReturned              // in queue.returned
	placeWaiting               // in queue.waiting
)

// deque is a double-ended queue of messages in a growable ring buffer. A
// queue uses it for available messages in ascending position; pushFront puts
// back messages smaller than every one in it.
type deque struct {
	buf  []*message // ring; len(buf) is 0 or a power of two
	head int        // index of the front in buf
	n    int        // number of messages
}

func (d *deque) len() int { return d.n }

// at returns the i-th message from the front.
func (d *deque) at(i int) *message { return d.buf[(d.head+i)&(len(d.buf)-1)] }

func (d *deque) pushBack(m *message) {
	d.grow()
	d.buf[(d.head+d.n)&(len(d.buf)-1)] = m
	d.n++
}

func (d *deque) pushFront(m *message) {
	d.grow()
	d.head = (d.head - 1) & (len(d.buf) - 1)
	d.buf[d.head] = m
	d.n++
}

func (d *deque) popFront() *message {
	m := d.buf[d.head]
	d.buf[d.head] = nil
	d.head = (d.head + 1) & (len(d.buf) - 1)
	d.n--
	return m
}

// grow makes room for one more message.
func (d *deque) grow() {
	if d.n < len(d.buf) {
		return
	}
	buf := make([]*message, max(16, 2*len(d.buf)))
	for i := range d.n {
		buf[i] = d.at(i)
	}
	d.buf, d.head = buf, 0
}

// msgHeap is a binary min-heap of messages, ordered by less. It maintains
// message.index. A queue's returned container is one.
type msgHeap struct {
	ms   []*message
	less func(a, b *message) bool
}

func byPos(a, b *message) bool { return a.pos < b.pos }

func (h *msgHeap) len() int { return len(h.ms) }

// min returns the least message; the heap must not be empty.
func (h *msgHeap) min() *message { return h.ms[0] }

func (h *msgHeap) push(m *message) {
	m.index = len(h.ms)
	h.ms = append(h.ms, m)
	h.up(m.index)
}

// remove removes m, which must be in h.
func (h *msgHeap) remove(m *message) {
	i, last := m.index, len(h.ms)-1
	if i != last {
		h.swap(i, last)
	}
	h.ms[last] = nil
	h.ms = h.ms[:last]
	if i != last {
		h.fix(i)
	}
	m.index = -1
}

// fix restores the order after the key of the message at index i changed.
func (h *msgHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *msgHeap) swap(i, j int) {
	h.ms[i], h.ms[j] = h.ms[j], h.ms[i]
	h.ms[i].index = i
	h.ms[j].index = j
}

func (h *msgHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(h.ms[i], h.ms[p]) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

// down moves the message at i down and reports whether it moved.
func (h *msgHeap) down(i int) bool {
	start := i
	for {
		c := 2*i + 1
		if c >= len(h.ms) {
			break
		}
		if r := c + 1; r < len(h.ms) && h.less(h.ms[r], h.ms[c]) {
			c = r
		}
		if !h.less(h.ms[c], h.ms[i]) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}

// waitHeap is the waiting container: a binary min-heap of entries by
// availableAt. Its entries are values, so ordering them never touches the
// messages. Taking a message out of waiting, or changing its availableAt,
// only invalidates its entry (message.waitGen moves on); stale entries are
// dropped when they reach the top, or all at once when they outnumber the
// live ones, so that removing stays cheap and the heap at most twice the
// size of the waiting set.
type waitHeap struct {
	es    []waitEntry
	stale int // entries whose message left or re-entered waiting since
}

type waitEntry struct {
	at  time.Time // the message's availableAt when the entry was pushed
	m   *message
	gen uint32 // the message's waitGen when the entry was pushed
}

func (e waitEntry) live() bool { return e.m.where == placeWaiting && e.m.waitGen == e.gen }

// push adds m, which must be waiting, under its availableAt.
func (h *waitHeap) push(m *message) {
	m.waitGen++
	h.es = append(h.es, waitEntry{at: m.availableAt, m: m, gen: m.waitGen})
	h.up(len(h.es) - 1)
}

// invalidate drops the entry of m, which must be waiting (as m leaves
// waiting or gets pushed with a new availableAt).
func (h *waitHeap) invalidate(m *message) {
	m.waitGen++
	h.stale++
	if h.stale > len(h.es)/2 && len(h.es) >= 64 {
		h.compact()
	}
}

// min returns the waiting message of least availableAt, or nil.
func (h *waitHeap) min() *message {
	for len(h.es) > 0 {
		if e := h.es[0]; e.live() {
			return e.m
		}
		h.pop()
		h.stale--
	}
	return nil
}

// popMin removes the entry of min; the message is then in no container.
func (h *waitHeap) popMin() {
	m := h.es[0].m
	h.pop()
	m.where = placeNone
}

// each calls f for every waiting message.
func (h *waitHeap) each(f func(*message)) {
	for _, e := range h.es {
		if e.live() {
			f(e.m)
		}
	}
}

func (h *waitHeap) pop() {
	last := len(h.es) - 1
	h.es[0] = h.es[last]
	h.es[last] = waitEntry{}
	h.es = h.es[:last]
	h.down(0)
}

// compact drops the stale entries and restores the heap order.
func (h *waitHeap) compact() {
	live := h.es[:0]
	for _, e := range h.es {
		if e.live() {
			live = append(live, e)
		}
	}
	clear(h.es[len(live):])
	h.es, h.stale = live, 0
	for i := len(h.es)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *waitHeap) less(i, j int) bool { return h.es[i].at.Before(h.es[j].at) }

func (h *waitHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.es[i], h.es[p] = h.es[p], h.es[i]
		i = p
	}
}

func (h *waitHeap) down(i int) {
	for {
		c := 2*i + 1
		if c >= len(h.es) {
			return
		}
		if r := c + 1; r < len(h.es) && h.less(r, c) {
			c = r
		}
		if !h.less(c, i) {
			return
		}
		h.es[i], h.es[c] = h.es[c], h.es[i]
		i = c
	}
}
