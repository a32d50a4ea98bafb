package core

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRecentSet_ForgetsOldestFirst(t *testing.T) {
	r := newRecentSet(3)
	for i := range 3 {
		r.add(fmt.Sprint(i))
	}
	r.add("1") // already there: no change
	require.True(t, r.has("0"))
	r.add("3") // evicts "0"
	require.False(t, r.has("0"))
	for _, id := range []string{"1", "2", "3"} {
		require.True(t, r.has(id), id)
	}
	r.add("4") // evicts "1"
	require.False(t, r.has("1"))
	require.Len(t, r.ids, 3, "bounded")
	require.Len(t, r.ring, 3)
}

// Deliveries of one task ID held at once are all reachable by a cancellation
// request, and each unlinks cleanly whatever its place in the chain.
func TestWorkerTaskChain(t *testing.T) {
	w := &Worker{byTask: make(map[string]*workerLease), recent: newRecentSet(10), log: lazyLogger(slog.New(slog.DiscardHandler))}
	var cancelled []int
	leases := make([]*workerLease, 4)
	for i := range leases {
		leases[i] = &workerLease{taskID: "t", msgID: fmt.Sprint("m", i)}
		leases[i].cancel = func(cause error) {
			require.ErrorIs(t, cause, ErrTaskCanceled)
			cancelled = append(cancelled, i)
		}
		w.linkTaskLocked(leases[i])
	}
	other := &workerLease{taskID: "u", cancel: func(error) { t.Error("another task was cancelled") }}
	w.linkTaskLocked(other)

	w.unlinkTaskLocked(leases[1]) // middle
	w.unlinkTaskLocked(leases[3]) // head (linked last)
	w.cancelRequested([]string{"t"})
	require.ElementsMatch(t, []int{0, 2}, cancelled)

	w.unlinkTaskLocked(leases[0]) // tail
	w.unlinkTaskLocked(leases[2]) // last one
	require.NotContains(t, w.byTask, "t")
	require.Same(t, other, w.byTask["u"])
}
