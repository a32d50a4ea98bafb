package memory

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/dagq/dagq/ports"
)

// completionHub is the Transport's completion domain: the open inboxes by
// address. Its mutex guards the buses and inboxes too.
type completionHub struct {
	pollWait time.Duration

	mu      sync.Mutex
	inboxes map[string]*inbox
	next    uint64 // last inbox number
}

// completionBus is one handle on a completionHub.
type completionBus struct {
	hub     *completionHub
	closed  bool                // guarded by hub.mu
	inboxes map[*inbox]struct{} // opened from this bus, guarded by hub.mu
}

// inbox buffers the completions published to its address.
type inbox struct {
	hub  *completionHub
	bus  *completionBus
	addr string
	// guarded by hub.mu
	pending []ports.Completion
	drained int // length of the last batch Receive returned
	closed  bool
	changed signal
}

var (
	_ ports.CompletionBus = (*completionBus)(nil)
	_ ports.Inbox         = (*inbox)(nil)
)

// check fails when b is closed or ctx is done. Call with hub.mu held.
func (b *completionBus) check(ctx context.Context, op string) error {
	if b.closed {
		return errClosed(op)
	}
	return checkCtx(ctx, op)
}

// Publish appends copies of cs to the inbox at address to.
func (b *completionBus) Publish(ctx context.Context, to string, cs ...ports.Completion) error {
	h := b.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := b.check(ctx, "publish"); err != nil {
		return err
	}
	if len(cs) < 1 || len(cs) > ports.MaxBatch {
		return fmt.Errorf("memory: publish: %w: %d completions, want 1 to %d", ports.ErrInvalidArgument, len(cs), ports.MaxBatch)
	}
	for i, c := range cs {
		if c.TaskID == "" {
			return fmt.Errorf("memory: publish: %w: completion %d has an empty task ID", ports.ErrInvalidArgument, i)
		}
	}
	ib, ok := h.inboxes[to]
	if !ok {
		return fmt.Errorf("memory: publish: inbox %q: %w", to, ports.ErrNotFound)
	}
	if ib.pending == nil {
		ib.pending = make([]ports.Completion, 0, max(len(cs), min(ib.drained, maxPendingHint)))
	}
	ib.pending = appendCompletions(ib.pending, cs)
	ib.changed.notify()
	return nil
}

// maxPendingHint bounds the capacity an inbox gives its next batch of
// pending completions from the size of the last one it returned.
const maxPendingHint = 1024

// appendCompletions appends copies of cs to dst. The copied results share
// one allocation, and so do their outputs (each output's capacity ends where
// it does).
func appendCompletions(dst, cs []ports.Completion) []ports.Completion {
	n, size := 0, 0
	for _, c := range cs {
		if c.Result != nil {
			n++
			size += len(c.Result.Output)
		}
	}
	var rs []ports.Result
	var outputs []byte
	if n > 0 {
		rs = make([]ports.Result, n)
		outputs = make([]byte, 0, size)
	}
	for _, c := range cs {
		if c.Result != nil {
			r := &rs[0]
			rs = rs[1:]
			*r = *c.Result
			if r.Output != nil {
				start := len(outputs)
				outputs = append(outputs, r.Output...)
				r.Output = outputs[start:len(outputs):len(outputs)]
			}
			c.Result = r
		}
		dst = append(dst, c)
	}
	return dst
}

// Open creates an inbox with a fresh address.
func (b *completionBus) Open(ctx context.Context) (ports.Inbox, error) {
	h := b.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := b.check(ctx, "open inbox"); err != nil {
		return nil, err
	}
	h.next++
	ib := &inbox{hub: h, bus: b, addr: "inbox-" + strconv.FormatUint(h.next, 10)}
	h.inboxes[ib.addr] = ib
	b.inboxes[ib] = struct{}{}
	return ib, nil
}

// Close closes the bus and deletes the inboxes opened from it.
func (b *completionBus) Close() error {
	h := b.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	b.closed = true
	for ib := range b.inboxes {
		ib.closeLocked()
	}
	return nil
}

// Address is the inbox's address for Publish.
func (ib *inbox) Address() string { return ib.addr }

// Receive returns the pending completions, waiting for at most the poll
// bound.
func (ib *inbox) Receive(ctx context.Context) ([]ports.Completion, error) {
	h := ib.hub
	deadline := time.Now().Add(h.pollWait)
	for {
		h.mu.Lock()
		if ib.closed {
			h.mu.Unlock()
			return nil, errClosed("inbox: receive")
		}
		if err := checkCtx(ctx, "inbox: receive"); err != nil {
			h.mu.Unlock()
			return nil, err
		}
		if len(ib.pending) > 0 {
			cs := ib.pending
			ib.pending = nil
			ib.drained = len(cs)
			h.mu.Unlock()
			return cs, nil
		}
		wake := ib.changed.wait()
		h.mu.Unlock()
		now := time.Now()
		if !now.Before(deadline) {
			return nil, nil
		}
		if err := sleep(ctx, wake, deadline.Sub(now)); err != nil {
			return nil, fmt.Errorf("memory: inbox: receive: %w", err)
		}
	}
}

// Close deletes the inbox; a blocked Receive returns ErrClosed.
func (ib *inbox) Close() error {
	ib.hub.mu.Lock()
	defer ib.hub.mu.Unlock()
	ib.closeLocked()
	return nil
}

func (ib *inbox) closeLocked() {
	if ib.closed {
		return
	}
	ib.closed = true
	ib.pending = nil
	delete(ib.hub.inboxes, ib.addr)
	delete(ib.bus.inboxes, ib)
	ib.changed.notify()
}
