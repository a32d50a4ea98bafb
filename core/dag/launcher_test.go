package dag_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/internal/testutil"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
	"github.com/dagq/dagq/ports/portsmock"
)

// The Launcher and the run task over the in-memory adapters and real
// Workers, on synctest's fake clock.

// lnArgs are the arguments of the test step task "work".
type lnArgs struct {
	// Sleep is how long the step works.
	Sleep time.Duration
	// Fail makes the step fail (without retry) with this message.
	Fail string
	// Block makes the step wait for its context; BlockOn only on that worker.
	Block   bool
	BlockOn string
	// FailOnce makes the step's first handler call (across runs, by step
	// name) fail without retry: a transient fault, gone when it runs again.
	FailOnce bool
}

var lnWork = core.NewTaskType[lnArgs, string]("work")

// lnRaw is the test task that returns its args as its output.
const lnRaw = "raw"

// lnCalls counts and observes the step handlers of a test.
type lnCalls struct {
	mu      sync.Mutex
	n       map[string]int                          // handler runs by step
	causes  map[string]error                        // why blocked steps stopped
	inputs  map[string][]map[string]json.RawMessage // the inputs of each handler run, by step
	runs    map[string][]string                     // the run of each handler run, by step
	started chan string                             // blocked steps that started
}

func newLnCalls() *lnCalls {
	return &lnCalls{n: map[string]int{}, causes: map[string]error{}, inputs: map[string][]map[string]json.RawMessage{},
		runs: map[string][]string{}, started: make(chan string, 100)}
}

// inputsOf returns the inputs each handler run of step got, in order.
func (c *lnCalls) inputsOf(step string) []map[string]json.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.inputs[step])
}

// runsOf returns the run of each handler run of step, in order.
func (c *lnCalls) runsOf(step string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.runs[step])
}

// seen notes a handler run of t.
func (c *lnCalls) seen(t *core.Task) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[t.StepID]++
	ins := make(map[string]json.RawMessage, len(t.Inputs))
	for k, v := range t.Inputs {
		ins[k] = slices.Clone(v)
	}
	c.inputs[t.StepID] = append(c.inputs[t.StepID], ins)
	c.runs[t.StepID] = append(c.runs[t.StepID], t.RunID)
	return c.n[t.StepID]
}

func (c *lnCalls) count(step string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[step]
}

func (c *lnCalls) cause(step string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.causes[step]
}

// register registers "work": its output is its step name followed by its
// upstreams' outputs in name order, "c(b(a()))" for a chain a → b → c.
func (c *lnCalls) register(reg *core.Registry) {
	// "raw" returns its args as its output, as they are.
	if err := reg.Handle(lnRaw, core.HandlerFunc(func(_ context.Context, t *core.Task) (json.RawMessage, error) {
		c.seen(t)
		return t.Args, nil
	})); err != nil {
		panic(err)
	}
	lnWork.MustRegister(reg, func(ctx context.Context, a lnArgs) (string, error) {
		t, _ := core.TaskFromContext(ctx)
		if n := c.seen(t); a.FailOnce && n == 1 {
			return "", fmt.Errorf("transient fault on the first call: %w", core.ErrSkipRetry)
		}
		if a.Block || (a.BlockOn != "" && core.WorkerIDFromContext(ctx) == a.BlockOn) {
			c.started <- t.StepID
			<-ctx.Done()
			c.mu.Lock()
			c.causes[t.StepID] = context.Cause(ctx)
			c.mu.Unlock()
			return "", context.Cause(ctx)
		}
		select {
		case <-time.After(a.Sleep):
		case <-ctx.Done():
			return "", context.Cause(ctx)
		}
		if a.Fail != "" {
			return "", fmt.Errorf("%s: %w", a.Fail, core.ErrSkipRetry)
		}
		var ins []string
		for _, up := range slices.Sorted(maps.Keys(t.Inputs)) {
			v, err := core.Input[string](ctx, up)
			if err != nil {
				v = string(t.Inputs[up]) // not a string: its JSON
			}
			ins = append(ins, v)
		}
		return t.StepID + "(" + strings.Join(ins, ",") + ")", nil
	})
}

// lnWorld is a memory transport with a launcher; workers are started on
// demand, each with its own ports, client and registry (steps + run task).
type lnWorld struct {
	t        *testing.T
	tr       *memory.Transport
	queue    string
	state    ports.StateStore
	client   *core.Client
	launcher *dag.Launcher
	calls    *lnCalls
}

func newLnWorld(t *testing.T, fifo bool) *lnWorld {
	t.Helper()
	queue := "tasks"
	if fifo {
		queue = "tasks.fifo"
	}
	return newLnWorldWith(t, memory.NewTransport(), queue, memory.QueueOptions{FIFO: fifo})
}

// newLnWorldWith is newLnWorld on tr, with a queue created with opts.
func newLnWorldWith(t *testing.T, tr *memory.Transport, queue string, opts memory.QueueOptions) *lnWorld {
	t.Helper()
	require.NoError(t, tr.CreateQueue(queue, opts))
	c, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:      tr.Broker(queue),
			Results:     tr.ResultBackend(),
			Cancels:     tr.CancelChannel(),
			Completions: tr.CompletionBus(),
		},
		Logger: testutil.QuietLogger(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	state := tr.StateStore()
	l, err := dag.NewLauncher(dag.LauncherOptions{Client: c, State: state, Logger: testutil.QuietLogger()})
	require.NoError(t, err)
	return &lnWorld{t: t, tr: tr, queue: queue, state: state, client: c, launcher: l, calls: newLnCalls()}
}

// lnWorker is a running worker whose broker and state store can be cut off
// at once (dead): it can then neither receive, extend, ack nor send, nor
// write heartbeats — a crashed or partitioned process, as seen from outside.
type lnWorker struct {
	w    *core.Worker
	logs *testutil.LogSink
	obs  *outcomeObserver
	dead atomic.Bool
	// recordsDown fails the run-record writes (not the heartbeats).
	recordsDown atomic.Bool
	stop        func()
}

func (x *lnWorld) startWorker(id string, mod func(*core.WorkerOptions)) *lnWorker {
	t := x.t
	t.Helper()
	lw := &lnWorker{obs: &outcomeObserver{}}
	logger, sink := testutil.NewLogger(t)
	lw.logs = sink
	client, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:      &switchBroker{Broker: x.tr.Broker(x.queue), dead: &lw.dead},
			Results:     x.tr.ResultBackend(),
			Cancels:     x.tr.CancelChannel(),
			Completions: x.tr.CompletionBus(),
		},
		Logger: logger,
	})
	require.NoError(t, err)
	reg := core.NewRegistry()
	x.calls.register(reg)
	require.NoError(t, dag.RegisterRunTask(reg, dag.RunTaskDeps{
		Client: client, State: &switchState{StateStore: x.tr.StateStore(), dead: &lw.dead, recordsDown: &lw.recordsDown}, Logger: logger,
	}))
	opts := core.WorkerOptions{
		Ports: core.Ports{
			Broker:      &switchBroker{Broker: x.tr.Broker(x.queue), dead: &lw.dead},
			Results:     x.tr.ResultBackend(),
			Cancels:     x.tr.CancelChannel(),
			Completions: x.tr.CompletionBus(),
		},
		ID:          id,
		Registry:    reg,
		Retry:       wkNoJitter,
		Concurrency: 8,
		Logger:      logger,
		Observer:    lw.obs,
	}
	if mod != nil {
		mod(&opts)
	}
	w, err := core.NewWorker(opts)
	require.NoError(t, err)
	lw.w = w
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	lw.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			require.NoError(t, client.Close())
		})
	}
	t.Cleanup(lw.stop)
	return lw
}

// outcomeObserver records what became of the tasks a worker received.
type outcomeObserver struct {
	core.NopWorkerObserver
	mu       sync.Mutex
	finished map[string][]core.TaskOutcome // by task name, in order
}

func (o *outcomeObserver) TaskFinished(t core.TaskInfo, r core.TaskResult) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.finished == nil {
		o.finished = make(map[string][]core.TaskOutcome)
	}
	o.finished[t.Name] = append(o.finished[t.Name], r.Outcome)
}

// outcomes returns the outcomes of the deliveries of task name, in order.
func (o *outcomeObserver) outcomes(name string) []core.TaskOutcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.finished[name])
}

// switchBroker fails every call with ports.ErrUnavailable once dead.
type switchBroker struct {
	ports.Broker
	dead *atomic.Bool
}

var errCutOff = fmt.Errorf("cut off: %w", ports.ErrUnavailable)

func (b *switchBroker) Send(ctx context.Context, msgs ...ports.Message) error {
	if b.dead.Load() {
		return errCutOff
	}
	return b.Broker.Send(ctx, msgs...)
}

func (b *switchBroker) Receive(ctx context.Context, max int, lease time.Duration) ([]ports.Delivery, error) {
	if b.dead.Load() {
		return nil, errCutOff
	}
	return b.Broker.Receive(ctx, max, lease)
}

func (b *switchBroker) Ack(ctx context.Context, rs ...ports.Receipt) error {
	if b.dead.Load() {
		return errCutOff
	}
	return b.Broker.Ack(ctx, rs...)
}

func (b *switchBroker) Nack(ctx context.Context, r ports.Receipt, d time.Duration) error {
	if b.dead.Load() {
		return errCutOff
	}
	return b.Broker.Nack(ctx, r, d)
}

func (b *switchBroker) Extend(ctx context.Context, lease time.Duration, rs ...ports.Receipt) error {
	if b.dead.Load() {
		return errCutOff
	}
	return b.Broker.Extend(ctx, lease, rs...)
}

// DeadLetters forwards to the memory broker's ports.DeadLetterer (the
// embedded interface would hide it from the worker).
func (b *switchBroker) DeadLetters(ctx context.Context) (ports.DeadLetterQueue, error) {
	if b.dead.Load() {
		return ports.DeadLetterQueue{}, errCutOff
	}
	return b.Broker.(ports.DeadLetterer).DeadLetters(ctx)
}

// switchState fails every call with ports.ErrUnavailable once dead.
type switchState struct {
	ports.StateStore
	dead        *atomic.Bool
	recordsDown *atomic.Bool
}

func (s *switchState) Get(ctx context.Context, key string) (ports.Record, error) {
	if s.dead.Load() {
		return ports.Record{}, errCutOff
	}
	return s.StateStore.Get(ctx, key)
}

func (s *switchState) Put(ctx context.Context, key string, data []byte, c ports.WriteCondition) (string, error) {
	if s.dead.Load() || s.recordsDown != nil && s.recordsDown.Load() && !strings.HasPrefix(key, "heartbeats/") {
		return "", errCutOff
	}
	return s.StateStore.Put(ctx, key, data, c)
}

// status reads a run's record.
func (x *lnWorld) status(runID string) dag.RunRecord {
	x.t.Helper()
	rec, err := x.launcher.Status(context.Background(), runID)
	require.NoError(x.t, err)
	return rec
}

func (x *lnWorld) health(runID string) dag.Health {
	x.t.Helper()
	h, err := x.launcher.Health(context.Background(), runID)
	require.NoError(x.t, err)
	return h
}

func (x *lnWorld) wait(runID string) dag.RunRecord {
	x.t.Helper()
	rec, err := x.launcher.Wait(context.Background(), runID)
	require.NoError(x.t, err)
	return rec
}

// runResult waits for the run task's result and decodes its RunResult.
func (x *lnWorld) runResult(runID string) (ports.Result, dag.RunResult) {
	x.t.Helper()
	res, err := x.client.Wait(context.Background(), dag.RunTaskID(runID))
	require.NoError(x.t, err)
	var rr dag.RunResult
	if res.State == ports.StateSucceeded {
		require.NoError(x.t, json.Unmarshal(res.Output, &rr))
	}
	return res, rr
}

func stepStates(rec dag.RunRecord) map[string]dag.StepState {
	m := map[string]dag.StepState{}
	for _, s := range rec.Steps {
		m[s.Name] = s.State
	}
	return m
}

func lnStep(name string, a lnArgs, up ...string) dag.Step {
	return dag.Step{Name: name, Task: lnWork.Name, Args: arg(a), Upstream: up}
}

var lnChain = dag.Job{Name: "chain", Steps: []dag.Step{
	lnStep("a", lnArgs{Sleep: 10 * time.Second}),
	lnStep("b", lnArgs{Sleep: 10 * time.Second}, "a"),
	lnStep("c", lnArgs{Sleep: 10 * time.Second}, "b"),
}}

// ---- launch, status, health ------------------------------------------------

func TestLauncher_LaunchRunsToSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		start := time.Now()
		runID, err := x.launcher.Launch(ctx, lnChain, dag.LaunchOptions{RunID: "r1", Params: map[string]string{"day": "mon"}})
		require.NoError(t, err)
		require.Equal(t, "r1", runID)

		// No worker yet: queued.
		rec := x.status("r1")
		assert.Equal(t, dag.RunQueued, rec.State)
		assert.Equal(t, "chain", rec.Job)
		assert.Equal(t, "r1:run", rec.TaskID)
		assert.Equal(t, map[string]string{"day": "mon"}, rec.Params)
		assert.Equal(t, map[string]dag.StepState{"a": "pending", "b": "pending", "c": "pending"}, stepStates(rec))
		upstreams := func(rec dag.RunRecord) map[string][]string {
			m := map[string][]string{}
			for _, s := range rec.Steps {
				m[s.Name] = s.Upstream
			}
			return m
		}
		wantUp := map[string][]string{"a": nil, "b": {"a"}, "c": {"b"}}
		assert.Equal(t, wantUp, upstreams(rec), "the record draws the DAG")
		assert.Equal(t, start.UTC(), rec.CreatedAt)
		assert.Zero(t, rec.Attempt)
		assert.NotEmpty(t, rec.Version)
		h := x.health("r1")
		assert.Equal(t, dag.HealthQueued, h.Status)
		assert.Contains(t, h.Message, "waiting for a worker")

		x.startWorker("w1", nil)
		time.Sleep(17 * time.Second) // a done at 10s, b running; records flushed every 5s
		rec = x.status("r1")
		assert.Equal(t, dag.RunRunning, rec.State)
		assert.Equal(t, "w1", rec.Worker)
		assert.Equal(t, 1, rec.Attempt)
		assert.Equal(t, start.UTC(), rec.StartedAt)
		assert.Equal(t, map[string]dag.StepState{"a": "succeeded", "b": "running", "c": "pending"}, stepStates(rec))
		assert.Equal(t, wantUp, upstreams(rec), "kept by the running writes")
		b, _ := rec.Step("b")
		assert.Equal(t, "r1.b", b.TaskID)
		assert.Equal(t, 1, b.Attempts)
		h = x.health("r1")
		assert.Equal(t, dag.HealthRunning, h.Status, h.Message)
		assert.Equal(t, "w1", h.Worker)
		assert.WithinDuration(t, time.Now(), h.LastHeartbeat, dag.DefaultRunHeartbeat)
		assert.Contains(t, h.Message, "worker w1 heartbeat")

		// Fresh heartbeats all along.
		for range 2 {
			time.Sleep(5 * time.Second)
			assert.Equal(t, dag.HealthRunning, x.health("r1").Status)
		}

		rec = x.wait("r1")
		assert.Equal(t, 30*time.Second, time.Since(start), "three steps of 10s")
		assert.Equal(t, dag.RunSucceeded, rec.State)
		assert.Empty(t, rec.Error)
		assert.Equal(t, map[string]dag.StepState{"a": "succeeded", "b": "succeeded", "c": "succeeded"}, stepStates(rec))
		assert.Equal(t, wantUp, upstreams(rec), "kept by the final write")
		for _, s := range rec.Steps {
			assert.Equal(t, 1, s.Attempts, s.Name)
			assert.Equal(t, 10*time.Second, s.FinishedAt.Sub(s.StartedAt), s.Name)
			assert.Equal(t, 1, x.calls.count(s.Name), s.Name)
		}
		assert.Equal(t, time.Now().UTC(), rec.FinishedAt)
		h = x.health("r1")
		assert.Equal(t, dag.HealthSuccess, h.Status)
		assert.Equal(t, "w1", h.Worker)

		// The run task's output is the RunResult, with the steps' outputs.
		res, rr := x.runResult("r1")
		require.Equal(t, ports.StateSucceeded, res.State)
		assert.Equal(t, dag.RunSucceeded, rr.State)
		c, _ := rr.Step("c")
		assert.JSONEq(t, `"c(b(a()))"`, string(c.Output))

		ok, err := x.launcher.Terminate(ctx, "r1")
		require.NoError(t, err)
		assert.False(t, ok, "a finished run cannot be terminated")
		assert.Equal(t, dag.RunSucceeded, x.status("r1").State)
	})
}

func TestLauncher_FailedRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		x.startWorker("w1", nil)
		job := dag.Job{Name: "failing", Steps: []dag.Step{
			lnStep("ok", lnArgs{Sleep: time.Second}),
			lnStep("bad", lnArgs{Sleep: time.Second, Fail: "disk full"}),
			lnStep("after", lnArgs{}, "bad"),
		}}
		runID, err := x.launcher.Launch(context.Background(), job, dag.LaunchOptions{})
		require.NoError(t, err)
		assert.Len(t, runID, 32, "a generated run ID")
		rec := x.wait(runID)
		assert.Equal(t, dag.RunFailed, rec.State)
		assert.Equal(t, map[string]dag.StepState{"ok": "succeeded", "bad": "failed", "after": "skipped"}, stepStates(rec))
		assert.Contains(t, rec.Error, `step "bad" failed: failed without retry: disk full`)
		h := x.health(runID)
		assert.Equal(t, dag.HealthFailed, h.Status)
		assert.Contains(t, h.Message, "disk full")
		assert.Zero(t, x.calls.count("after"))

		_, rr := x.runResult(runID)
		assert.Equal(t, dag.RunFailed, rr.State, "a failed run is the run task's output, not its failure")
	})
}

func TestLauncher_UnknownRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		_, err := x.launcher.Status(ctx, "nope")
		require.ErrorIs(t, err, dag.ErrRunNotFound)
		require.ErrorIs(t, err, ports.ErrNotFound)
		h, err := x.launcher.Health(ctx, "nope")
		require.NoError(t, err)
		assert.Equal(t, dag.HealthNotFound, h.Status)
		ok, err := x.launcher.Terminate(ctx, "nope")
		require.ErrorIs(t, err, dag.ErrRunNotFound)
		assert.False(t, ok)
		_, err = x.launcher.Wait(ctx, "nope")
		require.ErrorIs(t, err, dag.ErrRunNotFound)
		_, err = x.launcher.Status(ctx, "bad id")
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
	})
}

// putRecord writes a run record and, when hb is not zero, a heartbeat.
func (x *lnWorld) putRecord(rec dag.RunRecord, hb map[string]any) {
	x.t.Helper()
	data, err := json.Marshal(rec)
	require.NoError(x.t, err)
	_, err = x.state.Put(context.Background(), dag.RunRecordKey(rec.RunID), data, ports.WriteCondition{})
	require.NoError(x.t, err)
	if hb != nil {
		data, err := json.Marshal(hb)
		require.NoError(x.t, err)
		_, err = x.state.Put(context.Background(), dag.RunHeartbeatKey(rec.RunID), data, ports.WriteCondition{})
		require.NoError(x.t, err)
	}
}

func TestLauncher_HealthFromHeartbeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false) // StaleAfter 15s (3 × 5s)
		now := time.Now().UTC()
		running := func(id string, started time.Time) dag.RunRecord {
			return dag.RunRecord{RunID: id, Job: "j", State: dag.RunRunning, TaskID: dag.RunTaskID(id),
				Worker: "w9", Attempt: 1, CreatedAt: started, StartedAt: started}
		}
		hb := func(at time.Time) map[string]any { return map[string]any{"worker": "w9", "attempt": 1, "at": at} }

		x.putRecord(running("fresh", now.Add(-time.Hour)), hb(now.Add(-15*time.Second)))
		h := x.health("fresh")
		assert.Equal(t, dag.HealthRunning, h.Status, h.Message)
		assert.Equal(t, "w9", h.Worker)
		assert.Equal(t, now.Add(-15*time.Second), h.LastHeartbeat)

		stale := now.Add(-16 * time.Second)
		x.putRecord(running("stale", now.Add(-time.Hour)), hb(stale))
		h = x.health("stale")
		assert.Equal(t, dag.HealthFailed, h.Status)
		assert.Equal(t, "w9", h.Worker)
		assert.Equal(t, stale, h.LastHeartbeat)
		assert.Equal(t, "worker w9 stopped heartbeating at "+stale.Format(time.RFC3339)+
			"; another worker resumes it when its run task's lease expires, if the run task is still queued (Terminate ends it either way)", h.Message)
		rec := x.status("stale")
		assert.Equal(t, dag.RunRunning, rec.State, "the record stays running: the run is recovered, not failed")

		// No heartbeat yet: the start counts.
		x.putRecord(running("young", now.Add(-10*time.Second)), nil)
		h = x.health("young")
		assert.Equal(t, dag.HealthRunning, h.Status)
		assert.Zero(t, h.LastHeartbeat)
		x.putRecord(running("silent", now.Add(-20*time.Second)), nil)
		h = x.health("silent")
		assert.Equal(t, dag.HealthFailed, h.Status)
		assert.Contains(t, h.Message, "worker w9 started the run at "+now.Add(-20*time.Second).Format(time.RFC3339)+" and never heartbeated")

		// A heartbeat of an earlier execution does not count for a resumed one.
		old := running("resumed", now.Add(-time.Hour))
		old.Attempt, old.Worker, old.ResumedAt = 2, "w10", now.Add(-2*time.Second)
		x.putRecord(old, hb(now.Add(-time.Minute)))
		h = x.health("resumed")
		assert.Equal(t, dag.HealthRunning, h.Status)
		assert.Equal(t, "w10", h.Worker)

		// A stale run whose task has a result after all reports that.
		x.putRecord(running("gone", now.Add(-time.Hour)), hb(stale))
		require.NoError(t, x.tr.ResultBackend().Put(context.Background(), ports.Result{
			TaskID: dag.RunTaskID("gone"), State: ports.StateFailed, Error: "attempts exhausted before start"}))
		h = x.health("gone")
		assert.Equal(t, dag.HealthFailed, h.Status)
		assert.Equal(t, "the run task failed: attempts exhausted before start", h.Message)
		rec = x.status("gone")
		assert.Equal(t, dag.RunFailed, rec.State)
	})
}

func TestLauncher_HealthUnknownOnlyWhenTheStoreFails(t *testing.T) {
	ctrl := gomock.NewController(t)
	state := portsmock.NewMockStateStore(ctrl)
	tr := memory.NewTransport()
	c, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:   tr.Broker("q"),
			Results:  tr.ResultBackend(),
			NoCancel: true,
		},
		Logger: testutil.QuietLogger(),
	})
	require.NoError(t, err)
	defer c.Close()
	l, err := dag.NewLauncher(dag.LauncherOptions{Client: c, State: state, Logger: testutil.QuietLogger()})
	require.NoError(t, err)
	ctx := context.Background()

	state.EXPECT().Get(gomock.Any(), "runs/r1").Return(ports.Record{}, fmt.Errorf("s3: %w", ports.ErrUnavailable))
	h, err := l.Health(ctx, "r1")
	require.ErrorIs(t, err, ports.ErrUnavailable)
	assert.Equal(t, dag.HealthUnknown, h.Status)
	assert.Contains(t, h.Message, "cannot read the run record")

	rec, _ := json.Marshal(dag.RunRecord{RunID: "r1", State: dag.RunRunning, TaskID: "r1:run", Worker: "w1", Attempt: 1, StartedAt: time.Now()})
	gomock.InOrder(
		state.EXPECT().Get(gomock.Any(), "runs/r1").Return(ports.Record{Key: "runs/r1", Data: rec, Version: "v1"}, nil),
		state.EXPECT().Get(gomock.Any(), "heartbeats/r1").Return(ports.Record{}, fmt.Errorf("s3: %w", ports.ErrUnavailable)),
	)
	h, err = l.Health(ctx, "r1")
	require.ErrorIs(t, err, ports.ErrUnavailable)
	assert.Equal(t, dag.HealthUnknown, h.Status)
	assert.Equal(t, "w1", h.Worker)
}

// ---- a dead worker: detection and recovery ----------------------------------

func TestLauncher_DeadWorkerDetectedAndRunRecovered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		w1 := x.startWorker("w1", nil) // lease 30s, extended every 10s
		job := dag.Job{Name: "recover", Steps: []dag.Step{
			lnStep("a", lnArgs{Sleep: time.Second}),
			lnStep("b", lnArgs{Sleep: time.Second, BlockOn: "w1"}, "a"), // hangs on w1
			lnStep("c", lnArgs{Sleep: time.Second}, "b"),
		}}
		start := time.Now()
		runID, err := x.launcher.Launch(context.Background(), job, dag.LaunchOptions{RunID: "dead"})
		require.NoError(t, err)
		require.Equal(t, "b", <-x.calls.started)
		time.Sleep(6 * time.Second)
		rec := x.status(runID)
		assert.Equal(t, map[string]dag.StepState{"a": "succeeded", "b": "running", "c": "pending"}, stepStates(rec))
		assert.Equal(t, dag.HealthRunning, x.health(runID).Status)

		// w1 dies: no more heartbeats, lease extensions, acks or sends.
		w1.dead.Store(true)
		killed := time.Now()
		time.Sleep(16 * time.Second)
		h := x.health(runID)
		require.Equal(t, dag.HealthFailed, h.Status, h.Message)
		assert.Equal(t, "w1", h.Worker)
		assert.True(t, !h.LastHeartbeat.After(killed) && h.LastHeartbeat.After(killed.Add(-dag.DefaultRunHeartbeat)),
			"last heartbeat %v, killed at %v", h.LastHeartbeat, killed)
		assert.Contains(t, h.Message, "worker w1 stopped heartbeating at "+h.LastHeartbeat.Format(time.RFC3339))
		assert.Equal(t, dag.RunRunning, x.status(runID).State)

		// Another worker gets the run task when its lease expires and
		// finishes the run without running a again.
		w2 := x.startWorker("w2", nil)
		rec = x.wait(runID)
		assert.Equal(t, dag.RunSucceeded, rec.State, rec.Error)
		assert.Equal(t, "w2", rec.Worker)
		assert.Equal(t, 2, rec.Attempt)
		assert.Equal(t, start.UTC(), rec.StartedAt)
		assert.False(t, rec.ResumedAt.Before(killed.Add(20*time.Second)), "resumed at %v", rec.ResumedAt)
		assert.Equal(t, 1, x.calls.count("a"), "a finished before the crash: its result is reused")
		assert.Equal(t, 2, x.calls.count("b"), "b hung on w1 and ran again on w2 (its redelivery)")
		assert.Equal(t, 1, x.calls.count("c"))
		assert.ErrorIs(t, x.calls.cause("b"), ports.ErrLeaseLost, "w1's b lost its lease; it was not cancelled")
		a, _ := rec.Step("a")
		assert.Equal(t, start.Add(time.Second).UTC(), a.FinishedAt.UTC(), "a's result is the first one")
		assert.Equal(t, dag.HealthSuccess, x.health(runID).Status)
		_, rr := x.runResult(runID)
		c, _ := rr.Step("c")
		assert.JSONEq(t, `"c(b(a()))"`, string(c.Output))
		synctest.Wait() // the run task reports its outcome after the final record write
		assert.Equal(t, []core.TaskOutcome{core.OutcomeSucceeded}, w2.obs.outcomes(dag.RunTaskName), "w2 took the run over and finished it")
		assert.Equal(t, []core.TaskOutcome{core.OutcomeLeaseLost}, w1.obs.outcomes(dag.RunTaskName), "w1's run task saw its lease go")
	})
}

func TestLauncher_ShutdownReleasesTheRunWithoutCancellingIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		w1 := x.startWorker("w1", func(o *core.WorkerOptions) { o.ShutdownTimeout = time.Second })
		job := dag.Job{Name: "deploy", Steps: []dag.Step{
			lnStep("a", lnArgs{Sleep: 20 * time.Second}),
			lnStep("b", lnArgs{Sleep: time.Second}, "a"),
		}}
		runID, err := x.launcher.Launch(context.Background(), job, dag.LaunchOptions{RunID: "rel"})
		require.NoError(t, err)
		time.Sleep(6 * time.Second)
		x.startWorker("w2", nil)
		// w1 shuts down: the run task and a are released at once and go to w2.
		stopped := time.Now()
		w1.stop()
		h := x.health(runID)
		assert.Equal(t, dag.HealthRunning, h.Status, h.Message)
		rec := x.wait(runID)
		assert.Equal(t, dag.RunSucceeded, rec.State, rec.Error)
		assert.Equal(t, "w2", rec.Worker)
		assert.Equal(t, 2, rec.Attempt)
		assert.Equal(t, 2, x.calls.count("a"), "a was interrupted on w1 and ran again on w2")
		assert.Equal(t, 1, x.calls.count("b"))
		// The worker releases the run task while its handler marks the
		// heartbeat released: w2 takes the run over at once, or when it
		// looks again one heartbeat interval later.
		assert.LessOrEqual(t, rec.ResumedAt.Sub(stopped), time.Second+dag.DefaultRunHeartbeat,
			"taken over long before the heartbeat went stale")
	})
}

func TestLauncher_FinalWriteFailureRetriesTheRunTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		w1 := x.startWorker("w1", nil)
		job := dag.Job{Name: "j", Steps: []dag.Step{lnStep("a", lnArgs{Sleep: 10 * time.Second})}}
		runID, err := x.launcher.Launch(context.Background(), job, dag.LaunchOptions{RunID: "fw"})
		require.NoError(t, err)
		time.Sleep(time.Second)
		w1.recordsDown.Store(true) // the store refuses the record writes for a while
		time.Sleep(12 * time.Second)
		assert.Equal(t, dag.RunRunning, x.status(runID).State)
		w1.recordsDown.Store(false)
		rec := x.wait(runID)
		assert.Equal(t, dag.RunSucceeded, rec.State, rec.Error)
		assert.Equal(t, 2, rec.Attempt, "the run task's retry resumed the run at once")
		assert.Equal(t, 1, x.calls.count("a"), "and did not run a again")
		synctest.Wait() // the run task reports its outcome after the final record write
		assert.Equal(t, []core.TaskOutcome{core.OutcomeRetried, core.OutcomeSucceeded}, w1.obs.outcomes(dag.RunTaskName),
			"the attempt whose final write failed was retried; the retry resumed the run (it was not held by the failed attempt)")
	})
}

func TestLauncher_DuplicateDeliveryWaitsForTheLiveExecution(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		job := dag.Job{Name: "dup", Steps: []dag.Step{
			lnStep("a", lnArgs{Sleep: 20 * time.Second}),
			lnStep("b", lnArgs{Sleep: time.Second}, "a"),
		}}
		runID, err := x.launcher.Launch(context.Background(), job, dag.LaunchOptions{RunID: "dup"})
		require.NoError(t, err)
		// A standard queue may deliver a message twice: queue a copy.
		raw := x.tr.Broker(x.queue)
		ds, err := raw.Receive(context.Background(), 1, time.Minute)
		require.NoError(t, err)
		require.Len(t, ds, 1)
		require.NoError(t, raw.Send(context.Background(), ds[0].Message))
		require.NoError(t, raw.Nack(context.Background(), ds[0].Receipt, 0))

		w1 := x.startWorker("w1", nil)
		rec := x.wait(runID)
		assert.Equal(t, dag.RunSucceeded, rec.State, rec.Error)
		assert.Equal(t, 1, rec.Attempt, "one execution")
		assert.Equal(t, 1, x.calls.count("a"))
		assert.Equal(t, 1, x.calls.count("b"))
		// The copy ends too, with the run's outcome, without a second execution.
		require.Eventually(t, func() bool {
			s, _ := x.tr.Stats(x.queue)
			return s == memory.QueueStats{}
		}, time.Minute, time.Second)
		synctest.Wait()
		assert.Equal(t, []core.TaskOutcome{core.OutcomeSucceeded, core.OutcomeSucceeded}, w1.obs.outcomes(dag.RunTaskName))
	})
}

func TestLauncher_TerminateWithADuplicateDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		job := dag.Job{Name: "dup", Steps: []dag.Step{lnStep("slow", lnArgs{Block: true})}}
		runID, err := x.launcher.Launch(ctx, job, dag.LaunchOptions{RunID: "dupt"})
		require.NoError(t, err)
		raw := x.tr.Broker(x.queue)
		ds, err := raw.Receive(ctx, 1, time.Minute)
		require.NoError(t, err)
		require.NoError(t, raw.Send(ctx, ds[0].Message))
		require.NoError(t, raw.Nack(ctx, ds[0].Receipt, 0))
		x.startWorker("w1", nil)
		require.Equal(t, "slow", <-x.calls.started)
		time.Sleep(7 * time.Second)
		s, err := x.tr.Stats(x.queue)
		require.NoError(t, err)
		require.Equal(t, memory.QueueStats{InFlight: 3}, s, "the run task, its copy (held, waiting for the live execution) and the step")
		require.Equal(t, 1, x.calls.count("slow"), "one execution of the run")

		ok, err := x.launcher.Terminate(ctx, runID)
		require.NoError(t, err)
		require.True(t, ok)
		rec := x.wait(runID)
		assert.Equal(t, dag.RunCancelled, rec.State)
		assert.True(t, strings.HasPrefix(rec.Error, "terminated: "), "recorded by the live execution: %s", rec.Error)
		assert.Equal(t, 1, rec.Attempt)
		_, rr := x.runResult(runID)
		assert.Equal(t, dag.RunCancelled, rr.State, "the waiting delivery did not end the run task before the run ended")
		require.Eventually(t, func() bool {
			s, _ := x.tr.Stats(x.queue)
			return s == memory.QueueStats{}
		}, time.Minute, time.Second)
	})
}

// A run task that reaches its dead-letter queue (here: its only receive
// went to a worker that died before it started the run) gets a failed
// result from the run worker's dead-letter sweep, so Wait ends and Status
// and Health say why. Before, Wait waited forever and Health said the run
// task waits in the queue.
func TestLauncher_DeadLetteredRunTaskEndsTheRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := memory.NewTransport()
		require.NoError(t, tr.CreateQueue("tasks-dlq", memory.QueueOptions{}))
		x := newLnWorldWith(t, tr, "tasks", memory.QueueOptions{MaxReceives: 1, DeadLetterQueue: "tasks-dlq"})
		ctx := context.Background()
		job := dag.Job{Name: "dl", Steps: []dag.Step{lnStep("a", lnArgs{})}}
		runID, err := x.launcher.Launch(ctx, job, dag.LaunchOptions{RunID: "dl"})
		require.NoError(t, err)
		ds, err := x.tr.Broker(x.queue).Receive(ctx, 1, time.Second) // a worker that dies at once
		require.NoError(t, err)
		require.Len(t, ds, 1)
		time.Sleep(2 * time.Second)
		x.startWorker("w1", func(o *core.WorkerOptions) { o.DeadLetterSweep = time.Minute })

		wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		rec, err := x.launcher.Wait(wctx, runID)
		require.NoError(t, err, "Wait ends within a sweep interval or two")
		assert.Equal(t, dag.RunFailed, rec.State)
		assert.Contains(t, rec.Error, "dead-lettered after 1 receive:")
		assert.Equal(t, 0, x.calls.count("a"), "the run never started")
		h, err := x.launcher.Health(ctx, runID)
		require.NoError(t, err)
		assert.Equal(t, dag.HealthFailed, h.Status)
		assert.Contains(t, h.Message, "dead-lettered")
	})
}

// ---- terminate ---------------------------------------------------------------

func TestLauncher_TerminateQueuedRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		runID, err := x.launcher.Launch(ctx, lnChain, dag.LaunchOptions{RunID: "tq"})
		require.NoError(t, err)
		ok, err := x.launcher.Terminate(ctx, runID)
		require.NoError(t, err)
		assert.True(t, ok)
		rec := x.status(runID)
		assert.Equal(t, dag.RunCancelled, rec.State)
		assert.Equal(t, "terminated before it started", rec.Error)
		assert.False(t, rec.CancelRequestedAt.IsZero())
		assert.Equal(t, dag.HealthCancelled, x.health(runID).Status)

		// A worker comes: the run task never starts.
		x.startWorker("w1", nil)
		res, _ := x.runResult(runID)
		assert.Equal(t, ports.StateCancelled, res.State)
		assert.Equal(t, 0, res.Attempts, "the run task never started")
		time.Sleep(time.Minute)
		rec = x.status(runID)
		assert.Equal(t, dag.RunCancelled, rec.State)
		assert.Zero(t, rec.Attempt)
		for _, s := range lnChain.Steps {
			assert.Zero(t, x.calls.count(s.Name), s.Name)
		}
		ok, err = x.launcher.Terminate(ctx, runID)
		require.NoError(t, err)
		assert.False(t, ok, "already finished")
	})
}

func TestLauncher_TerminatedQueuedRunDoesNotRunEvenIfItsTaskStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		// A launcher whose client cannot send cancel requests: Terminate
		// only switches the record.
		c, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:   x.tr.Broker(x.queue),
				Results:  x.tr.ResultBackend(),
				NoCancel: true,
			},
			Logger: testutil.QuietLogger(),
		})
		require.NoError(t, err)
		defer c.Close()
		l, err := dag.NewLauncher(dag.LauncherOptions{Client: c, State: x.state, Logger: testutil.QuietLogger()})
		require.NoError(t, err)
		runID, err := l.Launch(ctx, lnChain, dag.LaunchOptions{RunID: "tq2"})
		require.NoError(t, err)
		ok, err := l.Terminate(ctx, runID)
		require.NoError(t, err)
		assert.True(t, ok, "the record decides")

		x.startWorker("w1", nil)
		res, rr := x.runResult(runID)
		assert.Equal(t, ports.StateSucceeded, res.State, "the run task ran...")
		assert.Equal(t, dag.RunCancelled, rr.State, "...and found the run cancelled")
		for _, s := range lnChain.Steps {
			assert.Zero(t, x.calls.count(s.Name), s.Name)
		}
		assert.Equal(t, dag.RunCancelled, x.status(runID).State)
	})
}

func TestLauncher_TerminateRunningRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		x.startWorker("w1", nil)
		job := dag.Job{Name: "long", Steps: []dag.Step{
			lnStep("slow1", lnArgs{Block: true}),
			lnStep("slow2", lnArgs{Block: true}),
			lnStep("after", lnArgs{}, "slow1", "slow2"),
		}}
		runID, err := x.launcher.Launch(ctx, job, dag.LaunchOptions{RunID: "tr"})
		require.NoError(t, err)
		started := []string{<-x.calls.started, <-x.calls.started}
		assert.ElementsMatch(t, []string{"slow1", "slow2"}, started)
		time.Sleep(6 * time.Second)
		assert.Equal(t, dag.RunRunning, x.status(runID).State)

		begin := time.Now()
		ok, err := x.launcher.Terminate(ctx, runID)
		require.NoError(t, err)
		assert.True(t, ok)
		rec := x.wait(runID)
		assert.Less(t, time.Since(begin), 2*time.Second, "stopped promptly")
		assert.Equal(t, dag.RunCancelled, rec.State)
		assert.Equal(t, map[string]dag.StepState{"slow1": "cancelled", "slow2": "cancelled", "after": "skipped"}, stepStates(rec))
		assert.False(t, rec.CancelRequestedAt.IsZero(), "Terminate's mark survives the run task's writes")
		assert.True(t, strings.HasPrefix(rec.Error, "terminated: "), rec.Error)
		assert.ErrorIs(t, x.calls.cause("slow1"), core.ErrTaskCanceled)
		assert.ErrorIs(t, x.calls.cause("slow2"), core.ErrTaskCanceled)
		assert.Zero(t, x.calls.count("after"))
		h := x.health(runID)
		assert.Equal(t, dag.HealthCancelled, h.Status)
		for _, id := range []string{"tr.slow1", "tr.slow2"} {
			res, err := x.client.Wait(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, ports.StateCancelled, res.State, id)
		}
		ok, err = x.launcher.Terminate(ctx, runID)
		require.NoError(t, err)
		assert.False(t, ok)
	})
}

func TestLauncher_TerminateQueuedUsesCompareAndSwap(t *testing.T) {
	ctrl := gomock.NewController(t)
	state := portsmock.NewMockStateStore(ctrl)
	tr := memory.NewTransport()
	cancels := tr.CancelChannel()
	c, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:  tr.Broker("q"),
			Results: tr.ResultBackend(),
			Cancels: cancels,
		},
		Logger: testutil.QuietLogger(),
	})
	require.NoError(t, err)
	defer c.Close()
	l, err := dag.NewLauncher(dag.LauncherOptions{Client: c, State: state, Logger: testutil.QuietLogger()})
	require.NoError(t, err)

	queued := dag.RunRecord{RunID: "r1", Job: "j", State: dag.RunQueued, TaskID: "r1:run",
		Steps: []dag.StepRecord{{Name: "a", Task: "t", State: dag.StepPending}}}
	data, _ := json.Marshal(queued)
	var written dag.RunRecord
	gomock.InOrder(
		state.EXPECT().Get(gomock.Any(), "runs/r1").Return(ports.Record{Key: "runs/r1", Data: data, Version: "v1"}, nil),
		// A worker wrote meanwhile (say, a stale copy): conflict.
		state.EXPECT().Put(gomock.Any(), "runs/r1", gomock.Any(), ports.WriteCondition{MatchVersion: "v1"}).
			Return("", fmt.Errorf("s3: %w", ports.ErrConflict)),
		state.EXPECT().Get(gomock.Any(), "runs/r1").Return(ports.Record{Key: "runs/r1", Data: data, Version: "v2"}, nil),
		state.EXPECT().Put(gomock.Any(), "runs/r1", gomock.Any(), ports.WriteCondition{MatchVersion: "v2"}).
			DoAndReturn(func(_ context.Context, _ string, d []byte, _ ports.WriteCondition) (string, error) {
				require.NoError(t, json.Unmarshal(d, &written))
				return "v3", nil
			}),
		// The run index: the cancelled key, then the queued one goes.
		state.EXPECT().Put(gomock.Any(), gomock.Cond(func(k string) bool {
			return strings.HasPrefix(k, "runindex/9223372036854775807.r1.cancelled.") && strings.HasSuffix(k, ".j")
		}), []byte(nil), ports.WriteCondition{}).Return("i1", nil),
		state.EXPECT().Delete(gomock.Any(), "runindex/9223372036854775807.r1.queued..j").Return(nil),
	)
	ok, err := l.Terminate(context.Background(), "r1")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, dag.RunCancelled, written.State)
	assert.Equal(t, "terminated before it started", written.Error)
	got, err := cancels.Canceled(context.Background(), "r1:run", "r1.a")
	require.NoError(t, err)
	assert.Equal(t, []string{"r1:run"}, got, "a queued run's steps were never submitted")
}

func TestLauncher_TerminateQueuedThatJustStartedCancelsTheRunningRun(t *testing.T) {
	ctrl := gomock.NewController(t)
	state := portsmock.NewMockStateStore(ctrl)
	tr := memory.NewTransport()
	cancels := tr.CancelChannel()
	c, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:  tr.Broker("q"),
			Results: tr.ResultBackend(),
			Cancels: cancels,
		},
		Logger: testutil.QuietLogger(),
	})
	require.NoError(t, err)
	defer c.Close()
	l, err := dag.NewLauncher(dag.LauncherOptions{Client: c, State: state, Logger: testutil.QuietLogger()})
	require.NoError(t, err)

	rec := dag.RunRecord{RunID: "r1", Job: "j", State: dag.RunQueued, TaskID: "r1:run",
		Steps: []dag.StepRecord{{Name: "a", Task: "t", State: dag.StepSucceeded}, {Name: "b", Task: "t", State: dag.StepPending}}}
	queued, _ := json.Marshal(rec)
	rec.State, rec.Worker, rec.Attempt = dag.RunRunning, "w1", 1
	running, _ := json.Marshal(rec)
	beat, _ := json.Marshal(map[string]any{"worker": "w1", "attempt": 1, "at": time.Now().UTC()})
	var marked dag.RunRecord
	gomock.InOrder(
		state.EXPECT().Get(gomock.Any(), "runs/r1").Return(ports.Record{Data: queued, Version: "v1"}, nil),
		state.EXPECT().Put(gomock.Any(), "runs/r1", gomock.Any(), ports.WriteCondition{MatchVersion: "v1"}).
			Return("", ports.ErrConflict), // the worker took it
		state.EXPECT().Get(gomock.Any(), "runs/r1").Return(ports.Record{Data: running, Version: "v2"}, nil),
		// Running: its execution is alive (a fresh heartbeat) …
		state.EXPECT().Get(gomock.Any(), "heartbeats/r1").Return(ports.Record{Data: beat, Version: "h1"}, nil),
		// … so the mark, then cancel requests.
		state.EXPECT().Get(gomock.Any(), "runs/r1").Return(ports.Record{Data: running, Version: "v2"}, nil),
		state.EXPECT().Put(gomock.Any(), "runs/r1", gomock.Any(), ports.WriteCondition{MatchVersion: "v2"}).
			DoAndReturn(func(_ context.Context, _ string, d []byte, _ ports.WriteCondition) (string, error) {
				require.NoError(t, json.Unmarshal(d, &marked))
				return "v3", nil
			}),
	)
	ok, err := l.Terminate(context.Background(), "r1")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, dag.RunRunning, marked.State, "the run task records the end")
	assert.False(t, marked.CancelRequestedAt.IsZero())
	got, err := cancels.Canceled(context.Background(), "r1:run", "r1.a", "r1.b")
	require.NoError(t, err)
	assert.Equal(t, []string{"r1:run", "r1.b"}, got, "the run task and its unfinished steps")
}

// ---- FIFO --------------------------------------------------------------------

func TestLauncher_FIFOQueueRunCompletes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, true)
		x.startWorker("w1", nil)
		job := dag.Job{Name: "diamond", Steps: []dag.Step{
			lnStep("a", lnArgs{Sleep: time.Second}),
			lnStep("b", lnArgs{Sleep: time.Second}, "a"),
			lnStep("c", lnArgs{Sleep: time.Second}, "a"),
			lnStep("d", lnArgs{Sleep: time.Second}, "b", "c"),
		}}
		runID, err := x.launcher.Launch(context.Background(), job, dag.LaunchOptions{RunID: "fifo"})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		rec, err := x.launcher.Wait(ctx, runID)
		require.NoError(t, err, "the run task must not hold its steps' message group")
		assert.Equal(t, dag.RunSucceeded, rec.State)
		_, rr := x.runResult(runID)
		d, _ := rr.Step("d")
		assert.JSONEq(t, `"d(b(a()),c(a()))"`, string(d.Output))
	})
}

func TestClient_GroupID(t *testing.T) {
	ctrl := gomock.NewController(t)
	broker := portsmock.NewMockBroker(ctrl)
	tr := memory.NewTransport()
	c, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:   broker,
			Results:  tr.ResultBackend(),
			NoCancel: true,
		},
		Logger: testutil.QuietLogger(),
	})
	require.NoError(t, err)
	defer c.Close()
	var groups []string
	broker.EXPECT().Send(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, msgs ...ports.Message) error {
		for _, m := range msgs {
			groups = append(groups, m.GroupID)
		}
		return nil
	})
	_, err = c.SubmitBatch(context.Background(),
		core.Request{Task: "t", ID: "x1"},
		core.Request{Task: "t", ID: "x2", RunID: "run"},
		lnWork.Request(lnArgs{}, core.WithID("x3"), core.WithRun("run", "s"), core.WithGroupID("own")),
	)
	require.NoError(t, err)
	assert.Equal(t, []string{"x1", "run", "own"}, groups)
	_, err = c.Submit(context.Background(), core.Request{Task: "t", GroupID: "has space"})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
}

// ---- validation, launch failures ------------------------------------------

func TestLauncher_Validation(t *testing.T) {
	tr := memory.NewTransport()
	c, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:   tr.Broker("q"),
			Results:  tr.ResultBackend(),
			NoCancel: true,
		},
		Logger: testutil.QuietLogger(),
	})
	require.NoError(t, err)
	defer c.Close()
	state := tr.StateStore()

	for name, o := range map[string]dag.LauncherOptions{
		"no client":       {State: state},
		"no state":        {Client: c},
		"stale too short": {Client: c, State: state, HeartbeatInterval: time.Second, StaleAfter: time.Second},
		"negative":        {Client: c, State: state, HeartbeatInterval: -time.Second},
	} {
		_, err := dag.NewLauncher(o)
		require.ErrorIs(t, err, ports.ErrInvalidArgument, name)
	}
	_, err = dag.NewLauncher(dag.LauncherOptions{Client: c, State: state, StaleAfter: 3 * time.Second})
	require.ErrorContains(t, err, "StaleAfter is 3s; it must be longer than HeartbeatInterval (5s)")

	reg := core.NewRegistry()
	require.ErrorIs(t, dag.RegisterRunTask(reg, dag.RunTaskDeps{State: state}), ports.ErrInvalidArgument)
	require.ErrorIs(t, dag.RegisterRunTask(reg, dag.RunTaskDeps{Client: c}), ports.ErrInvalidArgument)
	require.NoError(t, dag.RegisterRunTask(reg, dag.RunTaskDeps{Client: c, State: state}))
	require.Error(t, dag.RegisterRunTask(reg, dag.RunTaskDeps{Client: c, State: state}), "registered twice")
	_, ok := reg.Lookup(dag.RunTaskName)
	assert.True(t, ok)

	l, err := dag.NewLauncher(dag.LauncherOptions{Client: c, State: state, Logger: testutil.QuietLogger()})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = l.Launch(ctx, dag.Job{Name: "x"}, dag.LaunchOptions{})
	require.ErrorIs(t, err, dag.ErrInvalidJob)
	_, err = l.Launch(ctx, lnChain, dag.LaunchOptions{RunID: strings.Repeat("r", 125)})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	_, err = l.Launch(ctx, lnChain, dag.LaunchOptions{Retry: &core.RetryPolicy{}})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	_, err = l.Launch(ctx, lnChain, dag.LaunchOptions{CancelWait: -1})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	_, err = state.Get(ctx, "runs/"+strings.Repeat("r", 125))
	require.ErrorIs(t, err, ports.ErrNotFound, "nothing written")
}

func TestLauncher_DuplicateRunID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		_, err := x.launcher.Launch(context.Background(), lnChain, dag.LaunchOptions{RunID: "same"})
		require.NoError(t, err)
		_, err = x.launcher.Launch(context.Background(), lnChain, dag.LaunchOptions{RunID: "same"})
		require.ErrorIs(t, err, ports.ErrAlreadyExists)
		// The error names the run and when it was launched, not the
		// store's write-once refusal.
		require.Regexp(t, `run same already exists \(launched at \d{4}-\d\d-\d\dT\S+\)`, err.Error())
		require.NotContains(t, err.Error(), "memory:", "no adapter text")
		require.NotContains(t, err.Error(), "put record")
		s, err := x.tr.Stats(x.queue)
		require.NoError(t, err)
		assert.Equal(t, 1, s.Visible, "one run task")
	})
}

func TestLauncher_SubmitFailureMarksTheRunFailed(t *testing.T) {
	ctrl := gomock.NewController(t)
	broker := portsmock.NewMockBroker(ctrl)
	tr := memory.NewTransport()
	c, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:   broker,
			Results:  tr.ResultBackend(),
			NoCancel: true,
		},
		Logger: testutil.QuietLogger(),
	})
	require.NoError(t, err)
	defer c.Close()
	l, err := dag.NewLauncher(dag.LauncherOptions{Client: c, State: tr.StateStore(), Logger: testutil.QuietLogger()})
	require.NoError(t, err)
	var sent ports.Message
	broker.EXPECT().Send(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, msgs ...ports.Message) error {
		sent = msgs[0]
		return fmt.Errorf("sqs: %w", ports.ErrUnavailable)
	})
	runID, err := l.Launch(context.Background(), lnChain, dag.LaunchOptions{RunID: "nosend"})
	require.ErrorIs(t, err, ports.ErrUnavailable)
	assert.Equal(t, "nosend", runID)
	assert.Equal(t, "nosend:run", sent.ID)
	assert.Equal(t, "nosend:run", sent.GroupID, "not the steps' group")
	env, err := wire.Decode(sent.Body)
	require.NoError(t, err)
	assert.Equal(t, dag.RunTaskName, env.Task)
	assert.Equal(t, "nosend", env.RunID)
	require.NotNil(t, env.Retry)
	assert.Equal(t, dag.DefaultRunTaskRetry, core.RetryPolicy(*env.Retry))

	rec, err := l.Status(context.Background(), runID)
	require.NoError(t, err)
	assert.Equal(t, dag.RunFailed, rec.State)
	assert.Contains(t, rec.Error, "submit the run task")
}

func TestLauncher_RunTaskWithoutRecordFailsWithoutRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		x.startWorker("w1", nil)
		_, err := x.client.Submit(context.Background(), core.Request{
			Task: dag.RunTaskName, ID: dag.RunTaskID("ghost"),
			Args: map[string]any{"run_id": "ghost", "job": "j", "steps": []map[string]any{{"name": "a", "task": "work"}}},
		})
		require.NoError(t, err)
		res, _ := x.runResult("ghost")
		assert.Equal(t, ports.StateFailed, res.State)
		assert.Equal(t, 1, res.Attempts)
		assert.Contains(t, res.Error, "run not found")
		assert.Zero(t, x.calls.count("a"))
	})
}

// ---- executor resume ---------------------------------------------------------

func TestExecutor_ResumeReusesResultsAndWatchesSentSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		x.startWorker("w1", nil)
		ctx := context.Background()
		exec, err := dag.NewExecutor(x.client, dag.ExecutorOptions{Logger: testutil.QuietLogger()})
		require.NoError(t, err)
		job := dag.Job{Name: "resume", Steps: []dag.Step{
			lnStep("a", lnArgs{}),
			lnStep("b", lnArgs{Sleep: 5 * time.Second}, "a"),
			lnStep("c", lnArgs{}, "b"),
			lnStep("x", lnArgs{Fail: "no"}),
			lnStep("y", lnArgs{}, "x"),
		}}
		// An earlier run: a and x finished, b was sent and runs.
		results := x.tr.ResultBackend()
		require.NoError(t, results.Put(ctx, ports.Result{TaskID: "rs.a", State: ports.StateSucceeded, Output: []byte(`"a()"`), Attempts: 1}))
		require.NoError(t, results.Put(ctx, ports.Result{TaskID: "rs.x", State: ports.StateFailed, Error: "no", Attempts: 1}))
		_, err = x.client.Submit(ctx, lnWork.Request(lnArgs{Sleep: 5 * time.Second}, core.WithID("rs.b"), core.WithRun("rs", "b"),
			core.WithInputs(map[string]json.RawMessage{"a": json.RawMessage(`"a()"`)})))
		require.NoError(t, err)

		_, err = exec.Run(ctx, job, dag.RunOptions{RunID: "rs", Resume: &dag.Resume{Sent: []string{"nope"}}})
		require.ErrorIs(t, err, ports.ErrInvalidArgument)

		var log eventLog
		res, err := exec.Run(ctx, job, dag.RunOptions{RunID: "rs", OnEvent: log.add, Resume: &dag.Resume{Sent: []string{"a", "b"}}})
		require.NoError(t, err)
		assert.Equal(t, dag.RunFailed, res.State)
		states := map[string]dag.StepState{}
		for _, s := range res.Steps {
			states[s.Name] = s.State
		}
		assert.Equal(t, map[string]dag.StepState{"a": "succeeded", "b": "succeeded", "c": "succeeded", "x": "failed", "y": "skipped"}, states)
		assert.Zero(t, x.calls.count("a"), "reused")
		assert.Equal(t, 1, x.calls.count("b"), "watched, not submitted again")
		assert.Equal(t, 1, x.calls.count("c"))
		assert.Zero(t, x.calls.count("x"), "its failure is reused")
		c, _ := res.Step("c")
		assert.JSONEq(t, `"c(b(a()))"`, string(c.Output))
		requireEventOrder(t, log.all(), job)
		assert.Equal(t, []string{"queued", "succeeded"}, log.of("a"))
		st := x.client.Stats()
		entries, scheduled, watches := st.Tracked, st.ScheduledReads, st.Watches
		assert.Zero(t, entries+scheduled+watches)
	})
}

func TestWorkerIDFromContext(t *testing.T) {
	assert.Empty(t, core.WorkerIDFromContext(context.Background()))
	assert.Equal(t, "w7", core.WorkerIDFromContext(core.ContextWithWorkerID(context.Background(), "w7")))
	assert.True(t, errors.Is(fmt.Errorf("x: %w", dag.ErrRunNotFound), dag.ErrRunNotFound))
}

// A run whose worker died and whose run task's message is gone (here: the
// queue was deleted and created again) has nobody left to finish it:
// Terminate ends it itself, and a Wait that began before ends too.
func TestLauncher_TerminateEndsARunWhoseTaskIsGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false) // StaleAfter 15s
		ctx := context.Background()
		w1 := x.startWorker("w1", nil)
		job := dag.Job{Name: "orphan", Steps: []dag.Step{
			lnStep("a", lnArgs{Sleep: time.Second}),
			lnStep("b", lnArgs{BlockOn: "w1"}, "a"),
			lnStep("c", lnArgs{}, "b"),
		}}
		runID, err := x.launcher.Launch(ctx, job, dag.LaunchOptions{RunID: "orphan"})
		require.NoError(t, err)
		require.Equal(t, "b", <-x.calls.started)
		time.Sleep(6 * time.Second)

		// A waiter from before the loss, as "dagq launch --wait" would be.
		waited := make(chan dag.RunRecord, 1)
		go func() {
			wctx, cancel := context.WithTimeout(ctx, time.Hour)
			defer cancel()
			rec, err := x.launcher.Wait(wctx, runID)
			assert.NoError(t, err)
			waited <- rec
		}()

		w1.dead.Store(true) // the worker dies …
		require.NoError(t, x.tr.DeleteQueue(x.queue))
		require.NoError(t, x.tr.CreateQueue(x.queue, memory.QueueOptions{})) // … and the run task is lost
		time.Sleep(20 * time.Second)
		h := x.health(runID)
		require.Equal(t, dag.HealthFailed, h.Status)
		assert.Contains(t, h.Message, "stopped heartbeating")
		assert.Equal(t, dag.RunRunning, x.status(runID).State)

		begin := time.Now()
		ok, err := x.launcher.Terminate(ctx, runID)
		require.NoError(t, err)
		assert.True(t, ok)
		rec := x.status(runID)
		assert.Equal(t, dag.RunCancelled, rec.State)
		assert.Contains(t, rec.Error, "no live execution")
		assert.Contains(t, rec.Error, "w1")
		assert.Equal(t, map[string]dag.StepState{"a": "succeeded", "b": "cancelled", "c": "skipped"}, stepStates(rec))
		assert.Equal(t, dag.HealthCancelled, x.health(runID).Status)

		select {
		case got := <-waited:
			assert.Equal(t, dag.RunCancelled, got.State)
			assert.LessOrEqual(t, time.Since(begin), 6*time.Second, "the waiter saw the final record at its next look")
		case <-time.After(time.Minute):
			t.Fatal("Wait did not end after the run was terminated")
		}
		final, err := x.launcher.Wait(ctx, runID)
		require.NoError(t, err)
		assert.Equal(t, dag.RunCancelled, final.State)
		ok, err = x.launcher.Terminate(ctx, runID)
		require.NoError(t, err)
		assert.False(t, ok, "already ended")
	})
}

// A run task delivered after its run was ended as an orphan does not run
// the job again.
func TestLauncher_TerminatedOrphanIsNotResumed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		w1 := x.startWorker("w1", nil)
		job := dag.Job{Name: "orphan", Steps: []dag.Step{
			lnStep("a", lnArgs{BlockOn: "w1"}),
			lnStep("b", lnArgs{}, "a"),
		}}
		runID, err := x.launcher.Launch(ctx, job, dag.LaunchOptions{RunID: "late"})
		require.NoError(t, err)
		require.Equal(t, "a", <-x.calls.started)
		w1.dead.Store(true)          // its run task's lease runs out in 30s
		time.Sleep(16 * time.Second) // stale, not yet redelivered
		ok, err := x.launcher.Terminate(ctx, runID)
		require.NoError(t, err)
		require.True(t, ok)

		w2 := x.startWorker("w2", nil) // gets the run task once its lease expires
		time.Sleep(time.Minute)
		synctest.Wait()
		rec := x.status(runID)
		assert.Equal(t, dag.RunCancelled, rec.State)
		assert.Equal(t, 1, rec.Attempt, "nobody took the run over")
		assert.Equal(t, 1, x.calls.count("a"), "a was not run again")
		assert.Zero(t, x.calls.count("b"))
		assert.NotContains(t, w2.obs.outcomes(dag.RunTaskName), core.OutcomeFailed)
	})
}

// With the run task's lease as long as StaleAfter (what package app gives
// run workers), a run whose worker died is taken over within StaleAfter
// plus a heartbeat interval, not after a 30s step lease.
func TestLauncher_TakeoverWithinStaleAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false) // StaleAfter 15s, heartbeat 5s
		short := func(o *core.WorkerOptions) { o.Lease = 15 * time.Second }
		w1 := x.startWorker("w1", short)
		job := dag.Job{Name: "takeover", Steps: []dag.Step{
			lnStep("a", lnArgs{Sleep: time.Second}),
			lnStep("b", lnArgs{Sleep: time.Second, BlockOn: "w1"}, "a"),
		}}
		runID, err := x.launcher.Launch(context.Background(), job, dag.LaunchOptions{RunID: "takeover"})
		require.NoError(t, err)
		require.Equal(t, "b", <-x.calls.started)
		x.startWorker("w2", short)
		time.Sleep(7 * time.Second)
		w1.dead.Store(true)
		killed := time.Now()
		rec := x.wait(runID)
		require.Equal(t, dag.RunSucceeded, rec.State, rec.Error)
		assert.Equal(t, "w2", rec.Worker)
		took := rec.ResumedAt.Sub(killed)
		t.Logf("taken over %v after the worker died", took)
		assert.LessOrEqual(t, took, 15*time.Second+5*time.Second, "taken over %v after the worker died", took)
		assert.Equal(t, 1, x.calls.count("a"), "a's result was reused")
	})
}

// Taking a run over keeps what the record knew about its steps in flight:
// steps running on other, live workers stay "running" on those workers
// (not "queued") until they finish.
func TestLauncher_TakeoverKeepsRunningSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		oneSlot := func(o *core.WorkerOptions) { o.Concurrency, o.Prefetch, o.Lease = 1, -1, 15*time.Second }
		w1 := x.startWorker("w1", oneSlot) // runs the run task only: its one slot is taken
		job := dag.Job{Name: "keep", Steps: []dag.Step{
			lnStep("a", lnArgs{Sleep: 40 * time.Second}),
			lnStep("b", lnArgs{Sleep: 40 * time.Second}),
		}}
		runID, err := x.launcher.Launch(context.Background(), job, dag.LaunchOptions{RunID: "keep"})
		require.NoError(t, err)
		time.Sleep(time.Second)
		x.startWorker("w2", nil) // runs the steps
		time.Sleep(7 * time.Second)
		rec := x.status(runID)
		require.Equal(t, "w1", rec.Worker)
		for _, name := range []string{"a", "b"} {
			s, _ := rec.Step(name)
			require.Equal(t, dag.StepRunning, s.State, name)
			require.Equal(t, "w2", s.Worker, "%s: the worker running it", name)
		}

		w1.dead.Store(true)
		for range 60 {
			if rec = x.status(runID); rec.Attempt == 2 {
				break
			}
			time.Sleep(time.Second)
		}
		require.Equal(t, 2, rec.Attempt, "taken over")
		require.Equal(t, "w2", rec.Worker)
		time.Sleep(6 * time.Second) // the new execution has written the record
		rec = x.status(runID)
		for _, name := range []string{"a", "b"} {
			s, _ := rec.Step(name)
			assert.Equal(t, dag.StepRunning, s.State, "%s: still running on w2 after the takeover", name)
			assert.Equal(t, "w2", s.Worker, name)
		}
		rec = x.wait(runID)
		require.Equal(t, dag.RunSucceeded, rec.State, rec.Error)
		for _, name := range []string{"a", "b"} {
			s, _ := rec.Step(name)
			assert.Equal(t, "w2", s.Worker, "%s: recorded by w2", name)
			assert.Equal(t, 1, x.calls.count(name), "%s ran once", name)
		}
	})
}

// Between a run worker's death and the takeover nobody writes the record,
// but Status shows the steps that finished meanwhile as finished.
func TestLauncher_StatusOfAnOrphanShowsFinishedSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false) // StaleAfter 15s; run task lease 30s
		oneSlot := func(o *core.WorkerOptions) { o.Concurrency, o.Prefetch = 1, -1 }
		w1 := x.startWorker("w1", oneSlot)
		job := dag.Job{Name: "gap", Steps: []dag.Step{
			lnStep("a", lnArgs{Sleep: 12 * time.Second}),
			lnStep("b", lnArgs{Sleep: 40 * time.Second}),
		}}
		runID, err := x.launcher.Launch(context.Background(), job, dag.LaunchOptions{RunID: "gap"})
		require.NoError(t, err)
		time.Sleep(time.Second)
		x.startWorker("w2", nil) // runs a, later takes the run over and runs b
		time.Sleep(6 * time.Second)
		a, _ := x.status(runID).Step("a")
		require.Equal(t, dag.StepRunning, a.State)

		w1.dead.Store(true)
		time.Sleep(18 * time.Second) // a finished at ≈13s; the heartbeat is stale; no takeover before ≈37s
		rec := x.status(runID)
		require.Equal(t, 1, rec.Attempt, "not taken over yet")
		a, _ = rec.Step("a")
		assert.Equal(t, dag.StepSucceeded, a.State, "a finished on w2 meanwhile")
		assert.Equal(t, "w2", a.Worker)
		b, _ := rec.Step("b")
		assert.Equal(t, dag.StepRunning, b.State, "b still runs on w2")
		assert.Equal(t, "w2", b.Worker)

		rec = x.wait(runID)
		assert.Equal(t, dag.RunSucceeded, rec.State, rec.Error)
		assert.Equal(t, 1, x.calls.count("a"))
	})
}

// After a takeover the new execution's record may show a step running
// whose result is stored: it was stored while the takeover read the
// results, or the new execution has not polled it yet (its completion went
// to the dead worker's inbox), while a read of the orphan already showed it
// finished. Status of a resumed run brings such steps up to date from their
// stored results, so a finished step never goes back (TestFault_RunTakeover
// saw it under load).
func TestLauncher_StatusRightAfterATakeoverShowsFinishedSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		runID, err := x.launcher.Launch(ctx, dag.Job{Name: "race", Steps: []dag.Step{lnStep("a", lnArgs{})}},
			dag.LaunchOptions{RunID: "race"})
		require.NoError(t, err)
		// The record as a takeover's first write leaves it: running, attempt
		// 2, resumed now, step a running.
		now := time.Now().UTC()
		writeRunningRecord(t, x, runID, 2, "w-new", now)
		// a's result was stored meanwhile.
		require.NoError(t, x.tr.ResultBackend().Put(ctx, ports.Result{TaskID: dag.StepTaskID(runID, "a"),
			State: ports.StateSucceeded, Output: json.RawMessage(`"a"`), Attempts: 1, Worker: "w-old", FinishedAt: now}))

		for _, after := range []time.Duration{0, time.Hour} { // right after, and long after, the takeover
			time.Sleep(after)
			// The new execution is alive: its heartbeat is fresh.
			hb, err := json.Marshal(map[string]any{"worker": "w-new", "attempt": 2, "at": time.Now().UTC()})
			require.NoError(t, err)
			_, err = x.state.Put(ctx, dag.RunHeartbeatKey(runID), hb, ports.WriteCondition{})
			require.NoError(t, err)
			got, err := x.launcher.Status(ctx, runID)
			require.NoError(t, err)
			require.Equal(t, dag.RunRunning, got.State)
			a, _ := got.Step("a")
			assert.Equal(t, dag.StepSucceeded, a.State, "a's stored result, not the new execution's record, %v after", after)
			assert.Equal(t, "w-old", a.Worker)
		}
	})
}

// A status read that reads the record just before a takeover writes it,
// and the heartbeat just after, holds the dead execution's record with the
// new execution's fresh heartbeat: it must still show the steps' stored
// results (an earlier read of the orphan showed them), never the dead
// record's lagging states (TestFault_RunTakeover/SIGKILL saw a step go back
// under load).
func TestLauncher_StatusBetweenATakeoversWritesShowsFinishedSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		runID, err := x.launcher.Launch(ctx, dag.Job{Name: "race", Steps: []dag.Step{lnStep("a", lnArgs{})}},
			dag.LaunchOptions{RunID: "race2"})
		require.NoError(t, err)
		// The dead execution's record: running, attempt 1, step a running.
		now := time.Now().UTC()
		writeRunningRecord(t, x, runID, 1, "w-old", time.Time{})
		require.NoError(t, x.tr.ResultBackend().Put(ctx, ports.Result{TaskID: dag.StepTaskID(runID, "a"),
			State: ports.StateSucceeded, Output: json.RawMessage(`"a"`), Attempts: 1, Worker: "w-old", FinishedAt: now}))
		// The takeover's fresh heartbeat, attempt 2.
		hb, err := json.Marshal(map[string]any{"worker": "w-new", "attempt": 2, "at": now})
		require.NoError(t, err)
		_, err = x.state.Put(ctx, dag.RunHeartbeatKey(runID), hb, ports.WriteCondition{})
		require.NoError(t, err)

		got, err := x.launcher.Status(ctx, runID)
		require.NoError(t, err)
		require.Equal(t, dag.RunRunning, got.State)
		a, _ := got.Step("a")
		assert.Equal(t, dag.StepSucceeded, a.State, "a's stored result, not the dead execution's record")
	})
}

// writeRunningRecord overwrites run runID's record (of a one-step job "a")
// as an execution leaves it: running, the given attempt and worker, resumed
// at resumed (zero: not resumed), started a minute ago, step a running.
func writeRunningRecord(t *testing.T, x *lnWorld, runID string, attempt int, worker string, resumed time.Time) {
	t.Helper()
	ctx := context.Background()
	stored, err := x.state.Get(ctx, "runs/"+runID)
	require.NoError(t, err)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(stored.Data, &rec))
	rec["state"], rec["attempt"], rec["worker"] = "running", attempt, worker
	rec["started_at"] = time.Now().UTC().Add(-time.Minute)
	if !resumed.IsZero() {
		rec["resumed_at"] = resumed
	}
	steps := rec["steps"].([]any)
	steps[0].(map[string]any)["state"] = "running"
	steps[0].(map[string]any)["task_id"] = dag.StepTaskID(runID, "a")
	data, err := json.Marshal(rec)
	require.NoError(t, err)
	_, err = x.state.Put(ctx, "runs/"+runID, data, ports.WriteCondition{})
	require.NoError(t, err)
}
