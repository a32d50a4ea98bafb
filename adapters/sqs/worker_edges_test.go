package sqs_test

import (
	"context"
	"encoding/json"
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

// pollingBroker signals each Receive call as it begins.
type pollingBroker struct {
	ports.Broker
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
		// The old worker's poll received it once and released it: SQS
		// counts that delivery (attempts burned by releases, issue 12).
		t.Logf("ran %v after the new worker started, as attempt %d", r.at.Sub(started).Round(time.Millisecond), r.attempt)
		require.LessOrEqual(t, r.attempt, 2)
	case <-time.After(15 * time.Second):
		t.Fatalf("the task did not run within 15s of the new worker's start (stranded for the %v lease of the old worker's abandoned poll)", lease)
	}
	require.NoError(t, <-oldDone)
	require.NoError(t, stopNew())
}
