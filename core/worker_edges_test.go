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

// A receive in flight when the worker is told to stop is let end, and what
// it returns is released at once (Nack 0), not run. Cutting it short
// strands the message: a broker such as SQS may still hand it to the
// abandoned poll, where it stays leased, invisible, for a whole lease (a
// deploy delayed the first task after it by 30s).
func TestWorker_ShutdownLetsReceiveInFlightEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", wkNever(t)))
		const arrives = 3 * time.Second // into the poll; the worker stops at 1s
		begin := time.Now()
		stranded := false
		h.broker.EXPECT().Receive(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(
			func(ctx context.Context, max int, lease time.Duration) ([]ports.Delivery, error) {
				select {
				case <-time.After(time.Until(begin.Add(arrives))):
					return []ports.Delivery{wkDelivery(t, wkEnv("t1", "a"), 1, "r1")}, nil
				case <-ctx.Done():
					// The caller hung up, but the service still hands the
					// message to this poll: it stays leased, unseen.
					stranded = true
					return nil, ctx.Err()
				}
			}) // one call: the worker stops before another
		var nackedAt time.Time
		h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r1"), time.Duration(0)).DoAndReturn(
			func(context.Context, ports.Receipt, time.Duration) error {
				nackedAt = time.Now()
				return nil
			})
		h.start()

		time.Sleep(time.Second)
		require.NoError(t, h.stop())
		require.False(t, stranded, "the receive in flight at shutdown was cut short")
		require.Equal(t, begin.Add(arrives), nackedAt, "released the moment it arrived")
		require.Empty(t, h.obs.startedIDs(), "nothing runs after the stop")
	})
}

// A receive in flight is cut short when it outlasts the shutdown timeout
// (as a broker's poll bound would end it sooner).
func TestWorker_ShutdownBoundsReceiveInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		h.opts.ShutdownTimeout = 5 * time.Second
		h.broker.EXPECT().Receive(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(
			func(ctx context.Context, max int, lease time.Duration) ([]ports.Delivery, error) {
				<-ctx.Done() // a poll with no end
				return nil, ctx.Err()
			})
		h.start()
		time.Sleep(time.Second)
		begin := time.Now()
		require.NoError(t, h.stop())
		require.Equal(t, 5*time.Second, time.Since(begin), "Run returns at the shutdown timeout")
	})
}

// A delivery whose receive count the broker could not tell (Attempt 0, as
// from an SQS-compatible server that reports none) may be a redelivery: the
// worker checks for a result before running it. (Attempt 0 used to pass as
// a first delivery: a finished task ran again.)
func TestWorker_UnknownAttemptChecksResult(t *testing.T) {
	t.Run("finished before: not run again", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newWkHarness(t)
			require.NoError(t, h.reg.HandleFunc("a", wkNever(t)))
			stored := ports.Result{TaskID: "t1", State: ports.StateSucceeded, Output: []byte(`42`), Attempts: 1, Worker: "w0"}
			gomock.InOrder(
				h.results.EXPECT().Get(gomock.Any(), "t1").Return(stored, nil),
				h.bus.EXPECT().Publish(gomock.Any(), "in", gomock.Any()),
				h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")),
			)
			h.run()
			env := wkEnv("t1", "a")
			env.ReplyTo = "in"
			h.send(wkDelivery(t, env, 0, "r1"))
			synctest.Wait()
			require.NoError(t, h.stop())
			require.Equal(t, []core.TaskOutcome{core.OutcomeDuplicate}, h.obs.outcomes("t1"))
		})
	})
	t.Run("no result: runs as attempt 1", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newWkHarness(t)
			var attempt int
			require.NoError(t, h.reg.HandleFunc("a", func(_ context.Context, task *core.Task) (json.RawMessage, error) {
				attempt = task.Attempt
				return json.RawMessage(`1`), nil
			}))
			var put ports.Result
			gomock.InOrder(
				h.results.EXPECT().Get(gomock.Any(), "t1").Return(ports.Result{}, notFoundErr("t1")),
				capturePut(h, &put),
				h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")),
			)
			h.run()
			h.send(wkDelivery(t, wkEnv("t1", "a"), 0, "r1"))
			synctest.Wait()
			require.NoError(t, h.stop())
			require.Equal(t, 1, attempt)
			require.Equal(t, ports.StateSucceeded, put.State)
		})
	})
}

// A newer envelope version whose delivery count is unknown is handed back
// until its age says it was handed back Retry.MaxAttempts times, then
// failed with a result: not handed back until the DLQ takes it without one.
func TestWorker_UnknownAttemptFutureEnvelope(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t) // 3 attempts, 2s then 4s
		require.NoError(t, h.reg.HandleFunc("a", wkNever(t)))
		var put ports.Result
		gomock.InOrder(
			h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r1"), 2*time.Second),
			h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r2"), 4*time.Second),
			capturePut(h, &put),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r3")),
		)
		h.run()
		sent := time.Now()
		body := `{"v":3,"id":"t1","task":"a","hologram":true}`
		for i, r := range []string{"r1", "r2", "r3"} {
			d := wkRaw("t1", body, r, 0)
			d.SentAt = sent
			h.send(d)
			synctest.Wait()
			time.Sleep([]time.Duration{2 * time.Second, 4 * time.Second, 0}[i])
		}
		require.NoError(t, h.stop())
		require.Equal(t, ports.StateFailed, put.State)
		require.Contains(t, put.Error, "version 3 is newer")
		require.Contains(t, put.Error, "gave up after handing it back for 6s")
	})
}
