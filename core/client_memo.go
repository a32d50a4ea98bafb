package core

import (
	"container/list"

	"github.com/dagq/dagq/ports"
)

// Limits of what the client remembers about tasks.
const (
	// memoMaxOutput is the largest result Output kept in memory; a larger
	// result is only remembered as finished and read again when needed.
	memoMaxOutput = 64 << 10
	// memoOutputBudget bounds the Output bytes of the remembered results of
	// waited-for (or foreign) tasks, the CacheSize LRU.
	memoOutputBudget = 16 << 20
	// memoHeldBudget bounds the memory of the results held for tasks this
	// client submitted whose completion arrived before anyone waited for
	// them; each costs heldCost. The oldest ones move to the LRU beyond it.
	memoHeldBudget = 64 << 20
	// memoHeldOverhead approximates the memory of one held result besides
	// its strings and Output (item, result struct, map slot).
	memoHeldOverhead = 256
)

// Lists of the memo cache (indexes of memoCache.lists); every item is on
// exactly one.
const (
	onPending uint8 = iota // submitted here, no outcome known yet
	onHeld                 // submitted here, result kept until waited for
	onLRU                  // finished (result kept or not)
)

// memoItem is what the client remembers about one task ID.
type memoItem struct {
	id string
	// viaInbox: this client submitted the task with its inbox as ReplyTo.
	viaInbox bool
	// known: this client submitted the task (with or without inbox).
	known bool
	// none: this client submitted the task with ResultNone (the item is on
	// the LRU, not finished: there is nothing to wait for).
	none bool
	// finished: a completion arrived or a result was read.
	finished bool
	// list is the list the item is on (onPending, onHeld or onLRU), and
	// elem its element there.
	list uint8
	elem *list.Element
	// res is the task's result when finished and small enough to keep.
	res *ports.Result
}

// memoCache remembers task IDs on three lists:
//
//   - pending: tasks this client submitted whose outcome is unknown, oldest
//     first, at most maxPending (the oldest are forgotten beyond it: they
//     then take the path of a task not submitted here). They are kept
//     whatever CacheSize is, so that their completions are known to be
//     pushed.
//   - held: tasks this client submitted whose result arrived before anyone
//     waited for it, kept until a waiter takes it, within memoHeldBudget
//     (the oldest move to the LRU beyond it).
//   - lru: finished tasks (waited for, read, or not submitted here), least
//     recently used first, at most maxLRU items and budget Output bytes.
//
// Not safe for concurrent use (Client.mu guards it).
type memoCache struct {
	maxLRU, maxPending int
	budget, bytes      int // Output bytes of the LRU's results
	heldBudget, held   int // heldCost of the held results
	items              map[string]*memoItem
	lists              [3]list.List // of *memoItem, oldest first
}

func newMemoCache(maxLRU, maxPending, budget int) *memoCache {
	return &memoCache{
		maxLRU: maxLRU, maxPending: maxPending, budget: budget, heldBudget: memoHeldBudget,
		items: make(map[string]*memoItem),
	}
}

// oldest returns the oldest item of list k, or nil.
func (m *memoCache) oldest(k uint8) *memoItem {
	if e := m.lists[k].Front(); e != nil {
		return e.Value.(*memoItem)
	}
	return nil
}

// pushBack puts it (on no list) at the recent end of list k.
func (m *memoCache) pushBack(it *memoItem, k uint8) {
	it.list = k
	it.elem = m.lists[k].PushBack(it)
}

// heldCost is the memory charged for holding r.
func heldCost(r *ports.Result) int {
	return memoHeldOverhead + len(r.TaskID) + len(r.Output) + len(r.Error) + len(r.Worker)
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

// take is result for a waiter: a held result is handed over (it moves to the
// LRU, where later waiters still find it).
func (m *memoCache) take(id string) (ports.Result, bool) { return m.takeItem(m.items[id]) }

// takeItem is take for the item (or nil) of an ID.
func (m *memoCache) takeItem(it *memoItem) (ports.Result, bool) {
	if it == nil || it.res == nil {
		return ports.Result{}, false
	}
	r := cloneResult(*it.res)
	if it.list == onHeld {
		m.toLRU(it)
		m.evictLRU(it)
	}
	return r, true
}

// unlink removes it from its list, adjusting the byte counts.
func (m *memoCache) unlink(it *memoItem) {
	m.lists[it.list].Remove(it.elem)
	it.elem = nil
	switch {
	case it.list == onHeld:
		m.held -= heldCost(it.res)
	case it.list == onLRU && it.res != nil:
		m.bytes -= len(it.res.Output)
	}
}

// toLRU moves it (finished) to the most recent end of the LRU.
func (m *memoCache) toLRU(it *memoItem) {
	m.unlink(it)
	m.pushBack(it, onLRU)
	if it.res != nil {
		m.bytes += len(it.res.Output)
	}
}

// submitted records that this client submitted id.
func (m *memoCache) submitted(id string, viaInbox bool) {
	if it := m.items[id]; it != nil {
		it.known, it.none = true, false
		it.viaInbox = it.viaInbox || viaInbox
		if it.list == onLRU { // submitted again: refresh its recency
			m.toLRU(it)
		}
		return
	}
	it := &memoItem{id: id, known: true, viaInbox: viaInbox}
	m.items[id] = it
	m.pushBack(it, onPending)
	for m.lists[onPending].Len() > m.maxPending {
		old := m.oldest(onPending)
		m.unlink(old)
		delete(m.items, old.id)
	}
}

// noResult records that this client submitted id with ResultNone: it goes
// to the LRU at once (nothing will arrive for it), where a Wait finds it
// and fails with ErrNoResult.
func (m *memoCache) noResult(id string) {
	it := m.items[id]
	if it == nil {
		it = &memoItem{id: id}
		m.items[id] = it
		m.pushBack(it, onLRU)
	} else if it.list == onLRU {
		m.toLRU(it)
	}
	it.known, it.none = true, true
	m.evictLRU(it)
}

// unsent forgets id if it is pending: its submission certainly failed.
func (m *memoCache) unsent(id string) {
	if it := m.items[id]; it != nil && it.list == onPending {
		m.unlink(it)
		delete(m.items, id)
	}
}

// finished records that id finished; res is its result when known (the
// cache takes ownership of it). taken says that a waiter got the result, so
// that it need not be held for one.
func (m *memoCache) finished(id string, res *ports.Result, taken bool) {
	if res != nil && len(res.Output) > memoMaxOutput {
		res = nil
	}
	it := m.items[id]
	if it == nil {
		it = &memoItem{id: id}
		m.items[id] = it
		m.pushBack(it, onLRU)
	}
	it.finished = true
	if it.res != nil || res == nil {
		res = nil // keep the first result
	}
	switch {
	case it.list == onPending && res != nil && !taken:
		m.unlink(it)
		it.res = res
		m.pushBack(it, onHeld)
		m.held += heldCost(res)
		m.evictHeld()
		return
	case it.list == onHeld:
		if taken {
			m.toLRU(it)
		}
	default:
		m.toLRU(it)
		if res != nil { // it had none
			it.res = res
			m.bytes += len(res.Output)
		}
	}
	m.evictLRU(it)
}

// putResult records (a copy of) the result of a finished task; taken as
// for finished.
func (m *memoCache) putResult(id string, res ports.Result, taken bool) {
	r := cloneResult(res)
	m.finished(id, &r, taken)
}

// evictHeld moves the oldest held results to the LRU while over budget.
func (m *memoCache) evictHeld() {
	moved := false
	for m.held > m.heldBudget && m.lists[onHeld].Len() > 0 {
		m.toLRU(m.oldest(onHeld))
		moved = true
	}
	if moved {
		m.evictLRU(nil)
	}
}

// evictLRU drops least recently used items (never keep) until the LRU is
// within bounds.
func (m *memoCache) evictLRU(keep *memoItem) {
	lru := &m.lists[onLRU]
	for (lru.Len() > m.maxLRU || m.bytes > m.budget) && lru.Len() > 0 {
		it := m.oldest(onLRU)
		if it == keep {
			if lru.Len() == 1 {
				return
			}
			lru.MoveToBack(it.elem)
			continue
		}
		m.unlink(it)
		delete(m.items, it.id)
	}
}

// cloneResult copies r so that callers cannot alias each other's Output.
func cloneResult(r ports.Result) ports.Result {
	if r.Output != nil {
		r.Output = append([]byte(nil), r.Output...)
	}
	return r
}
