package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// Fleet-wide concurrency pools (issue 15): a task of pool "db" runs only
// while it holds one of the pool's slots, records in the StateStore every
// worker shares. These tests run on the memory transport in a synctest
// bubble: time is fake, so leases, polls and handler durations are exact
// and instant.

const (
	plPool  = "db"
	plLease = 3 * time.Second
	plPoll  = time.Second
)

// plWorld is a memory transport with a client and workers with pools.
type plWorld struct {
	*wmWorld
	state  ports.StateStore
	client *core.Client
}

func newPlWorld(t *testing.T) *plWorld {
	t.Helper()
	m := newWmWorld(t)
	c, err := core.NewClient(core.ClientOptions{Ports: core.Ports{Broker: m.tr.Broker(wmQueue), Results: m.tr.ResultBackend(),
		Cancels: m.tr.CancelChannel(), Completions: m.tr.CompletionBus()}, Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &plWorld{wmWorld: m, state: m.tr.StateStore(), client: c}
}

// worker starts a worker with pool db of limit slots (and the store st,
// the shared one when nil); mod adjusts its options further.
func (m *plWorld) worker(reg *core.Registry, id string, limit int, st ports.StateStore, mod func(*core.WorkerOptions)) *wmRunning {
	if st == nil {
		st = m.tr.StateStore()
	}
	return m.startWorker(reg, func(o *core.WorkerOptions) {
		o.ID = id
		o.Ports.State = st
		o.Pools = core.PoolOptions{Limits: map[string]int{plPool: limit}, Lease: plLease, Poll: plPoll}
		if mod != nil {
			mod(o)
		}
	})
}

func (m *plWorld) submit(t *testing.T, id, task string, opts ...core.RequestOption) {
	t.Helper()
	req := core.Request{ID: id, Task: task}
	for _, o := range opts {
		o(&req)
	}
	_, err := m.client.Submit(context.Background(), req)
	require.NoError(t, err)
}

func (m *plWorld) wait(t *testing.T, ids ...string) map[string]ports.Result {
	t.Helper()
	out := map[string]ports.Result{}
	for _, id := range ids {
		res, err := m.client.Wait(context.Background(), id)
		require.NoError(t, err, id)
		out[id] = res
	}
	return out
}

// tickets lists the pool's wait tickets.
func (m *plWorld) tickets(t *testing.T) []string {
	t.Helper()
	keys, _, err := m.state.(ports.KeyLister).ListKeys(context.Background(), "pools/"+plPool+"/wait/", "", ports.MaxListKeys)
	require.NoError(t, err)
	return keys
}

// plRecorder records the handler runs of the tests' tasks: when each
// started and ended (on the bubble's clock), how many ran at once.
type plRecorder struct {
	mu               sync.Mutex
	running, maxRuns int
	starts, ends     map[string][]time.Time
	order            []string // task IDs in start order
}

func newPlRecorder() *plRecorder {
	return &plRecorder{starts: map[string][]time.Time{}, ends: map[string][]time.Time{}}
}

// handler returns a handler that runs for d (or until its context ends).
func (r *plRecorder) handler(d time.Duration) core.HandlerFunc {
	return func(ctx context.Context, task *core.Task) (json.RawMessage, error) {
		r.mu.Lock()
		r.running++
		r.maxRuns = max(r.maxRuns, r.running)
		r.starts[task.ID] = append(r.starts[task.ID], time.Now())
		r.order = append(r.order, task.ID)
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			r.running--
			r.ends[task.ID] = append(r.ends[task.ID], time.Now())
			r.mu.Unlock()
		}()
		select {
		case <-time.After(d):
			return json.RawMessage(`"done"`), nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

func (r *plRecorder) start(id string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.starts[id]) == 0 {
		return time.Time{}
	}
	return r.starts[id][0]
}

// plObserver counts the pool events of a worker.
type plObserver struct {
	core.NopWorkerObserver
	waits, acquired, released, lost, postponed, handedBack atomic.Int32
}

func (o *plObserver) MessageHandedBack(bool) { o.handedBack.Add(1) }

func (o *plObserver) PoolWaited(string)                  { o.waits.Add(1) }
func (o *plObserver) PoolAcquired(string, time.Duration) { o.acquired.Add(1) }
func (o *plObserver) PoolReleased(_ string, lost bool) {
	o.released.Add(1)
	if lost {
		o.lost.Add(1)
	}
}
func (o *plObserver) TaskFinished(_ core.TaskInfo, r core.TaskResult) {
	if r.Outcome == core.OutcomePostponed {
		o.postponed.Add(1)
	}
}

// Thirty tasks of a pool of 3 over three workers of 4 slots each: at most
// 3 run at any moment, and 3 do; every task runs once, as attempt 1 (its
// waits cost no attempt); every slot taken is given back.
func TestPoolMemory_LimitAcrossWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newPlWorld(t)
		rec := newPlRecorder()
		reg := core.NewRegistry()
		require.NoError(t, reg.Handle("work", rec.handler(2*time.Second)))
		obs := make([]*plObserver, 3)
		for i := range obs {
			obs[i] = &plObserver{}
			m.worker(reg, fmt.Sprintf("w%d", i), 3, nil, func(o *core.WorkerOptions) {
				o.Concurrency = 4
				o.Observer = obs[i]
			})
		}
		start := time.Now()
		ids := make([]string, 30)
		for i := range ids {
			ids[i] = fmt.Sprintf("t%02d", i)
			m.submit(t, ids[i], "work", core.WithPool(plPool))
		}
		results := m.wait(t, ids...)
		took := time.Since(start)
		synctest.Wait() // slots are freed after the outcomes are recorded

		for _, id := range ids {
			res := results[id]
			require.Equal(t, ports.StateSucceeded, res.State, "%s: %s", id, res.Error)
			assert.Equal(t, 1, res.Attempts, "%s: waiting for a slot costs no attempt", id)
			assert.Len(t, rec.starts[id], 1, "%s ran once", id)
		}
		assert.Equal(t, 3, rec.maxRuns, "at most 3 tasks of the pool ran at once, and 3 did")
		var waits, acquired, released, lost, postponed, handedBack int32
		for _, o := range obs {
			handedBack += o.handedBack.Load()
			waits += o.waits.Load()
			acquired += o.acquired.Load()
			released += o.released.Load()
			lost += o.lost.Load()
			postponed += o.postponed.Load()
		}
		assert.EqualValues(t, 30, acquired)
		assert.EqualValues(t, 30, released)
		assert.Zero(t, lost)
		assert.Positive(t, waits, "27 tasks found the pool full at first")
		assert.Equal(t, waits, postponed, "every wait is a postponed outcome")
		assert.Zero(t, handedBack, "a wait is no hand-back at shutdown")
		// 10 rounds of 2s, each handoff waiting at most a poll.
		assert.Less(t, took, 10*(2*time.Second+plPoll)+plPoll, "took %v", took)
		assert.Empty(t, m.tickets(t), "no wait ticket is left")
		t.Logf("30 tasks, pool of 3, 2s each: %v; %d waits", took, waits)
	})
}

// A task waiting for a slot holds no worker slot: with one slot per worker,
// a task of no pool submitted behind a waiting one runs at once on the
// worker the waiting task was received by.
func TestPoolMemory_WaitingHoldsNoWorkerSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newPlWorld(t)
		rec := newPlRecorder()
		reg := core.NewRegistry()
		require.NoError(t, reg.Handle("long", rec.handler(time.Minute)))
		require.NoError(t, reg.Handle("quick", rec.handler(time.Second)))
		one := func(o *core.WorkerOptions) { o.Concurrency, o.Prefetch = 1, -1 }
		m.worker(reg, "w1", 1, nil, one)
		m.submit(t, "holder", "long", core.WithPool(plPool))
		synctest.Wait()
		require.False(t, rec.start("holder").IsZero(), "the holder runs on w1")

		m.worker(reg, "w2", 1, nil, one) // w1's slot is taken: w2 receives what follows
		m.submit(t, "waiter", "long", core.WithPool(plPool))
		synctest.Wait()
		m.submit(t, "free", "quick")
		t0 := time.Now()
		res := m.wait(t, "free")["free"]
		require.Equal(t, ports.StateSucceeded, res.State)
		assert.Equal(t, time.Second, time.Since(t0), "the task of no pool ran at once on w2, whose slot the waiting task does not hold")
		assert.True(t, rec.start("waiter").IsZero(), "the waiting task has not run")
		assert.Len(t, m.tickets(t), 1, "the waiting task has its ticket")
	})
}

// A slot whose holder died (it never renews, never frees it: a record
// written by hand, as a worker killed with SIGKILL leaves it) is taken by
// a waiting task once its lease ends, within a poll.
func TestPoolMemory_DeadHolderFreesItsSlotWithinItsLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newPlWorld(t)
		rec := newPlRecorder()
		reg := core.NewRegistry()
		require.NoError(t, reg.Handle("work", rec.handler(time.Second)))
		until := time.Now().Add(plLease)
		data, err := json.Marshal(map[string]any{"worker": "dead", "task": "gone", "since": time.Now(), "until": until})
		require.NoError(t, err)
		_, err = m.state.Put(context.Background(), "pools/"+plPool+"/slots/0", data, ports.WriteCondition{MustNotExist: true})
		require.NoError(t, err)

		m.worker(reg, "w1", 1, nil, nil)
		m.submit(t, "t1", "work", core.WithPool(plPool))
		res := m.wait(t, "t1")["t1"]
		require.Equal(t, ports.StateSucceeded, res.State, res.Error)
		started := rec.start("t1")
		assert.False(t, started.Before(until), "not before the dead holder's lease ended")
		assert.LessOrEqual(t, started.Sub(until), plPoll, "within a poll of it")
		assert.Equal(t, 1, res.Attempts)
	})
}

// A waiter that stopped coming (its message held by a dead worker, or
// deleted) holds a freed slot back from newer tasks only for a grace of 2
// polls and a second: its ticket, older than theirs, reserves the slot
// until then, even when the ticket counts longer. Pool of 2: slot 0 is held by a
// running task, slot 1 was just freed, and a ghost's ticket is older than
// the new task's.
func TestPoolMemory_GhostWaiterHoldsASlotBackOnlyForAGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newPlWorld(t)
		rec := newPlRecorder()
		reg := core.NewRegistry()
		require.NoError(t, reg.Handle("work", rec.handler(time.Second)))
		require.NoError(t, reg.Handle("long", rec.handler(time.Minute)))
		m.worker(reg, "w1", 2, nil, nil)
		m.submit(t, "holder", "long", core.WithPool(plPool))
		synctest.Wait()
		require.False(t, rec.start("holder").IsZero())

		ctx := context.Background()
		grace := 2*plPoll + time.Second
		freed := time.Now()
		for i := range 2 { // whichever slot the holder did not take
			key := fmt.Sprintf("pools/%s/slots/%d", plPool, i)
			if r, err := m.state.Get(ctx, key); err == nil && strings.Contains(string(r.Data), "holder") {
				continue
			}
			data, err := json.Marshal(map[string]any{"freed": freed})
			require.NoError(t, err)
			_, err = m.state.Put(ctx, key, data, ports.WriteCondition{})
			require.NoError(t, err)
		}
		// The ghost's last re-check delay was 10 polls: its ticket counts
		// until 10 polls and the grace from now.
		ghost := fmt.Sprintf("pools/%s/wait/%020d.ghost.%d", plPool, freed.Add(-time.Minute).UnixNano(),
			freed.Add(10*plPoll+grace).UnixMilli())
		_, err := m.state.Put(ctx, ghost, nil, ports.WriteCondition{})
		require.NoError(t, err)

		m.submit(t, "t1", "work", core.WithPool(plPool))
		res := m.wait(t, "t1")["t1"]
		require.Equal(t, ports.StateSucceeded, res.State, res.Error)
		started := rec.start("t1")
		assert.False(t, started.Before(freed.Add(grace)), "the slot is left to the older waiter for the grace (started %v after)", started.Sub(freed))
		assert.LessOrEqual(t, started.Sub(freed), grace+plPoll, "then taken by the next task within a poll")
	})
}

// plFlakyState fails every Put while failing is set: a worker whose store
// becomes unreachable (or that is stopped in a debugger) cannot renew.
type plFlakyState struct {
	ports.StateStore
	failing atomic.Bool
}

func (s *plFlakyState) Put(ctx context.Context, key string, data []byte, cond ports.WriteCondition) (string, error) {
	if s.failing.Load() {
		return "", fmt.Errorf("flaky: %w", ports.ErrUnavailable)
	}
	return s.StateStore.Put(ctx, key, data, cond)
}

func (s *plFlakyState) ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, bool, error) {
	return s.StateStore.(ports.KeyLister).ListKeys(ctx, prefix, after, limit)
}

// A holder that cannot renew its slot cancels its own handler (cause
// ErrPoolSlotLost) when the slot's lease ends — no later than a waiting
// task on another worker takes the slot — and its attempt fails with a
// result that says why.
func TestPoolMemory_UnrenewableSlotCancelsItsHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newPlWorld(t)
		rec := newPlRecorder()
		reg := core.NewRegistry()
		require.NoError(t, reg.Handle("long", rec.handler(time.Hour)))
		require.NoError(t, reg.Handle("work", rec.handler(time.Second)))
		flaky := &plFlakyState{StateStore: m.tr.StateStore()}
		obs := &plObserver{}
		m.worker(reg, "w1", 1, flaky, func(o *core.WorkerOptions) { o.Concurrency, o.Prefetch, o.Observer = 1, -1, obs })
		m.submit(t, "holder", "long", core.WithPool(plPool), core.WithRetry(core.RetryPolicy{MaxAttempts: 1}))
		synctest.Wait()
		acquired := rec.start("holder")
		require.False(t, acquired.IsZero())
		flaky.failing.Store(true)

		m.worker(reg, "w2", 1, nil, nil)
		m.submit(t, "next", "work", core.WithPool(plPool))
		res := m.wait(t, "holder", "next")
		synctest.Wait()
		require.Equal(t, ports.StateFailed, res["holder"].State)
		assert.Contains(t, res["holder"].Error, "pool slot lost")
		holderEnd := rec.ends["holder"][0]
		assert.Equal(t, acquired.Add(plLease), holderEnd, "the holder stopped when the slot's lease ended")
		require.Equal(t, ports.StateSucceeded, res["next"].State)
		assert.False(t, rec.start("next").Before(holderEnd), "the next task started once the holder had stopped")
		assert.EqualValues(t, 1, obs.lost.Load())
	})
}

// No starvation: a task that waits first is not passed by a stream of
// newer tasks. A pool of 1 is held; task "old" arrives and waits; then a
// new task arrives every 300ms, each finding the pool busy. "old" runs next
// once the holder ends, and the rest run in the order they arrived.
func TestPoolMemory_OldestWaiterIsNotOvertaken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newPlWorld(t)
		rec := newPlRecorder()
		reg := core.NewRegistry()
		require.NoError(t, reg.Handle("hold", rec.handler(5*time.Second)))
		require.NoError(t, reg.Handle("work", rec.handler(700*time.Millisecond)))
		for i := range 2 {
			m.worker(reg, fmt.Sprintf("w%d", i), 1, nil, func(o *core.WorkerOptions) { o.Concurrency = 8 })
		}
		m.submit(t, "holder", "hold", core.WithPool(plPool))
		synctest.Wait()
		time.Sleep(100 * time.Millisecond)
		m.submit(t, "old", "work", core.WithPool(plPool))
		ids := []string{"holder", "old"}
		for i := range 30 {
			time.Sleep(300 * time.Millisecond)
			id := fmt.Sprintf("new%02d", i)
			m.submit(t, id, "work", core.WithPool(plPool))
			ids = append(ids, id)
		}
		res := m.wait(t, ids...)
		for _, id := range ids {
			require.Equal(t, ports.StateSucceeded, res[id].State, id)
		}
		assert.Equal(t, 1, rec.maxRuns)
		require.GreaterOrEqual(t, len(rec.order), 2)
		assert.Equal(t, "old", rec.order[1], "the oldest waiter runs first once the holder is done (start order %v)", rec.order)
		assert.Equal(t, ids, rec.order, "waiters run in the order they arrived")
	})
}

// A waiting task can be cancelled: it never runs, its result is
// cancelled, and its wait ticket is gone.
func TestPoolMemory_CancelWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newPlWorld(t)
		rec := newPlRecorder()
		reg := core.NewRegistry()
		require.NoError(t, reg.Handle("long", rec.handler(time.Minute)))
		m.worker(reg, "w1", 1, nil, nil)
		m.submit(t, "holder", "long", core.WithPool(plPool))
		synctest.Wait()
		m.submit(t, "waiter", "long", core.WithPool(plPool))
		time.Sleep(5 * time.Second)
		synctest.Wait()
		require.Len(t, m.tickets(t), 1)
		require.NoError(t, m.client.Cancel(context.Background(), "waiter"))
		t0 := time.Now()
		res := m.wait(t, "waiter")["waiter"]
		assert.Equal(t, ports.StateCancelled, res.State)
		assert.LessOrEqual(t, time.Since(t0), 4*plPoll, "cancelled at its next re-check")
		assert.True(t, rec.start("waiter").IsZero(), "it never ran")
		synctest.Wait()
		assert.Empty(t, m.tickets(t), "its ticket is deleted")
	})
}

// A waiting task whose deadline passes fails "deadline exceeded before
// start", at its deadline: its re-check delay never passes it.
func TestPoolMemory_DeadlineWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newPlWorld(t)
		rec := newPlRecorder()
		reg := core.NewRegistry()
		require.NoError(t, reg.Handle("long", rec.handler(time.Minute)))
		m.worker(reg, "w1", 1, nil, func(o *core.WorkerOptions) { o.Pools.Poll = 20 * time.Second })
		m.submit(t, "holder", "long", core.WithPool(plPool))
		synctest.Wait()
		deadline := time.Now().Add(2500 * time.Millisecond)
		m.submit(t, "late", "long", core.WithPool(plPool), core.WithDeadline(deadline))
		res := m.wait(t, "late")["late"]
		assert.Equal(t, ports.StateFailed, res.State)
		assert.Equal(t, "deadline exceeded before start", res.Error)
		assert.WithinDuration(t, deadline, res.FinishedAt, 10*time.Millisecond)
		assert.True(t, rec.start("late").IsZero())
	})
}

// A task whose pool the worker has no limit for fails, and says what to
// configure; it is not run unlimited.
func TestPoolMemory_UnconfiguredPoolFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newPlWorld(t)
		rec := newPlRecorder()
		reg := core.NewRegistry()
		require.NoError(t, reg.Handle("work", rec.handler(time.Second)))
		m.worker(reg, "w1", 1, nil, nil) // pool db only
		m.submit(t, "t1", "work", core.WithPool("gpu"))
		res := m.wait(t, "t1")["t1"]
		assert.Equal(t, ports.StateFailed, res.State)
		assert.Equal(t, `pool "gpu" is not configured on worker w1: add pools: {gpu: N} to its configuration `+
			`(WorkerOptions.Pools.Limits) with the limit every worker uses`, res.Error)
		assert.True(t, rec.start("t1").IsZero())
	})
}

// plCountingState counts the StateStore requests of the pool.
type plCountingState struct {
	ports.StateStore
	mu     sync.Mutex
	counts map[string]int
}

func (s *plCountingState) add(op string) {
	s.mu.Lock()
	s.counts[op]++
	s.mu.Unlock()
}

// take returns the counts so far and starts again from none.
func (s *plCountingState) take() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts
	s.counts = map[string]int{}
	return c
}

func (s *plCountingState) Get(ctx context.Context, key string) (ports.Record, error) {
	s.add("get")
	return s.StateStore.Get(ctx, key)
}

func (s *plCountingState) Put(ctx context.Context, key string, data []byte, cond ports.WriteCondition) (string, error) {
	s.add("put")
	return s.StateStore.Put(ctx, key, data, cond)
}

func (s *plCountingState) Delete(ctx context.Context, key string) error {
	s.add("delete")
	return s.StateStore.Delete(ctx, key)
}

func (s *plCountingState) ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, bool, error) {
	s.add("list")
	return s.StateStore.(ports.KeyLister).ListKeys(ctx, prefix, after, limit)
}

// What a task of a pool with room costs: one listing of the waiters, one
// slot read and one slot write to take it, one write to free it — and one
// renewal per third of the lease it runs.
func TestPoolMemory_RequestsPerTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newPlWorld(t)
		rec := newPlRecorder()
		reg := core.NewRegistry()
		require.NoError(t, reg.Handle("quick", rec.handler(100*time.Millisecond)))
		require.NoError(t, reg.Handle("long", rec.handler(plLease+100*time.Millisecond)))
		st := &plCountingState{StateStore: m.tr.StateStore(), counts: map[string]int{}}
		m.worker(reg, "w1", 10, st, nil)
		const n = 20
		for i := range n {
			id := fmt.Sprintf("q%d", i)
			m.submit(t, id, "quick", core.WithPool(plPool))
			m.wait(t, id)
			synctest.Wait() // its slot is freed after its outcome is recorded
		}
		assert.Equal(t, map[string]int{"list": n, "get": n, "put": 2 * n}, st.take(), "per task: 1 list, 1 get, 2 puts")

		m.submit(t, "l", "long", core.WithPool(plPool))
		m.wait(t, "l")
		synctest.Wait()
		assert.Equal(t, map[string]int{"list": 1, "get": 1, "put": 2 + 3}, st.take(), "a task running one lease renews 3 times")
	})
}

// Worker options of pools are checked at NewWorker, with clear errors.
func TestPoolOptions_Validation(t *testing.T) {
	tr := memory.NewTransport()
	require.NoError(t, tr.CreateQueue(wmQueue, memory.QueueOptions{}))
	base := func() core.WorkerOptions {
		return core.WorkerOptions{
			Ports:    core.Ports{Broker: tr.Broker(wmQueue), Results: tr.ResultBackend(), NoCancel: true, State: tr.StateStore()},
			Registry: core.NewRegistry(),
		}
	}
	for _, tc := range []struct {
		name string
		mod  func(*core.WorkerOptions)
		want string
	}{
		{"limit 0", func(o *core.WorkerOptions) { o.Pools.Limits = map[string]int{"db": 0} },
			`Pools.Limits["db"] is 0; a pool's limit is 1 to 1000 slots`},
		{"limit too large", func(o *core.WorkerOptions) { o.Pools.Limits = map[string]int{"db": 1001} },
			`Pools.Limits["db"] is 1001; a pool's limit is 1 to 1000 slots`},
		{"bad name", func(o *core.WorkerOptions) { o.Pools.Limits = map[string]int{"d b": 3} },
			`Pools.Limits: invalid argument: pool name "d b" has ' ' at byte 1; pool names use only A-Z, a-z, 0-9, '_' and '-'`},
		{"empty name", func(o *core.WorkerOptions) { o.Pools.Limits = map[string]int{"": 3} },
			`pool name "" is 0 bytes; pool names are 1 to 63 bytes`},
		{"no state", func(o *core.WorkerOptions) {
			o.Pools.Limits = map[string]int{"db": 3}
			o.Ports.State = nil
		}, "Pools.Limits are set but Ports.State is nil"},
		{"state without listing", func(o *core.WorkerOptions) {
			o.Pools.Limits = map[string]int{"db": 3}
			o.Ports.State = struct{ ports.StateStore }{tr.StateStore()}
		}, "cannot list keys (ports.KeyLister)"},
		{"negative lease", func(o *core.WorkerOptions) { o.Pools.Lease = -time.Second },
			"Pools.Lease is -1s; it must be 0 (default 30s) or between 10ms and 12h0m0s"},
		{"poll too long", func(o *core.WorkerOptions) { o.Pools.Poll = time.Hour },
			"Pools.Poll is 1h0m0s; it must be 0 (default 1s) or between 1ns and 15m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base()
			tc.mod(&o)
			_, err := core.NewWorker(o)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, errors.Is(err, ports.ErrInvalidArgument))
		})
	}
	o := base()
	o.Pools.Limits = map[string]int{"db": 3, "gpu_2-x": 1000}
	_, err := core.NewWorker(o)
	require.NoError(t, err)

	// A request names a valid pool or is refused at submit.
	c, err := core.NewClient(core.ClientOptions{Ports: core.Ports{Broker: tr.Broker(wmQueue), Results: tr.ResultBackend(), NoCancel: true}})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Submit(context.Background(), core.Request{Task: "t", Pool: strings.Repeat("p", 64)})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	assert.Contains(t, err.Error(), "pool names are 1 to 63 bytes")
}
