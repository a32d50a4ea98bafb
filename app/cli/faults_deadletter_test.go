package cli_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// A task whose retry policy allows more attempts than the task queue's
// redrive policy allows receives (12 > maxReceiveCount 10, which dagq queue
// init sets for retry.max_attempts 3) is moved to the DLQ by SQS after ten
// failed attempts. The worker process's dead-letter sweep records it as
// failed, "dead-lettered after 10 receives", so its waiter ends (issue 13,
// item 1); the message stays in the DLQ. Before, Wait waited forever.
func TestFault_DeadLetteredTaskFails(t *testing.T) {
	cfg, flags := sqsEnv(t)
	c := newFaultCluster(t, cfg, flags, 2, faultEnv(5*time.Second, time.Second, "DAGQ_WORKER_DEAD_LETTER_SWEEP=2s"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c.start("worker1")

	id, err := c.rt.Client.Submit(ctx, core.Request{Task: builtin.Fail, Args: "always",
		Retry: &core.RetryPolicy{MaxAttempts: 12, InitialBackoff: 0}})
	require.NoError(t, err)
	res, err := c.rt.Client.Wait(ctx, id)
	require.NoError(t, err, "the waiter ends")
	require.Equal(t, ports.StateFailed, res.State)
	require.True(t, res.DeadLettered)
	require.Contains(t, res.Error, fmt.Sprintf("dead-lettered after %d receives", app.MaxReceiveCount(cfg.Retry.MaxAttempts)))
	require.Contains(t, res.Error, "-dlq", "names the DLQ")
	require.Equal(t, 1.0, sum(c.procs[0].metrics(t), "dagq_worker_dead_lettered_total"))

	starts := c.starts()[id]
	require.Len(t, starts, app.MaxReceiveCount(cfg.Retry.MaxAttempts), "one attempt per receive, then the DLQ")
}
