package core

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dagq/dagq/ports"
)

// SharedPollBound is the poll bound of a subscription of a channel made by
// ShareSubscriptions: its Receive returns no IDs after waiting this long.
const SharedPollBound = time.Second

// ShareSubscriptions returns a CancelChannel that passes Cancel and Canceled
// through to ch and serves all its subscriptions from one subscription of
// ch: opened at the first Subscribe, fanned out in the process to every open
// subscription, and closed when the last one closes. Several workers of one
// process (a step worker and a run worker, say) then cost one listener on the
// transport instead of one each — on SQS, one private queue and one long
// poll per process.
//
// Each shared subscription receives every request the underlying one
// delivers while it is open, so the broadcast contract holds per process as
// it does per channel. When the underlying subscription fails, every shared
// subscription's next Receive returns that error (workers resubscribe) and
// the next Subscribe opens a new underlying one.
//
// Close stops the shared subscriptions (their Receive fails with
// ports.ErrClosed) and the underlying one, and makes later calls fail with
// ports.ErrClosed; it does not close ch, which stays its owner's.
func ShareSubscriptions(ch ports.CancelChannel) ports.CancelChannel {
	return &sharedCancels{ch: ch, subs: make(map[*sharedSub]struct{})}
}

type sharedCancels struct {
	ch ports.CancelChannel

	mu     sync.Mutex
	closed bool
	pump   *cancelPump // nil while no subscription is open
	subs   map[*sharedSub]struct{}
}

// cancelPump receives from one underlying subscription and fans out.
type cancelPump struct {
	under ports.CancelSubscription
	stop  context.CancelFunc
	done  chan struct{}
}

type sharedSub struct {
	s      *sharedCancels
	notify chan struct{} // signalled when ids or err change
	// guarded by s.mu
	ids    []string
	err    error
	closed bool
}

func (c *sharedCancels) Cancel(ctx context.Context, taskIDs ...string) error {
	if c.isClosed() {
		return fmt.Errorf("dagq: shared cancels: cancel: %w", ports.ErrClosed)
	}
	return c.ch.Cancel(ctx, taskIDs...)
}

func (c *sharedCancels) Canceled(ctx context.Context, ids ...string) ([]string, error) {
	if c.isClosed() {
		return nil, fmt.Errorf("dagq: shared cancels: canceled: %w", ports.ErrClosed)
	}
	return c.ch.Canceled(ctx, ids...)
}

func (c *sharedCancels) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Subscribe joins the shared subscription, opening the underlying one first
// when none is open (with ctx; its error is returned as is).
func (c *sharedCancels) Subscribe(ctx context.Context) (ports.CancelSubscription, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("dagq: shared cancels: subscribe: %w", ports.ErrClosed)
	}
	if c.pump == nil {
		under, err := c.ch.Subscribe(ctx)
		if err != nil {
			return nil, err
		}
		pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		p := &cancelPump{under: under, stop: stop, done: make(chan struct{})}
		c.pump = p
		go c.run(pctx, p)
	}
	s := &sharedSub{s: c, notify: make(chan struct{}, 1)}
	c.subs[s] = struct{}{}
	return s, nil
}

// run receives from p.under until it is stopped or fails, handing every ID
// to every open subscription.
func (c *sharedCancels) run(ctx context.Context, p *cancelPump) {
	defer close(p.done)
	for {
		ids, err := p.under.Receive(ctx)
		if ctx.Err() != nil {
			return // stopped: the last subscription closed, or Close
		}
		c.mu.Lock()
		if c.pump != p {
			c.mu.Unlock()
			return
		}
		if err != nil {
			// The underlying subscription is broken: report it to every
			// subscriber and let the next Subscribe open a new one.
			c.pump = nil
			for s := range c.subs {
				s.err = err
				s.signal()
			}
			c.subs = make(map[*sharedSub]struct{})
			c.mu.Unlock()
			p.stop()
			_ = p.under.Close()
			return
		}
		if len(ids) > 0 {
			for s := range c.subs {
				s.ids = append(s.ids, ids...)
				s.signal()
			}
		}
		c.mu.Unlock()
	}
}

// shutdown stops pump p and closes its subscription. Not with c.mu held.
func (p *cancelPump) shutdown() error {
	p.stop()
	<-p.done
	return p.under.Close()
}

// Close closes every shared subscription and the underlying one.
func (c *sharedCancels) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	p := c.pump
	c.pump = nil
	for s := range c.subs {
		s.closed = true
		s.signal()
	}
	c.subs = nil
	c.mu.Unlock()
	if p != nil {
		if err := p.shutdown(); err != nil && !errors.Is(err, ports.ErrClosed) {
			return fmt.Errorf("dagq: shared cancels: close: %w", err)
		}
	}
	return nil
}

func (s *sharedSub) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Receive returns the IDs delivered since the last call, waiting up to
// SharedPollBound for some.
func (s *sharedSub) Receive(ctx context.Context) ([]string, error) {
	timer := time.NewTimer(SharedPollBound)
	defer timer.Stop()
	for {
		s.s.mu.Lock()
		switch {
		case s.closed:
			s.s.mu.Unlock()
			return nil, fmt.Errorf("dagq: shared cancels: receive: %w", ports.ErrClosed)
		case len(s.ids) > 0:
			ids := s.ids
			s.ids = nil
			s.s.mu.Unlock()
			return ids, nil
		case s.err != nil:
			err := s.err
			s.closed = true // broken: the caller subscribes again
			s.s.mu.Unlock()
			return nil, err
		}
		s.s.mu.Unlock()
		select {
		case <-s.notify:
		case <-ctx.Done():
			return nil, fmt.Errorf("dagq: shared cancels: receive: %w", ctx.Err())
		case <-timer.C:
			return nil, nil
		}
	}
}

// Close leaves the shared subscription; the last one to leave closes the
// underlying subscription.
func (s *sharedSub) Close() error {
	c := s.s
	c.mu.Lock()
	if s.closed {
		c.mu.Unlock()
		return nil
	}
	s.closed = true
	s.signal()
	var p *cancelPump
	if _, ok := c.subs[s]; ok {
		delete(c.subs, s)
		if len(c.subs) == 0 && c.pump != nil {
			p = c.pump
			c.pump = nil
		}
	}
	c.mu.Unlock()
	if p != nil {
		if err := p.shutdown(); err != nil && !errors.Is(err, ports.ErrClosed) {
			return fmt.Errorf("dagq: shared cancels: close: %w", err)
		}
	}
	return nil
}
