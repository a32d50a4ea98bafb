package core

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type ctxKey struct{}

func TestDeadlineCtxMatchesWithDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := context.WithoutCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
		deadline := time.Now().Add(time.Second)
		ctx, cancel := withLazyDeadline(base, deadline)
		defer cancel()
		d, ok := ctx.Deadline()
		assert.True(t, ok)
		assert.Equal(t, deadline, d)
		assert.Equal(t, "v", ctx.Value(ctxKey{}))
		require.NoError(t, ctx.Err())

		child, stopChild := context.WithCancel(ctx)
		defer stopChild()
		called := make(chan struct{})
		context.AfterFunc(ctx, func() { close(called) })
		stopped := context.AfterFunc(ctx, func() { t.Error("stopped AfterFunc ran") })
		assert.True(t, stopped())

		time.Sleep(time.Second)
		synctest.Wait()
		<-ctx.Done()
		<-child.Done()
		<-called
		assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
		assert.ErrorIs(t, context.Cause(ctx), context.DeadlineExceeded)
		assert.ErrorIs(t, child.Err(), context.DeadlineExceeded)
	})
}

func TestDeadlineCtxErrWithoutDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := withLazyDeadline(context.Background(), time.Now().Add(time.Second))
		defer cancel()
		time.Sleep(time.Second)
		assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded) // no timer was armed
		select {
		case <-ctx.Done():
		default:
			t.Fatal("Done not closed after Err reported the deadline")
		}
	})
}

func TestDeadlineCtxCancel(t *testing.T) {
	ctx, cancel := withLazyDeadline(context.Background(), time.Now().Add(time.Hour))
	done := ctx.Done()
	cancel()
	<-done
	assert.ErrorIs(t, ctx.Err(), context.Canceled)
	assert.ErrorIs(t, context.Cause(ctx), context.Canceled)
	cancel() // idempotent

	ctx2, cancel2 := withLazyDeadline(context.Background(), time.Now().Add(time.Hour))
	cancel2()
	assert.ErrorIs(t, ctx2.Err(), context.Canceled)
	<-ctx2.Done()
	ran := make(chan struct{})
	context.AfterFunc(ctx2, func() { close(ran) })
	<-ran
}

// An armed context (the worker's shared call context) ends by its timer:
// Err is nil before the deadline and DeadlineExceeded after, Done closes.
func TestDeadlineCtxArmed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, _ := withLazyDeadline(context.Background(), time.Now().Add(time.Second))
		ctx.(*deadlineCtx).arm()
		require.NoError(t, ctx.Err())
		time.Sleep(999 * time.Millisecond)
		require.NoError(t, ctx.Err())
		time.Sleep(time.Millisecond)
		synctest.Wait()
		<-ctx.Done()
		assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	})
}

// The worker's call contexts are shared for an eighth of a lease, then
// renewed; each ends at most one lease after it was made.
func TestWorkerOpContextShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &Worker{lease: 8 * time.Second, base: context.Background()}
		start := time.Now()
		a, cancel := w.opContext()
		cancel() // a no-op: the context is shared
		require.NoError(t, a.Err())
		d, ok := a.Deadline()
		require.True(t, ok)
		require.Equal(t, start.Add(8*time.Second), d)

		time.Sleep(999 * time.Millisecond)
		b, _ := w.opContext()
		require.Same(t, a, b, "shared within an eighth of the lease")

		time.Sleep(time.Millisecond)
		synctest.Wait()
		c, _ := w.opContext()
		require.NotSame(t, a, c, "renewed after an eighth of the lease")
		d, _ = c.Deadline()
		require.Equal(t, start.Add(9*time.Second), d)
		require.NoError(t, a.Err(), "the old one still serves its calls")

		time.Sleep(7 * time.Second)
		synctest.Wait()
		require.ErrorIs(t, a.Err(), context.DeadlineExceeded)
	})
}
