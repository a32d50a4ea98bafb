package core

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// The receive loop's slots: take returns at once with what is free, waits
// for as many as it needs (woken once, when enough are free), takes what is
// free when its timeout passes, and nothing once ctx is done.
func TestSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := newSlots(4)
		require.Equal(t, 3, s.take(ctx, 1, 3, nil, 0))
		require.Equal(t, 1, s.take(ctx, 1, 3, nil, 0))
		require.Equal(t, 4, s.inUse())

		// Needs 2: one release is not enough, the second wakes it.
		got := make(chan int, 1)
		go func() { got <- s.take(ctx, 2, 3, nil, 0) }()
		synctest.Wait()
		s.release(1)
		synctest.Wait()
		require.Empty(t, got)
		s.release(1)
		require.Equal(t, 2, <-got)

		// With a timeout: takes what is free when it passes.
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		go func() { got <- s.take(ctx, 3, 3, timer, 5*time.Millisecond) }()
		synctest.Wait()
		s.release(1)
		synctest.Wait()
		require.Empty(t, got)
		time.Sleep(5 * time.Millisecond)
		require.Equal(t, 1, <-got)
		require.Equal(t, 4, s.inUse())

		// ctx done: nothing taken.
		cctx, cancel := context.WithCancel(ctx)
		go func() { got <- s.take(cctx, 1, 1, nil, 0) }()
		synctest.Wait()
		cancel()
		require.Equal(t, 0, <-got)
		require.Equal(t, 4, s.inUse())
		s.release(4)
		require.Equal(t, 0, s.inUse())
	})
}
