package core

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dagq/dagq/ports"
)

// Tuning of the background goroutines.
const (
	// checkParallelism bounds the concurrent Results reads of one checker
	// round.
	checkParallelism = 8
	// checkRound bounds the reads of one checker round, so that entries
	// that became due meanwhile are not held back by a long round.
	checkRound = 32 * checkParallelism
	// checkTimeout bounds one Results read of the checker.
	checkTimeout = 30 * time.Second
	// inboxRetryMin and inboxRetryMax bound the backoff after a failed inbox
	// Receive.
	inboxRetryMin = 100 * time.Millisecond
	inboxRetryMax = 10 * time.Second
)

// Wait blocks until task id has a result and returns it. A task that failed
// or was cancelled is not an error of Wait: its result says so (use
// ResultErr, or TaskType.Wait). Wait returns an error only when ctx is done
// (wrapping ctx's error; Wait then returns promptly and leaves nothing
// behind), when the client is closed (ports.ErrClosed), for an invalid ID
// (ports.ErrInvalidArgument) or when Results fails permanently
// (ports.ErrClosed or ports.ErrInvalidArgument from the backend; transient
// Results errors are logged and retried with backoff). A task this client
// submitted with ResultNone fails at once with ErrNoResult while the client
// remembers it; once forgotten, Wait for it blocks until ctx is done.
//
// Any number of goroutines may wait for the same ID; they share one
// schedule of Results reads. See Client for how results are found.
func (c *Client) Wait(ctx context.Context, id string) (ports.Result, error) {
	rs, err := c.WaitAll(ctx, id)
	if err != nil {
		return ports.Result{}, err
	}
	return rs[0], nil
}

// WaitAll waits for every task of ids and returns their results in the
// order of ids (duplicates allowed). It blocks like Wait, in the calling
// goroutine only, and fails like Wait: on the first error it returns nil
// results and the error, and stops waiting for all of ids.
func (c *Client) WaitAll(ctx context.Context, ids ...string) ([]ports.Result, error) {
	for _, id := range ids {
		if err := ValidateTaskID(id); err != nil {
			return nil, fmt.Errorf("dagq: wait: %w", err)
		}
	}
	out := make([]ports.Result, len(ids))
	var (
		entries []*waitEntry // nil where the result was remembered
		w       *waiter
	)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, fmt.Errorf("dagq: client: %w", ports.ErrClosed)
	}
	for i, id := range ids {
		it := c.memo.get(id)
		if it != nil && it.none && it.res == nil {
			c.mu.Unlock()
			return nil, fmt.Errorf("dagq: wait for task %s: %w", id, ErrNoResult)
		}
		if r, ok := c.memo.takeItem(it); ok {
			out[i] = r
			continue
		}
		if w == nil {
			entries = make([]*waitEntry, len(ids))
			w = &waiter{done: make(chan struct{})}
		}
		e := c.acquireLocked(id, it)
		e.addWaiter(w)
		w.left++
		entries[i] = e
	}
	c.mu.Unlock()
	if w == nil {
		return out, nil
	}

	select {
	case <-w.done:
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !w.woken { // ctx is done; when w was woken too, prefer the results
		id := ""
		for _, e := range entries {
			if e != nil && !e.finished {
				id = e.id
				break
			}
		}
		c.dropWaiterLocked(w, entries)
		return nil, fmt.Errorf("dagq: wait for task %s: %w", id, ctx.Err())
	}
	for _, e := range entries {
		if e != nil && e.finished && e.err != nil {
			c.dropWaiterLocked(w, entries)
			return nil, e.err
		}
	}
	for i, e := range entries {
		if e == nil {
			continue
		}
		if e.refs == 1 { // the last reference: nobody else reads e.res
			out[i], e.res = e.res, ports.Result{}
		} else {
			out[i] = cloneResult(e.res)
		}
		c.releaseLocked(e)
	}
	return out, nil
}

// waiter is one WaitAll call: it is woken once, when all its entries have
// finished or one of them failed. Guarded by Client.mu.
type waiter struct {
	left  int           // references to entries not finished yet
	done  chan struct{} // closed when woken
	woken bool
}

// wake closes w.done once.
func (w *waiter) wake() {
	if !w.woken {
		w.woken = true
		close(w.done)
	}
}

// dropWaiterLocked takes w off its entries (unfinished ones) and releases
// them.
func (c *Client) dropWaiterLocked(w *waiter, entries []*waitEntry) {
	for _, e := range entries {
		if e == nil {
			continue
		}
		e.removeWaiter(w)
		c.releaseLocked(e)
	}
}

// waitEntry is the shared state of all waiters of one task ID, and its place
// in the checker's schedule. Guarded by Client.mu.
type waitEntry struct {
	id   string
	refs int
	res  ports.Result
	err  error

	// w1 and more are the WaitAll calls waiting for the entry (one slot per
	// reference they hold).
	w1   *waiter
	more []*waiter

	next     time.Time     // next Results read
	interval time.Duration // delay after the next miss
	max      time.Duration // cap of interval
	heapIdx  int           // index in Client.sched, -1 when not in it

	watches []*Watch // watches holding a reference (one each)

	finished bool
	push     bool // on the reconcile schedule, waiting for a push
	checking bool // a Results read is in flight
	recheck  bool // read again right after the in-flight read
}

// addWaiter records one reference of w.
func (e *waitEntry) addWaiter(w *waiter) {
	if e.w1 == nil {
		e.w1 = w
		return
	}
	e.more = append(e.more, w)
}

// removeWaiter forgets one reference of w, if e still has it.
func (e *waitEntry) removeWaiter(w *waiter) {
	if e.w1 == w {
		e.w1 = nil
		return
	}
	for i, x := range e.more {
		if x == w {
			e.more = append(e.more[:i], e.more[i+1:]...)
			return
		}
	}
}

// plan sets e's schedule: first read after first, then step doubling up to
// cap.
func (e *waitEntry) plan(now time.Time, first, step, cap time.Duration) {
	e.next = now.Add(first)
	e.interval = min(step, cap)
	e.max = cap
}

// acquireLocked returns the entry of id with one more reference, creating
// and scheduling it if needed; it is c.memo.get(id).
func (c *Client) acquireLocked(id string, it *memoItem) *waitEntry {
	if e := c.entries[id]; e != nil {
		e.refs++
		return e
	}
	e := &waitEntry{id: id, refs: 1, heapIdx: -1}
	now := time.Now()
	switch {
	case it != nil && it.finished:
		// Finished, result not kept: read it now.
		e.plan(now, 0, c.pollMin, c.pollMax)
	case it != nil && it.viaInbox && c.pushLive:
		e.push = true
		e.plan(now, c.reconcileMin, 2*c.reconcileMin, c.reconcileMax)
	case it != nil && it.known:
		// Submitted without a live inbox: it cannot be done yet.
		e.plan(now, c.pollMin, 2*c.pollMin, c.pollMax)
	default:
		// Not submitted here (or forgotten): it may be done already.
		e.plan(now, 0, c.pollMin, c.pollMax)
	}
	c.entries[id] = e
	c.scheduleLocked(e)
	return e
}

// releaseLocked drops one reference of e; the last one unschedules it.
func (c *Client) releaseLocked(e *waitEntry) {
	e.refs--
	if e.refs > 0 || e.finished {
		return
	}
	if c.entries[e.id] == e {
		delete(c.entries, e.id)
	}
	if c.unscheduleLocked(e) {
		c.kickLocked() // the checker may have nothing left to do
	}
}

// kickLocked wakes the checker to look at its schedule again.
func (c *Client) kickLocked() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// finishLocked completes e for all its waiters.
func (c *Client) finishLocked(e *waitEntry, res ports.Result, err error) {
	if e.finished {
		return
	}
	e.finished = true
	e.res, e.err = res, err
	for _, w := range e.watches {
		delete(w.ids, e.id)
		ev := WatchEvent{TaskID: e.id, Final: true, Err: err}
		if err == nil {
			ev.Result = cloneResult(res)
		}
		w.pushLocked(ev)
	}
	e.watches = nil
	if w := e.w1; w != nil {
		if w.left--; w.left == 0 || err != nil {
			w.wake()
		}
	}
	for _, w := range e.more {
		if w.left--; w.left == 0 || err != nil {
			w.wake()
		}
	}
	e.w1, e.more = nil, nil
	if c.entries[e.id] == e {
		delete(c.entries, e.id)
	}
	if c.unscheduleLocked(e) && !c.scheduledLocked() {
		c.kickLocked() // let the checker exit now rather than at its next read
	}
}

// scheduleLocked (re)inserts e in the schedule at e.next, unless a read is
// in flight, and makes sure the checker runs.
func (c *Client) scheduleLocked(e *waitEntry) {
	if e.finished || e.checking || c.closed {
		return
	}
	c.unscheduleLocked(e)
	heap.Push(&c.sched, e)
	if c.firstLocked() == e {
		c.kickLocked()
	}
	if !c.checkerOn {
		c.checkerOn = true
		c.wg.Add(1)
		go c.checker()
	}
}

// unscheduleLocked takes e out of the schedule and reports whether it was
// in it.
func (c *Client) unscheduleLocked(e *waitEntry) bool {
	if e.heapIdx < 0 {
		return false
	}
	heap.Remove(&c.sched, e.heapIdx)
	return true
}

// firstLocked returns the scheduled entry due first, or nil.
func (c *Client) firstLocked() *waitEntry {
	if len(c.sched) == 0 {
		return nil
	}
	return c.sched[0]
}

// scheduledLocked reports whether some entry is scheduled.
func (c *Client) scheduledLocked() bool { return len(c.sched) > 0 }

// checker reads Results for the entries that are due, in rounds, and sleeps
// until the next one is due. It exits when nothing is scheduled.
func (c *Client) checker() {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		if c.closed || !c.scheduledLocked() {
			c.checkerOn = false
			c.mu.Unlock()
			return
		}
		now := time.Now()
		var due []*waitEntry
		for len(due) < checkRound {
			e := c.firstLocked()
			if e == nil || e.next.After(now) {
				break
			}
			c.unscheduleLocked(e)
			e.checking = true
			due = append(due, e)
		}
		var sleep time.Duration
		if len(due) == 0 {
			sleep = c.firstLocked().next.Sub(now)
		}
		c.mu.Unlock()

		if len(due) > 0 {
			c.check(due)
			continue
		}
		timer.Reset(sleep)
		select {
		case <-timer.C:
		case <-c.kick:
			timer.Stop()
		case <-c.bg.Done():
			// Close clears the schedule; the loop head exits.
		}
	}
}

// check reads the results of due (entries marked checking) and updates them.
func (c *Client) check(due []*waitEntry) {
	type outcome struct {
		res ports.Result
		err error
	}
	outs := make([]outcome, len(due))
	get := func(i int) {
		ctx, cancel := context.WithTimeout(c.bg, checkTimeout)
		defer cancel()
		outs[i].res, outs[i].err = c.results.Get(ctx, due[i].id)
	}
	if n := min(len(due), checkParallelism); n == 1 {
		get(0)
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < len(due); i = int(next.Add(1) - 1) {
					get(i)
				}
			})
		}
		wg.Wait()
	}

	var transient int
	var sample error
	var sampleID string
	defer func() { // after unlocking
		if transient > 0 {
			c.log.Warn("dagq: client: reading results failed; retrying with backoff",
				"failed", transient, "task_id", sampleID, "error", sample)
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for i, e := range due {
		e.checking = false
		res, err := outs[i].res, outs[i].err
		if err == nil {
			c.memo.putResult(e.id, res, true)
			c.finishLocked(e, res, nil)
			if cur := c.entries[e.id]; cur != nil {
				c.finishLocked(cur, res, nil) // a newer entry of the same task
			}
			continue
		}
		if e.finished || c.entries[e.id] != e || c.closed {
			continue // completed by a push, released, or closed meanwhile
		}
		switch {
		case errors.Is(err, ports.ErrNotFound):
		case errors.Is(err, ports.ErrClosed) || errors.Is(err, ports.ErrInvalidArgument):
			c.finishLocked(e, ports.Result{}, fmt.Errorf("dagq: wait for task %s: read result: %w", e.id, err))
			continue
		default:
			if transient++; transient == 1 {
				sample, sampleID = err, e.id
			}
		}
		if e.recheck {
			e.recheck = false
			e.next = now
		} else {
			e.next = now.Add(e.interval)
			e.interval = min(2*e.interval, e.max)
		}
		c.scheduleLocked(e)
	}
}

// dispatch receives completions from inbox and wakes their waiters until the
// client closes or the inbox is gone.
func (c *Client) dispatch(inbox ports.Inbox) {
	defer c.wg.Done()
	var retry time.Duration
	for {
		cs, err := inbox.Receive(c.bg)
		if c.bg.Err() != nil {
			return
		}
		if err == nil {
			retry = 0
			c.deliver(cs)
			continue
		}
		if errors.Is(err, ports.ErrClosed) || errors.Is(err, ports.ErrNotFound) {
			c.log.Error("dagq: client: the completion inbox is gone; waiting falls back to polling Results",
				"inbox", inbox.Address(), "error", err)
			c.inboxGone()
			return
		}
		retry = min(max(2*retry, inboxRetryMin), inboxRetryMax)
		c.log.Warn("dagq: client: receiving completions failed; retrying",
			"inbox", inbox.Address(), "retry_in", retry, "error", err)
		t := time.NewTimer(retry)
		select {
		case <-t.C:
		case <-c.bg.Done():
			t.Stop()
			return
		}
	}
}

// deliver applies received completions.
func (c *Client) deliver(cs []ports.Completion) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for _, cm := range cs {
		if cm.TaskID == "" {
			c.log.Warn("dagq: client: ignoring a completion without task ID", "state", cm.State)
			continue
		}
		if !cm.State.Final() {
			// A progress notification: a hint for watches, never an outcome.
			if !cm.State.Progress() {
				c.log.Debug("dagq: client: ignoring a completion with an unknown state", "task_id", cm.TaskID, "state", cm.State)
				continue
			}
			if e := c.entries[cm.TaskID]; e != nil && !e.finished && len(e.watches) > 0 {
				p := cm
				p.Result = nil
				for _, w := range e.watches {
					w.pushLocked(WatchEvent{TaskID: cm.TaskID, Progress: p})
				}
			}
			continue
		}
		var res *ports.Result
		if r := cm.Result; r != nil && r.TaskID == cm.TaskID && r.State.Valid() {
			res = r
		}
		e := c.entries[cm.TaskID]
		waiting := e != nil && !e.finished
		// The cache takes res (the inbox's, ours to keep); waiters get a copy.
		c.memo.finished(cm.TaskID, res, waiting)
		if !waiting {
			continue
		}
		if res != nil {
			c.finishLocked(e, cloneResult(*res), nil)
			continue
		}
		// Finished but not inlined: read it once now, then poll (it exists).
		c.pollNowLocked(e, now)
	}
}

// inboxGone switches the client to polling: no more ReplyTo, and every
// waiter on the reconcile schedule is read now and then polled.
func (c *Client) inboxGone() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pushLive, c.replyTo = false, ""
	now := time.Now()
	for _, e := range c.entries {
		if !e.push || e.finished {
			continue
		}
		c.pollNowLocked(e, now)
	}
}

// pollNowLocked takes e off the push path: its result is read at once (or
// right after the read in progress) and then polled.
func (c *Client) pollNowLocked(e *waitEntry, now time.Time) {
	e.push = false
	if e.checking {
		e.recheck = true
		e.interval, e.max = c.pollMin, c.pollMax
		return
	}
	e.plan(now, 0, c.pollMin, c.pollMax)
	c.scheduleLocked(e)
}

// entryHeap orders scheduled entries by their next read (container/heap).
type entryHeap []*waitEntry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *entryHeap) Push(x any) {
	e := x.(*waitEntry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.heapIdx = -1
	*h = old[:len(old)-1]
	return e
}
