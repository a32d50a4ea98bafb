package cli_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// Fault 6: a worker process holding prefetched messages (worker.prefetch 5,
// one slot) is killed with SIGKILL while it runs the first task. Its
// prefetched messages were never started: they come back when their leases
// end, and a new worker runs each of them once; the task it was running
// runs again. Every task ends with one succeeded result.
func TestFault_PrefetchedMessagesSurviveACrash(t *testing.T) {
	const (
		tasks = 6
		// Long enough that the survivor's heartbeat keeps the leases of its
		// prefetched messages on a loaded machine (2s lapsed there).
		lease = 6 * time.Second
	)
	cfg, flags := sqsEnv(t)
	c := newFaultCluster(t, cfg, flags, 1, faultEnv(lease, time.Second, "DAGQ_WORKER_PREFETCH=5"))
	victim := c.start("worker1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	reqs := make([]core.Request, tasks)
	for i := range reqs {
		reqs[i] = core.Request{Task: builtin.Sleep, Args: "1s"}
	}
	ids, err := c.rt.Client.SubmitBatch(ctx, reqs...)
	require.NoError(t, err)
	waitInHandler(t, victim, 10*time.Second)
	require.Eventually(t, func() bool {
		return sum(victim.metrics(t), "dagq_worker_messages_in_flight") == tasks
	}, 5*time.Second, 20*time.Millisecond, "one running, five prefetched")
	victim.kill9(t)
	killed := time.Now()
	c.start("worker2")

	for _, id := range ids {
		res, err := c.rt.Client.Wait(ctx, id)
		require.NoError(t, err, id)
		assert.Equal(t, ports.StateSucceeded, res.State, "%s: %s", id, res.Error)
	}
	results := getAll(ctx, t, c.rt.Ports.Results, ids)
	starts := c.starts()
	ranOnVictim := 0
	for _, id := range ids {
		onVictim := 0
		for _, s := range starts[id] {
			if s.Worker == victim.stepWorker {
				onVictim++
			}
		}
		ranOnVictim += onVictim
		if onVictim == 0 {
			assert.Len(t, starts[id], 1, "%s: prefetched, never started by the victim, ran once", id)
			assert.NotEqual(t, victim.stepWorker, results[id].Worker, id)
		} else {
			assert.LessOrEqual(t, len(starts[id]), 2, "%s: started by the victim, ran again at most once", id)
		}
	}
	assert.Positive(t, ranOnVictim, "the victim was killed in a handler")
	assert.LessOrEqual(t, ranOnVictim, 2, "the victim started the first task (maybe the second), not the prefetched ones")
	t.Logf("prefetch crash: %d tasks, the victim started %d before its SIGKILL; all succeeded %v after the kill",
		tasks, ranOnVictim, time.Since(killed).Round(time.Millisecond))
}
