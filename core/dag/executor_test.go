package dag_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/mock/gomock"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/internal/testutil"
	"github.com/dagq/dagq/ports"
	"github.com/dagq/dagq/ports/portsmock"
)

// The DAG executor over the in-memory adapters and a real Worker, mostly on
// synctest's fake clock.

// exWorld is a memory transport with one running worker, a client and an
// executor.
type exWorld struct {
	*wmWorld
	worker *wmRunning
	client *core.Client
	exec   *dag.Executor
}

type exOpts struct {
	worker func(*core.WorkerOptions)
	client func(*core.ClientOptions)
	queue  *memory.QueueOptions // replaces the default queue
}

func newExWorld(t *testing.T, reg *core.Registry, o exOpts) *exWorld {
	t.Helper()
	tr := memory.NewTransport()
	qo := memory.QueueOptions{}
	if o.queue != nil {
		qo = *o.queue
	}
	require.NoError(t, tr.CreateQueue(wmQueue, qo))
	m := &wmWorld{t: t, tr: tr, results: tr.ResultBackend(), cancels: tr.CancelChannel()}
	x := &exWorld{wmWorld: m}
	x.worker = m.startWorker(reg, func(wo *core.WorkerOptions) {
		wo.Concurrency = 16
		if o.worker != nil {
			o.worker(wo)
		}
	})
	copts := core.ClientOptions{
		Ports: core.Ports{
			Broker:      tr.Broker(wmQueue),
			Results:     tr.ResultBackend(),
			Cancels:     tr.CancelChannel(),
			Completions: tr.CompletionBus(),
		},
		Logger: testutil.QuietLogger(),
	}
	if o.client != nil {
		o.client(&copts)
	}
	c, err := core.NewClient(copts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	x.client = c
	x.exec, err = dag.NewExecutor(c, dag.ExecutorOptions{Logger: testutil.QuietLogger()})
	require.NoError(t, err)
	return x
}

// requireNoWaiters asserts that the client holds no waiter and no Watch.
func (x *exWorld) requireNoWaiters(t *testing.T) {
	t.Helper()
	st := x.client.Stats()
	entries, scheduled, watches := st.Tracked, st.ScheduledReads, st.Watches
	assert.Zero(t, entries, "client wait entries left")
	assert.Zero(t, scheduled, "scheduled Results reads left")
	assert.Zero(t, watches, "open watches left")
}

// eventLog records a run's events.
type eventLog struct {
	mu  sync.Mutex
	evs []dag.Event
}

func (l *eventLog) add(ev dag.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
}

func (l *eventLog) all() []dag.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]dag.Event(nil), l.evs...)
}

// of returns the step's events as "type" or "type/attempt" strings.
func (l *eventLog) of(step string) []string {
	var out []string
	for _, ev := range l.all() {
		if ev.Step == step {
			out = append(out, strings.TrimPrefix(string(ev.Type), "step_"))
		}
	}
	return out
}

var stepEventOrder = regexp.MustCompile(`^(skipped|failed|queued( started| retried)* (succeeded|failed|cancelled|skipped))$`)

// requireEventOrder checks the order rules of events: run_started first,
// run_finished last, each step's events in lifecycle order with growing
// attempts, one RunID, times not going backwards.
func requireEventOrder(t *testing.T, evs []dag.Event, job dag.Job) {
	t.Helper()
	require.NotEmpty(t, evs)
	require.Equal(t, dag.EventRunStarted, evs[0].Type)
	require.Equal(t, dag.EventRunFinished, evs[len(evs)-1].Type)
	seqs := map[string][]string{}
	reused := map[string]bool{} // steps taken from stored results (RunOptions.Reuse)
	lastStart := map[string]int{}
	for i, ev := range evs {
		require.Equal(t, evs[0].RunID, ev.RunID)
		if i > 0 {
			require.False(t, ev.Time.Before(evs[i-1].Time), "event times go forward")
		}
		if ev.Step == "" {
			if i != 0 && i != len(evs)-1 {
				t.Fatalf("run event %s in the middle", ev.Type)
			}
			continue
		}
		seqs[ev.Step] = append(seqs[ev.Step], strings.TrimPrefix(string(ev.Type), "step_"))
		if ev.Type == dag.EventStepStarted {
			require.Greater(t, ev.Attempt, lastStart[ev.Step], "step %s started attempts grow", ev.Step)
			lastStart[ev.Step] = ev.Attempt
		}
		switch {
		case ev.ReusedFrom != "":
			require.Equal(t, dag.EventStepSucceeded, ev.Type, "only step_succeeded marks a reused step")
			require.Equal(t, dag.StepTaskID(ev.ReusedFrom, ev.Step), ev.TaskID, "a reused step's task is its run's")
			reused[ev.Step] = true
		case ev.Type != dag.EventStepSkipped && ev.Type != dag.EventStepFailed:
			require.Equal(t, dag.StepTaskID(ev.RunID, ev.Step), ev.TaskID)
		}
	}
	for _, s := range job.Steps {
		seq := strings.Join(seqs[s.Name], " ")
		if reused[s.Name] {
			require.Equal(t, "succeeded", seq, "a reused step has one event: step_succeeded")
			continue
		}
		require.Regexp(t, stepEventOrder, seq, "events of step %s", s.Name)
	}
}

// ---- serial, diamond, wide -------------------------------------------------

var exAppend = core.NewTaskType[string, string]("append")

// registerAppend registers "append": its output is its upstreams' outputs
// (in name order) joined with its own argument.
func registerAppend(reg *core.Registry) {
	exAppend.MustRegister(reg, func(ctx context.Context, name string) (string, error) {
		t, ok := core.TaskFromContext(ctx)
		if !ok {
			return "", errors.New("no task")
		}
		var parts []string
		for up := range t.Inputs {
			v, err := core.Input[string](ctx, up)
			if err != nil {
				return "", err
			}
			parts = append(parts, v)
		}
		if len(parts) > 1 {
			return "", fmt.Errorf("append takes one upstream, got %d", len(parts))
		}
		return strings.Join(append(parts, name), ","), nil
	})
}

func arg(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestExecutor_SerialChain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		registerAppend(reg)
		x := newExWorld(t, reg, exOpts{})
		job := dag.Job{Name: "chain", Steps: []dag.Step{
			{Name: "c", Task: "append", Args: arg("c"), Upstream: []string{"b"}},
			{Name: "a", Task: "append", Args: arg("a")},
			{Name: "b", Task: "append", Args: arg("b"), Upstream: []string{"a"}},
		}}
		var log eventLog
		res, err := x.exec.Run(context.Background(), job, dag.RunOptions{RunID: "r1", OnEvent: log.add})
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, res.State)
		require.NoError(t, res.Err())
		assert.Equal(t, "r1", res.RunID)
		assert.Equal(t, "chain", res.Job)
		var names []string
		for _, s := range res.Steps {
			names = append(names, s.Name)
			assert.Equal(t, dag.StepSucceeded, s.State, s.Name)
			assert.Equal(t, "r1."+s.Name, s.TaskID)
			assert.Equal(t, 1, s.Attempts)
			assert.False(t, s.StartedAt.IsZero())
			assert.False(t, s.FinishedAt.Before(s.StartedAt))
		}
		assert.Equal(t, []string{"c", "a", "b"}, names, "declaration order")
		c, ok := res.Step("c")
		require.True(t, ok)
		assert.JSONEq(t, `"a,b,c"`, string(c.Output))
		_, ok = res.Step("nope")
		assert.False(t, ok)

		evs := log.all()
		requireEventOrder(t, evs, job)
		for _, s := range []string{"a", "b", "c"} {
			assert.Equal(t, []string{"queued", "started", "succeeded"}, log.of(s), s)
		}
		// Serial: b is queued only after a succeeded, c after b.
		pos := map[string]int{}
		for i, ev := range evs {
			pos[string(ev.Type)+":"+ev.Step] = i
		}
		assert.Less(t, pos["step_succeeded:a"], pos["step_queued:b"])
		assert.Less(t, pos["step_succeeded:b"], pos["step_queued:c"])
		x.requireNoWaiters(t)
	})
}

var (
	exNum = core.NewTaskType[int, int]("num")
	exMul = core.NewTaskType[int, int]("mul") // upstream "a" times the arg
	exAdd = core.NewTaskType[int, int]("add") // upstream "a" plus the arg
	exSum = core.NewTaskType[struct{}, int]("sum")
)

func TestExecutor_DiamondDataFlows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		var running, peak atomic.Int32
		busy := func() func() {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(time.Second)
			return func() { running.Add(-1) }
		}
		exNum.MustRegister(reg, func(ctx context.Context, n int) (int, error) { defer busy()(); return n, nil })
		exMul.MustRegister(reg, func(ctx context.Context, n int) (int, error) {
			defer busy()()
			a, err := core.Input[int](ctx, "a")
			return a * n, err
		})
		exAdd.MustRegister(reg, func(ctx context.Context, n int) (int, error) {
			defer busy()()
			a, err := core.Input[int](ctx, "a")
			return a + n, err
		})
		exSum.MustRegister(reg, func(ctx context.Context, _ struct{}) (int, error) {
			defer busy()()
			b, err := core.Input[int](ctx, "b")
			if err != nil {
				return 0, err
			}
			c, err := core.Input[int](ctx, "c")
			return b + c, err
		})
		x := newExWorld(t, reg, exOpts{})
		job := dag.Job{Name: "diamond", Steps: []dag.Step{
			{Name: "a", Task: "num", Args: arg(2)},
			{Name: "b", Task: "mul", Args: arg(10), Upstream: []string{"a"}},
			{Name: "c", Task: "add", Args: arg(1), Upstream: []string{"a"}},
			{Name: "d", Task: "sum", Upstream: []string{"b", "c"}},
		}}
		start := time.Now()
		res, err := x.exec.Run(context.Background(), job, dag.RunOptions{})
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, res.State, "%+v", res)
		assert.Len(t, res.RunID, 32, "a generated run ID")
		want := map[string]string{"a": "2", "b": "20", "c": "3", "d": "23"}
		for _, s := range res.Steps {
			assert.JSONEq(t, want[s.Name], string(s.Output), s.Name)
		}
		assert.Equal(t, int32(2), peak.Load(), "b and c ran in parallel")
		assert.Equal(t, 3*time.Second, time.Since(start).Round(time.Second), "three levels of one second")
		x.requireNoWaiters(t)
	})
}

func TestExecutor_WideParallel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const width = 150
		reg := core.NewRegistry()
		exNum.MustRegister(reg, func(ctx context.Context, n int) (int, error) {
			time.Sleep(time.Second)
			return n, nil
		})
		exSum.MustRegister(reg, func(ctx context.Context, _ struct{}) (int, error) {
			t, _ := core.TaskFromContext(ctx)
			total := 0
			for name := range t.Inputs {
				n, err := core.Input[int](ctx, name)
				if err != nil {
					return 0, err
				}
				total += n
			}
			return total, nil
		})
		x := newExWorld(t, reg, exOpts{worker: func(o *core.WorkerOptions) { o.Concurrency = 200 }})
		job := dag.Job{Name: "wide"}
		var ups []string
		want := 0
		for i := range width {
			name := fmt.Sprintf("n%03d", i)
			job.Steps = append(job.Steps, dag.Step{Name: name, Task: "num", Args: arg(i)})
			ups = append(ups, name)
			want += i
		}
		job.Steps = append(job.Steps, dag.Step{Name: "total", Task: "sum", Upstream: ups})
		var log eventLog
		start := time.Now()
		res, err := x.exec.Run(context.Background(), job, dag.RunOptions{OnEvent: log.add})
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, res.State)
		assert.Equal(t, time.Second, time.Since(start).Round(time.Second), "all %d steps ran at once", width)
		total, _ := res.Step("total")
		assert.JSONEq(t, fmt.Sprint(want), string(total.Output))
		requireEventOrder(t, log.all(), job)
		x.requireNoWaiters(t)
	})
}

// ---- failures, retries, skipping -------------------------------------------

var exFlaky = core.NewTaskType[int, string]("flaky") // fails until attempt n

func registerFlaky(reg *core.Registry) {
	exFlaky.MustRegister(reg, func(ctx context.Context, succeedAt int) (string, error) {
		t, _ := core.TaskFromContext(ctx)
		if succeedAt == 0 || t.Attempt < succeedAt {
			return "", fmt.Errorf("boom on attempt %d", t.Attempt)
		}
		return fmt.Sprintf("ok on attempt %d", t.Attempt), nil
	})
}

func TestExecutor_RetriesThenSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		registerFlaky(reg)
		registerAppend(reg)
		x := newExWorld(t, reg, exOpts{})
		job := dag.Job{Name: "retry", Steps: []dag.Step{
			{Name: "flaky", Task: "flaky", Args: arg(3),
				Retry: &core.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Second}},
			{Name: "after", Task: "append", Args: arg("after"), Upstream: []string{"flaky"}},
		}}
		var log eventLog
		start := time.Now()
		res, err := x.exec.Run(context.Background(), job, dag.RunOptions{OnEvent: log.add})
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, res.State)
		assert.Equal(t, 2*time.Second, time.Since(start), "two backoffs of one second (the step's policy, not the worker's)")
		flaky, _ := res.Step("flaky")
		assert.Equal(t, 3, flaky.Attempts)
		assert.JSONEq(t, `"ok on attempt 3"`, string(flaky.Output))
		after, _ := res.Step("after")
		assert.JSONEq(t, `"ok on attempt 3,after"`, string(after.Output))

		requireEventOrder(t, log.all(), job)
		assert.Equal(t, []string{"queued", "started", "retried", "started", "retried", "started", "succeeded"}, log.of("flaky"))
		var retried []dag.Event
		for _, ev := range log.all() {
			if ev.Type == dag.EventStepRetried {
				retried = append(retried, ev)
			}
		}
		require.Len(t, retried, 2)
		assert.Equal(t, 2, retried[0].Attempt, "the next attempt")
		assert.Equal(t, "boom on attempt 1", retried[0].Error)
		assert.Equal(t, 3, retried[1].Attempt)
		assert.Equal(t, "boom on attempt 2", retried[1].Error)
		x.requireNoWaiters(t)
	})
}

func TestExecutor_FailureSkipsDownstreamOtherBranchCompletes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		registerFlaky(reg)
		registerAppend(reg)
		x := newExWorld(t, reg, exOpts{})
		job := dag.Job{Name: "partial", Steps: []dag.Step{
			{Name: "bad", Task: "flaky", Args: arg(0), Retry: &core.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Second}},
			{Name: "child", Task: "append", Args: arg("child"), Upstream: []string{"bad"}},
			{Name: "grandchild", Task: "append", Args: arg("gc"), Upstream: []string{"child"}},
			{Name: "x", Task: "append", Args: arg("x")},
			{Name: "y", Task: "append", Args: arg("y"), Upstream: []string{"x"}},
		}}
		var log eventLog
		res, err := x.exec.Run(context.Background(), job, dag.RunOptions{RunID: "r2", OnEvent: log.add})
		require.NoError(t, err, "a failed run is not an error of Run")
		require.Equal(t, dag.RunFailed, res.State)

		bad, _ := res.Step("bad")
		assert.Equal(t, dag.StepFailed, bad.State)
		assert.Equal(t, 2, bad.Attempts)
		assert.Equal(t, "boom on attempt 2", bad.Error)
		for _, name := range []string{"child", "grandchild"} {
			s, _ := res.Step(name)
			assert.Equal(t, dag.StepSkipped, s.State, name)
			assert.Equal(t, `upstream "bad" failed`, s.Error, name)
			assert.Empty(t, s.TaskID, "never submitted")
			assert.Equal(t, []string{"skipped"}, log.of(name))
			_, err := x.results.Get(context.Background(), dag.StepTaskID("r2", name))
			assert.ErrorIs(t, err, ports.ErrNotFound, "no task ran for %s", name)
		}
		y, _ := res.Step("y")
		assert.Equal(t, dag.StepSucceeded, y.State)
		assert.JSONEq(t, `"x,y"`, string(y.Output))

		runErr := res.Err()
		require.Error(t, runErr)
		var re *dag.RunError
		require.ErrorAs(t, runErr, &re)
		require.Len(t, re.Steps, 1)
		assert.Contains(t, runErr.Error(), `step "bad" failed: boom on attempt 2`)
		assert.NotErrorIs(t, runErr, core.ErrTaskCanceled)

		evs := log.all()
		requireEventOrder(t, evs, job)
		assert.Contains(t, evs[len(evs)-1].Error, `step "bad" failed`, "run_finished says why")
		x.requireNoWaiters(t)
	})
}

// blocker is a task that blocks until its context is done, recording the
// cause, or until released.
type blocker struct {
	mu      sync.Mutex
	started map[string]chan struct{}
	causes  map[string]error
	release chan struct{}
}

var exBlock = core.NewTaskType[struct{}, string]("block")

func newBlocker(reg *core.Registry, steps ...string) *blocker {
	b := &blocker{started: map[string]chan struct{}{}, causes: map[string]error{}, release: make(chan struct{})}
	for _, s := range steps {
		b.started[s] = make(chan struct{})
	}
	exBlock.MustRegister(reg, func(ctx context.Context, _ struct{}) (string, error) {
		t, _ := core.TaskFromContext(ctx)
		close(b.started[t.StepID])
		select {
		case <-ctx.Done():
			b.mu.Lock()
			b.causes[t.StepID] = context.Cause(ctx)
			b.mu.Unlock()
			return "", ctx.Err()
		case <-b.release:
			return "released", nil
		}
	})
	return b
}

func (b *blocker) waitStarted(steps ...string) {
	for _, s := range steps {
		<-b.started[s]
	}
}

func (b *blocker) cause(step string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.causes[step]
}

func TestExecutor_FailFastCancelsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		b := newBlocker(reg, "slow1", "slow2")
		registerAppend(reg)
		failing := core.NewTaskType[struct{}, string]("fail-when-others-run")
		failing.MustRegister(reg, func(ctx context.Context, _ struct{}) (string, error) {
			b.waitStarted("slow1", "slow2")
			return "", fmt.Errorf("disk full: %w", core.ErrSkipRetry)
		})
		x := newExWorld(t, reg, exOpts{})
		job := dag.Job{Name: "ff", Steps: []dag.Step{
			{Name: "slow1", Task: "block"},
			{Name: "slow2", Task: "block"},
			{Name: "bad", Task: "fail-when-others-run"},
			{Name: "after-slow", Task: "append", Args: arg("z"), Upstream: []string{"slow1"}},
			{Name: "after-bad", Task: "append", Args: arg("z"), Upstream: []string{"bad"}},
		}}
		var log eventLog
		res, err := x.exec.Run(context.Background(), job, dag.RunOptions{FailFast: true, OnEvent: log.add})
		require.NoError(t, err)
		require.Equal(t, dag.RunFailed, res.State)
		bad, _ := res.Step("bad")
		assert.Equal(t, dag.StepFailed, bad.State)
		for _, name := range []string{"slow1", "slow2"} {
			s, _ := res.Step(name)
			assert.Equal(t, dag.StepCancelled, s.State, name)
			assert.Equal(t, "cancelled by request", s.Error)
			assert.ErrorIs(t, b.cause(name), core.ErrTaskCanceled, "the handler of %s saw the cancellation", name)
			assert.Equal(t, []string{"queued", "started", "cancelled"}, log.of(name))
		}
		afterBad, _ := res.Step("after-bad")
		assert.Equal(t, `upstream "bad" failed`, afterBad.Error)
		afterSlow, _ := res.Step("after-slow")
		assert.Equal(t, dag.StepSkipped, afterSlow.State)
		assert.Equal(t, `fail-fast: step "bad" failed`, afterSlow.Error)
		requireEventOrder(t, log.all(), job)
		x.requireNoWaiters(t)
	})
}

func TestExecutor_WithoutFailFastOtherBranchesRunOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		b := newBlocker(reg, "slow")
		registerFlaky(reg)
		x := newExWorld(t, reg, exOpts{})
		job := dag.Job{Name: "noff", Steps: []dag.Step{
			{Name: "slow", Task: "block"},
			{Name: "bad", Task: "flaky", Args: arg(0), Retry: &core.RetryPolicy{MaxAttempts: 1}},
		}}
		var log eventLog
		done := make(chan dag.RunResult)
		go func() {
			res, err := x.exec.Run(context.Background(), job, dag.RunOptions{OnEvent: log.add})
			assert.NoError(t, err)
			done <- res
		}()
		b.waitStarted("slow")
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, []string{"queued", "started", "failed"}, log.of("bad"), "bad failed")
		assert.Equal(t, []string{"queued", "started"}, log.of("slow"), "slow still runs")
		close(b.release)
		res := <-done
		assert.Equal(t, dag.RunFailed, res.State)
		slow, _ := res.Step("slow")
		assert.Equal(t, dag.StepSucceeded, slow.State)
	})
}

// ---- interrupt -------------------------------------------------------------

// recordingCancels is a gomock CancelChannel for the client that records
// every Cancel call and forwards it to the transport's channel, so that
// workers see the requests.
func recordingCancels(t *testing.T, real ports.CancelChannel) (*portsmock.MockCancelChannel, func() [][]string) {
	ctrl := gomock.NewController(t)
	m := portsmock.NewMockCancelChannel(ctrl)
	var mu sync.Mutex
	var calls [][]string
	m.EXPECT().Cancel(gomock.Any(), gomock.Any()).DoAndReturn(func(ctx context.Context, ids ...string) error {
		mu.Lock()
		calls = append(calls, append([]string(nil), ids...))
		mu.Unlock()
		return real.Cancel(ctx, ids...)
	}).AnyTimes()
	return m, func() [][]string {
		mu.Lock()
		defer mu.Unlock()
		return append([][]string(nil), calls...)
	}
}

func TestExecutor_InterruptCancelsInFlightAndLeavesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		b := newBlocker(reg, "p1", "p2", "p3")
		registerAppend(reg)
		var cancelCalls func() [][]string
		x := newExWorld(t, reg, exOpts{client: func(o *core.ClientOptions) {
			o.Ports.Cancels, cancelCalls = recordingCancels(t, o.Ports.Cancels)
		}})
		job := dag.Job{Name: "long", Steps: []dag.Step{
			{Name: "first", Task: "append", Args: arg("first")},
			{Name: "p1", Task: "block", Upstream: []string{"first"}},
			{Name: "p2", Task: "block", Upstream: []string{"first"}},
			{Name: "p3", Task: "block", Upstream: []string{"first"}},
			{Name: "last", Task: "append", Args: arg("last"), Upstream: []string{"p1"}},
			{Name: "other", Task: "append", Args: arg("x"), Upstream: []string{"last"}},
		}}
		ctx, interruptCause := context.WithCancelCause(context.Background())
		stopped := errors.New("stopped by the operator")
		interrupt := func() { interruptCause(stopped) }
		var log eventLog
		var res dag.RunResult
		var runErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			res, runErr = x.exec.Run(ctx, job, dag.RunOptions{RunID: "r3", OnEvent: log.add})
		}()
		b.waitStarted("p1", "p2", "p3")
		synctest.Wait()
		start := time.Now()
		interrupt()
		<-done
		assert.Less(t, time.Since(start), time.Second, "the interrupt is prompt")

		require.ErrorIs(t, runErr, context.Canceled)
		require.ErrorIs(t, runErr, stopped)
		// The context's cause in words, not "context canceled".
		require.EqualError(t, runErr, "dagq: run r3 interrupted: stopped by the operator")
		require.Equal(t, dag.RunCancelled, res.State)
		assert.ErrorIs(t, res.Err(), core.ErrTaskCanceled)
		first, _ := res.Step("first")
		assert.Equal(t, dag.StepSucceeded, first.State)
		for _, name := range []string{"p1", "p2", "p3"} {
			s, _ := res.Step(name)
			assert.Equal(t, dag.StepCancelled, s.State, name)
			assert.ErrorIs(t, b.cause(name), core.ErrTaskCanceled, "the handler of %s stopped on the cancel request", name)
		}
		for _, name := range []string{"last", "other"} {
			s, _ := res.Step(name)
			assert.Equal(t, dag.StepSkipped, s.State, name)
			assert.Equal(t, "run cancelled: stopped by the operator", s.Error, name)
		}
		// One batched cancel request for exactly the in-flight steps.
		assert.Equal(t, [][]string{{"r3.p1", "r3.p2", "r3.p3"}}, cancelCalls())
		requireEventOrder(t, log.all(), job)
		x.requireNoWaiters(t)
		synctest.Wait()
		if !assert.Equal(t, 1, testutil.BubbleGoroutines("dagq/core.(*Client)"), "only the client's inbox dispatcher is left") {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Log(string(buf[:n]))
		}
	})
	goleak.VerifyNone(t)
}

func TestExecutor_InterruptRealClockNoLeak(t *testing.T) {
	reg := core.NewRegistry()
	b := newBlocker(reg, "a", "b")
	x := newExWorld(t, reg, exOpts{})
	job := dag.Job{Name: "long", Steps: []dag.Step{{Name: "a", Task: "block"}, {Name: "b", Task: "block"}}}
	ctx, interrupt := context.WithCancel(context.Background())
	go func() {
		b.waitStarted("a", "b")
		interrupt()
	}()
	res, err := x.exec.Run(ctx, job, dag.RunOptions{})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, dag.RunCancelled, res.State)
	for _, s := range res.Steps {
		assert.Equal(t, dag.StepCancelled, s.State, s.Name)
	}
	x.requireNoWaiters(t)
	require.NoError(t, x.client.Close())
	require.NoError(t, x.worker.stop())
	goleak.VerifyNone(t)
}

func TestExecutor_InterruptWaitIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		started := make(chan struct{})
		stubborn := core.NewTaskType[struct{}, string]("stubborn")
		release := make(chan struct{})
		stubborn.MustRegister(reg, func(ctx context.Context, _ struct{}) (string, error) {
			close(started)
			<-release // ignores its context
			return "late", nil
		})
		x := newExWorld(t, reg, exOpts{})
		ctx, interrupt := context.WithCancel(context.Background())
		go func() {
			<-started
			interrupt()
		}()
		start := time.Now()
		res, err := x.exec.Run(ctx, dag.Job{Name: "j", Steps: []dag.Step{{Name: "s", Task: "stubborn"}}},
			dag.RunOptions{CancelWait: 5 * time.Second})
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 5*time.Second, time.Since(start))
		s, _ := res.Step("s")
		assert.Equal(t, dag.StepCancelled, s.State)
		assert.Contains(t, s.Error, "no final result within 5s")
		x.requireNoWaiters(t)
		close(release)
	})
}

func TestExecutor_ContextDoneBeforeRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		registerAppend(reg)
		x := newExWorld(t, reg, exOpts{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res, err := x.exec.Run(ctx, dag.Job{Name: "j", Steps: []dag.Step{{Name: "a", Task: "append"}}}, dag.RunOptions{})
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, dag.RunCancelled, res.State)
		assert.Equal(t, dag.StepSkipped, res.Steps[0].State)
		s, err := x.tr.Stats(wmQueue)
		require.NoError(t, err)
		assert.Zero(t, s.Visible+s.InFlight+s.Delayed, "nothing was submitted")
	})
}

// ---- data, params, timeouts, options -----------------------------------------

func TestExecutor_ParamsVisibleToEveryStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		show := core.NewTaskType[struct{}, map[string]string]("show")
		show.MustRegister(reg, func(ctx context.Context, _ struct{}) (map[string]string, error) {
			t, _ := core.TaskFromContext(ctx)
			return map[string]string{"date": t.Params["date"], "run": t.RunID, "step": t.StepID}, nil
		})
		x := newExWorld(t, reg, exOpts{})
		params := map[string]string{"date": "2026-01-02"}
		res, err := x.exec.Run(context.Background(), dag.Job{Name: "p", Steps: []dag.Step{
			{Name: "one", Task: "show"}, {Name: "two", Task: "show", Upstream: []string{"one"}},
		}}, dag.RunOptions{RunID: "run-7", Params: params})
		require.NoError(t, err)
		params["date"] = "mutated after Run" // Run copied them
		for _, s := range res.Steps {
			assert.JSONEq(t, fmt.Sprintf(`{"date":"2026-01-02","run":"run-7","step":%q}`, s.Name), string(s.Output))
		}
	})
}

func TestExecutor_StepTimeoutBecomesDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		newBlocker(reg, "slow")
		x := newExWorld(t, reg, exOpts{})
		start := time.Now()
		res, err := x.exec.Run(context.Background(), dag.Job{Name: "t", Steps: []dag.Step{
			{Name: "slow", Task: "block", Timeout: 3 * time.Second},
		}}, dag.RunOptions{})
		require.NoError(t, err)
		assert.Equal(t, 3*time.Second, time.Since(start))
		s, _ := res.Step("slow")
		assert.Equal(t, dag.StepFailed, s.State)
		assert.Contains(t, s.Error, "deadline exceeded")
	})
}

func TestExecutor_PollingClientWithoutCompletions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		registerAppend(reg)
		x := newExWorld(t, reg, exOpts{client: func(o *core.ClientOptions) { o.Ports.Completions = nil }})
		var log eventLog
		res, err := x.exec.Run(context.Background(), dag.Job{Name: "poll", Steps: []dag.Step{
			{Name: "a", Task: "append", Args: arg("a")},
			{Name: "b", Task: "append", Args: arg("b"), Upstream: []string{"a"}},
		}}, dag.RunOptions{OnEvent: log.add})
		require.NoError(t, err)
		b, _ := res.Step("b")
		assert.JSONEq(t, `"a,b"`, string(b.Output))
		// No progress notifications without a bus: started comes with the result.
		assert.Equal(t, []string{"queued", "started", "succeeded"}, log.of("b"))
		x.requireNoWaiters(t)
	})
}

func TestExecutor_OversizedStepFailsOthersInItsBatchRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		echo := core.NewTaskType[string, int]("len")
		echo.MustRegister(reg, func(_ context.Context, s string) (int, error) { return len(s), nil })
		x := newExWorld(t, reg, exOpts{queue: &memory.QueueOptions{MaxBodyBytes: 4096}})
		job := dag.Job{Name: "big"}
		for i := range 8 {
			job.Steps = append(job.Steps, dag.Step{Name: fmt.Sprintf("s%d", i), Task: "len", Args: arg("small")})
		}
		job.Steps[3].Args = arg(strings.Repeat("x", 8000))
		job.Steps = append(job.Steps, dag.Step{Name: "down", Task: "len", Upstream: []string{"s3"}})
		var log eventLog
		res, err := x.exec.Run(context.Background(), job, dag.RunOptions{OnEvent: log.add})
		require.NoError(t, err)
		assert.Equal(t, dag.RunFailed, res.State)
		for _, s := range res.Steps {
			switch s.Name {
			case "s3":
				assert.Equal(t, dag.StepFailed, s.State)
				assert.Contains(t, s.Error, "submit failed")
				assert.Contains(t, s.Error, ports.ErrInvalidArgument.Error())
			case "down":
				assert.Equal(t, dag.StepSkipped, s.State)
			default:
				assert.Equal(t, dag.StepSucceeded, s.State, s.Name)
			}
		}
		assert.Equal(t, []string{"failed"}, log.of("s3"))
		requireEventOrder(t, log.all(), job)
		x.requireNoWaiters(t)
	})
}

// flakyBroker fails the first n Sends with ErrUnavailable.
type flakyBroker struct {
	ports.Broker
	mu    sync.Mutex
	fails int
	sends int
}

func (b *flakyBroker) Send(ctx context.Context, msgs ...ports.Message) error {
	b.mu.Lock()
	b.sends++
	fail := b.fails > 0
	b.fails--
	b.mu.Unlock()
	if fail {
		return fmt.Errorf("flaky: send: %w", ports.ErrUnavailable)
	}
	return b.Broker.Send(ctx, msgs...)
}

func TestExecutor_SubmitFailureIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		registerAppend(reg)
		var fb *flakyBroker
		x := newExWorld(t, reg, exOpts{client: func(o *core.ClientOptions) {
			fb = &flakyBroker{Broker: o.Ports.Broker, fails: 2}
			o.Ports.Broker = fb
		}})
		res, err := x.exec.Run(context.Background(), dag.Job{Name: "j", Steps: []dag.Step{
			{Name: "a", Task: "append", Args: arg("a")},
		}}, dag.RunOptions{})
		require.NoError(t, err)
		assert.Equal(t, dag.RunSucceeded, res.State)
		assert.Equal(t, 3, fb.sends)
	})
}

func TestExecutor_SubmitGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		registerAppend(reg)
		var fb *flakyBroker
		x := newExWorld(t, reg, exOpts{client: func(o *core.ClientOptions) {
			fb = &flakyBroker{Broker: o.Ports.Broker, fails: 1000}
			o.Ports.Broker = fb
		}})
		res, err := x.exec.Run(context.Background(), dag.Job{Name: "j", Steps: []dag.Step{
			{Name: "a", Task: "append", Args: arg("a")},
		}}, dag.RunOptions{RunID: "r9"})
		require.NoError(t, err)
		assert.Equal(t, dag.RunFailed, res.State)
		assert.Contains(t, res.Steps[0].Error, "submit failed after 5 tries")
		assert.Equal(t, 5, fb.sends)
		got, err := x.cancels.Canceled(context.Background(), "r9.a")
		require.NoError(t, err)
		assert.Equal(t, []string{"r9.a"}, got, "a possibly queued task is cancelled")
		x.requireNoWaiters(t)
	})
}

func TestExecutor_ClientClosedMidRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		b := newBlocker(reg, "a")
		x := newExWorld(t, reg, exOpts{})
		go func() {
			b.waitStarted("a")
			_ = x.client.Close()
		}()
		res, err := x.exec.Run(context.Background(), dag.Job{Name: "j", Steps: []dag.Step{
			{Name: "a", Task: "block"}, {Name: "b", Task: "block", Upstream: []string{"a"}},
		}}, dag.RunOptions{})
		require.ErrorIs(t, err, ports.ErrClosed)
		assert.Equal(t, dag.RunFailed, res.State)
		assert.Contains(t, res.Steps[0].Error, "outcome unknown")
		assert.Equal(t, dag.StepSkipped, res.Steps[1].State)
		close(b.release)
	})
}

func TestExecutor_Validation(t *testing.T) {
	reg := core.NewRegistry()
	registerAppend(reg)
	c, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:   portsmock.NewMockBroker(gomock.NewController(t)),
			Results:  portsmock.NewMockResultBackend(gomock.NewController(t)),
			NoCancel: true,
		},
	})
	require.NoError(t, err) // mocks with no expectations: nothing may be sent
	t.Cleanup(func() { _ = c.Close() })
	_, err = dag.NewExecutor(nil, dag.ExecutorOptions{})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	exec, err := dag.NewExecutor(c, dag.ExecutorOptions{})
	require.NoError(t, err)
	ok := dag.Job{Name: "j", Steps: []dag.Step{{Name: "a", Task: "append"}}}

	_, err = exec.Run(context.Background(), dag.Job{Name: "j", Steps: []dag.Step{{Name: "a"}}}, dag.RunOptions{})
	require.ErrorIs(t, err, dag.ErrInvalidJob)
	_, err = exec.Run(context.Background(), ok, dag.RunOptions{RunID: "has space"})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	_, err = exec.Run(context.Background(), ok, dag.RunOptions{RunID: strings.Repeat("r", 127)})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	assert.Contains(t, err.Error(), "the limit is 126")
	_, err = exec.Run(context.Background(), ok, dag.RunOptions{CancelWait: -time.Second})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
}

func TestRunResult_ErrOfSucceededRun(t *testing.T) {
	assert.NoError(t, dag.RunResult{State: dag.RunSucceeded}.Err())
	assert.True(t, dag.StepSkipped.Final())
	assert.False(t, dag.StepRunning.Final())
	assert.True(t, dag.RunCancelled.Final())
	assert.False(t, dag.RunQueued.Final())
	assert.Equal(t, 2*time.Second, dag.StepResult{StartedAt: time.Unix(1, 0), FinishedAt: time.Unix(3, 0)}.Duration())
	assert.Zero(t, dag.StepResult{FinishedAt: time.Unix(3, 0)}.Duration())
}

func TestExecutor_ReadyStepsAreSubmittedInBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		registerAppend(reg)
		var mu sync.Mutex
		var batches [][]string
		x := newExWorld(t, reg, exOpts{client: func(o *core.ClientOptions) {
			real := o.Ports.Broker
			m := portsmock.NewMockBroker(gomock.NewController(t))
			m.EXPECT().Send(gomock.Any(), gomock.Any()).DoAndReturn(func(ctx context.Context, msgs ...ports.Message) error {
				var ids []string
				for _, msg := range msgs {
					ids = append(ids, msg.ID)
					assert.Equal(t, "rb", msg.GroupID, "the run is the FIFO group")
				}
				mu.Lock()
				batches = append(batches, ids)
				mu.Unlock()
				return real.Send(ctx, msgs...)
			}).Times(4)
			m.EXPECT().Close().Return(nil).AnyTimes()
			o.Ports.Broker = m
		}})
		job := dag.Job{Name: "batched"}
		for i := range 25 {
			name := fmt.Sprintf("s%02d", i)
			job.Steps = append(job.Steps, dag.Step{Name: name, Task: "append", Args: arg(name)})
		}
		job.Steps = append(job.Steps, dag.Step{Name: "last", Task: "append", Args: arg("last"), Upstream: []string{"s07"}})
		res, err := x.exec.Run(context.Background(), job, dag.RunOptions{RunID: "rb"})
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, res.State)
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, batches, 4, "25 ready steps in 3 Sends (10, 10, 5), then the downstream step")
		assert.Len(t, batches[0], 10)
		assert.Equal(t, "rb.s00", batches[0][0], "declaration order")
		assert.Len(t, batches[1], 10)
		assert.Len(t, batches[2], 5)
		assert.Equal(t, []string{"rb.last"}, batches[3])
	})
}

func TestExecutor_InterruptReachesStepsOnEveryWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		steps := []string{"p1", "p2", "p3", "p4"}
		b := newBlocker(reg, steps...)
		// No prefetch: the first worker would hold the steps the second
		// should run.
		x := newExWorld(t, reg, exOpts{worker: func(o *core.WorkerOptions) { o.ID, o.Concurrency, o.Prefetch = "w1", 2, -1 }})
		x.startWorker(reg, func(o *core.WorkerOptions) { o.ID, o.Concurrency, o.Prefetch = "w2", 2, -1 })
		job := dag.Job{Name: "spread"}
		for _, s := range steps {
			job.Steps = append(job.Steps, dag.Step{Name: s, Task: "block"})
		}
		ctx, interrupt := context.WithCancel(context.Background())
		go func() {
			b.waitStarted(steps...)
			interrupt()
		}()
		res, err := x.exec.Run(ctx, job, dag.RunOptions{RunID: "rs"})
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, dag.RunCancelled, res.State)
		workers := map[string]bool{}
		for _, s := range steps {
			sr, _ := res.Step(s)
			assert.Equal(t, dag.StepCancelled, sr.State, s)
			assert.ErrorIs(t, b.cause(s), core.ErrTaskCanceled, s)
			stored, err := x.results.Get(context.Background(), sr.TaskID)
			require.NoError(t, err)
			workers[stored.Worker] = true
		}
		assert.Equal(t, map[string]bool{"w1": true, "w2": true}, workers, "both workers ran steps and both got the cancels")
		x.requireNoWaiters(t)
	})
}

// Without a CancelChannel an interrupt cannot stop running steps: the
// executor says so at warning level (not as an error) and reports the steps'
// real outcomes.
func TestExecutor_InterruptWithoutCancellationWaitsForSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		started := make(chan struct{})
		slow := core.NewTaskType[struct{}, string]("slow")
		slow.MustRegister(reg, func(ctx context.Context, _ struct{}) (string, error) {
			close(started)
			time.Sleep(2 * time.Second)
			return "done", nil
		})
		x := newExWorld(t, reg, exOpts{client: func(o *core.ClientOptions) { o.Ports.Cancels, o.Ports.NoCancel = nil, true }})
		logger, logs := testutil.NewLogger(t)
		exec, err := dag.NewExecutor(x.client, dag.ExecutorOptions{Logger: logger})
		require.NoError(t, err)
		ctx, interrupt := context.WithCancel(context.Background())
		go func() {
			<-started
			interrupt()
		}()
		res, err := exec.Run(ctx, dag.Job{Name: "j", Steps: []dag.Step{{Name: "s", Task: "slow"}}},
			dag.RunOptions{CancelWait: 10 * time.Second})
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, dag.RunCancelled, res.State)
		s, _ := res.Step("s")
		assert.Equal(t, dag.StepSucceeded, s.State, "the step ran to its end")
		levels := map[slog.Level]int{}
		for _, r := range logs.Records() {
			levels[r.Level]++
		}
		assert.Equal(t, 1, levels[slog.LevelWarn], "the operator is warned once that the steps could not be cancelled")
		assert.Zero(t, levels[slog.LevelError])
		x.requireNoWaiters(t)
	})
}

// Executor log lines about a step carry its task's attributes: step_id,
// task_id, task and attempt (with the run's run_id and job).
func TestExecutor_StepLogLinesCarryTheTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := core.NewRegistry()
		ok := core.NewTaskType[struct{}, string]("ok")
		ok.MustRegister(reg, func(ctx context.Context, _ struct{}) (string, error) { return "fine", nil })
		x := newExWorld(t, reg, exOpts{})
		var logs bytes.Buffer
		exec, err := dag.NewExecutor(x.client, dag.ExecutorOptions{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		require.NoError(t, err)
		res, err := exec.Run(context.Background(), dag.Job{Name: "j", Steps: []dag.Step{{Name: "s", Task: "ok"}}}, dag.RunOptions{RunID: "r9"})
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, res.State)
		var found bool
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(line), &m), line)
			if m["msg"] != "step finished" {
				continue
			}
			found = true
			assert.Equal(t, "r9", m["run_id"])
			assert.Equal(t, "j", m["job"])
			assert.Equal(t, "s", m["step_id"])
			assert.Equal(t, "r9.s", m["task_id"])
			assert.Equal(t, "ok", m["task"])
			assert.EqualValues(t, 1, m["attempt"])
		}
		assert.True(t, found, "a step finished line: %s", logs.String())
	})
}

// Steps that the executor submits go through its client, signing included:
// a worker that requires signatures runs them.
func TestExecutor_StepsSignedByTheClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		key := []byte("0123456789abcdef0123456789abcdef")
		signer, err := core.NewSigner("k1", key)
		require.NoError(t, err)
		verifier, err := core.NewVerifier(core.VerifierOptions{Keys: map[string][]byte{"k1": key}})
		require.NoError(t, err)
		reg := core.NewRegistry()
		registerAppend(reg)
		x := newExWorld(t, reg, exOpts{
			worker: func(o *core.WorkerOptions) { o.Ports.Verifier = verifier },
			client: func(o *core.ClientOptions) { o.Ports.Signer = signer },
		})
		job := dag.Job{Name: "j", Steps: []dag.Step{
			{Name: "a", Task: "append", Args: arg("a")},
			{Name: "b", Task: "append", Args: arg("b"), Upstream: []string{"a"}},
		}}
		res, err := x.exec.Run(context.Background(), job, dag.RunOptions{RunID: "r1"})
		require.NoError(t, err)
		require.NoError(t, res.Err(), "both steps ran on a worker that refuses unsigned tasks")
	})
}
