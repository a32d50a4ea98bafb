package telemetry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/app/telemetry"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// Tracing end to end over the memory transport with real workers, on
// synctest's fake clock, spans recorded by an in-memory exporter.

const (
	taskQueue = "tasks"
	runQueue  = "runs"
)

// world is a memory transport with one step worker, one run worker and a
// client, all traced by tracer (nil: tracing off).
type world struct {
	t        *testing.T
	exp      *tracetest.InMemoryExporter
	tp       *sdktrace.TracerProvider
	tr       *memory.Transport
	client   *core.Client
	launcher *dag.Launcher

	mu    sync.Mutex
	metas []map[string]string // Task.Meta of every handler run
}

func newWorld(t *testing.T, traced bool) *world {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	var tracer core.Tracer
	if traced {
		tracer = telemetry.NewTracer(tp)
	}
	tr := memory.NewTransport()
	require.NoError(t, tr.CreateQueue(taskQueue, memory.QueueOptions{}))
	require.NoError(t, tr.CreateQueue(runQueue, memory.QueueOptions{}))
	w := &world{t: t, exp: exp, tp: tp, tr: tr}

	reg := core.NewRegistry()
	require.NoError(t, reg.HandleFunc("work", w.work))
	client, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:      tr.Broker(taskQueue),
			Results:     tr.ResultBackend(),
			Cancels:     tr.CancelChannel(),
			Completions: tr.CompletionBus(),
		},
		Tracer: tracer,
	})
	require.NoError(t, err)
	w.client = client
	runClient, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:      tr.Broker(runQueue),
			Results:     tr.ResultBackend(),
			Cancels:     tr.CancelChannel(),
			Completions: tr.CompletionBus(),
		},
		Tracer: tracer,
	})
	require.NoError(t, err)
	w.launcher, err = dag.NewLauncher(dag.LauncherOptions{Client: runClient, State: tr.StateStore()})
	require.NoError(t, err)
	runReg := core.NewRegistry()
	require.NoError(t, dag.RegisterRunTask(runReg, dag.RunTaskDeps{Client: client, State: tr.StateStore()}))

	noJitter := core.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Second, MaxBackoff: time.Second, Multiplier: 1}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, o := range []core.WorkerOptions{
		{Ports: core.Ports{Broker: tr.Broker(taskQueue)}, Registry: reg},
		{Ports: core.Ports{Broker: tr.Broker(runQueue)}, Registry: runReg},
	} {
		o.Ports.Results, o.Ports.Cancels, o.Ports.Completions, o.Tracer, o.Retry = tr.ResultBackend(), tr.CancelChannel(), tr.CompletionBus(), tracer, noJitter
		wk, err := core.NewWorker(o)
		require.NoError(t, err)
		wg.Go(func() { _ = wk.Run(ctx) })
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = client.Close()
		_ = runClient.Close()
	})
	return w
}

// workArgs are the arguments of the test task "work".
type workArgs struct {
	Fail  string `json:"fail,omitempty"`  // fail with this message
	Block bool   `json:"block,omitempty"` // wait for the context
}

// work records the task's Meta, opens a child span of its context and
// fails, blocks or returns "ok" as its arguments say.
func (w *world) work(ctx context.Context, t *core.Task) (json.RawMessage, error) {
	w.mu.Lock()
	w.metas = append(w.metas, t.Meta)
	w.mu.Unlock()
	_, span := trace.SpanFromContext(ctx).TracerProvider().Tracer("user").Start(ctx, "user work")
	defer span.End()
	var a workArgs
	if len(t.Args) > 0 {
		if err := json.Unmarshal(t.Args, &a); err != nil {
			return nil, err
		}
	}
	switch {
	case a.Block:
		<-ctx.Done()
		return nil, context.Cause(ctx)
	case a.Fail != "":
		return nil, errors.New(a.Fail)
	}
	return json.RawMessage(`"ok"`), nil
}

// spans returns the ended spans by name (several per name in start order).
func (w *world) spans() map[string][]tracetest.SpanStub {
	out := map[string][]tracetest.SpanStub{}
	for _, s := range w.exp.GetSpans() {
		out[s.Name] = append(out[s.Name], s)
	}
	return out
}

// one returns the only span named name.
func one(t *testing.T, spans map[string][]tracetest.SpanStub, name string) tracetest.SpanStub {
	t.Helper()
	require.Len(t, spans[name], 1, "spans named %q", name)
	return spans[name][0]
}

func requireChild(t *testing.T, parent, child tracetest.SpanStub) {
	t.Helper()
	assert.Equal(t, parent.SpanContext.TraceID(), child.SpanContext.TraceID(), "%s is in the trace of %s", child.Name, parent.Name)
	assert.Equal(t, parent.SpanContext.SpanID(), child.Parent.SpanID(), "%s is a child of %s", child.Name, parent.Name)
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestSubmittedTaskSpanIsChildOfSubmitSpan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, true)
		ctx, caller := w.tp.Tracer("test").Start(context.Background(), "caller")
		meta := map[string]string{"mine": "1"}
		id, err := w.client.Submit(ctx, core.Request{Task: "work", Meta: meta, Labels: map[string]string{"a": "b"}})
		require.NoError(t, err)
		res, err := w.client.Wait(ctx, id)
		require.NoError(t, err)
		require.Equal(t, ports.StateSucceeded, res.State)
		caller.End()

		assert.Equal(t, map[string]string{"mine": "1"}, meta, "the caller's Meta is not modified")
		require.Len(t, w.metas, 1)
		assert.Equal(t, "1", w.metas[0]["mine"], "the caller's Meta travels")
		assert.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`, w.metas[0]["traceparent"])

		spans := w.spans()
		submit, task, user := one(t, spans, "dagq.submit work"), one(t, spans, "dagq.task work"), one(t, spans, "user work")
		requireChild(t, one(t, spans, "caller"), submit)
		requireChild(t, submit, task)
		requireChild(t, task, user)
		assert.True(t, task.Parent.IsRemote(), "the task span's parent came in the envelope")
		assert.Equal(t, trace.SpanKindProducer, submit.SpanKind)
		assert.Equal(t, trace.SpanKindConsumer, task.SpanKind)
		assert.Equal(t, codes.Unset, task.Status.Code)
		a := attrs(task)
		assert.Equal(t, id, a[telemetry.AttrTaskID].AsString())
		assert.Equal(t, "work", a[telemetry.AttrTaskName].AsString())
		assert.Equal(t, int64(1), a[telemetry.AttrAttempt].AsInt64())
		assert.Equal(t, "dagq", a["messaging.system"].AsString())
		assert.Equal(t, "process", a["messaging.operation.type"].AsString())
		assert.NotEmpty(t, a[telemetry.AttrWorkerID].AsString())
		assert.Equal(t, "send", attrs(submit)["messaging.operation.type"].AsString())
		assert.Equal(t, id, attrs(submit)[telemetry.AttrTaskID].AsString())
	})
}

func TestRunStepsNestUnderRunSpan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, true)
		exec, err := dag.NewExecutor(w.client, dag.ExecutorOptions{})
		require.NoError(t, err)
		job := dag.Job{Name: "three", Steps: []dag.Step{
			{Name: "a", Task: "work"},
			{Name: "b", Task: "work", Upstream: []string{"a"}},
			{Name: "c", Task: "work", Upstream: []string{"a"}},
		}}
		res, err := exec.Run(context.Background(), job, dag.RunOptions{RunID: "r1"})
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, res.State)

		spans := w.spans()
		run := one(t, spans, "dagq.run three")
		assert.False(t, run.Parent.IsValid(), "the run is the root of its trace")
		assert.Equal(t, "r1", attrs(run)[telemetry.AttrRunID].AsString())
		require.Len(t, spans["dagq.submit work"], 3)
		require.Len(t, spans["dagq.task work"], 3)
		submits := map[string]tracetest.SpanStub{}
		for _, s := range spans["dagq.submit work"] {
			requireChild(t, run, s)
			submits[attrs(s)[telemetry.AttrStepID].AsString()] = s
		}
		for _, s := range spans["dagq.task work"] {
			step := attrs(s)[telemetry.AttrStepID].AsString()
			require.Contains(t, submits, step)
			requireChild(t, submits[step], s)
			assert.Equal(t, "r1", attrs(s)[telemetry.AttrRunID].AsString())
			assert.Equal(t, dag.StepTaskID("r1", step), attrs(s)[telemetry.AttrTaskID].AsString())
		}
	})
}

func TestLaunchedRunStepsNestUnderRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, true)
		job := dag.Job{Name: "chain", Steps: []dag.Step{
			{Name: "a", Task: "work"},
			{Name: "b", Task: "work", Upstream: []string{"a"}},
		}}
		runID, err := w.launcher.Launch(context.Background(), job, dag.LaunchOptions{})
		require.NoError(t, err)
		rec, err := w.launcher.Wait(context.Background(), runID)
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, rec.State)

		spans := w.spans()
		launch := one(t, spans, "dagq.launch chain")
		assert.Equal(t, runID, attrs(launch)[telemetry.AttrRunID].AsString())
		submitRun := one(t, spans, "dagq.submit "+dag.RunTaskName)
		taskRun := one(t, spans, "dagq.task "+dag.RunTaskName)
		run := one(t, spans, "dagq.run chain")
		requireChild(t, launch, submitRun)
		requireChild(t, submitRun, taskRun)
		requireChild(t, taskRun, run)
		require.Len(t, spans["dagq.submit work"], 2)
		for _, s := range spans["dagq.submit work"] {
			requireChild(t, run, s)
		}
		for _, s := range spans["dagq.task work"] {
			assert.Equal(t, launch.SpanContext.TraceID(), s.SpanContext.TraceID())
		}
	})
}

func TestFailedTaskSpanIsError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, true)
		id, err := w.client.Submit(context.Background(), core.Request{Task: "work", Args: workArgs{Fail: "boom"}})
		require.NoError(t, err)
		res, err := w.client.Wait(context.Background(), id)
		require.NoError(t, err)
		require.Equal(t, ports.StateFailed, res.State)

		spans := w.spans()
		submit := one(t, spans, "dagq.submit work")
		assert.Equal(t, codes.Unset, submit.Status.Code, "the submission itself succeeded")
		tasks := spans["dagq.task work"]
		require.Len(t, tasks, 2, "one span per attempt (MaxAttempts 2)")
		for i, s := range tasks {
			requireChild(t, submit, s)
			assert.Equal(t, codes.Error, s.Status.Code)
			assert.Equal(t, "boom", s.Status.Description)
			assert.Equal(t, int64(i+1), attrs(s)[telemetry.AttrAttempt].AsInt64())
			assert.Equal(t, "_OTHER", attrs(s)["error.type"].AsString())
			require.NotEmpty(t, s.Events)
			assert.Equal(t, "exception", s.Events[0].Name)
		}
	})
}

func TestCancelledTaskSpanIsError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, true)
		ctx := context.Background()
		id, err := w.client.Submit(ctx, core.Request{Task: "work", Args: workArgs{Block: true}})
		require.NoError(t, err)
		synctest.Wait() // the handler blocks
		require.NoError(t, w.client.Cancel(ctx, id))
		res, err := w.client.Wait(ctx, id)
		require.NoError(t, err)
		require.Equal(t, ports.StateCancelled, res.State)

		task := one(t, w.spans(), "dagq.task work")
		assert.Equal(t, codes.Error, task.Status.Code)
		assert.Contains(t, task.Status.Description, core.ErrTaskCanceled.Error())
		assert.Equal(t, "cancelled", attrs(task)["error.type"].AsString())
	})
}

func TestFailedSubmitSpanIsError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, true)
		_, err := w.client.SubmitBatch(context.Background(),
			core.Request{Task: "work"}, core.Request{Task: "work", Delay: -time.Second})
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
		spans := w.spans()["dagq.submit work"]
		require.Len(t, spans, 2)
		for _, s := range spans {
			assert.Equal(t, codes.Error, s.Status.Code, "nothing was sent")
		}
	})
}

func TestTracingOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, false)
		ctx, caller := w.tp.Tracer("test").Start(context.Background(), "caller")
		id, err := w.client.Submit(ctx, core.Request{Task: "work"})
		require.NoError(t, err)
		_, err = w.client.Wait(ctx, id)
		require.NoError(t, err)
		exec, err := dag.NewExecutor(w.client, dag.ExecutorOptions{})
		require.NoError(t, err)
		res, err := exec.Run(ctx, dag.Job{Name: "j", Steps: []dag.Step{{Name: "a", Task: "work"}}}, dag.RunOptions{})
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, res.State)
		caller.End()

		require.Len(t, w.metas, 2)
		for _, m := range w.metas {
			assert.Nil(t, m, "nothing is added to Meta")
		}
		var names []string
		for _, s := range w.exp.GetSpans() {
			names = append(names, s.Name)
		}
		// No dagq span, and the handlers' contexts carry no span either, so
		// their "user work" spans are not recorded.
		assert.Equal(t, []string{"caller"}, names)
	})
}

// BenchmarkSubmitWait measures the cost of tracing a submission and its
// handler over the memory transport (go test -bench . ./app/telemetry).
func BenchmarkSubmitWait(b *testing.B) {
	for _, traced := range []bool{false, true} {
		b.Run(fmt.Sprintf("traced=%v", traced), func(b *testing.B) {
			// As in production: a batching processor, here to an exporter
			// that drops the spans.
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
			defer func() { _ = tp.Shutdown(context.Background()) }()
			var tracer core.Tracer
			if traced {
				tracer = telemetry.NewTracer(tp)
			}
			tr := memory.NewTransport()
			require.NoError(b, tr.CreateQueue(taskQueue, memory.QueueOptions{}))
			reg := core.NewRegistry()
			require.NoError(b, reg.HandleFunc("noop", func(context.Context, *core.Task) (json.RawMessage, error) { return nil, nil }))
			client, err := core.NewClient(core.ClientOptions{
				Ports: core.Ports{
					Broker:      tr.Broker(taskQueue),
					Results:     tr.ResultBackend(),
					Completions: tr.CompletionBus(),
					NoCancel:    true,
				},
				Tracer: tracer,
			})
			require.NoError(b, err)
			defer client.Close()
			wk, err := core.NewWorker(core.WorkerOptions{
				Ports: core.Ports{
					Broker:      tr.Broker(taskQueue),
					Results:     tr.ResultBackend(),
					Completions: tr.CompletionBus(),
					NoCancel:    true,
				},
				Registry:    reg,
				Tracer:      tracer,
				Concurrency: 64,
				Logger:      slog.New(slog.DiscardHandler),
			})
			require.NoError(b, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = wk.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			b.ResetTimer()
			for b.Loop() {
				id, err := client.Submit(ctx, core.Request{Task: "noop"})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := client.Wait(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
