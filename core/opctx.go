package core

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// deadlineCtx is context.WithDeadline for a parent that is never cancelled
// and has no deadline (the worker's base context), with a lazy timer: Err
// compares the clock with the deadline, and the timer that closes Done is
// only started when somebody asks for Done (or registers an AfterFunc, as
// context.WithCancel and context.AfterFunc do on it). Port calls that only
// check Err (in-memory adapters) then cost no timer at all; the others see
// exactly what context.WithDeadline gives them: the same Deadline, Done,
// Err, Value and context.Cause (context.DeadlineExceeded, or
// context.Canceled after cancel).
type deadlineCtx struct {
	parent   context.Context
	deadline time.Time

	ended atomic.Bool // err is set
	armed atomic.Bool // the timer runs (or ran): it sets err at the deadline

	mu     sync.Mutex
	done   chan struct{} // made on demand
	err    error
	timer  *time.Timer
	afters map[*afterFunc]struct{}
}

type afterFunc struct{ f func() }

// withLazyDeadline returns a child of parent (which must never be done) that
// expires at deadline, and its cancel function.
func withLazyDeadline(parent context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	c := &deadlineCtx{parent: parent, deadline: deadline}
	return c, c.cancel
}

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *deadlineCtx) Value(key any) any { return c.parent.Value(key) }

func (c *deadlineCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armLocked()
	return c.done
}

func (c *deadlineCtx) Err() error {
	// Lock-free while running: the context is shared by concurrent calls
	// (Worker.opContext), and in-memory adapters ask Err on every call.
	// Once the timer runs it ends the context (like context.WithDeadline:
	// Err stays nil until it fires); before that, the clock decides.
	if !c.ended.Load() && (c.armed.Load() || time.Now().Before(c.deadline)) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && !time.Now().Before(c.deadline) {
		c.endLocked(context.DeadlineExceeded)
	}
	return c.err
}

// AfterFunc arranges to call f in its own goroutine once c is done, like
// context.AfterFunc (which, like context.WithCancel, uses it on c).
func (c *deadlineCtx) AfterFunc(f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armLocked()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	a := &afterFunc{f: f}
	if c.afters == nil {
		c.afters = make(map[*afterFunc]struct{})
	}
	c.afters[a] = struct{}{}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.afters[a]
		delete(c.afters, a)
		return ok
	}
}

// armLocked makes the Done channel and starts the timer that closes it.
func (c *deadlineCtx) armLocked() {
	if c.done != nil {
		return
	}
	c.done = make(chan struct{})
	if c.err == nil && !time.Now().Before(c.deadline) {
		c.endLocked(context.DeadlineExceeded)
	}
	if c.err != nil {
		close(c.done)
		return
	}
	c.timer = time.AfterFunc(time.Until(c.deadline), c.expire)
	c.armed.Store(true)
}

// arm makes the Done channel and starts the timer now.
func (c *deadlineCtx) arm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armLocked()
}

func (c *deadlineCtx) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endLocked(context.DeadlineExceeded)
}

func (c *deadlineCtx) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endLocked(context.Canceled)
}

// endLocked ends c with err unless it has ended.
func (c *deadlineCtx) endLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	c.ended.Store(true)
	if c.done != nil {
		close(c.done)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	for a := range c.afters {
		go a.f()
	}
	c.afters = nil
}

func (c *deadlineCtx) String() string {
	return "dagq.deadlineCtx(" + c.deadline.String() + ")"
}
