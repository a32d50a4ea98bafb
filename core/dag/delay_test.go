package dag_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
)

// delayCounter counts the deliveries a worker sent on because they were
// not due yet (core.OutcomeDelayed).
type delayCounter struct {
	core.NopWorkerObserver
	n atomic.Int32
}

func (c *delayCounter) TaskFinished(_ core.TaskInfo, r core.TaskResult) {
	if r.Outcome == core.OutcomeDelayed {
		c.n.Add(1)
	}
}

// A step whose retry backoff (2 hours) is longer than one broker delay
// (15 minutes) retries through the executor as any other: the worker sends
// the failed task on, hop by hop, and the second attempt starts 2 hours
// after the first; the run sees step_retried, then step_succeeded, and the
// step's attempts are 2.
func TestExecutor_RetryBackoffLongerThanOneDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		registerFlaky(reg)
		registerAppend(reg)
		var delayed delayCounter
		x := newExWorld(t, reg, exOpts{worker: func(o *core.WorkerOptions) { o.Observer = &delayed }})
		job := dag.Job{Name: "patient", Steps: []dag.Step{
			{Name: "flaky", Task: "flaky", Args: arg(2),
				Retry: &core.RetryPolicy{MaxAttempts: 3, InitialBackoff: 2 * time.Hour}},
			{Name: "after", Task: "append", Args: arg("after"), Upstream: []string{"flaky"}},
		}}
		var log eventLog
		start := time.Now()
		res, err := x.exec.Run(context.Background(), job, dag.RunOptions{OnEvent: log.add})
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, res.State)
		assert.Equal(t, 2*time.Hour, time.Since(start), "one backoff of 2h, to the millisecond")
		flaky, _ := res.Step("flaky")
		assert.Equal(t, 2, flaky.Attempts, "the hops were no attempts")
		assert.JSONEq(t, `"ok on attempt 2"`, string(flaky.Output))
		after, _ := res.Step("after")
		assert.JSONEq(t, `"ok on attempt 2,after"`, string(after.Output))
		requireEventOrder(t, log.all(), job)
		assert.Equal(t, []string{"queued", "started", "retried", "started", "succeeded"}, log.of("flaky"))
		for _, ev := range log.all() {
			if ev.Type == dag.EventStepRetried {
				assert.Equal(t, 2, ev.Attempt, "the next attempt")
				assert.Equal(t, "boom on attempt 1", ev.Error)
			}
		}
		assert.EqualValues(t, 7, delayed.n.Load(), "the retry waited in 8 messages of 15 minutes, 7 of them sent on")
		x.requireNoWaiters(t)
	})
}
