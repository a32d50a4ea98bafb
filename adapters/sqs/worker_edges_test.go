package sqs_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/testutil"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// The worker loop's edges (issue 12, item 5) against the SQS emulator: a
// core.Worker over this adapter, with in-memory results.

// pollingBroker signals each Receive call as it begins. It embeds the
// concrete *sqs.Broker so that the optional ports.Requeuer stays visible to
// the worker (an embedded ports.Broker would hide it).
type pollingBroker struct {
	*sqs.Broker
	polling chan struct{}
}

func (b pollingBroker) Receive(ctx context.Context, n int, lease time.Duration) ([]ports.Delivery, error) {
	select {
	case b.polling <- struct{}{}:
	default:
	}
	return b.Broker.Receive(ctx, n, lease)
}

// ran is one run of a handler.
type ran struct {
	at      time.Time
	attempt int
}

// edgeWorker starts a worker with a 20s long poll on url; runs are reported
// on the returned channel. stop ends it and returns Run's error.
func edgeWorker(t *testing.T, client *awssqs.Client, url string, lease time.Duration, results ports.ResultBackend) (
	runs chan ran, polling chan struct{}, stop func() error) {
	t.Helper()
	b, err := sqs.New(client, url, &sqs.Options{WaitTime: 20 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	polling = make(chan struct{}, 1)
	runs = make(chan ran, 10)
	reg := core.NewRegistry()
	require.NoError(t, reg.HandleFunc("mark", func(_ context.Context, task *core.Task) (json.RawMessage, error) {
		runs <- ran{at: time.Now(), attempt: task.Attempt}
		return json.RawMessage(`"ok"`), nil
	}))
	w, err := core.NewWorker(core.WorkerOptions{
		Ports:       core.Ports{Broker: pollingBroker{b, polling}, Results: results, NoCancel: true},
		Registry:    reg,
		Concurrency: 1,
		Lease:       lease,
		Logger:      testutil.QuietLogger(),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(40 * time.Second): // the 20s poll, and more
			t.Error("worker did not stop")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return runs, polling, stop
}

func sendTask(t *testing.T, client *awssqs.Client, url, id string) {
	t.Helper()
	b, err := sqs.New(client, url, &sqs.Options{WaitTime: time.Second})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	body, err := wire.Envelope{TaskID: id, Task: "mark"}.Encode()
	require.NoError(t, err)
	require.NoError(t, b.Send(t.Context(), ports.Message{ID: id, Body: body}))
}

func (h harness) edgeQueue(t *testing.T) string {
	t.Helper()
	url := h.createQueue(t, false)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = h.client.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: &url})
	})
	return url
}

// waitPoll waits for the worker's next Receive to begin, and a little more
// for its request to reach the emulator.
func waitPoll(t *testing.T, polling chan struct{}) {
	t.Helper()
	select {
	case <-polling:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker never received")
	}
	time.Sleep(300 * time.Millisecond)
}

// A long poll that waits longer than the lease (a 10s lease, the 20s wait)
// hands the task over with a whole lease: it runs at once. (It used to be
// "lease lost … not started" on every delivery.)
func TestWorker_LeaseShorterThanWait(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	url := h.edgeQueue(t)
	results := memory.NewTransport().ResultBackend()
	runs, polling, stop := edgeWorker(t, h.client, url, 10*time.Second, results)
	waitPoll(t, polling)
	time.Sleep(11 * time.Second) // the poll has waited longer than a lease
	sent := time.Now()
	sendTask(t, h.client, url, "t-lease")
	select {
	case r := <-runs:
		require.Less(t, r.at.Sub(sent), 5*time.Second, "runs when it arrives")
		require.Equal(t, 1, r.attempt)
	case <-time.After(15 * time.Second):
		t.Fatal("the task did not run within 15s of its send (a lease lost before its start is redelivered after 10s, and lost again)")
	}
	require.NoError(t, stop())
	require.Eventually(t, func() bool {
		res, err := results.Get(t.Context(), "t-lease")
		return err == nil && res.State == ports.StateSucceeded
	}, 5*time.Second, 50*time.Millisecond)
}

// A deploy: the old worker is stopped while its long poll is in flight, a
// task is sent, a new worker starts. The task runs within seconds of the new
// worker starting — it used to wait for the lease of the old worker's
// abandoned poll (30s), which SQS had handed it to.
func TestWorker_DeployStrandsNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	url := h.edgeQueue(t)
	results := memory.NewTransport().ResultBackend()
	const lease = 30 * time.Second
	_, polling, stopOld := edgeWorker(t, h.client, url, lease, results)
	waitPoll(t, polling)

	oldDone := make(chan error, 1)
	go func() { oldDone <- stopOld() }() // SIGTERM
	time.Sleep(time.Second)
	sendTask(t, h.client, url, "t-deploy")

	runs, _, stopNew := edgeWorker(t, h.client, url, lease, results)
	started := time.Now()
	select {
	case r := <-runs:
		require.Less(t, r.at.Sub(started), 10*time.Second)
		// The old worker's poll may have received it once and handed it
		// back: requeued as a new message, that costs no attempt (it used
		// to run as attempt 2 then: issue 12).
		t.Logf("ran %v after the new worker started, as attempt %d", r.at.Sub(started).Round(time.Millisecond), r.attempt)
		require.Equal(t, 1, r.attempt)
	case <-time.After(15 * time.Second):
		t.Fatalf("the task did not run within 15s of the new worker's start (stranded for the %v lease of the old worker's abandoned poll)", lease)
	}
	require.NoError(t, <-oldDone)
	require.NoError(t, stopNew())
}

// orderingBroker is the SQS Broker (embedded as *sqs.Broker, so that its
// optional ports.Requeuer stays visible to the worker) whose Receive
// collects want messages and returns them blockers first (IDs starting with
// "b"): SQS standard queues do not keep send order, and the test needs the
// worker's only slot taken by a blocker while the target waits, prefetched.
type orderingBroker struct {
	*sqs.Broker
	want     int
	returned chan struct{} // signalled when a Receive returned want messages
}

func (b orderingBroker) Receive(ctx context.Context, n int, lease time.Duration) ([]ports.Delivery, error) {
	var got []ports.Delivery
	for len(got) < min(b.want, n) {
		ds, err := b.Broker.Receive(ctx, min(b.want, n)-len(got), lease)
		got = append(got, ds...)
		if err != nil || len(got) == 0 { // a poll that ended empty ends this one
			return got, err
		}
	}
	slices.SortStableFunc(got, func(x, y ports.Delivery) int {
		return cmp.Compare(btoi(!strings.HasPrefix(x.ID, "b")), btoi(!strings.HasPrefix(y.ID, "b")))
	})
	select {
	case b.returned <- struct{}{}:
	default:
	}
	return got, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// handBackCounter counts the worker's MessageHandedBack events.
type handBackCounter struct {
	core.NopWorkerObserver
	requeued, nacked atomic.Int32
}

func (c *handBackCounter) MessageHandedBack(requeued bool) {
	if requeued {
		c.requeued.Add(1)
	} else {
		c.nacked.Add(1)
	}
}

// A task prefetched behind a blocked slot and handed back by five shutdowns
// (five deploys), each time to a new worker, then runs as attempt 1 with
// MaxAttempts 1: on SQS the worker requeues it (a new message, receive count
// 1) instead of releasing it with ChangeMessageVisibility, whose receive
// count was the attempt (it used to end "attempts exhausted before start").
func TestWorker_ShutdownReleasesAreNotAttempts(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	url := h.edgeQueue(t)
	results := memory.NewTransport().ResultBackend()
	const releases = 5

	started := make(chan string, releases+2)
	gates := make(map[string]chan struct{})
	for i := 1; i <= releases; i++ {
		gates[fmt.Sprintf("b%d", i)] = make(chan struct{})
	}
	var targetRuns, targetAttempt atomic.Int32
	reg := core.NewRegistry()
	require.NoError(t, reg.HandleFunc("hold", func(ctx context.Context, task *core.Task) (json.RawMessage, error) {
		started <- task.ID
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
	send := func(env wire.Envelope) {
		t.Helper()
		b, err := sqs.New(h.client, url, &sqs.Options{WaitTime: time.Second})
		require.NoError(t, err)
		defer func() { require.NoError(t, b.Close()) }()
		body, err := env.Encode()
		require.NoError(t, err)
		require.NoError(t, b.Send(t.Context(), ports.Message{ID: env.TaskID, Body: body}))
	}
	// run starts a worker of one slot and one prefetched message whose
	// Receive returns want messages, blockers first.
	run := func(want int, obs core.WorkerObserver) (returned chan struct{}, stop func() error) {
		t.Helper()
		b, err := sqs.New(h.client, url, &sqs.Options{WaitTime: 2 * time.Second})
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		returned = make(chan struct{}, 1)
		w, err := core.NewWorker(core.WorkerOptions{
			Ports:       core.Ports{Broker: orderingBroker{b, want, returned}, Results: results, NoCancel: true},
			Registry:    reg,
			Concurrency: 1,
			Prefetch:    1,
			Logger:      testutil.QuietLogger(),
			Observer:    obs,
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		var once sync.Once
		var runErr error
		stop = func() error {
			once.Do(func() {
				cancel()
				select {
				case runErr = <-done:
				case <-time.After(30 * time.Second):
					runErr = errors.New("worker did not stop within 30s")
				}
			})
			return runErr
		}
		t.Cleanup(func() { _ = stop() })
		return returned, stop
	}
	awaitStart := func(id string) {
		t.Helper()
		select {
		case got := <-started:
			require.Equal(t, id, got)
		case <-time.After(15 * time.Second):
			t.Fatalf("%s did not start within 15s", id)
		}
	}

	send(wire.Envelope{TaskID: "t1", Task: "target", Retry: &wire.Retry{MaxAttempts: 1}})
	for i := 1; i <= releases; i++ {
		blocker := fmt.Sprintf("b%d", i)
		send(wire.Envelope{TaskID: blocker, Task: "hold"})
		obs := &handBackCounter{}
		returned, stop := run(2, obs)
		select {
		case <-returned:
		case <-time.After(15 * time.Second):
			t.Fatalf("round %d: the worker did not receive %s and t1 within 15s", i, blocker)
		}
		awaitStart(blocker) // t1 waits, prefetched, behind it

		stopped := make(chan error, 1)
		go func() { stopped <- stop() }() // SIGTERM: t1 is handed back at once
		require.Eventually(t, func() bool { return obs.requeued.Load()+obs.nacked.Load() > 0 },
			10*time.Second, 20*time.Millisecond, "round %d: t1 handed back", i)
		close(gates[blocker])
		require.NoError(t, <-stopped)
		require.EqualValues(t, 1, obs.requeued.Load(), "round %d: t1 requeued", i)
		require.Zero(t, obs.nacked.Load(), "round %d: not released by ChangeMessageVisibility", i)
		require.Zero(t, targetRuns.Load(), "round %d: t1 never started", i)
		res, err := results.Get(t.Context(), blocker)
		require.NoError(t, err)
		require.Equal(t, ports.StateSucceeded, res.State)
	}

	_, stop := run(1, nil)
	require.Eventually(t, func() bool {
		_, err := results.Get(t.Context(), "t1")
		return err == nil
	}, 15*time.Second, 50*time.Millisecond, "t1 ran after the releases")
	require.NoError(t, stop())
	res, err := results.Get(t.Context(), "t1")
	require.NoError(t, err)
	require.Equal(t, ports.StateSucceeded, res.State, res.Error)
	require.Equal(t, 1, res.Attempts, "five releases were no attempts")
	require.EqualValues(t, 1, targetAttempt.Load())
	require.EqualValues(t, 1, targetRuns.Load())
}
