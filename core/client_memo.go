package core

import (
	"container/list"

	"github.com/dagq/dagq/ports"
)

// Limits of what the client remembers about finished tasks.
const (
	// memoMaxOutput is the largest result Output kept in memory; a larger
	// result is only remembered as finished and read again when needed.
	memoMaxOutput = 64 << 10
	// memoOutputBudget bounds the Output bytes of all remembered results.
	memoOutputBudget = 16 << 20
)

// memoItem is what the client remembers about one task ID.
type memoItem struct {
	id string
	// viaInbox: this client submitted the task with its inbox as ReplyTo.
	viaInbox bool
	// known: this client submitted the task (with or without inbox).
	known bool
	// finished: a completion arrived or a result was read.
	finished bool
	// res is the task's result when finished and small enough to keep.
	res  *ports.Result
	elem *list.Element
}

// memoCache is a bounded LRU of memoItems: at most max items and budget
// bytes of result Output. Not safe for concurrent use (Client.mu guards it).
type memoCache struct {
	max, budget, bytes int
	items              map[string]*memoItem
	order              *list.List // front = least recently used
}

func newMemoCache(max, budget int) *memoCache {
	return &memoCache{max: max, budget: budget, items: make(map[string]*memoItem), order: list.New()}
}

// get returns the item of id or nil, without changing its recency.
func (m *memoCache) get(id string) *memoItem { return m.items[id] }

// result returns a copy of the remembered result of id, or nil.
func (m *memoCache) result(id string) *ports.Result {
	it := m.items[id]
	if it == nil || it.res == nil {
		return nil
	}
	r := cloneResult(*it.res)
	return &r
}

// touch returns the item of id, created if needed, as most recently used.
func (m *memoCache) touch(id string) *memoItem {
	if it := m.items[id]; it != nil {
		m.order.MoveToBack(it.elem)
		return it
	}
	it := &memoItem{id: id}
	it.elem = m.order.PushBack(it)
	m.items[id] = it
	return it
}

// submitted records that this client submitted id.
func (m *memoCache) submitted(id string, viaInbox bool) {
	it := m.touch(id)
	it.known = true
	it.viaInbox = it.viaInbox || viaInbox
	m.evict(it)
}

// finished records that id finished; res is its result when known.
func (m *memoCache) finished(id string, res *ports.Result) {
	it := m.touch(id)
	it.finished = true
	if res != nil && it.res == nil && len(res.Output) <= memoMaxOutput {
		r := cloneResult(*res)
		it.res = &r
		m.bytes += len(r.Output)
	}
	m.evict(it)
}

// putResult records the result of a finished task.
func (m *memoCache) putResult(id string, res ports.Result) { m.finished(id, &res) }

// evict drops least recently used items (never keep) until within bounds.
func (m *memoCache) evict(keep *memoItem) {
	for len(m.items) > m.max || m.bytes > m.budget {
		front := m.order.Front()
		it := front.Value.(*memoItem)
		if it == keep {
			if m.order.Len() == 1 {
				return
			}
			m.order.MoveToBack(front)
			continue
		}
		m.order.Remove(front)
		delete(m.items, it.id)
		if it.res != nil {
			m.bytes -= len(it.res.Output)
		}
	}
}

// cloneResult copies r so that callers cannot alias each other's Output.
func cloneResult(r ports.Result) ports.Result {
	if r.Output != nil {
		r.Output = append([]byte(nil), r.Output...)
	}
	return r
}
