package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/testutil"
	"github.com/dagq/dagq/ports"
)

// Long delays (issue 15, part 3): a task due further ahead than one broker
// delay (ports.MaxDelay, 15 minutes) waits in the queue, hop by hop, and
// starts on time; so does a retry whose backoff is longer than one delay.
// All on synctest's fake clock: hours take no time.

// runLog records the runs of the handlers of a test: when each attempt of
// each task started and ended.
type runLog struct {
	mu   sync.Mutex
	runs map[string][]taskRun
}

type taskRun struct {
	attempt    int
	start, end time.Time
}

func newRunLog() *runLog { return &runLog{runs: map[string][]taskRun{}} }

// handler records its runs, fails the attempts listed in fail and sleeps
// for the duration in its arguments (if any).
func (l *runLog) handler(fail ...int) core.HandlerFunc {
	return func(ctx context.Context, task *core.Task) (json.RawMessage, error) {
		start := time.Now()
		var d time.Duration
		if len(task.Args) > 0 && task.Args[0] == '"' {
			var s string
			if err := json.Unmarshal(task.Args, &s); err == nil {
				d, _ = time.ParseDuration(s)
			}
		}
		time.Sleep(d)
		l.mu.Lock()
		l.runs[task.ID] = append(l.runs[task.ID], taskRun{attempt: task.Attempt, start: start, end: time.Now()})
		l.mu.Unlock()
		for _, a := range fail {
			if task.Attempt == a {
				return nil, errors.New("boom")
			}
		}
		return json.RawMessage(`"ok"`), nil
	}
}

func (l *runLog) of(id string) []taskRun {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]taskRun(nil), l.runs[id]...)
}

// delayClient is a client on m's queue; mod adjusts its options.
func delayClient(t *testing.T, m *wmWorld, mod func(*core.ClientOptions)) *core.Client {
	t.Helper()
	opts := core.ClientOptions{
		Ports:  core.Ports{Broker: m.tr.Broker(wmQueue), Results: m.tr.ResultBackend(), Cancels: m.tr.CancelChannel()},
		Logger: testutil.QuietLogger(),
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := core.NewClient(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// awaitResult waits (on the fake clock, in steps of a second) up to within
// for id's result.
func awaitResult(t *testing.T, m *wmWorld, id string, within time.Duration) ports.Result {
	t.Helper()
	end := time.Now().Add(within)
	for {
		r, err := m.results.Get(context.Background(), id)
		if err == nil {
			return r
		}
		require.ErrorIs(t, err, ports.ErrNotFound)
		require.True(t, time.Now().Before(end), "no result for %s within %v", id, within)
		time.Sleep(time.Second)
	}
}

// delayedOutcomes counts the deliveries of id that an observer saw sent on
// (not due yet).
func delayedOutcomes(id string, obs ...*obsRecorder) int {
	n := 0
	for _, o := range obs {
		for _, oc := range o.outcomes(id) {
			if oc == core.OutcomeDelayed {
				n++
			}
		}
	}
	return n
}

// A task delayed by 3 hours (the default cap of 15 minutes per message)
// starts at its due time as attempt 1, after 12 hops of 15 minutes: the
// client's message and 11 sent on by the workers. No worker slot is held
// while it waits: a worker of concurrency 1 runs another task meanwhile, at
// once, and a hop received while that task runs (prefetched) is sent on at
// once rather than waiting for the slot. A worker restart in the middle
// changes nothing.
func TestWorkerMemory_LongDelayHopsUntilDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		runs := newRunLog()
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("job", runs.handler()))
		obs1, obs2 := newObsRecorder(), newObsRecorder()
		start := func(obs *obsRecorder) *wmRunning {
			return m.startWorker(reg, func(o *core.WorkerOptions) { o.Concurrency = 1; o.Observer = obs })
		}
		w1 := start(obs1)
		client := delayClient(t, m, nil)

		t0 := time.Now()
		due := t0.Add(3 * time.Hour)
		_, err := client.Submit(context.Background(), core.Request{ID: "late", Task: "job", Delay: 3 * time.Hour})
		require.NoError(t, err)
		synctest.Wait()
		require.Equal(t, memory.QueueStats{Delayed: 1}, m.stats(), "the task waits in the queue, not in a worker")

		// An hour in, another task runs at once on the only slot, for 30 minutes.
		time.Sleep(time.Hour)
		require.Zero(t, w1.w.InFlight())
		_, err = client.Submit(context.Background(), core.Request{ID: "busy", Task: "job", Args: "30m"})
		require.NoError(t, err)
		time.Sleep(15*time.Minute + time.Second)
		require.Equal(t, memory.QueueStats{InFlight: 1, Delayed: 1}, m.stats(),
			"the hop received at 1h15m was sent on at once, not held behind the running task")
		time.Sleep(25*time.Minute - time.Second)
		require.Len(t, runs.of("busy"), 1)
		require.Equal(t, t0.Add(time.Hour), runs.of("busy")[0].start, "no slot was held by the waiting task")
		require.Equal(t, memory.QueueStats{Delayed: 1}, m.stats())

		// Restart the worker between two hops.
		require.NoError(t, w1.stop())
		start(obs2)

		r := awaitResult(t, m, "late", 2*time.Hour)
		require.Equal(t, ports.StateSucceeded, r.State, r.Error)
		require.Equal(t, 1, r.Attempts)
		got := runs.of("late")
		require.Len(t, got, 1)
		require.Equal(t, 1, got[0].attempt)
		require.False(t, got[0].start.Before(due), "not before its due time")
		require.WithinDuration(t, due, got[0].start, time.Second)
		require.Equal(t, due, got[0].start, "exact on the memory broker")
		require.Equal(t, 11, delayedOutcomes("late", obs1, obs2),
			"the client's message waits 15m, then 11 messages sent on by the workers, 15m each")
		c1, c2 := obs1.counts(), obs2.counts()
		require.Zero(t, c1.requeued+c2.requeued+c1.handedBackNacked+c2.handedBackNacked,
			"a hop is no hand-back at shutdown (its outcome is delayed); attempt 1 shows no receive was counted")
		require.Equal(t, 6, delayedOutcomes("late", obs1), "the first worker sent it on until its restart")
	})
}

// An absolute NotBefore (not on a whole second) is kept exactly, across a
// stretch with no worker at all (a hop comes due while none runs); a task
// cancelled while it waits never runs.
func TestWorkerMemory_NotBeforeAndCancelWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		runs := newRunLog()
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("job", runs.handler()))
		w := m.startWorker(reg, nil)
		client := delayClient(t, m, nil)

		t0 := time.Now()
		due := t0.Add(2*time.Hour + 30*time.Minute + 400*time.Millisecond)
		_, err := client.Submit(context.Background(), core.Request{ID: "abs", Task: "job", NotBefore: due})
		require.NoError(t, err)
		_, err = client.Submit(context.Background(), core.Request{ID: "doomed", Task: "job", Delay: 3 * time.Hour})
		require.NoError(t, err)
		_, err = client.Submit(context.Background(), core.Request{ID: "past", Task: "job", NotBefore: t0.Add(-time.Hour)})
		require.NoError(t, err)
		require.Equal(t, t0, awaitResult(t, m, "past", time.Second).StartedAt, "a due time past runs at once")

		time.Sleep(time.Hour)
		require.NoError(t, client.Cancel(context.Background(), "doomed"))
		r := awaitResult(t, m, "doomed", 16*time.Minute)
		require.Equal(t, ports.StateCancelled, r.State, "found at its next hop")
		require.Zero(t, r.Attempts)
		require.Empty(t, runs.of("doomed"), "never ran")

		// No worker from 1h40m to 2h10m: the hop due at 1h45m waits for one.
		time.Sleep(40 * time.Minute)
		require.NoError(t, w.stop())
		time.Sleep(30 * time.Minute)
		m.startWorker(reg, nil)

		r = awaitResult(t, m, "abs", time.Hour)
		require.Equal(t, ports.StateSucceeded, r.State, r.Error)
		require.Equal(t, 1, r.Attempts)
		got := runs.of("abs")
		require.Len(t, got, 1)
		require.Equal(t, due, got[0].start, "started at its due time, to the millisecond")
	})
}

// A retry backoff of 2 hours (a step's policy) is waited for in the queue:
// the second attempt starts 2 hours after the first failed, counted as
// attempt 2, whatever the hops; with signing and a claim check the message
// keeps verifying, and the claim-check object lives until the final ack.
func TestWorkerMemory_LongRetryBackoff(t *testing.T) {
	for _, variant := range []string{"plain", "signed claim check"} {
		t.Run(variant, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testLongRetryBackoff(t, variant != "plain") })
		})
	}
}

func testLongRetryBackoff(t *testing.T, signedClaimCheck bool) {
	m := newWmWorld(t)
	runs := newRunLog()
	reg := core.NewRegistry()
	require.NoError(t, reg.HandleFunc("flaky", runs.handler(1)))
	require.NoError(t, reg.HandleFunc("job", runs.handler()))
	store := &keyStore{PayloadStore: m.tr.PayloadStore()}
	obs := newObsRecorder()
	m.startWorker(reg, func(o *core.WorkerOptions) {
		o.Observer = obs
		if signedClaimCheck {
			o.Ports.Payloads = m.tr.PayloadStore()
			o.Ports.Verifier = mustVerifier(t, core.VerifierOptions{Keys: map[string][]byte{"k1": sigKey1}})
		}
	})
	client := delayClient(t, m, func(o *core.ClientOptions) {
		if signedClaimCheck {
			o.Ports.Payloads, o.Ports.PayloadThreshold = store, 1024
			o.Ports.Signer = mustSigner(t, "k1", sigKey1)
		}
	})
	args := any(nil)
	if signedClaimCheck {
		args = strings.Repeat("x", 4096) // above the threshold: a claim check
	}
	policy := core.RetryPolicy{MaxAttempts: 3, InitialBackoff: 2 * time.Hour}
	_, err := client.Submit(context.Background(), core.Request{ID: "flaky", Task: "flaky", Args: args, Retry: &policy})
	require.NoError(t, err)
	// The same for a delayed task, in the same queue.
	_, err = client.Submit(context.Background(), core.Request{ID: "late", Task: "job", Args: args, Delay: 20 * time.Minute})
	require.NoError(t, err)
	var key string
	if signedClaimCheck {
		store.mu.Lock()
		require.Len(t, store.keys, 2)
		store.mu.Unlock()
		key = store.keys[0]
	}

	time.Sleep(time.Hour)
	if signedClaimCheck {
		_, err := store.Get(context.Background(), key)
		require.NoError(t, err, "the claim-check object is kept while the retry waits")
	}
	r := awaitResult(t, m, "flaky", 2*time.Hour)
	require.Equal(t, ports.StateSucceeded, r.State, r.Error)
	require.Equal(t, 2, r.Attempts, "the hops were no attempts")
	got := runs.of("flaky")
	require.Len(t, got, 2)
	require.Equal(t, []int{1, 2}, []int{got[0].attempt, got[1].attempt})
	require.Equal(t, 2*time.Hour, got[1].start.Sub(got[0].end), "the second attempt starts 2h after the first failed")
	require.Equal(t, 7, delayedOutcomes("flaky", obs), "the retry waits 15m in the message sent on, then 7 more")
	require.Equal(t, []core.TaskOutcome{core.OutcomeRetried}, obs.outcomes("flaky")[:1])

	lr := awaitResult(t, m, "late", time.Second)
	require.Equal(t, ports.StateSucceeded, lr.State, lr.Error)
	require.Equal(t, 1, lr.Attempts)
	c := obs.counts()
	require.Zero(t, c.rejected, "every hop verified")
	if signedClaimCheck {
		synctest.Wait()
		for _, k := range store.keys {
			_, err := store.Get(context.Background(), k)
			require.ErrorIs(t, err, ports.ErrNotFound, "the claim-check object is deleted after the final ack")
		}
	}
}

// With the cap lowered (ClientOptions.MaxDelay, WorkerOptions.MaxDelay:
// what the emulator tests use), a 20.6 s delay is a message delayed 8 s,
// one sent on for 8 s, one for the 4 whole seconds left, and the last 0.6 s
// waited for in the worker: the task starts on time.
func TestWorkerMemory_LoweredCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		runs := newRunLog()
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("job", runs.handler()))
		require.NoError(t, reg.HandleFunc("flaky", runs.handler(1)))
		obs := newObsRecorder()
		m.startWorker(reg, func(o *core.WorkerOptions) { o.MaxDelay = 8 * time.Second; o.Observer = obs })
		client := delayClient(t, m, func(o *core.ClientOptions) { o.MaxDelay = 8 * time.Second })

		t0 := time.Now()
		_, err := client.Submit(context.Background(), core.Request{ID: "t", Task: "job", Delay: 20*time.Second + 600*time.Millisecond})
		require.NoError(t, err)
		policy := core.RetryPolicy{MaxAttempts: 2, InitialBackoff: 20 * time.Second}
		_, err = client.Submit(context.Background(), core.Request{ID: "r", Task: "flaky", Retry: &policy})
		require.NoError(t, err)

		// A delay within the cap that is not whole seconds is carried as a
		// due time too: sent at once, waited for by the worker.
		_, err = client.Submit(context.Background(), core.Request{ID: "short", Task: "job", Delay: 2500 * time.Millisecond})
		require.NoError(t, err)
		r := awaitResult(t, m, "short", time.Minute)
		require.Equal(t, t0.Add(2500*time.Millisecond), runs.of("short")[0].start)
		require.Zero(t, delayedOutcomes("short", obs))

		r = awaitResult(t, m, "t", time.Minute)
		require.Equal(t, 1, r.Attempts)
		require.Equal(t, t0.Add(20*time.Second+600*time.Millisecond), runs.of("t")[0].start)
		require.Equal(t, 2, delayedOutcomes("t", obs), "two messages sent on (8 s, then 4 s)")

		r = awaitResult(t, m, "r", time.Minute)
		require.Equal(t, 2, r.Attempts)
		got := runs.of("r")
		require.Equal(t, 20*time.Second, got[1].start.Sub(got[0].end))
		require.Equal(t, 2, delayedOutcomes("r", obs), "sent on for 8 s, then 8 s and 4 s")
	})
}

// A FIFO queue refuses per-message delays: a task delayed by a second or
// more is refused at Submit (nothing sent); one due within the second is
// sent at once and waited for by the worker. A long retry backoff there is
// a Nack, as before (no requeue on FIFO queues).
func TestWorkerMemory_DelaysOnFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := memory.NewTransport()
		const q = "tasks.fifo"
		require.NoError(t, tr.CreateQueue(q, memory.QueueOptions{FIFO: true}))
		m := &wmWorld{t: t, tr: tr, producer: tr.Broker(q), results: tr.ResultBackend(), cancels: tr.CancelChannel()}
		runs := newRunLog()
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("job", runs.handler()))
		require.NoError(t, reg.HandleFunc("flaky", runs.handler(1)))
		obs := newObsRecorder()
		w, err := core.NewWorker(core.WorkerOptions{
			Ports:    core.Ports{Broker: tr.Broker(q), Results: tr.ResultBackend(), NoCancel: true},
			Registry: reg, Logger: testutil.QuietLogger(), Observer: obs,
		})
		require.NoError(t, err)
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		defer func() { stop(); require.NoError(t, <-done) }()
		client, err := core.NewClient(core.ClientOptions{
			Ports:  core.Ports{Broker: tr.Broker(q), Results: tr.ResultBackend(), NoCancel: true},
			Logger: testutil.QuietLogger(),
		})
		require.NoError(t, err)
		defer client.Close()

		for _, req := range []core.Request{
			{Task: "job", Delay: time.Hour},
			{Task: "job", NotBefore: time.Now().Add(2 * time.Second)},
		} {
			_, err := client.Submit(context.Background(), req)
			require.ErrorIs(t, err, ports.ErrInvalidArgument)
			require.ErrorContains(t, err, "FIFO queues refuse")
		}
		t0 := time.Now()
		_, err = client.Submit(context.Background(), core.Request{ID: "soon", Task: "job", NotBefore: t0.Add(700 * time.Millisecond)})
		require.NoError(t, err)
		policy := core.RetryPolicy{MaxAttempts: 2, InitialBackoff: 2 * time.Hour}
		_, err = client.Submit(context.Background(), core.Request{ID: "r", Task: "flaky", Retry: &policy})
		require.NoError(t, err)

		r := awaitResult(t, m, "soon", time.Minute)
		require.Equal(t, ports.StateSucceeded, r.State, r.Error)
		require.Equal(t, t0.Add(700*time.Millisecond), runs.of("soon")[0].start)
		r = awaitResult(t, m, "r", 3*time.Hour)
		require.Equal(t, 2, r.Attempts)
		got := runs.of("r")
		require.Equal(t, 2*time.Hour, got[1].start.Sub(got[0].end))
		require.Zero(t, delayedOutcomes("r", obs), "a Nack of 2h: FIFO queues cannot requeue")
	})
}

// The cap options are checked.
func TestDelayOptionsValidation(t *testing.T) {
	tr := memory.NewTransport()
	require.NoError(t, tr.CreateQueue(wmQueue, memory.QueueOptions{}))
	p := core.Ports{Broker: tr.Broker(wmQueue), Results: tr.ResultBackend(), NoCancel: true}
	for _, d := range []time.Duration{-time.Second, 500 * time.Millisecond, ports.MaxDelay + time.Second} {
		_, err := core.NewClient(core.ClientOptions{Ports: p, MaxDelay: d})
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
		require.ErrorContains(t, err, "MaxDelay is "+d.String()+"; it must be 0 (default 15m0s) or between 1s and 15m0s")
		_, err = core.NewWorker(core.WorkerOptions{Ports: p, Registry: core.NewRegistry(), MaxDelay: d})
		require.ErrorContains(t, err, "MaxDelay is "+d.String()+"; it must be 0 (default 15m0s) or between 1s and 15m0s")
	}
	// A retry backoff may exceed 12h now (up to MaxTaskDelay).
	require.NoError(t, core.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Hour, MaxBackoff: 48 * time.Hour}.Validate())
	require.ErrorContains(t, core.RetryPolicy{MaxAttempts: 2, MaxBackoff: core.MaxTaskDelay + 1}.Validate(), "max_backoff")
	rp := core.RetryPolicy{MaxAttempts: 3, InitialBackoff: 24 * time.Hour, MaxBackoff: 36 * time.Hour, Multiplier: 2}
	require.Equal(t, 24*time.Hour, rp.Backoff(1))
	require.Equal(t, 36*time.Hour, rp.Backoff(2), "capped at MaxBackoff, beyond 12h")
	rp.MaxBackoff = 0
	require.Equal(t, 12*time.Hour, rp.Backoff(1), "no MaxBackoff: a cap of 12h, as before")
}

// A task not due that arrives in a batch behind a prefetched task (which
// waits for the only slot, held by a long task) is sent on at once, not
// held with the batch until the slot frees.
func TestWorkerMemory_NotDueIsNotHeldBehindPrefetched(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		runs := newRunLog()
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("job", runs.handler()))
		obs := newObsRecorder()
		m.startWorker(reg, func(o *core.WorkerOptions) {
			o.Concurrency, o.Prefetch, o.Observer = 1, 2, obs
			o.MaxExtensions = 1000 // "long" runs 2h: past the default cap (360 × 10s), its lease would run out
		})
		client := delayClient(t, m, nil)

		t0 := time.Now()
		_, err := client.Submit(context.Background(), core.Request{ID: "long", Task: "job", Args: "2h"})
		require.NoError(t, err)
		synctest.Wait()
		// Both become visible at 15m, in one receive: "next" first.
		_, err = client.Submit(context.Background(), core.Request{ID: "next", Task: "job", Delay: 15 * time.Minute})
		require.NoError(t, err)
		_, err = client.Submit(context.Background(), core.Request{ID: "later", Task: "job", Delay: time.Hour})
		require.NoError(t, err)
		time.Sleep(15*time.Minute + time.Second)
		require.Equal(t, memory.QueueStats{InFlight: 2, Delayed: 1}, m.stats(),
			"long runs, next waits for its slot, later was sent on at once")
		require.Equal(t, []core.TaskOutcome{core.OutcomeDelayed}, obs.outcomes("later"))

		awaitResult(t, m, "later", 3*time.Hour)
		require.Equal(t, t0.Add(2*time.Hour), runs.of("later")[0].start, "late: its worker's only slot was busy until 2h")
	})
}
