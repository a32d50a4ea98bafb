package core_test

import (
	"context"
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// The edges of the worker loop (issue 12, item 5): when the lease clock
// starts, what becomes of a receive in flight at shutdown, and deliveries
// whose receive count the broker could not tell.

// edgePoll is the poll bound of the long-polling broker the edge tests model
// (the SQS default wait).
const edgePoll = 20 * time.Second

// longPoll makes Receive behave as an SQS long poll: its first call returns
// first after blocked (the message arrived late in the poll); later calls
// return empty after edgePoll, or with ctx's error when it ends first.
func longPoll(h *wkHarness, blocked time.Duration, first ...ports.Delivery) {
	calls := 0
	h.broker.EXPECT().Receive(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(
		func(ctx context.Context, max int, lease time.Duration) ([]ports.Delivery, error) {
			calls++
			wait, ds := edgePoll, []ports.Delivery(nil)
			if calls == 1 {
				wait, ds = blocked, first
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-t.C:
				return ds, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}).AnyTimes()
}

// A long poll that waits a lease or more before a message arrives hands the
// message over with a whole lease to run: the worker counts the lease from
// when Receive returns, not from when it was called. (It used to count from
// the call: with a 10s lease and a 20s poll every delivery was "lease lost",
// never started; with a poll as long as the lease the margin was zero.)
func TestWorker_LeaseCountsFromHandOver(t *testing.T) {
	for _, blocked := range []time.Duration{10 * time.Second, 20 * time.Second} {
		t.Run(blocked.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newWkHarness(t)
				h.opts.Lease = 10 * time.Second
				require.NoError(t, h.reg.HandleFunc("slow", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
					select { // runs past the first heartbeat; honours its context
					case <-time.After(5 * time.Second):
						return json.RawMessage(`"done"`), nil
					case <-ctx.Done():
						return nil, context.Cause(ctx)
					}
				}))
				var put ports.Result
				h.broker.EXPECT().Extend(gomock.Any(), 10*time.Second, ports.Receipt("r1")).Return(nil).AnyTimes()
				gomock.InOrder(
					h.results.EXPECT().Get(gomock.Any(), "t1").Return(ports.Result{}, notFoundErr("t1")).AnyTimes(),
					capturePut(h, &put),
					h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")).Return(nil),
				)
				longPoll(h, blocked, wkDelivery(t, wkEnv("t1", "slow"), 1, "r1"))
				h.start()

				time.Sleep(blocked + 10*time.Second)
				synctest.Wait()
				require.NoError(t, h.stop())

				require.Equal(t, []string{"t1"}, h.obs.startedIDs(), "the task started")
				require.Equal(t, []core.TaskOutcome{core.OutcomeSucceeded}, h.obs.outcomes("t1"))
				require.Equal(t, ports.StateSucceeded, put.State)
				require.Empty(t, h.logs.WithErr(ports.ErrLeaseLost), "no lease lost")
				require.Empty(t, h.logs.WithAttr("reason"), "no lease lost")
			})
		})
	}
}
