package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// countingResults counts the Gets of a ResultBackend.
type countingResults struct {
	ports.ResultBackend
	gets atomic.Int32
}

func (r *countingResults) Get(ctx context.Context, id string) (ports.Result, error) {
	r.gets.Add(1)
	return r.ResultBackend.Get(ctx, id)
}

// publishMode says how the stub worker reports completions.
type publishMode int

const (
	publishInline publishMode = iota // completion with the result
	publishBare                      // completion without the result
	publishNone                      // no completion (a lost one)
)

// stubWorker is a minimal stand-in for core.Worker: it receives envelopes,
// skips tasks with a cancellation request, runs fn, stores the result and
// publishes the completion to the envelope's ReplyTo.
type stubWorker struct {
	tr      *memory.Transport
	queue   string
	mode    publishMode
	delay   time.Duration // simulated run time
	fn      func(env wire.Envelope) (json.RawMessage, error)
	stopped chan struct{}
}

func (w *stubWorker) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w.stopped = make(chan struct{})
	broker, results := w.tr.Broker(w.queue), w.tr.ResultBackend()
	cancels, bus := w.tr.CancelChannel(), w.tr.CompletionBus()
	go func() {
		defer close(w.stopped)
		for ctx.Err() == nil {
			ds, err := broker.Receive(ctx, ports.MaxBatch, time.Minute)
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for _, d := range ds {
				env, err := wire.Decode(d.Body)
				if !assert.NoError(t, err) {
					continue
				}
				res := ports.Result{TaskID: env.TaskID, Attempts: 1, Worker: "stub"}
				if got, _ := cancels.Canceled(ctx, env.TaskID); len(got) > 0 {
					res.State, res.Error, res.Attempts = ports.StateCancelled, "cancelled before start", 0
				} else {
					time.Sleep(w.delay)
					out, err := w.fn(env)
					if err != nil {
						res.State, res.Error = ports.StateFailed, err.Error()
					} else {
						res.State, res.Output = ports.StateSucceeded, out
					}
				}
				if err := results.Put(ctx, res); err != nil && !errors.Is(err, ports.ErrAlreadyExists) {
					t.Errorf("stub worker: put: %v", err)
				}
				if env.ReplyTo != "" && w.mode != publishNone {
					c := ports.Completion{TaskID: res.TaskID, State: res.State}
					if w.mode == publishInline {
						c.Result = &res
					}
					_ = bus.Publish(ctx, env.ReplyTo, c) // best effort, as a worker does
				}
				_ = broker.Ack(ctx, d.Receipt)
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-w.stopped
	})
}

// echo returns the task's args as its output.
func echo(env wire.Envelope) (json.RawMessage, error) { return env.Args, nil }

type memEnv struct {
	tr      *memory.Transport
	results *countingResults
	client  *core.Client
}

func newMemEnv(t *testing.T, push bool, opts core.ClientOptions) *memEnv {
	t.Helper()
	tr := memory.NewTransport()
	require.NoError(t, tr.CreateQueue("tasks", memory.QueueOptions{}))
	e := &memEnv{tr: tr, results: &countingResults{ResultBackend: tr.ResultBackend()}}
	opts.Ports.Broker, opts.Ports.Results, opts.Ports.Cancels, opts.Ports.NoCancel = tr.Broker("tasks"), e.results, tr.CancelChannel(), false
	if push {
		opts.Ports.Completions = tr.CompletionBus()
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	c, err := core.NewClient(opts)
	require.NoError(t, err)
	e.client = c
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return e
}

func numberedRequests(task string, n int) []core.Request {
	reqs := make([]core.Request, n)
	for i := range reqs {
		reqs[i] = core.Request{Task: task, Args: i}
	}
	return reqs
}

func TestMemoryPushEndToEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newMemEnv(t, true, core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
		})
		(&stubWorker{tr: e.tr, queue: "tasks", fn: echo, delay: 50 * time.Millisecond}).start(t)

		ids, err := e.client.SubmitBatch(context.Background(), numberedRequests("echo", 25)...)
		require.NoError(t, err)
		got, err := e.client.WaitAll(context.Background(), ids...)
		require.NoError(t, err)
		for i, r := range got {
			assert.Equal(t, ids[i], r.TaskID)
			assert.Equal(t, ports.StateSucceeded, r.State)
			assert.Equal(t, fmt.Sprint(i), string(r.Output))
		}
		assert.Zero(t, e.results.gets.Load(), "inlined completions need no Results read")

		st, err := e.client.Status(context.Background(), ids[3])
		require.NoError(t, err)
		assert.Equal(t, core.TaskSucceeded, st.State)
	})
}

func TestMemoryBareCompletionsReadOncePerTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newMemEnv(t, true, core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
		})
		(&stubWorker{tr: e.tr, queue: "tasks", fn: echo, mode: publishBare}).start(t)
		ids, err := e.client.SubmitBatch(context.Background(), numberedRequests("echo", 12)...)
		require.NoError(t, err)
		time.Sleep(time.Second) // some completions arrive before anyone waits
		got, err := e.client.WaitAll(context.Background(), ids...)
		require.NoError(t, err)
		require.Len(t, got, 12)
		assert.Equal(t, int32(12), e.results.gets.Load())
	})
}

func TestMemoryLostCompletionIsReconciled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newMemEnv(t, true, core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
			Reconcile: 10 * time.Second,
		})
		(&stubWorker{tr: e.tr, queue: "tasks", fn: echo, mode: publishNone}).start(t)
		id, err := e.client.Submit(context.Background(), core.Request{Task: "echo", Args: "x"})
		require.NoError(t, err)
		start := time.Now()
		r, err := e.client.Wait(context.Background(), id)
		require.NoError(t, err)
		assert.Equal(t, `"x"`, string(r.Output))
		assert.Equal(t, 10*time.Second, time.Since(start), "found by the reconcile read")
		assert.Equal(t, int32(1), e.results.gets.Load())
	})
}

func TestMemoryPollingEndToEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newMemEnv(t, false, core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
		})
		(&stubWorker{tr: e.tr, queue: "tasks", fn: echo, delay: 2 * time.Second}).start(t)
		ids, err := e.client.SubmitBatch(context.Background(), numberedRequests("echo", 20)...)
		require.NoError(t, err)
		got, err := e.client.WaitAll(context.Background(), ids...)
		require.NoError(t, err)
		for i, r := range got {
			assert.Equal(t, fmt.Sprint(i), string(r.Output))
		}
		// The stub runs the tasks one after another for 40s in all; each
		// waiter's reads back off to 5s, so about 15 reads per task at most.
		assert.LessOrEqual(t, e.results.gets.Load(), int32(20*15), "not a polling storm")
	})
}

func TestMemoryCancelAndStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newMemEnv(t, true, core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
		})
		id, err := e.client.Submit(context.Background(), core.Request{Task: "echo", Args: 1})
		require.NoError(t, err)

		st, err := e.client.Status(context.Background(), id)
		require.NoError(t, err)
		assert.Equal(t, core.TaskPending, st.State)
		assert.Nil(t, st.Result)

		require.NoError(t, e.client.Cancel(context.Background(), id))
		require.NoError(t, e.client.Cancel(context.Background(), id), "idempotent")
		st, err = e.client.Status(context.Background(), id)
		require.NoError(t, err)
		assert.Equal(t, core.TaskCancelRequested, st.State)

		// The worker starts after the request: the task never runs.
		ran := false
		(&stubWorker{tr: e.tr, queue: "tasks", fn: func(env wire.Envelope) (json.RawMessage, error) {
			ran = true
			return nil, nil
		}}).start(t)
		r, err := e.client.Wait(context.Background(), id)
		require.NoError(t, err, "a cancelled task is not an error of Wait")
		assert.Equal(t, ports.StateCancelled, r.State)
		assert.ErrorIs(t, core.ResultErr(r), core.ErrTaskCanceled)
		assert.False(t, ran)

		st, err = e.client.Status(context.Background(), id)
		require.NoError(t, err)
		assert.Equal(t, core.TaskCancelled, st.State)
		require.NotNil(t, st.Result)
		assert.Equal(t, ports.StateCancelled, st.Result.State)
	})
}

func TestMemoryFailedTaskStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newMemEnv(t, true, core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
		})
		(&stubWorker{tr: e.tr, queue: "tasks", fn: func(wire.Envelope) (json.RawMessage, error) {
			return nil, errors.New("boom")
		}}).start(t)
		sq := core.NewTaskType[int, int]("fail")
		id, err := sq.Submit(context.Background(), e.client, 1)
		require.NoError(t, err)
		_, err = sq.Wait(context.Background(), e.client, id)
		var te *core.TaskError
		require.ErrorAs(t, err, &te)
		assert.Equal(t, "boom", te.Result.Error)
		st, err := e.client.Status(context.Background(), id)
		require.NoError(t, err)
		assert.Equal(t, core.TaskFailed, st.State)
	})
}

func TestMemoryTypedRoundTrip(t *testing.T) {
	type args struct{ A, B int }
	add := core.NewTaskType[args, int]("add")
	synctest.Test(t, func(t *testing.T) {
		e := newMemEnv(t, true, core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
		})
		(&stubWorker{tr: e.tr, queue: "tasks", fn: func(env wire.Envelope) (json.RawMessage, error) {
			var a args
			if err := json.Unmarshal(env.Args, &a); err != nil {
				return nil, err
			}
			return json.Marshal(a.A + a.B)
		}}).start(t)
		id, err := add.Submit(context.Background(), e.client, args{2, 3})
		require.NoError(t, err)
		sum, err := add.Wait(context.Background(), e.client, id)
		require.NoError(t, err)
		assert.Equal(t, 5, sum)
	})
}

func TestMemoryCloseFailsWaitsAndDeletesInbox(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newMemEnv(t, true, core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
		})
		broker := e.tr.Broker("tasks")
		id, err := e.client.Submit(context.Background(), core.Request{Task: "echo"})
		require.NoError(t, err)
		ds, err := broker.Receive(context.Background(), 1, time.Minute)
		require.NoError(t, err)
		require.Len(t, ds, 1)
		env, err := wire.Decode(ds[0].Body)
		require.NoError(t, err)
		require.NotEmpty(t, env.ReplyTo)

		waitErr := make(chan error)
		go func() {
			_, err := e.client.Wait(context.Background(), id)
			waitErr <- err
		}()
		time.Sleep(time.Second)
		require.NoError(t, e.client.Close())
		assert.ErrorIs(t, <-waitErr, ports.ErrClosed)

		err = e.tr.CompletionBus().Publish(context.Background(), env.ReplyTo, ports.Completion{TaskID: id, State: ports.StateSucceeded})
		assert.ErrorIs(t, err, ports.ErrNotFound, "Close deleted the inbox")
	})
}

func TestMemoryInboxGoneFallsBackToPolling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := memory.NewTransport()
		require.NoError(t, tr.CreateQueue("tasks", memory.QueueOptions{}))
		bus := tr.CompletionBus()
		c, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:      tr.Broker("tasks"),
				Results:     tr.ResultBackend(),
				Completions: bus,
				NoCancel:    true,
			},
			Logger: quietLogger(),
		})
		require.NoError(t, err)
		defer func() { require.NoError(t, c.Close()) }()
		id, err := c.Submit(context.Background(), core.Request{Task: "echo", Args: 7})
		require.NoError(t, err)
		require.NoError(t, bus.Close()) // the inbox goes with it

		(&stubWorker{tr: tr, queue: "tasks", fn: echo, delay: time.Second}).start(t)
		start := time.Now()
		r, err := c.Wait(context.Background(), id)
		require.NoError(t, err)
		assert.Equal(t, "7", string(r.Output))
		assert.Less(t, time.Since(start), 5*time.Second, "polled, not left to the 30s reconcile")
	})
}

func TestMemoryWaitFromAnotherClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newMemEnv(t, true, core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
		})
		(&stubWorker{tr: e.tr, queue: "tasks", fn: echo}).start(t)
		id, err := e.client.Submit(context.Background(), core.Request{Task: "echo", Args: "v"})
		require.NoError(t, err)
		_, err = e.client.Wait(context.Background(), id)
		require.NoError(t, err)

		// A second client (e.g. after a restart) did not submit the task.
		other, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:      e.tr.Broker("tasks"),
				Results:     e.tr.ResultBackend(),
				Completions: e.tr.CompletionBus(),
				NoCancel:    true,
			},
			Logger: quietLogger(),
		})
		require.NoError(t, err)
		defer other.Close()
		start := time.Now()
		r, err := other.Wait(context.Background(), id)
		require.NoError(t, err)
		assert.Equal(t, `"v"`, string(r.Output))
		assert.Zero(t, time.Since(start), "read at once")
	})
}

func TestMemorySendErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := memory.NewTransport()
		c, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:   tr.Broker("missing"),
				Results:  tr.ResultBackend(),
				NoCancel: true,
			},
			Logger: quietLogger(),
		})
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Submit(context.Background(), core.Request{Task: "t"})
		require.ErrorIs(t, err, ports.ErrNotFound)

		require.NoError(t, tr.CreateQueue("small", memory.QueueOptions{MaxBodyBytes: 1024}))
		c2, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:   tr.Broker("small"),
				Results:  tr.ResultBackend(),
				NoCancel: true,
			},
			Logger: quietLogger(),
		})
		require.NoError(t, err)
		defer c2.Close()
		_, err = c2.Submit(context.Background(), core.Request{Task: "t", Args: strings.Repeat("x", 2048)})
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
	})
}

func TestMemoryFIFOGroupsAndDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := memory.NewTransport()
		require.NoError(t, tr.CreateQueue("tasks.fifo", memory.QueueOptions{FIFO: true}))
		broker := tr.Broker("tasks.fifo")
		c, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:   broker,
				Results:  tr.ResultBackend(),
				NoCancel: true,
			},
			Logger: quietLogger(),
		})
		require.NoError(t, err)
		defer c.Close()

		_, err = c.Submit(context.Background(), core.Request{Task: "t", Delay: time.Second})
		require.ErrorIs(t, err, ports.ErrInvalidArgument, "FIFO queues refuse delays")

		// Same ID twice: deduplicated by the FIFO queue.
		_, err = c.SubmitBatch(context.Background(),
			core.Request{Task: "t", ID: "s1", RunID: "run"}, core.Request{Task: "t", ID: "s2", RunID: "run"})
		require.NoError(t, err)
		_, err = c.Submit(context.Background(), core.Request{Task: "t", ID: "s1", RunID: "run"})
		require.NoError(t, err)
		ds, err := broker.Receive(context.Background(), ports.MaxBatch, time.Minute)
		require.NoError(t, err)
		var got []string
		for _, d := range ds {
			got = append(got, d.ID)
			assert.Equal(t, "run", d.GroupID)
		}
		assert.Equal(t, []string{"s1", "s2"}, got)
	})
}

// GroupByTask gives every step of a run its own FIFO group, so a FIFO queue
// hands out a run's independent steps together; an explicit GroupID wins.
func TestMemoryFIFOGroupByTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := memory.NewTransport()
		require.NoError(t, tr.CreateQueue("tasks.fifo", memory.QueueOptions{FIFO: true}))
		broker := tr.Broker("tasks.fifo")
		_, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:   broker,
				Results:  tr.ResultBackend(),
				NoCancel: true,
			},
			GroupBy: "step",
		})
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
		require.ErrorContains(t, err, `GroupBy is "step"; valid: "run" (default) or "task"`)

		c, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:   broker,
				Results:  tr.ResultBackend(),
				NoCancel: true,
			},
			GroupBy: core.GroupByTask,
			Logger:  quietLogger(),
		})
		require.NoError(t, err)
		defer c.Close()
		_, err = c.SubmitBatch(context.Background(),
			core.Request{Task: "t", ID: "r.a", RunID: "r"}, core.Request{Task: "t", ID: "r.b", RunID: "r"},
			core.Request{Task: "t", ID: "r.c", RunID: "r", GroupID: "mine"})
		require.NoError(t, err)
		ds, err := broker.Receive(context.Background(), ports.MaxBatch, time.Minute)
		require.NoError(t, err)
		groups := map[string]string{}
		for _, d := range ds {
			groups[d.ID] = d.GroupID
		}
		assert.Equal(t, map[string]string{"r.a": "r.a", "r.b": "r.b", "r.c": "mine"}, groups,
			"all three are handed out at once: one group each")
	})
}
