package core_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
	"github.com/dagq/dagq/ports/porttest"
)

// sharedHarness runs the CancelChannel conformance suite on shared channels
// over the memory transport: sharing must keep the port's contract.
type sharedHarness struct{}

func (sharedHarness) Features() porttest.Features {
	return porttest.Features{Synctest: true, PollBound: max(core.SharedPollBound, memory.DefaultPollWait)}
}

func (sharedHarness) NewChannel(t *testing.T, n int) []ports.CancelChannel {
	tr := memory.NewTransport()
	chs := make([]ports.CancelChannel, n)
	for i := range chs {
		under := tr.CancelChannel()
		chs[i] = core.ShareSubscriptions(under)
		t.Cleanup(func() {
			require.NoError(t, chs[i].Close())
			require.NoError(t, under.Close())
		})
	}
	return chs
}

func TestShareSubscriptions_Conformance(t *testing.T) {
	porttest.TestCancelChannel(t, sharedHarness{})
}

// spyCancels counts the subscriptions opened on a channel and can break them.
type spyCancels struct {
	ports.CancelChannel
	mu     sync.Mutex
	opened int
	open   int
	subs   []*spySub
}

type spySub struct {
	ports.CancelSubscription
	c      *spyCancels
	broken chan struct{}
	once   sync.Once
}

func (c *spyCancels) Subscribe(ctx context.Context) (ports.CancelSubscription, error) {
	s, err := c.CancelChannel.Subscribe(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opened++
	c.open++
	sub := &spySub{CancelSubscription: s, c: c, broken: make(chan struct{})}
	c.subs = append(c.subs, sub)
	return sub, nil
}

func (c *spyCancels) counts() (opened, open int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opened, c.open
}

var errBroken = errors.New("subscription queue deleted")

func (s *spySub) Receive(ctx context.Context) ([]string, error) {
	select {
	case <-s.broken:
		return nil, errBroken
	default:
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.broken:
			cancel()
		case <-ctx.Done():
		}
	}()
	ids, err := s.CancelSubscription.Receive(ctx)
	select {
	case <-s.broken:
		return nil, errBroken
	default:
		return ids, err
	}
}

func (s *spySub) Close() error {
	s.once.Do(func() {
		s.c.mu.Lock()
		s.c.open--
		s.c.mu.Unlock()
	})
	return s.CancelSubscription.Close()
}

// Two workers' subscriptions in one process share one subscription of the
// transport; both get every request; the last Close closes it; a broken
// underlying subscription reaches every subscriber, and the next Subscribe
// opens a new one.
func TestShareSubscriptions_OneUnderlyingSubscription(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		tr := memory.NewTransport()
		under := tr.CancelChannel()
		defer under.Close()
		spy := &spyCancels{CancelChannel: under}
		shared := core.ShareSubscriptions(spy)

		a, err := shared.Subscribe(ctx)
		require.NoError(t, err)
		b, err := shared.Subscribe(ctx)
		require.NoError(t, err)
		opened, open := spy.counts()
		assert.Equal(t, 1, opened, "one underlying subscription for two")
		assert.Equal(t, 1, open)

		require.NoError(t, shared.Cancel(ctx, "t1", "t2"))
		for _, s := range []ports.CancelSubscription{a, b} {
			ids, err := s.Receive(ctx)
			require.NoError(t, err)
			assert.ElementsMatch(t, []string{"t1", "t2"}, ids, "every subscriber gets every request")
		}
		got, err := shared.Canceled(ctx, "t0", "t1")
		require.NoError(t, err)
		assert.Equal(t, []string{"t1"}, got, "Canceled passes through")

		// Nothing pending: Receive returns empty within the poll bound.
		start := time.Now()
		ids, err := a.Receive(ctx)
		require.NoError(t, err)
		assert.Empty(t, ids)
		assert.Equal(t, core.SharedPollBound, time.Since(start))

		require.NoError(t, a.Close())
		_, open = spy.counts()
		assert.Equal(t, 1, open, "b still listens")
		_, err = a.Receive(ctx)
		require.ErrorIs(t, err, ports.ErrClosed)
		require.NoError(t, b.Close())
		synctest.Wait()
		_, open = spy.counts()
		assert.Equal(t, 0, open, "the last Close closes the underlying subscription")

		// A new Subscribe opens a new one; breaking it reaches every subscriber.
		c, err := shared.Subscribe(ctx)
		require.NoError(t, err)
		d, err := shared.Subscribe(ctx)
		require.NoError(t, err)
		opened, _ = spy.counts()
		assert.Equal(t, 2, opened)
		spy.mu.Lock()
		close(spy.subs[1].broken)
		spy.mu.Unlock()
		for _, s := range []ports.CancelSubscription{c, d} {
			_, err := s.Receive(ctx)
			require.ErrorIs(t, err, errBroken, "the failure reaches every subscriber")
			_, err = s.Receive(ctx)
			require.ErrorIs(t, err, ports.ErrClosed, "a broken subscription stays closed: resubscribe")
			require.NoError(t, s.Close())
		}
		synctest.Wait()
		e, err := shared.Subscribe(ctx)
		require.NoError(t, err)
		opened, open = spy.counts()
		assert.Equal(t, 3, opened, "resubscribing opens a new underlying subscription")
		assert.Equal(t, 1, open, "the broken one was closed")

		require.NoError(t, shared.Close())
		_, err = e.Receive(ctx)
		require.ErrorIs(t, err, ports.ErrClosed)
		require.ErrorIs(t, shared.Cancel(ctx, "x"), ports.ErrClosed)
		_, err = shared.Subscribe(ctx)
		require.ErrorIs(t, err, ports.ErrClosed)
		_, open = spy.counts()
		assert.Equal(t, 0, open)
	})
}
