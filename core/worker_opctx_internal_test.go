package core

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

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
