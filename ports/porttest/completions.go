package porttest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/ports"
)

// TestCompletionBus runs the CompletionBus conformance suite against the
// buses of h.
func TestCompletionBus(t *testing.T, h CompletionHarness) {
	e := newEnv(h.Features())
	tests := []struct {
		name string
		fn   func(*testing.T, env, CompletionHarness)
	}{
		{"PublishReceive", testCompletionPublishReceive},
		{"PublishBatch", testCompletionPublishBatch},
		{"InlineResult", testCompletionInlineResult},
		{"ProgressNotifications", testCompletionProgress},
		{"InboxIsolation", testCompletionInboxIsolation},
		{"UnknownOrClosedInbox", testCompletionUnknownOrClosedInbox},
		{"ReceiveEmptyWithinPollBound", testCompletionReceiveEmpty},
		{"Validation", testCompletionValidation},
		{"Closed", testCompletionClosed},
	}
	for _, tc := range tests {
		e.run(t, tc.name, needNothing, func(t *testing.T) { tc.fn(t, e, h) })
	}
}

// receiveCompletions receives from ib until n distinct task IDs arrived
// (duplicates are allowed and dropped), failing after e.within().
func (e env) receiveCompletions(t *testing.T, ctx context.Context, ib ports.Inbox, n int) map[string]ports.Completion {
	t.Helper()
	deadline := time.Now().Add(e.within())
	got := make(map[string]ports.Completion)
	for len(got) < n && time.Now().Before(deadline) {
		cs, err := ib.Receive(ctx)
		require.NoError(t, err, "Receive")
		for _, c := range cs {
			got[c.TaskID] = c
		}
	}
	require.Lenf(t, got, n, "completions within %v", e.within())
	return got
}

func (e env) openInbox(t *testing.T, ctx context.Context, b ports.CompletionBus) ports.Inbox {
	t.Helper()
	ib, err := b.Open(ctx)
	require.NoError(t, err, "Open")
	require.NotEmpty(t, ib.Address())
	t.Cleanup(func() { _ = ib.Close() })
	return ib
}

func testCompletionPublishReceive(t *testing.T, e env, h CompletionHarness) {
	ctx := e.ctx(t)
	bs := h.NewBus(t, 2)
	ib := e.openInbox(t, ctx, bs[1])
	want := ports.Completion{TaskID: "task-1", State: ports.StateFailed}
	require.NoError(t, bs[0].Publish(ctx, ib.Address(), want))
	got := e.receiveCompletions(t, ctx, ib, 1)["task-1"]
	require.Equal(t, want, got)
	require.Nil(t, got.Result, "no inline result was published")
}

func testCompletionPublishBatch(t *testing.T, e env, h CompletionHarness) {
	ctx := e.ctx(t)
	bs := h.NewBus(t, 2)
	ib := e.openInbox(t, ctx, bs[1])
	cs := make([]ports.Completion, ports.MaxBatch)
	for i := range cs {
		cs[i] = ports.Completion{TaskID: fmt.Sprintf("task-%d", i), State: ports.StateSucceeded}
	}
	require.NoError(t, bs[0].Publish(ctx, ib.Address(), cs...))
	got := e.receiveCompletions(t, ctx, ib, len(cs))
	for _, c := range cs {
		require.Equal(t, c, got[c.TaskID])
	}
}

func testCompletionInlineResult(t *testing.T, e env, h CompletionHarness) {
	ctx := e.ctx(t)
	bs := h.NewBus(t, 2)
	ib := e.openInbox(t, ctx, bs[1])
	r := fullResult("task-1")
	want := r
	want.Output = append([]byte(nil), r.Output...)
	require.NoError(t, bs[0].Publish(ctx, ib.Address(), ports.Completion{TaskID: "task-1", State: r.State, Result: &r}))
	r.Output[0] = 'X' // the published completion is a copy

	got := e.receiveCompletions(t, ctx, ib, 1)["task-1"]
	require.Equal(t, ports.StateSucceeded, got.State)
	require.NotNil(t, got.Result, "inline result")
	requireResultEqual(t, want, *got.Result)
}

// Progress notifications carry a progress state, the attempt, the error and
// the worker as given; the bus does not judge states.
func testCompletionProgress(t *testing.T, e env, h CompletionHarness) {
	ctx := e.ctx(t)
	bs := h.NewBus(t, 2)
	ib := e.openInbox(t, ctx, bs[1])
	running := ports.Completion{TaskID: "task-1", State: ports.StateRunning, Attempt: 1, Worker: "host-1-a1b2"}
	retrying := ports.Completion{TaskID: "task-2", State: ports.StateRetrying, Attempt: 3, Error: "boom: exit status 1", Worker: "host-2-c3d4"}
	require.NoError(t, bs[0].Publish(ctx, ib.Address(), running, retrying))
	got := e.receiveCompletions(t, ctx, ib, 2)
	require.Equal(t, running, got["task-1"])
	require.Equal(t, retrying, got["task-2"])
	require.False(t, got["task-1"].State.Final())
	require.True(t, got["task-2"].State.Progress())
}

func testCompletionInboxIsolation(t *testing.T, e env, h CompletionHarness) {
	ctx := e.ctx(t)
	bs := h.NewBus(t, 3)
	a := e.openInbox(t, ctx, bs[1])
	b := e.openInbox(t, ctx, bs[2])
	require.NotEqual(t, a.Address(), b.Address())
	require.NoError(t, bs[0].Publish(ctx, a.Address(), ports.Completion{TaskID: "for-a", State: ports.StateSucceeded}))
	require.NoError(t, bs[0].Publish(ctx, b.Address(), ports.Completion{TaskID: "for-b", State: ports.StateSucceeded}))

	for _, x := range []struct {
		ib   ports.Inbox
		want string
	}{{a, "for-a"}, {b, "for-b"}} {
		got := e.receiveCompletions(t, ctx, x.ib, 1)
		require.Contains(t, got, x.want)
		cs, err := x.ib.Receive(ctx)
		require.NoError(t, err)
		for _, c := range cs {
			require.Equal(t, x.want, c.TaskID, "inbox %s got another inbox's completion", x.ib.Address())
		}
	}
}

func testCompletionUnknownOrClosedInbox(t *testing.T, e env, h CompletionHarness) {
	ctx := e.ctx(t)
	bs := h.NewBus(t, 2)
	ib, err := bs[1].Open(ctx)
	require.NoError(t, err)
	c := ports.Completion{TaskID: "task-1", State: ports.StateSucceeded}
	require.ErrorIs(t, bs[0].Publish(ctx, ib.Address()+"-never-opened", c), ports.ErrNotFound, "Publish to an address never opened")

	require.NoError(t, ib.Close())
	require.ErrorIs(t, bs[0].Publish(ctx, ib.Address(), c), ports.ErrNotFound, "Publish to a closed inbox")
	_, err = ib.Receive(ctx)
	require.ErrorIs(t, err, ports.ErrClosed, "Receive of a closed inbox")
	require.NoError(t, ib.Close(), "second Close")
}

func testCompletionReceiveEmpty(t *testing.T, e env, h CompletionHarness) {
	ctx := e.ctx(t)
	b := h.NewBus(t, 1)[0]
	ib := e.openInbox(t, ctx, b)
	start := time.Now()
	cs, err := ib.Receive(ctx)
	require.NoError(t, err)
	require.Empty(t, cs)
	e.requireQuick(t, start, e.poll, "Receive of an empty inbox")
}

func testCompletionValidation(t *testing.T, e env, h CompletionHarness) {
	ctx := e.ctx(t)
	b := h.NewBus(t, 1)[0]
	ib := e.openInbox(t, ctx, b)
	eleven := make([]ports.Completion, ports.MaxBatch+1)
	for i := range eleven {
		eleven[i] = ports.Completion{TaskID: fmt.Sprintf("task-%d", i), State: ports.StateSucceeded}
	}
	require.ErrorIs(t, b.Publish(ctx, ib.Address()), ports.ErrInvalidArgument, "no completions")
	require.ErrorIs(t, b.Publish(ctx, ib.Address(), eleven...), ports.ErrInvalidArgument, "more than MaxBatch completions")
}

func testCompletionClosed(t *testing.T, e env, h CompletionHarness) {
	ctx := e.ctx(t)
	bs := h.NewBus(t, 2)
	ib, err := bs[0].Open(ctx)
	require.NoError(t, err)
	other := e.openInbox(t, ctx, bs[1])
	require.NoError(t, bs[0].Close())

	c := ports.Completion{TaskID: "task-1", State: ports.StateSucceeded}
	require.ErrorIs(t, bs[0].Publish(ctx, other.Address(), c), ports.ErrClosed, "Publish")
	_, err = bs[0].Open(ctx)
	require.ErrorIs(t, err, ports.ErrClosed, "Open")
	_, err = ib.Receive(ctx)
	require.ErrorIs(t, err, ports.ErrClosed, "Receive of an inbox of the closed bus")
	require.NoError(t, bs[0].Close(), "second Close")
	require.NoError(t, ib.Close(), "Close of an inbox of the closed bus")

	require.NoError(t, bs[1].Publish(ctx, other.Address(), c), "another bus is unaffected")
	got := e.receiveCompletions(t, ctx, other, 1)
	require.Contains(t, got, "task-1")
}
