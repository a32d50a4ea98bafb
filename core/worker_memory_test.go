package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/testutil"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// Behaviour of the Worker over the in-memory adapters (SQS/S3 semantics:
// leases, redelivery, write-once results, broadcast cancels), on synctest's
// fake clock.

const wmQueue = "tasks"

type wmWorld struct {
	t        *testing.T
	tr       *memory.Transport
	producer ports.Broker
	results  ports.ResultBackend
	cancels  ports.CancelChannel
}

func newWmWorld(t *testing.T) *wmWorld {
	t.Helper()
	tr := memory.NewTransport()
	require.NoError(t, tr.CreateQueue(wmQueue, memory.QueueOptions{}))
	return &wmWorld{t: t, tr: tr, producer: tr.Broker(wmQueue), results: tr.ResultBackend(), cancels: tr.CancelChannel()}
}

// wmRunning is a worker running in the background.
type wmRunning struct {
	w    *core.Worker
	logs *testutil.LogSink
	stop func() error
}

// startWorker runs a worker with its own adapter handles (as its own process
// would have). mod adjusts the options.
func (m *wmWorld) startWorker(reg *core.Registry, mod func(*core.WorkerOptions)) *wmRunning {
	m.t.Helper()
	logger, sink := testutil.NewLogger(m.t)
	opts := core.WorkerOptions{
		Ports: core.Ports{
			Broker:      m.tr.Broker(wmQueue),
			Results:     m.tr.ResultBackend(),
			Cancels:     m.tr.CancelChannel(),
			Completions: m.tr.CompletionBus(),
		},
		Registry: reg,
		Retry:    wkNoJitter,
		Logger:   logger,
	}
	if mod != nil {
		mod(&opts)
	}
	w, err := core.NewWorker(opts)
	require.NoError(m.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var runErr error
	r := &wmRunning{w: w, logs: sink, stop: func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
			_ = opts.Ports.Broker.Close()
			_ = opts.Ports.Results.Close()
			_ = opts.Ports.Cancels.Close()
			_ = opts.Ports.Completions.Close()
		})
		return runErr
	}}
	m.t.Cleanup(func() { _ = r.stop() }) // after a failed assertion too
	return r
}

func (m *wmWorld) submit(envs ...wire.Envelope) {
	m.t.Helper()
	for _, env := range envs {
		body, err := env.Encode()
		require.NoError(m.t, err)
		require.NoError(m.t, m.producer.Send(context.Background(), ports.Message{ID: env.TaskID, Body: body}))
	}
}

// result polls the backend (on the fake clock) until id has a result.
func (m *wmWorld) result(id string) ports.Result {
	m.t.Helper()
	for range 100000 {
		r, err := m.results.Get(context.Background(), id)
		if err == nil {
			return r
		}
		require.ErrorIs(m.t, err, ports.ErrNotFound)
		time.Sleep(10 * time.Millisecond)
	}
	m.t.Fatalf("no result for %s", id)
	return ports.Result{}
}

func (m *wmWorld) noResult(id string) {
	m.t.Helper()
	_, err := m.results.Get(context.Background(), id)
	require.ErrorIs(m.t, err, ports.ErrNotFound)
}

func (m *wmWorld) stats() memory.QueueStats {
	m.t.Helper()
	s, err := m.tr.Stats(wmQueue)
	require.NoError(m.t, err)
	return s
}

type wmSum struct{ A, B int }

var wmAdd = core.NewTaskType[wmSum, int]("add")

func TestWorkerMemory_EndToEndWithClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		wmAdd.MustRegister(reg, func(ctx context.Context, a wmSum) (int, error) {
			time.Sleep(100 * time.Millisecond)
			return a.A + a.B, nil
		})
		w1 := m.startWorker(reg, func(o *core.WorkerOptions) { o.ID = "w1"; o.Concurrency = 3 })
		w2 := m.startWorker(reg, func(o *core.WorkerOptions) { o.ID = "w2"; o.Concurrency = 3 })

		client, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:      m.tr.Broker(wmQueue),
				Results:     m.tr.ResultBackend(),
				Cancels:     m.tr.CancelChannel(),
				Completions: m.tr.CompletionBus(),
			},
			Logger: quietLogger(),
		})
		require.NoError(t, err)
		ctx := context.Background()
		var ids []string
		for i := range 20 {
			id, err := wmAdd.Submit(ctx, client, wmSum{A: i, B: 1})
			require.NoError(t, err)
			ids = append(ids, id)
		}
		workers := map[string]int{}
		for i, id := range ids {
			sum, err := wmAdd.Wait(ctx, client, id)
			require.NoError(t, err)
			require.Equal(t, i+1, sum)
			r := m.result(id)
			workers[r.Worker]++
		}
		require.NoError(t, client.Close())
		require.NoError(t, w1.stop())
		require.NoError(t, w2.stop())
		require.Len(t, workers, 2, "both workers took tasks: %v", workers)
		require.Equal(t, memory.QueueStats{}, m.stats(), "every message acked")
	})
}

func TestWorkerMemory_CompletionPublished(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("a", wkOK(`"hi"`)))
		bus := m.tr.CompletionBus()
		inbox, err := bus.Open(context.Background())
		require.NoError(t, err)
		w := m.startWorker(reg, nil)
		env := wkEnv("t1", "a")
		env.ReplyTo = inbox.Address()
		m.submit(env)
		cs, err := inbox.Receive(context.Background())
		require.NoError(t, err)
		require.Len(t, cs, 1)
		require.Equal(t, ports.StateSucceeded, cs[0].State)
		require.NotNil(t, cs[0].Result)
		require.JSONEq(t, `"hi"`, string(cs[0].Result.Output))
		require.NoError(t, w.stop())
		require.NoError(t, bus.Close())
	})
}

func TestWorkerMemory_RetryThenSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("flaky", func(_ context.Context, task *core.Task) (json.RawMessage, error) {
			if task.Attempt < 3 {
				return nil, fmt.Errorf("attempt %d fails", task.Attempt)
			}
			return json.RawMessage(`"ok"`), nil
		}))
		w := m.startWorker(reg, nil)
		t0 := time.Now()
		m.submit(wkEnv("t1", "flaky"))
		r := m.result("t1")
		require.Equal(t, ports.StateSucceeded, r.State)
		require.Equal(t, 3, r.Attempts)
		// Nack delays 2s then 4s (the queue redelivers at once when visible).
		require.Equal(t, t0.Add(6*time.Second), r.FinishedAt)
		require.NoError(t, w.stop())
		require.Equal(t, memory.QueueStats{}, m.stats())
	})
}

func TestWorkerMemory_FailsAfterMaxAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		var runs int
		require.NoError(t, reg.HandleFunc("bad", func(context.Context, *core.Task) (json.RawMessage, error) {
			runs++
			return nil, errors.New("always")
		}))
		w := m.startWorker(reg, nil)
		m.submit(wkEnv("t1", "bad"))
		r := m.result("t1")
		require.Equal(t, ports.StateFailed, r.State)
		require.Equal(t, "always", r.Error)
		require.Equal(t, 3, r.Attempts)
		time.Sleep(time.Minute)
		require.NoError(t, w.stop())
		require.Equal(t, 3, runs)
		require.Equal(t, memory.QueueStats{}, m.stats())
	})
}

func TestWorkerMemory_ConcurrencyLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		var mu sync.Mutex
		running, peak := 0, 0
		require.NoError(t, reg.HandleFunc("a", func(context.Context, *core.Task) (json.RawMessage, error) {
			mu.Lock()
			running++
			peak = max(peak, running)
			mu.Unlock()
			time.Sleep(time.Second)
			mu.Lock()
			running--
			mu.Unlock()
			return json.RawMessage(`1`), nil
		}))
		w := m.startWorker(reg, func(o *core.WorkerOptions) { o.Concurrency = 4 })
		t0 := time.Now()
		for i := range 20 {
			m.submit(wkEnv(fmt.Sprintf("t%02d", i), "a"))
		}
		var last time.Time
		for i := range 20 {
			r := m.result(fmt.Sprintf("t%02d", i))
			require.Equal(t, ports.StateSucceeded, r.State)
			if r.FinishedAt.After(last) {
				last = r.FinishedAt
			}
		}
		require.NoError(t, w.stop())
		require.Equal(t, 4, peak, "never more than Concurrency handlers at once")
		// The slots are kept full: 20 tasks / 4 = 5 rounds of 1s, each
		// round's receive possibly waiting core.ReceiveGather for more free
		// slots while others are busy.
		require.False(t, last.Before(t0.Add(5*time.Second)), "5 rounds of 1s")
		require.False(t, last.After(t0.Add(5*time.Second+5*core.ReceiveGather)), "and the slots are kept full: finished at %v", last.Sub(t0))
	})
}

// goroutineID is the ID of the calling goroutine (from its stack header).
func goroutineID() string {
	var buf [64]byte
	line := string(buf[:runtime.Stack(buf[:], false)])
	line = strings.TrimPrefix(line, "goroutine ")
	return line[:strings.IndexByte(line, ' ')]
}

// runOneBatch has a worker of concurrency n receive n tasks run by h in one
// batch (they are queued before it starts), and waits for their success.
func runOneBatch(t *testing.T, n int, h core.HandlerFunc) {
	t.Helper()
	m := newWmWorld(t)
	for i := range n {
		m.submit(wkEnv(fmt.Sprintf("t%02d", i), "batch"))
	}
	reg := core.NewRegistry()
	require.NoError(t, reg.Handle("batch", h))
	w := m.startWorker(reg, func(o *core.WorkerOptions) { o.Concurrency = n }) // one receive takes them all
	for i := range n {
		require.Equal(t, ports.StateSucceeded, m.result(fmt.Sprintf("t%02d", i)).State)
	}
	require.NoError(t, w.stop())
}

// The tasks of one received batch run together, each in a goroutine of its
// own, and start at once: here each one blocks until all ten have started.
func TestWorkerMemory_BatchLongJobsRunTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 10
		var (
			mu      sync.Mutex
			started []time.Time
			gids    = map[string]bool{}
			all     = make(chan struct{})
		)
		runOneBatch(t, n, func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
			mu.Lock()
			started = append(started, time.Now())
			gids[goroutineID()] = true
			if len(started) == n {
				close(all)
			}
			mu.Unlock()
			select {
			case <-all:
				return json.RawMessage(`1`), nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
		require.Len(t, gids, n, "each in a goroutine of its own")
		require.Equal(t, started[0], started[n-1], "no delay between them")
	})
}

func TestWorkerMemory_CancelRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		causes := make(chan error, 1)
		require.NoError(t, reg.HandleFunc("a", blockUntilDone(causes)))
		// Two workers: the request must reach whichever runs the task.
		w1 := m.startWorker(reg, func(o *core.WorkerOptions) { o.ID = "w1" })
		w2 := m.startWorker(reg, func(o *core.WorkerOptions) { o.ID = "w2" })
		m.submit(wkEnv("t1", "a"))
		time.Sleep(5 * time.Second)
		synctest.Wait()
		requested := time.Now()
		require.NoError(t, m.cancels.Cancel(context.Background(), "t1"))
		require.ErrorIs(t, <-causes, core.ErrTaskCanceled)
		r := m.result("t1")
		require.Equal(t, ports.StateCancelled, r.State)
		require.Equal(t, 1, r.Attempts)
		require.Equal(t, requested, r.FinishedAt, "interrupted at once")
		require.NoError(t, w1.stop())
		require.NoError(t, w2.stop())
		require.Equal(t, memory.QueueStats{}, m.stats())
	})
}

func TestWorkerMemory_CancelQueuedNeverStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("a", wkNever(t)))
		require.NoError(t, m.cancels.Cancel(context.Background(), "t1"))
		m.submit(wkEnv("t1", "a"))
		w := m.startWorker(reg, nil) // starts after the request: the durable check finds it
		r := m.result("t1")
		require.Equal(t, ports.StateCancelled, r.State)
		require.Equal(t, "cancelled before start", r.Error)
		require.Equal(t, 0, r.Attempts)
		require.NoError(t, w.stop())
		require.Equal(t, memory.QueueStats{}, m.stats())
	})
}

func TestWorkerMemory_LeaseCapRedelivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		causes := make(chan error, 1)
		require.NoError(t, reg.HandleFunc("a", func(ctx context.Context, task *core.Task) (json.RawMessage, error) {
			if task.Attempt == 1 { // the first run never ends by itself
				<-ctx.Done()
				causes <- context.Cause(ctx)
				return nil, ctx.Err()
			}
			return json.RawMessage(`"second run"`), nil
		}))
		lease := func(id string) func(*core.WorkerOptions) {
			return func(o *core.WorkerOptions) {
				o.ID, o.Lease, o.HeartbeatInterval, o.MaxExtensions = id, 2*time.Second, time.Second, 1
			}
		}
		w1 := m.startWorker(reg, lease("w1"))
		t0 := time.Now()
		m.submit(wkEnv("t1", "a"))
		synctest.Wait()
		w2 := m.startWorker(reg, lease("w2"))
		r := m.result("t1")
		require.ErrorIs(t, <-causes, ports.ErrLeaseLost)
		require.Equal(t, ports.StateSucceeded, r.State)
		require.Contains(t, []string{"w1", "w2"}, r.Worker, "either worker may get the redelivery")
		require.Equal(t, 2, r.Attempts)
		// Extended once at 1s for 2s: the lease ends at 3s, and the message is
		// delivered again then.
		require.Equal(t, t0.Add(3*time.Second), r.FinishedAt)
		require.NoError(t, w1.stop())
		require.NoError(t, w2.stop())
		require.Equal(t, memory.QueueStats{}, m.stats())
	})
}

func TestWorkerMemory_HeartbeatKeepsLongTaskLeased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		var runs int
		require.NoError(t, reg.HandleFunc("slow", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
			runs++
			time.Sleep(10 * time.Minute) // twenty leases long
			return json.RawMessage(`1`), ctx.Err()
		}))
		w1 := m.startWorker(reg, func(o *core.WorkerOptions) { o.ID = "w1"; o.Lease = 30 * time.Second })
		m.submit(wkEnv("t1", "slow"))
		synctest.Wait()
		w2 := m.startWorker(reg, func(o *core.WorkerOptions) { o.ID = "w2"; o.Lease = 30 * time.Second })
		r := m.result("t1")
		require.Equal(t, ports.StateSucceeded, r.State)
		require.Equal(t, "w1", r.Worker)
		require.Equal(t, 1, runs, "never redelivered while its worker extends the lease")
		require.NoError(t, w1.stop())
		require.NoError(t, w2.stop())
	})
}

func TestWorkerMemory_ShutdownReleasesToAnotherWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		causes := make(chan error, 1)
		require.NoError(t, reg.HandleFunc("a", func(ctx context.Context, task *core.Task) (json.RawMessage, error) {
			if task.Attempt == 1 {
				<-ctx.Done()
				causes <- context.Cause(ctx)
				return nil, ctx.Err()
			}
			return json.RawMessage(`"picked up"`), nil
		}))
		w1 := m.startWorker(reg, func(o *core.WorkerOptions) { o.ID = "w1"; o.ShutdownTimeout = time.Second })
		m.submit(wkEnv("t1", "a"))
		synctest.Wait()
		w2 := m.startWorker(reg, func(o *core.WorkerOptions) { o.ID = "w2" })
		stopAt := time.Now()
		require.NoError(t, w1.stop())
		require.Equal(t, stopAt.Add(time.Second), time.Now(), "w1 waited ShutdownTimeout, then aborted")
		require.ErrorIs(t, <-causes, core.ErrShutdown)
		r := m.result("t1")
		require.Equal(t, "w2", r.Worker)
		require.Equal(t, ports.StateSucceeded, r.State)
		require.Equal(t, stopAt.Add(time.Second), r.FinishedAt, "released at once, not after the 30s lease")
		require.NoError(t, w2.stop())
		require.Equal(t, memory.QueueStats{}, m.stats())
	})
}

func TestWorkerMemory_GracefulShutdownFinishesWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("a", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
			time.Sleep(10 * time.Second)
			return json.RawMessage(`1`), nil
		}))
		w := m.startWorker(reg, func(o *core.WorkerOptions) { o.Concurrency = 2 })
		m.submit(wkEnv("t1", "a"), wkEnv("t2", "a"), wkEnv("t3", "a"))
		synctest.Wait()
		require.NoError(t, w.stop())
		require.Equal(t, ports.StateSucceeded, m.result("t1").State)
		require.Equal(t, ports.StateSucceeded, m.result("t2").State)
		m.noResult("t3")
		require.Equal(t, memory.QueueStats{Visible: 1}, m.stats(), "the task not received stays queued")
	})
}

func TestWorkerMemory_CrashAfterPutIsNotRerun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("a", wkNever(t)))
		// A worker received the task, stored its result and died before its
		// Ack.
		m.submit(wkEnv("t1", "a"))
		ds, err := m.producer.Receive(context.Background(), 1, 5*time.Second)
		require.NoError(t, err)
		require.Len(t, ds, 1)
		stored := ports.Result{TaskID: "t1", State: ports.StateSucceeded, Output: []byte(`7`), Attempts: 1, Worker: "dead"}
		require.NoError(t, m.results.Put(context.Background(), stored))

		w := m.startWorker(reg, nil)
		time.Sleep(10 * time.Second) // the dead worker's lease runs out
		synctest.Wait()
		require.NoError(t, w.stop())
		require.Equal(t, "dead", m.result("t1").Worker)
		require.Equal(t, memory.QueueStats{}, m.stats(), "the redelivery is acked")
	})
}

func TestWorkerMemory_CrashMidRunIsRedelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("a", wkOK(`1`)))
		m.submit(wkEnv("t1", "a"))
		// A worker received the task and died.
		t0 := time.Now()
		_, err := m.producer.Receive(context.Background(), 1, 5*time.Second)
		require.NoError(t, err)
		w := m.startWorker(reg, nil)
		r := m.result("t1")
		require.Equal(t, ports.StateSucceeded, r.State)
		require.Equal(t, 2, r.Attempts)
		require.Equal(t, t0.Add(5*time.Second), r.FinishedAt)
		require.NoError(t, w.stop())
	})
}

func TestWorkerMemory_UndecodableRecordedAndRemoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("a", wkOK(`1`)))
		require.NoError(t, m.producer.Send(context.Background(), ports.Message{ID: "m1", Body: []byte("\x00garbage")}))
		m.submit(wkEnv("t1", "a"))
		w := m.startWorker(reg, nil)
		r := m.result("m1")
		require.Equal(t, ports.StateFailed, r.State)
		require.Contains(t, r.Error, "undecodable message")
		require.Equal(t, ports.StateSucceeded, m.result("t1").State, "the worker goes on")
		require.NoError(t, w.stop())
		require.Equal(t, memory.QueueStats{}, m.stats())
	})
}

func TestWorkerMemory_BrokerClosedEndsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("a", wkOK(`1`)))
		broker := m.tr.Broker(wmQueue)
		w, err := core.NewWorker(core.WorkerOptions{
			Ports: core.Ports{
				Broker:   broker,
				Results:  m.tr.ResultBackend(),
				NoCancel: true,
			},
			Registry: reg,
			Logger:   quietLogger(),
		})
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- w.Run(context.Background()) }()
		synctest.Wait()
		require.NoError(t, broker.Close())
		require.ErrorIs(t, <-done, ports.ErrClosed)
	})
}

// Every line a worker logs about a task carries the task's attributes
// (task_id, task, attempt, and run_id/step_id in a run), and its outcome
// line the handler's duration.
func TestWorkerMemory_TaskLogAttributes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("ok", func(context.Context, *core.Task) (json.RawMessage, error) {
			time.Sleep(50 * time.Millisecond)
			return json.RawMessage(`1`), nil
		}))
		require.NoError(t, reg.HandleFunc("bad", func(context.Context, *core.Task) (json.RawMessage, error) {
			return nil, fmt.Errorf("boom: %w", core.ErrSkipRetry)
		}))
		w := m.startWorker(reg, nil)
		m.submit(wire.Envelope{TaskID: "t-ok", Task: "ok", RunID: "r1", StepID: "s1"}, wire.Envelope{TaskID: "t-bad", Task: "bad"})
		m.result("t-ok")
		m.result("t-bad")

		for _, r := range w.logs.Where(func(r testutil.LogRecord) bool { return r.Attrs["task_id"] == "t-ok" }) {
			require.Equal(t, "r1", r.Attrs["run_id"], r.Msg)
			require.Equal(t, "s1", r.Attrs["step_id"], r.Msg)
		}
		// The outcome line is the task's record with the handler's duration.
		outcome := func(id string) testutil.LogRecord {
			t.Helper()
			recs := w.logs.Where(func(r testutil.LogRecord) bool {
				_, ok := r.Attrs["duration"]
				return ok && r.Attrs["task_id"] == id
			})
			require.Len(t, recs, 1, "one outcome line for %s", id)
			return recs[0]
		}
		ok := outcome("t-ok")
		require.Equal(t, slog.LevelInfo, ok.Level)
		require.Equal(t, "ok", ok.Attrs["task"])
		require.EqualValues(t, 1, ok.Attrs["attempt"])
		require.Equal(t, "r1", ok.Attrs["run_id"])
		require.Equal(t, "s1", ok.Attrs["step_id"])
		require.Equal(t, 50*time.Millisecond, ok.Attrs["duration"])
		require.NotContains(t, ok.Attrs, "err")

		bad := outcome("t-bad")
		require.Equal(t, slog.LevelWarn, bad.Level)
		require.Equal(t, "bad", bad.Attrs["task"])
		require.NotContains(t, bad.Attrs, "run_id")
		err, _ := bad.Attrs["err"].(error)
		require.ErrorIs(t, err, core.ErrSkipRetry)
		require.ErrorContains(t, err, "boom")
	})
}

// InFlight counts the tasks whose handler runs: two blocked handlers read
// 2, and 0 once they returned.
func TestWorkerMemory_InFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		release := make(chan struct{})
		require.NoError(t, reg.HandleFunc("block", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
			select {
			case <-release:
				return json.RawMessage(`1`), nil
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		}))
		w := m.startWorker(reg, func(o *core.WorkerOptions) { o.Concurrency = 4 })
		require.Equal(t, 0, w.w.InFlight())
		m.submit(wkEnv("b1", "block"), wkEnv("b2", "block"))
		for i := 0; i < 1000 && w.w.InFlight() < 2; i++ {
			time.Sleep(time.Millisecond) // the fake clock: receive, gather, start
		}
		synctest.Wait()
		require.Equal(t, 2, w.w.InFlight(), "two handlers block")
		close(release)
		require.Equal(t, ports.StateSucceeded, m.result("b1").State)
		require.Equal(t, ports.StateSucceeded, m.result("b2").State)
		synctest.Wait()
		require.Equal(t, 0, w.w.InFlight())
		require.NoError(t, w.stop())
	})
}
