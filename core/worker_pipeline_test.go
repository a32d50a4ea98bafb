package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/testutil"
	"github.com/dagq/dagq/ports"
)

// The settlement pipeline (a slot frees when the handler returns; the
// result write, completion and delete go on after it) and prefetch
// (messages held, not started, beyond the concurrency), over the in-memory
// adapters on synctest's fake clock.

// gatedResults blocks the Put of one task ID until its gate is opened.
type gatedResults struct {
	ports.ResultBackend
	id      string
	gate    chan struct{}
	blocked atomic.Bool // a Put of id waits at the gate
}

func (g *gatedResults) Put(ctx context.Context, r ports.Result) error {
	if r.TaskID == g.id {
		g.blocked.Store(true)
		<-g.gate // a stuck store: deaf to its context on purpose
		g.blocked.Store(false)
	}
	return g.ResultBackend.Put(ctx, r)
}

// countingBroker counts Receives that returned messages and can fail every
// Ack (as a worker that dies between its result write and its delete).
type countingBroker struct {
	ports.Broker
	mu        sync.Mutex
	receives  []int // messages returned by each Receive that returned some
	failAcks  bool
	ackErrors int
}

func (b *countingBroker) Receive(ctx context.Context, n int, lease time.Duration) ([]ports.Delivery, error) {
	ds, err := b.Broker.Receive(ctx, n, lease)
	if len(ds) > 0 {
		b.mu.Lock()
		b.receives = append(b.receives, len(ds))
		b.mu.Unlock()
	}
	return ds, err
}

func (b *countingBroker) Ack(ctx context.Context, rs ...ports.Receipt) error {
	b.mu.Lock()
	fail := b.failAcks
	if fail {
		b.ackErrors++
	}
	b.mu.Unlock()
	if fail {
		return errors.New("connection reset (the worker died before its delete)")
	}
	return b.Broker.Ack(ctx, rs...)
}

func (b *countingBroker) received() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.receives...)
}

// startedRecorder is a handler that records the IDs it ran, in order.
type startedRecorder struct {
	mu  sync.Mutex
	ids []string
}

func (s *startedRecorder) handle(_ context.Context, task *core.Task) (json.RawMessage, error) {
	s.mu.Lock()
	s.ids = append(s.ids, task.ID)
	s.mu.Unlock()
	return json.RawMessage(`"ok"`), nil
}

func (s *startedRecorder) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...)
}

func leaseLostLogs(logs *testutil.LogSink) []testutil.LogRecord {
	return logs.Where(func(r testutil.LogRecord) bool { return r.Msg == "lease lost; the task is left to another delivery" })
}

// A worker of concurrency 1 runs the next task while the previous one's
// result write is stuck: the slot freed when the handler returned. The
// settling task's lease is extended meanwhile (it outlives several leases
// without being redelivered), and it is settled once the write goes through.
func TestWorkerPipeline_SlotFreesWhilePutIsBlocked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		rec := &startedRecorder{}
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("a", rec.handle))
		results := &gatedResults{ResultBackend: m.tr.ResultBackend(), id: "t1", gate: make(chan struct{})}
		var openOnce sync.Once
		open := func() { openOnce.Do(func() { close(results.gate) }) }
		m.submit(wkEnv("t1", "a"))
		w := m.startWorker(reg, func(o *core.WorkerOptions) {
			o.Ports.Results = results
			o.Concurrency = 1
			o.Prefetch = -1 // one slot, no buffer: only settlement off the slot lets t2 run
			o.Lease = 10 * time.Second
		})
		t.Cleanup(open) // before the worker's: a failed assertion must not leave the drain blocked
		synctest.Wait()
		require.True(t, results.blocked.Load(), "t1's result write is stuck")
		m.submit(wkEnv("t2", "a"))
		synctest.Wait()
		time.Sleep(2 * time.Second) // the memory queue's poll picks t2 up
		synctest.Wait()
		require.Equal(t, []string{"t1", "t2"}, rec.all(), "t2 ran while t1 was settling")
		require.Equal(t, ports.StateSucceeded, m.result("t2").State)
		m.noResult("t1")

		time.Sleep(35 * time.Second) // three and a half leases
		synctest.Wait()
		require.Equal(t, memory.QueueStats{InFlight: 1}, m.stats(), "t1 stays leased while it settles")
		require.Empty(t, leaseLostLogs(w.logs), "the settling lease was extended")

		open()
		require.Equal(t, ports.StateSucceeded, m.result("t1").State)
		synctest.Wait()
		require.Equal(t, memory.QueueStats{}, m.stats(), "t1 acked")
		require.Equal(t, []string{"t1", "t2"}, rec.all(), "each ran once")
		require.NoError(t, w.stop())
	})
}

// Shutdown waits for the settlement pipeline: Run returns only once the
// stuck result write went through and the message was deleted.
func TestWorkerPipeline_ShutdownDrainsSettlement(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		rec := &startedRecorder{}
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("a", rec.handle))
		results := &gatedResults{ResultBackend: m.tr.ResultBackend(), id: "t1", gate: make(chan struct{})}
		var openOnce sync.Once
		open := func() { openOnce.Do(func() { close(results.gate) }) }
		m.submit(wkEnv("t1", "a"))
		w := m.startWorker(reg, func(o *core.WorkerOptions) { o.Ports.Results = results })
		t.Cleanup(open) // before the worker's: a failed assertion must not leave the drain blocked
		synctest.Wait()
		require.True(t, results.blocked.Load())

		stopped := make(chan error, 1)
		go func() { stopped <- w.stop() }()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		select {
		case err := <-stopped:
			t.Fatalf("Run returned (%v) with a task still settling", err)
		default:
		}
		open()
		require.NoError(t, <-stopped)
		require.Equal(t, ports.StateSucceeded, m.result("t1").State)
		require.Equal(t, memory.QueueStats{}, m.stats(), "settled before Run returned")
	})
}

// A worker whose result write went through but whose delete did not (it
// died in between) leaves the message to be redelivered: the next worker
// finds the stored result and does not run the task again.
func TestWorkerPipeline_DeathMidSettlementIsNotRerun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		rec := &startedRecorder{}
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("a", rec.handle))
		m.submit(wkEnv("t1", "a"))
		dying := &countingBroker{Broker: m.tr.Broker(wmQueue), failAcks: true}
		w1 := m.startWorker(reg, func(o *core.WorkerOptions) {
			o.ID = "w1"
			o.Ports.Broker = dying
			o.Lease = 10 * time.Second
		})
		require.Equal(t, "w1", m.result("t1").Worker)
		synctest.Wait()
		require.NoError(t, w1.stop())
		require.Equal(t, 1, dying.ackErrors)
		require.Equal(t, memory.QueueStats{InFlight: 1}, m.stats(), "the message outlives its worker")

		w2 := m.startWorker(reg, func(o *core.WorkerOptions) { o.ID = "w2" })
		time.Sleep(15 * time.Second) // w1's lease runs out; w2 gets the message
		synctest.Wait()
		require.NoError(t, w2.stop())
		require.Equal(t, []string{"t1"}, rec.all(), "ran once")
		require.Equal(t, "w1", m.result("t1").Worker, "the first result stands")
		require.Equal(t, memory.QueueStats{}, m.stats(), "the redelivery is acked")
		require.NotEmpty(t, w2.logs.Where(func(r testutil.LogRecord) bool {
			return r.Msg == "redelivered task already has a result; not running it again"
		}))
	})
}

// Prefetched messages keep their leases while they wait for a slot, and are
// handed back at once when shutdown begins, while the running task is
// drained; they never started, so they have no result.
func TestWorkerPrefetch_HeldLeasesExtendedAndReleasedAtShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		gate := make(chan struct{})
		var gateOnce sync.Once
		free := func() { gateOnce.Do(func() { close(gate) }) }
		var ran atomic.Int32
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("hold", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
			ran.Add(1)
			<-gate
			return json.RawMessage(`"ok"`), nil
		}))
		m.submit(wkEnv("h1", "hold"), wkEnv("h2", "hold"), wkEnv("h3", "hold"), wkEnv("h4", "hold"))
		w := m.startWorker(reg, func(o *core.WorkerOptions) {
			o.Concurrency = 1
			o.Prefetch = 3
			o.Lease = 10 * time.Second
		})
		t.Cleanup(free) // before the worker's: a failed assertion must not leave the handler blocked
		synctest.Wait()
		require.Equal(t, int32(1), ran.Load(), "one slot: one handler runs")
		require.Equal(t, memory.QueueStats{InFlight: 4}, m.stats(), "three more held")

		time.Sleep(35 * time.Second) // three and a half leases
		synctest.Wait()
		require.Equal(t, memory.QueueStats{InFlight: 4}, m.stats(), "held leases were extended")
		require.Empty(t, leaseLostLogs(w.logs))

		stopped := make(chan error, 1)
		go func() { stopped <- w.stop() }()
		synctest.Wait()
		require.Equal(t, memory.QueueStats{Visible: 3, InFlight: 1}, m.stats(),
			"the prefetched messages are handed back at once; the running one drains")
		require.Equal(t, int32(1), ran.Load(), "none of them started")
		free()
		require.NoError(t, <-stopped)
		require.Equal(t, int32(1), ran.Load())
		m.result("h1")
		for _, id := range []string{"h2", "h3", "h4"} {
			m.noResult(id)
		}
		require.Equal(t, memory.QueueStats{Visible: 3}, m.stats())
	})
}

// With prefetch, one Receive of ten serves a worker of concurrency 1.
func TestWorkerPrefetch_ConcurrencyOneReceivesOnceForTen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		rec := &startedRecorder{}
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("a", rec.handle))
		ids := []string{"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"}
		for _, id := range ids {
			m.submit(wkEnv(id, "a"))
		}
		spy := &countingBroker{Broker: m.tr.Broker(wmQueue)}
		w := m.startWorker(reg, func(o *core.WorkerOptions) {
			o.Ports.Broker = spy
			o.Concurrency = 1
			o.Prefetch = 10
		})
		for _, id := range ids {
			require.Equal(t, ports.StateSucceeded, m.result(id).State, id)
		}
		synctest.Wait()
		require.NoError(t, w.stop())
		require.Equal(t, []int{10}, spy.received(), "one receive brought all ten")
		require.Equal(t, ids, rec.all(), "run one at a time, in the order received")
		require.Equal(t, memory.QueueStats{}, m.stats())
	})
}

// With the port mocks: a worker of concurrency 1 asks for the next message
// while the previous task's Put is blocked (its slot freed when the handler
// returned), and the settling task's lease is extended until its Ack.
func TestWorker_SlotFreesWhilePutBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		h.opts.Concurrency = 1
		h.opts.Lease = 30 * time.Second
		require.NoError(t, h.reg.HandleFunc("a", wkOK(`1`)))
		gate := make(chan struct{})
		var gateOnce sync.Once
		open := func() { gateOnce.Do(func() { close(gate) }) }
		h.results.EXPECT().Put(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, r ports.Result) error {
			if r.TaskID == "t1" {
				<-gate
			}
			return nil
		}).Times(2)
		var mu sync.Mutex
		var extended []ports.Receipt
		h.broker.EXPECT().Extend(gomock.Any(), 30*time.Second, gomock.Any()).DoAndReturn(
			func(_ context.Context, _ time.Duration, rs ...ports.Receipt) error {
				mu.Lock()
				extended = append(extended, rs...)
				mu.Unlock()
				return nil
			}).AnyTimes()
		acked := make(chan ports.Receipt, 2)
		h.broker.EXPECT().Ack(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, rs ...ports.Receipt) error {
			for _, r := range rs {
				acked <- r
			}
			return nil
		}).Times(2)
		h.run()
		t.Cleanup(open) // before the harness's stop: a failed assertion must not leave the drain blocked

		h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"))
		synctest.Wait()
		require.Equal(t, []int{1, 1}, h.receiveMaxes(), "the slot is free again while t1's Put is blocked")
		h.send(wkDelivery(t, wkEnv("t2", "a"), 1, "r2"))
		synctest.Wait()
		require.Equal(t, ports.Receipt("r2"), <-acked, "t2 ran and settled past t1")

		time.Sleep(45 * time.Second) // past t1's first lease
		synctest.Wait()
		mu.Lock()
		require.Contains(t, extended, ports.Receipt("r1"), "the settling lease is extended")
		require.NotContains(t, extended, ports.Receipt("r2"), "a settled one is not")
		mu.Unlock()
		open()
		synctest.Wait()
		require.Equal(t, ports.Receipt("r1"), <-acked)
		require.NoError(t, h.stop())
	})
}

// With the port mocks: prefetched messages' leases are extended while they
// wait, and they are released at once (Nack 0) when shutdown begins, while
// the running task drains.
func TestWorker_PrefetchReleasedAtOnceOnShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		h.opts.Concurrency = 1
		h.opts.Prefetch = 2
		h.opts.Lease = 30 * time.Second
		gate := make(chan struct{})
		var gateOnce sync.Once
		free := func() { gateOnce.Do(func() { close(gate) }) }
		var ran atomic.Int32
		require.NoError(t, h.reg.HandleFunc("a", func(context.Context, *core.Task) (json.RawMessage, error) {
			ran.Add(1)
			<-gate
			return json.RawMessage(`1`), nil
		}))
		var mu sync.Mutex
		extended := map[ports.Receipt]int{}
		h.broker.EXPECT().Extend(gomock.Any(), 30*time.Second, gomock.Any()).DoAndReturn(
			func(_ context.Context, _ time.Duration, rs ...ports.Receipt) error {
				mu.Lock()
				for _, r := range rs {
					extended[r]++
				}
				mu.Unlock()
				return nil
			}).AnyTimes()
		h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r2"), time.Duration(0)).Return(nil)
		h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r3"), time.Duration(0)).Return(nil)
		h.results.EXPECT().Put(gomock.Any(), gomock.Any()).Return(nil)
		h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")).Return(nil)
		h.run()
		t.Cleanup(free) // before the harness's stop

		h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"), wkDelivery(t, wkEnv("t2", "a"), 1, "r2"),
			wkDelivery(t, wkEnv("t3", "a"), 1, "r3"))
		synctest.Wait()
		require.Equal(t, []int{3}, h.receiveMaxes(), "one receive for concurrency+prefetch; no room for another batch")
		require.Equal(t, int32(1), ran.Load())
		time.Sleep(time.Minute)
		synctest.Wait()
		mu.Lock()
		require.Positive(t, extended["r2"], "a prefetched lease is extended")
		require.Positive(t, extended["r3"])
		mu.Unlock()

		stopped := make(chan error, 1)
		go func() { stopped <- h.stop() }()
		synctest.Wait() // r2 and r3 nacked here (gomock fails on anything else)
		select {
		case err := <-stopped:
			t.Fatalf("Run returned (%v) while t1 still runs", err)
		default:
		}
		free()
		require.NoError(t, <-stopped)
		require.Equal(t, int32(1), ran.Load(), "the prefetched tasks never started")
	})
}
