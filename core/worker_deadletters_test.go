package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// A task that reaches its dead-letter queue gets a failed result "dead-lettered
// after N receives", so that its waiter ends (issue 13, item 1). Before, the
// waiter waited forever.

const (
	dlQueue = "tasks"
	dlDLQ   = "tasks-dlq"
)

// newDLTransport is a memory transport whose task queue moves a message
// received maxReceives times to dlDLQ.
func newDLTransport(t *testing.T, maxReceives int) *memory.Transport {
	t.Helper()
	tr := memory.NewTransport()
	require.NoError(t, tr.CreateQueue(dlDLQ, memory.QueueOptions{}))
	require.NoError(t, tr.CreateQueue(dlQueue, memory.QueueOptions{MaxReceives: maxReceives, DeadLetterQueue: dlDLQ}))
	return tr
}

func startDLWorker(t *testing.T, tr *memory.Transport, reg *core.Registry, obs core.WorkerObserver, retry core.RetryPolicy) {
	t.Helper()
	w, err := core.NewWorker(core.WorkerOptions{
		Ports: core.Ports{Broker: tr.Broker(dlQueue), Results: tr.ResultBackend(), Completions: tr.CompletionBus(),
			NoCancel: true},
		Registry:        reg,
		Retry:           retry,
		DeadLetterSweep: time.Minute,
		Observer:        obs,
		Logger:          quietLogger(),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// A task whose retry policy allows more attempts than the queue's redrive
// policy allows receives is moved to the DLQ after two failed attempts; the
// worker's sweep records it failed, its waiter ends with that result, and
// the message stays in the DLQ. Later sweeps record nothing more.
func TestWorkerMemory_DeadLetteredTaskFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newDLTransport(t, 2)
		var runs atomic.Int32
		var fixed atomic.Bool
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("flaky", func(context.Context, *core.Task) (json.RawMessage, error) {
			runs.Add(1)
			if fixed.Load() {
				return json.RawMessage(`"ok"`), nil
			}
			return nil, errors.New("downstream is down")
		}))
		obs := newObsRecorder()
		startDLWorker(t, tr, reg, obs, core.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Second, Multiplier: 1})
		client, err := core.NewClient(core.ClientOptions{Ports: core.Ports{Broker: tr.Broker(dlQueue),
			Results: tr.ResultBackend(), Completions: tr.CompletionBus(), NoCancel: true}, Logger: quietLogger()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = client.Close() })

		id, err := client.Submit(context.Background(), core.Request{Task: "flaky"})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		res, err := client.Wait(ctx, id)
		require.NoError(t, err, "the waiter ends")
		require.LessOrEqual(t, time.Since(start), 2*time.Minute, "within a sweep interval (1m) of the move")
		require.Equal(t, ports.StateFailed, res.State)
		require.True(t, res.DeadLettered)
		require.Contains(t, res.Error, "dead-lettered after 2 receives")
		require.Contains(t, res.Error, dlDLQ)
		require.Equal(t, int32(2), runs.Load(), "two attempts, then the redrive policy moved it")
		require.Equal(t, 1, obs.counts().deadLettered)

		stats, err := tr.Stats(dlDLQ)
		require.NoError(t, err)
		require.Equal(t, 1, stats.Visible+stats.InFlight, "the message stays in the DLQ")
		time.Sleep(5 * time.Minute) // more sweeps
		require.Equal(t, 1, obs.counts().deadLettered, "a message swept before is not recorded again")

		// The cause fixed, the operator redrives the message: it runs, and
		// its real outcome replaces the dead-lettered result.
		fixed.Store(true)
		dlq := tr.Broker(dlDLQ)
		var ds []ports.Delivery
		for len(ds) == 0 { // a sweep may hide it for up to 30s
			ds, err = dlq.Receive(ctx, 1, time.Minute)
			require.NoError(t, err)
		}
		require.NoError(t, tr.Broker(dlQueue).Send(ctx, ds[0].Message))
		require.NoError(t, dlq.Ack(ctx, ds[0].Receipt))
		results := tr.ResultBackend()
		for range 60 {
			if res, err = results.Get(ctx, id); err == nil && res.State == ports.StateSucceeded {
				break
			}
			time.Sleep(time.Second)
		}
		require.Equal(t, ports.StateSucceeded, res.State, "the redriven task's outcome replaced the dead-lettered result")
		require.False(t, res.DeadLettered)
		require.JSONEq(t, `"ok"`, string(res.Output))
		require.Equal(t, int32(3), runs.Load())
	})
}

// A sweep records a result only for a task that has none, and none for a
// task whose result policy is none; a message that is no envelope gets one
// under its message ID.
func TestWorkerMemory_DeadLetterSweepRecordsOnlyMissing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newDLTransport(t, 3)
		ctx := context.Background()
		results := tr.ResultBackend()
		done := ports.Result{TaskID: "done", State: ports.StateSucceeded, Output: json.RawMessage(`1`), Attempts: 1}
		require.NoError(t, results.Put(ctx, done))
		dlq := tr.Broker(dlDLQ)
		for _, env := range []wire.Envelope{
			{TaskID: "lost", Task: "t"},
			{TaskID: "done", Task: "t"},
			{TaskID: "quiet", Task: "t", Result: string(core.ResultNone)},
		} {
			body, err := env.Encode()
			require.NoError(t, err)
			require.NoError(t, dlq.Send(ctx, ports.Message{ID: env.TaskID, Body: body}))
		}
		require.NoError(t, dlq.Send(ctx, ports.Message{ID: "foreign", Body: []byte("not dagq")}))
		obs := newObsRecorder()
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("t", func(context.Context, *core.Task) (json.RawMessage, error) { return nil, nil }))
		startDLWorker(t, tr, reg, obs, core.RetryPolicy{})
		time.Sleep(10 * time.Second) // the first sweep runs at start
		synctest.Wait()

		for _, id := range []string{"lost", "foreign"} {
			res, err := results.Get(ctx, id)
			require.NoError(t, err, id)
			require.Equal(t, ports.StateFailed, res.State, id)
			require.True(t, res.DeadLettered, id)
			require.Contains(t, res.Error, "dead-lettered after 3 receives", id)
		}
		got, err := results.Get(ctx, "done")
		require.NoError(t, err)
		require.Equal(t, done.State, got.State, "an existing result is kept")
		require.False(t, got.DeadLettered)
		_, err = results.Get(ctx, "quiet")
		require.ErrorIs(t, err, ports.ErrNotFound, "result policy none: nothing recorded")
		require.Equal(t, 2, obs.counts().deadLettered)
	})
}
