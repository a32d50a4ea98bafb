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

// A cancellation request reaches every held delivery of its task IDs (two
// deliveries of one ID included), and none of another task, finishing or
// no longer held.
func TestWorkerCancelScansHeld(t *testing.T) {
	for _, extra := range []int{0, 20} { // few IDs: a scan per ID; many: a set
		t.Run(fmt.Sprint("extra_ids=", extra), func(t *testing.T) {
			w := &Worker{recent: newRecentSet(100), log: slog.New(slog.DiscardHandler), held: map[*workerLease]struct{}{}}
			var cancelled []string
			add := func(msg, task string, state leaseState) *workerLease {
				l := &workerLease{taskID: task, msgID: msg, state: state}
				l.cancel = func(cause error) {
					require.ErrorIs(t, cause, ErrTaskCanceled)
					cancelled = append(cancelled, msg)
				}
				w.held[l] = struct{}{}
				return l
			}
			add("m1", "t", leaseRunning)
			add("m2", "u", leaseRunning)
			add("m3", "t", leasePending)
			add("m4", "t", leaseFinishing)
			undecoded := add("m5", "", leasePending)
			undecoded.cancel = nil
			delete(w.held, add("m6", "t", leaseRunning)) // forgotten

			ids := []string{"t"}
			for i := range extra {
				ids = append(ids, fmt.Sprint("x", i))
			}
			w.cancelRequested(ids)
			require.ElementsMatch(t, []string{"m1", "m3"}, cancelled)
			require.True(t, w.recent.has("t"))
		})
	}
}
