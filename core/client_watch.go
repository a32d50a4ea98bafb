package core

import (
	"context"
	"fmt"

	"github.com/dagq/dagq/ports"
)

// WatchEvent is what a Watch reports about one of its tasks.
type WatchEvent struct {
	TaskID string
	// Final is true when the task is done being watched: it finished and
	// Result is its result (any final state; a failed task is not an Err),
	// or it can no longer be waited for and Err says why (the client closed,
	// or Results failed permanently). Exactly one final event is reported
	// per Add of a task, unless it is removed or the Watch ends first.
	Final  bool
	Result ports.Result
	Err    error
	// Progress is, when Final is false, a progress notification pushed by a
	// worker (State ports.StateRunning or ports.StateRetrying, with Attempt
	// and Error). Progress is best-effort: notifications may be missing or
	// repeated (see ports.CompletionBus), and none are reported without a
	// CompletionBus or for tasks submitted without Request.Progress.
	Progress ports.Completion
}

// Watch fans in the outcomes of many tasks into one place, for a caller
// that waits for a changing set of tasks from one goroutine (the DAG
// Executor does): instead of a goroutine per task, it adds IDs and reads
// events as they come.
//
//	w, _ := client.Watch(ctx)
//	defer w.Close()
//	ids, err := w.SubmitBatch(ctx, reqs...)
//	for w.Len() > 0 {
//		select {
//		case <-w.Ready():
//			for _, ev := range w.Take() { ... }
//		case <-ctx.Done():
//			...
//		}
//	}
//
// A Watch shares the Client's waiting machinery with Wait and WaitAll
// (pushed completions, reconcile reads, polling without a CompletionBus), so
// watching costs no goroutine and no Results read beyond what waiting costs.
// Events are queued without bound in arrival order; the client's goroutines
// never block on a slow reader. A Watch is safe for concurrent use.
//
// A Watch ends when Close is called, when the context given to Client.Watch
// is done, or when the client closes (after reporting every watched task as
// final with an error matching ports.ErrClosed). Ending removes all its
// waiters from the client at once.
type Watch struct {
	c       *Client
	ready   chan struct{}
	stopCtx func() bool

	// Guarded by c.mu.
	ids    map[string]*waitEntry // watched tasks not finished yet
	queue  []WatchEvent
	ended  bool
	endErr error
}

// Watch returns a new, empty Watch that ends when ctx is done (or at
// Close). It starts no goroutine and makes no request.
func (c *Client) Watch(ctx context.Context) (*Watch, error) {
	w := &Watch{c: c, ready: make(chan struct{}, 1), ids: make(map[string]*waitEntry)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, fmt.Errorf("dagq: client: %w", ports.ErrClosed)
	}
	c.watches[w] = struct{}{}
	c.mu.Unlock()
	w.stopCtx = context.AfterFunc(ctx, func() {
		w.end(fmt.Errorf("dagq: watch: %w", ctx.Err()))
	})
	return w, nil
}

// Add watches the tasks ids (which need not have been submitted by this
// client). A task with a result the client remembers is reported at once;
// adding a task that is already watched does nothing. An invalid ID fails
// the call (nothing is added) with ports.ErrInvalidArgument; an ended Watch
// fails with the reason it ended.
//
// Add after Submit is fine for results, which are never missed; to be sure
// to see every progress notification too, submit through the Watch
// (SubmitBatch).
func (w *Watch) Add(ids ...string) error {
	for _, id := range ids {
		if err := ValidateTaskID(id); err != nil {
			return fmt.Errorf("dagq: watch: %w", err)
		}
	}
	c := w.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	for _, id := range ids {
		w.addLocked(id)
	}
	return nil
}

// SubmitBatch is Client.SubmitBatch that also adds the tasks to w before
// anything is sent, so that no notification of theirs can be missed. The
// tasks stay watched even when their Send failed (re-submitting them, with
// the same IDs, is safe); Remove the ones you give up on. An ended Watch
// sends nothing and fails with the reason it ended.
func (w *Watch) SubmitBatch(ctx context.Context, reqs ...Request) ([]string, error) {
	return w.c.submitBatch(ctx, w, reqs)
}

// Remove stops watching ids; IDs not watched are ignored. Events already
// queued for them stay queued.
func (w *Watch) Remove(ids ...string) {
	c := w.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if e := w.ids[id]; e != nil {
			w.detachLocked(e)
		}
	}
}

// Ready returns a channel that receives a value when events may be waiting
// to be taken, and when the Watch ends. After a receive, call Take: it may
// return nothing when another reader took the events first.
func (w *Watch) Ready() <-chan struct{} { return w.ready }

// Take returns the queued events, oldest first, and empties the queue.
func (w *Watch) Take() []WatchEvent {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	q := w.queue
	w.queue = nil
	return q
}

// Next blocks until events are queued and takes them. It fails when ctx is
// done (wrapping ctx's error) or, once the queue is empty, when the Watch
// has ended (with the reason: ports.ErrClosed after Close or the client's
// Close, the Watch context's error when that ended it).
func (w *Watch) Next(ctx context.Context) ([]WatchEvent, error) {
	for {
		w.c.mu.Lock()
		if len(w.queue) > 0 {
			q := w.queue
			w.queue = nil
			w.c.mu.Unlock()
			return q, nil
		}
		ended, err := w.ended, w.endErr
		w.c.mu.Unlock()
		if ended {
			return nil, err
		}
		select {
		case <-w.ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("dagq: watch: %w", ctx.Err())
		}
	}
}

// Len returns the number of tasks watched and not reported final yet.
func (w *Watch) Len() int {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return len(w.ids)
}

// Close ends the Watch: it stops watching every task and drops queued
// events. Close is idempotent.
func (w *Watch) Close() {
	w.stopCtx()
	w.end(fmt.Errorf("dagq: watch: %w", ports.ErrClosed))
	w.c.mu.Lock()
	w.queue = nil
	w.c.mu.Unlock()
}

// end stops watching everything, keeping queued events; err is what Next
// and Add report afterwards.
func (w *Watch) end(err error) {
	c := w.c
	c.mu.Lock()
	w.endLocked(err)
	c.mu.Unlock()
}

func (w *Watch) endLocked(err error) {
	if w.ended {
		return
	}
	w.ended, w.endErr = true, err
	for _, e := range w.ids {
		w.detachLocked(e)
	}
	delete(w.c.watches, w)
	w.signal()
}

// usableLocked returns the error of an ended Watch or closed client.
func (w *Watch) usableLocked() error {
	switch {
	case w.ended:
		return w.endErr
	case w.c.closed:
		return fmt.Errorf("dagq: client: %w", ports.ErrClosed)
	}
	return nil
}

// addLocked watches id: at once from the client's memory of results, or
// through an entry of the waiting machinery.
func (w *Watch) addLocked(id string) {
	if _, dup := w.ids[id]; dup {
		return
	}
	c := w.c
	it := c.memo.get(id)
	if r, ok := c.memo.takeItem(it); ok {
		w.pushLocked(WatchEvent{TaskID: id, Final: true, Result: r})
		return
	}
	e := c.acquireLocked(id, it)
	e.watches = append(e.watches, w)
	w.ids[id] = e
}

// detachLocked stops watching e's task and drops w's reference to e.
func (w *Watch) detachLocked(e *waitEntry) {
	delete(w.ids, e.id)
	for i, x := range e.watches {
		if x == w {
			e.watches = append(e.watches[:i], e.watches[i+1:]...)
			break
		}
	}
	w.c.releaseLocked(e)
}

// pushLocked queues ev and wakes the reader.
func (w *Watch) pushLocked(ev WatchEvent) {
	if w.ended {
		return
	}
	w.queue = append(w.queue, ev)
	w.signal()
}

func (w *Watch) signal() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}
