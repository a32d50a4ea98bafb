package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
	"github.com/dagq/dagq/ports/portsmock"
)

// An attempt is one execution of the handler (issue 12, item 5): a message
// a worker hands back without having started it (prefetched, or returned by
// the receive in flight, when shutdown begins) is requeued as a new message
// where the broker can (ports.Requeuer), so the release costs no attempt.

// A task prefetched behind a blocked slot and handed back by five shutdowns
// in a row (five deploys), each time to a new worker, then runs as attempt
// 1: with MaxAttempts 1 it still runs (it used to fail "attempts exhausted
// before start" on the second delivery). Signed and claim-check messages
// keep verifying, and the claim-check object is kept until the task's final
// ack.
func TestWorkerMemory_ShutdownReleasesAreNotAttempts(t *testing.T) {
	for _, variant := range []string{"plain", "signed claim check"} {
		t.Run(variant, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testReleasesAreNotAttempts(t, variant != "plain") })
		})
	}
}

func testReleasesAreNotAttempts(t *testing.T, signedClaimCheck bool) {
	const releases = 5
	m := newWmWorld(t)
	store := &keyStore{PayloadStore: m.tr.PayloadStore()}
	clientPorts := core.Ports{Broker: m.tr.Broker(wmQueue), Results: m.tr.ResultBackend(), NoCancel: true}
	if signedClaimCheck {
		clientPorts.Payloads, clientPorts.PayloadThreshold = store, 1024
		clientPorts.Signer = mustSigner(t, "k1", sigKey1)
	}
	client, err := core.NewClient(core.ClientOptions{Ports: clientPorts, Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })

	// Blocker b<i> holds worker i's only slot until gate i opens; the last
	// one does not block.
	gates := make(map[string]chan struct{})
	for i := 1; i <= releases+1; i++ {
		gates[fmt.Sprintf("b%d", i)] = make(chan struct{})
	}
	close(gates[fmt.Sprintf("b%d", releases+1)])
	var targetRuns atomic.Int32
	var targetAttempt atomic.Int32
	reg := core.NewRegistry()
	require.NoError(t, reg.HandleFunc("hold", func(ctx context.Context, task *core.Task) (json.RawMessage, error) {
		select {
		case <-gates[task.ID]:
			return json.RawMessage(`"held"`), nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}))
	require.NoError(t, reg.HandleFunc("target", func(_ context.Context, task *core.Task) (json.RawMessage, error) {
		targetRuns.Add(1)
		targetAttempt.Store(int32(task.Attempt))
		return json.RawMessage(`"ran"`), nil
	}))
	submit := func(id, task string, args any, retry *core.RetryPolicy) {
		t.Helper()
		_, err := client.Submit(context.Background(), core.Request{ID: id, Task: task, Args: args, Retry: retry})
		require.NoError(t, err)
	}
	startWorker := func(i int, obs core.WorkerObserver) *wmRunning {
		return m.startWorker(reg, func(o *core.WorkerOptions) {
			o.ID = fmt.Sprintf("w%d", i)
			o.Concurrency = 1
			o.Prefetch = 1
			o.Observer = obs
			if signedClaimCheck {
				o.Ports.Payloads = m.tr.PayloadStore()
				o.Ports.Verifier = mustVerifier(t, core.VerifierOptions{Keys: map[string][]byte{"k1": sigKey1}})
			}
		})
	}

	// The queue holds b1 then t1: worker 1 starts b1 and prefetches t1.
	submit("b1", "hold", nil, nil)
	targetArgs := any("small")
	if signedClaimCheck {
		targetArgs = strings.Repeat("x", 4096) // above the threshold: a claim check
	}
	submit("t1", "target", targetArgs, &core.RetryPolicy{MaxAttempts: 1})
	var key string
	if signedClaimCheck {
		key = store.onlyKey(t)
	}
	for i := 1; i <= releases; i++ {
		obs := newObsRecorder()
		w := startWorker(i, obs)
		synctest.Wait()
		require.Equal(t, memory.QueueStats{InFlight: 2}, m.stats(), "round %d: b%d runs, t1 is prefetched", i, i)
		// The next round's blocker is queued before t1 comes back.
		submit(fmt.Sprintf("b%d", i+1), "hold", nil, nil)

		stopped := make(chan error, 1)
		go func() { stopped <- w.stop() }()
		synctest.Wait()
		require.Equal(t, memory.QueueStats{Visible: 2, InFlight: 1}, m.stats(),
			"round %d: t1 is handed back at once while b%d drains", i, i)
		close(gates[fmt.Sprintf("b%d", i)])
		require.NoError(t, <-stopped)

		require.Zero(t, targetRuns.Load(), "round %d: t1 never started", i)
		m.noResult("t1")
		c := obs.counts()
		require.Equal(t, 1, c.requeued, "round %d: t1 requeued", i)
		require.Zero(t, c.handedBackNacked, "round %d: no release by Nack", i)
		require.Equal(t, []core.TaskOutcome{core.OutcomeReleased}, obs.outcomes("t1"))
		if signedClaimCheck {
			_, err := store.Get(context.Background(), key)
			require.NoError(t, err, "round %d: a requeue keeps the claim-check object", i)
		}
	}

	w := startWorker(releases+1, nil)
	r := m.result("t1")
	require.Equal(t, ports.StateSucceeded, r.State, r.Error)
	require.Equal(t, 1, r.Attempts, "five releases were no attempts")
	require.EqualValues(t, 1, targetAttempt.Load(), "the handler saw attempt 1")
	require.EqualValues(t, 1, targetRuns.Load())
	require.Equal(t, ports.StateSucceeded, m.result(fmt.Sprintf("b%d", releases+1)).State)
	synctest.Wait()
	require.NoError(t, w.stop())
	require.Equal(t, memory.QueueStats{}, m.stats())
	if signedClaimCheck {
		_, err := store.Get(context.Background(), key)
		require.ErrorIs(t, err, ports.ErrNotFound, "the claim-check object is deleted after the final ack")
	}
}

// requeueBroker is a mocked Broker with the optional Requeuer.
type requeueBroker struct {
	*portsmock.MockBroker
	*portsmock.MockRequeuer
}

// With the port mocks: what the worker asks of a Requeuer, and its
// fallbacks to Nack 0 when the broker cannot requeue (ErrUnsupported, a FIFO
// queue) or the requeue fails.
func TestWorker_HandBackRequeuesOrFallsBack(t *testing.T) {
	cases := []struct {
		name       string
		requeueErr error // nil: requeued
		nack       bool  // released with Nack 0
	}{
		{"requeued", nil, false},
		{"unsupported: Nack", fmt.Errorf("fifo: %w", ports.ErrUnsupported), true},
		{"failed: Nack", fmt.Errorf("send: %w", ports.ErrUnavailable), true},
		{"lease lost: nothing more", fmt.Errorf("requeue: %w", ports.ErrLeaseLost), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newWkHarness(t)
				rq := portsmock.NewMockRequeuer(h.ctrl)
				h.opts.Ports.Broker = requeueBroker{h.broker, rq}
				h.opts.Concurrency = 1
				h.opts.Prefetch = 1
				gate := make(chan struct{})
				require.NoError(t, h.reg.HandleFunc("a", func(ctx context.Context, task *core.Task) (json.RawMessage, error) {
					if task.ID != "t1" {
						t.Errorf("%s started", task.ID)
					}
					<-gate
					return json.RawMessage(`1`), nil
				}))
				h.results.EXPECT().Put(gomock.Any(), gomock.Any()).Return(nil)
				h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")).Return(nil)
				h.results.EXPECT().Get(gomock.Any(), "t2").Return(ports.Result{}, notFoundErr("t2")).AnyTimes()

				// t2 was received for the third time, and its message is a
				// copy carrying 2 attempts: this is attempt 4 (not started).
				t2 := wkDelivery(t, wkEnv("t2", "a"), 3, "r2")
				t2.Attributes = map[string]string{wire.PriorAttemptsAttribute: "2", wire.SignatureAttribute: "k1:sig"}
				rq.EXPECT().Requeue(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(
					func(_ context.Context, d ports.Delivery, attrs map[string]string) error {
						require.Equal(t, t2.Receipt, d.Receipt)
						require.Equal(t, t2.Body, d.Body, "the body as received")
						require.Equal(t, t2.Attributes, d.Attributes, "the attributes as received")
						// t2 is attempt 1 + 2 + 3 - 1 = 4; its copy carries
						// 2 + (3 - 1) = 4 prior attempts, so the copy's first
						// delivery is attempt 1 + 4 + 1 - 1 = 4 again.
						require.Equal(t, map[string]string{wire.PriorAttemptsAttribute: "4"}, attrs)
						return c.requeueErr
					})
				if c.nack {
					h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r2"), time.Duration(0)).Return(nil)
				}
				h.run()
				h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"), t2)
				synctest.Wait()
				stopped := make(chan error, 1)
				go func() { stopped <- h.stop() }()
				synctest.Wait()
				close(gate)
				require.NoError(t, <-stopped)

				n := h.obs.counts()
				switch {
				case c.requeueErr == nil:
					require.Equal(t, 1, n.requeued)
					require.Zero(t, n.handedBackNacked)
				case c.nack:
					require.Zero(t, n.requeued)
					require.Equal(t, 1, n.handedBackNacked)
				default:
					require.Zero(t, n.requeued+n.handedBackNacked)
				}
				require.Equal(t, []core.TaskOutcome{core.OutcomeReleased}, h.obs.outcomes("t2"))
			})
		})
	}
}

// A requeued copy (it carries the prior-attempts attribute) is never taken
// for a first delivery, though its receive count is 1: its task may have run
// and stored a result before (then it is not run again). An invalid
// attribute counts as no prior attempts.
func TestWorker_RequeuedCopyAttempt(t *testing.T) {
	t.Run("finished before: not run again", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newWkHarness(t)
			require.NoError(t, h.reg.HandleFunc("a", wkNever(t)))
			stored := ports.Result{TaskID: "t1", State: ports.StateSucceeded, Output: []byte(`1`), Attempts: 1}
			gomock.InOrder(
				h.results.EXPECT().Get(gomock.Any(), "t1").Return(stored, nil),
				h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")),
			)
			h.run()
			d := wkDelivery(t, wkEnv("t1", "a"), 1, "r1")
			d.Attributes = map[string]string{wire.PriorAttemptsAttribute: "0"}
			h.send(d)
			synctest.Wait()
			require.NoError(t, h.stop())
			require.Equal(t, []core.TaskOutcome{core.OutcomeDuplicate}, h.obs.outcomes("t1"))
		})
	})
	for _, c := range []struct {
		value   string
		attempt int
	}{{"2", 3}, {"0", 1}, {"-1", 1}, {"x", 1}, {"99999999999999999999", 1}} {
		t.Run("attribute "+c.value, func(t *testing.T) {
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
				d := wkDelivery(t, wkEnv("t1", "a"), 1, "r1")
				d.Attributes = map[string]string{wire.PriorAttemptsAttribute: c.value}
				h.send(d)
				synctest.Wait()
				require.NoError(t, h.stop())
				require.Equal(t, c.attempt, attempt)
				require.Equal(t, c.attempt, put.Attempts)
			})
		})
	}
}
