package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dagq/dagq/ports"
)

// cancelHub is the Transport's cancellation domain: the durable set of
// requested task IDs and the open subscriptions of every channel. Its mutex
// guards the channels and subscriptions too.
type cancelHub struct {
	pollWait time.Duration

	mu        sync.Mutex
	requested map[string]struct{}
	subs      map[*subscription]struct{}
}

// cancelChannel is one handle on a cancelHub.
type cancelChannel struct {
	hub    *cancelHub
	closed bool                       // guarded by hub.mu
	subs   map[*subscription]struct{} // opened from this channel, guarded by hub.mu
}

// subscription buffers the IDs broadcast since it opened.
type subscription struct {
	hub     *cancelHub
	channel *cancelChannel
	// guarded by hub.mu
	pending []string
	closed  bool
	changed signal
}

var (
	_ ports.CancelChannel      = (*cancelChannel)(nil)
	_ ports.CancelSubscription = (*subscription)(nil)
)

// check fails when c is closed or ctx is done. Call with hub.mu held.
func (c *cancelChannel) check(ctx context.Context, op string) error {
	if c.closed {
		return errClosed(op)
	}
	return checkCtx(ctx, op)
}

// Cancel records the requests and appends them to every open subscription.
func (c *cancelChannel) Cancel(ctx context.Context, taskIDs ...string) error {
	h := c.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := c.check(ctx, "cancel"); err != nil {
		return err
	}
	if len(taskIDs) < 1 || len(taskIDs) > ports.MaxBatch {
		return fmt.Errorf("memory: cancel: %w: %d task IDs, want 1 to %d", ports.ErrInvalidArgument, len(taskIDs), ports.MaxBatch)
	}
	for i, id := range taskIDs {
		if id == "" {
			return fmt.Errorf("memory: cancel: %w: task ID %d is empty", ports.ErrInvalidArgument, i)
		}
	}
	for _, id := range taskIDs {
		h.requested[id] = struct{}{}
	}
	for s := range h.subs {
		s.pending = append(s.pending, taskIDs...)
		s.changed.notify()
	}
	return nil
}

// Canceled returns the requested subset of ids, in the order given.
func (c *cancelChannel) Canceled(ctx context.Context, ids ...string) ([]string, error) {
	h := c.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := c.check(ctx, "canceled"); err != nil {
		return nil, err
	}
	var out []string
	for _, id := range ids {
		if _, ok := h.requested[id]; ok {
			out = append(out, id)
		}
	}
	return out, nil
}

// Subscribe opens a subscription that receives every later request.
func (c *cancelChannel) Subscribe(ctx context.Context) (ports.CancelSubscription, error) {
	h := c.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := c.check(ctx, "subscribe"); err != nil {
		return nil, err
	}
	s := &subscription{hub: h, channel: c}
	h.subs[s] = struct{}{}
	c.subs[s] = struct{}{}
	return s, nil
}

// Close closes the channel and the subscriptions opened from it.
func (c *cancelChannel) Close() error {
	h := c.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	c.closed = true
	for s := range c.subs {
		s.closeLocked()
	}
	return nil
}

// Receive returns the pending IDs, waiting for at most the poll bound.
func (s *subscription) Receive(ctx context.Context) ([]string, error) {
	h := s.hub
	deadline := time.Now().Add(h.pollWait)
	for {
		h.mu.Lock()
		if s.closed {
			h.mu.Unlock()
			return nil, errClosed("cancel subscription: receive")
		}
		if err := checkCtx(ctx, "cancel subscription: receive"); err != nil {
			h.mu.Unlock()
			return nil, err
		}
		if len(s.pending) > 0 {
			ids := s.pending
			s.pending = nil
			h.mu.Unlock()
			return ids, nil
		}
		wake := s.changed.wait()
		h.mu.Unlock()
		now := time.Now()
		if !now.Before(deadline) {
			return nil, nil
		}
		if err := sleep(ctx, wake, deadline.Sub(now)); err != nil {
			return nil, fmt.Errorf("memory: cancel subscription: receive: %w", err)
		}
	}
}

// Close stops the subscription; a blocked Receive returns ErrClosed.
func (s *subscription) Close() error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.closeLocked()
	return nil
}

func (s *subscription) closeLocked() {
	if s.closed {
		return
	}
	s.closed = true
	s.pending = nil
	delete(s.hub.subs, s)
	delete(s.channel.subs, s)
	s.changed.notify()
}
