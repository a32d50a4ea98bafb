package memory

import "time"

// The containers a queue keeps its messages in. Each message is in at most
// one of them at a time (message.where says which), and heaps record its
// position in message.index so that it can be removed or moved in place.

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
// message.index.
type msgHeap struct {
	ms   []*message
	less func(a, b *message) bool
}

func byPos(a, b *message) bool { return a.pos < b.pos }

func byAvailableAt(a, b *message) bool { return a.availableAt.Before(b.availableAt) }

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

// due reports whether the least message of h is available at now.
func (h *msgHeap) due(now time.Time) bool {
	return len(h.ms) > 0 && !now.Before(h.ms[0].availableAt)
}
