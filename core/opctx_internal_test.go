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
