package porttest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/ports"
)

// TestCancelChannel runs the CancelChannel conformance suite against the
// channels of h.
func TestCancelChannel(t *testing.T, h CancelHarness) {
	e := newEnv(h.Features())
	tests := []struct {
		name string
		fn   func(*testing.T, env, CancelHarness)
	}{
		{"CancelThenCanceled", testCancelThenCanceled},
		{"Idempotent", testCancelIdempotent},
		{"DurableAcrossChannels", testCancelDurableAcrossChannels},
		{"Broadcast", testCancelBroadcast},
		{"ReceiveEmptyWithinPollBound", testCancelReceiveEmpty},
		{"ReceiveHonoursContext", testCancelReceiveHonoursContext},
		{"SubscriptionClosed", testCancelSubscriptionClosed},
		{"Closed", testCancelClosed},
		{"Validation", testCancelValidation},
	}
	for _, tc := range tests {
		e.run(t, tc.name, needNothing, func(t *testing.T) { tc.fn(t, e, h) })
	}
}

// receiveIDs receives from s until every ID of want was seen (duplicates
// allowed), failing when they do not arrive within d.
func receiveIDs(ctx context.Context, s ports.CancelSubscription, d time.Duration, want ...string) error {
	deadline := time.Now().Add(d)
	missing := make(map[string]bool)
	for _, id := range want {
		missing[id] = true
	}
	for len(missing) > 0 && time.Now().Before(deadline) {
		ids, err := s.Receive(ctx)
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		for _, id := range ids {
			if !contains(want, id) {
				return fmt.Errorf("received %q, never requested", id)
			}
			delete(missing, id)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("IDs %v not received within %v", keys(missing), d)
	}
	return nil
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if x == y {
			return true
		}
	}
	return false
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func testCancelThenCanceled(t *testing.T, e env, h CancelHarness) {
	ctx := e.ctx(t)
	c := h.NewChannel(t, 1)[0]
	got, err := c.Canceled(ctx, "a", "b")
	require.NoError(t, err)
	require.Empty(t, got, "nothing requested yet")

	require.NoError(t, c.Cancel(ctx, "a", "c"))
	got, err = c.Canceled(ctx, "a", "b", "c", "d")
	require.NoError(t, err)
	require.Equal(t, []string{"a", "c"}, got)
	got, err = c.Canceled(ctx, "c", "b", "a")
	require.NoError(t, err)
	require.Equal(t, []string{"c", "a"}, got, "in the order given")
	got, err = c.Canceled(ctx, "b")
	require.NoError(t, err)
	require.Empty(t, got)

	// Canceled takes more IDs than a batch.
	var requested, asked, want []string
	for i := range ports.MaxBatch {
		requested = append(requested, fmt.Sprintf("t-%d", 2*i))
	}
	require.NoError(t, c.Cancel(ctx, requested...))
	for i := range 3 * ports.MaxBatch {
		id := fmt.Sprintf("t-%d", i)
		asked = append(asked, id)
		if i%2 == 0 && i < 2*ports.MaxBatch {
			want = append(want, id)
		}
	}
	got, err = c.Canceled(ctx, asked...)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func testCancelIdempotent(t *testing.T, e env, h CancelHarness) {
	ctx := e.ctx(t)
	c := h.NewChannel(t, 1)[0]
	require.NoError(t, c.Cancel(ctx, "a"))
	require.NoError(t, c.Cancel(ctx, "a"), "second request")
	require.NoError(t, c.Cancel(ctx, "a", "a", "b"), "repeated ID in one call")
	got, err := c.Canceled(ctx, "a", "b")
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, got)
}

func testCancelDurableAcrossChannels(t *testing.T, e env, h CancelHarness) {
	ctx := e.ctx(t)
	cs := h.NewChannel(t, 3)
	// No subscription exists: a task cancelled while queued is recognised
	// before it starts, by any process.
	require.NoError(t, cs[0].Cancel(ctx, "queued-task"))
	for i, c := range cs {
		got, err := c.Canceled(ctx, "other", "queued-task")
		require.NoError(t, err, "channel %d", i)
		require.Equal(t, []string{"queued-task"}, got, "channel %d", i)
	}
}

func testCancelBroadcast(t *testing.T, e env, h CancelHarness) {
	ctx := e.ctx(t)
	cs := h.NewChannel(t, 4)
	var subs []ports.CancelSubscription
	for _, c := range []ports.CancelChannel{cs[0], cs[1], cs[2], cs[3], cs[3]} {
		s, err := c.Subscribe(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		subs = append(subs, s)
	}

	errs := make([]error, len(subs))
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Go(func() { errs[i] = receiveIDs(ctx, s, e.within(), "t-1", "t-2") })
	}
	time.Sleep(e.poll / 4) // let the receivers block
	require.NoError(t, cs[0].Cancel(ctx, "t-1", "t-2"))
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "subscription %d", i)
	}
}

func testCancelReceiveEmpty(t *testing.T, e env, h CancelHarness) {
	ctx := e.ctx(t)
	c := h.NewChannel(t, 1)[0]
	s, err := c.Subscribe(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	start := time.Now()
	ids, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Empty(t, ids)
	e.requireQuick(t, start, e.poll, "Receive with no request")
}

func testCancelReceiveHonoursContext(t *testing.T, e env, h CancelHarness) {
	ctx := e.ctx(t)
	c := h.NewChannel(t, 1)[0]
	s, err := c.Subscribe(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	done, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Receive(done)
	require.ErrorIs(t, err, context.Canceled, "Receive with a done ctx")

	blocking, cancel := context.WithCancel(ctx)
	defer cancel()
	after := e.poll / 4
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(after)
		cancel()
	})
	start := time.Now()
	_, err = s.Receive(blocking)
	wg.Wait()
	require.ErrorIs(t, err, context.Canceled, "Receive whose ctx is cancelled while it blocks")
	e.requireQuick(t, start, after, "Receive after its ctx was cancelled")
}

func testCancelSubscriptionClosed(t *testing.T, e env, h CancelHarness) {
	ctx := e.ctx(t)
	c := h.NewChannel(t, 1)[0]
	s, err := c.Subscribe(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = s.Receive(ctx)
	require.ErrorIs(t, err, ports.ErrClosed)
	require.NoError(t, s.Close(), "second Close")

	require.NoError(t, c.Cancel(ctx, "a"), "the channel outlives its subscription")
	s2, err := c.Subscribe(ctx)
	require.NoError(t, err)
	require.NoError(t, s2.Close())
}

func testCancelClosed(t *testing.T, e env, h CancelHarness) {
	ctx := e.ctx(t)
	cs := h.NewChannel(t, 2)
	s, err := cs[0].Subscribe(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, cs[0].Cancel(ctx, "a"))
	require.NoError(t, cs[0].Close())

	require.ErrorIs(t, cs[0].Cancel(ctx, "b"), ports.ErrClosed, "Cancel")
	_, err = cs[0].Canceled(ctx, "a")
	require.ErrorIs(t, err, ports.ErrClosed, "Canceled")
	_, err = cs[0].Subscribe(ctx)
	require.ErrorIs(t, err, ports.ErrClosed, "Subscribe")
	_, err = s.Receive(ctx)
	require.ErrorIs(t, err, ports.ErrClosed, "Receive of a subscription of the closed channel")
	require.NoError(t, cs[0].Close(), "second Close")

	got, err := cs[1].Canceled(ctx, "a")
	require.NoError(t, err, "another channel is unaffected")
	require.Equal(t, []string{"a"}, got, "requests outlive the channel that made them")
	require.NoError(t, cs[1].Cancel(ctx, "b"))
}

func testCancelValidation(t *testing.T, e env, h CancelHarness) {
	ctx := e.ctx(t)
	c := h.NewChannel(t, 1)[0]
	eleven := make([]string, ports.MaxBatch+1)
	for i := range eleven {
		eleven[i] = fmt.Sprintf("t-%d", i)
	}
	require.ErrorIs(t, c.Cancel(ctx), ports.ErrInvalidArgument, "no IDs")
	require.ErrorIs(t, c.Cancel(ctx, ""), ports.ErrInvalidArgument, "empty ID")
	require.ErrorIs(t, c.Cancel(ctx, "a", ""), ports.ErrInvalidArgument, "an empty ID among others")
	require.ErrorIs(t, c.Cancel(ctx, eleven...), ports.ErrInvalidArgument, "more than MaxBatch IDs")
}
