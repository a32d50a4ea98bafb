package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func builtins(t *testing.T) *core.Registry {
	t.Helper()
	reg := core.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	return reg
}

func TestNew_MemoryRunsAJob(t *testing.T) {
	cfg := config.Default()
	cfg.Queue = "jobs"
	cfg.SQS.MaxDelay = 8 * time.Second // the memory transport keeps SQS's limits, and this knob
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer rt.Close()
	require.True(t, rt.Embedded())
	require.NotNil(t, rt.Client)
	require.NotNil(t, rt.Executor)
	require.NotNil(t, rt.Ports.Cancels, "cancellation is on by default")

	opts := rt.WorkerFactory.Options()
	require.Equal(t, cfg.Worker.Concurrency, opts.Concurrency)
	require.Equal(t, cfg.Worker.Lease, opts.Lease)
	require.Equal(t, cfg.Retry.Policy(), opts.Retry)
	require.Equal(t, 8*time.Second, opts.MaxDelay, "sqs.max_delay")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := rt.StartWorkers(ctx, 2)
	require.NoError(t, err)
	require.Len(t, pool.IDs(), 2)
	defer func() { require.NoError(t, pool.Stop()) }()

	job := dag.Job{Name: "j", Steps: []dag.Step{
		{Name: "a", Task: builtin.Echo, Args: json.RawMessage(`"x"`)},
		{Name: "b", Task: builtin.Transform, Args: json.RawMessage(`"upper"`), Upstream: []string{"a"}},
	}}
	res, err := rt.Executor.Run(ctx, job, dag.RunOptions{})
	require.NoError(t, err)
	require.Equal(t, dag.RunSucceeded, res.State)
	b, _ := res.Step("b")
	require.JSONEq(t, `"X"`, string(b.Output))
}

func TestNew_FIFOQueue(t *testing.T) {
	cfg := config.Default()
	cfg.Queue = "jobs.fifo"
	cfg.Launcher.Queue = "runs.fifo"
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	rt.Close()
	rt.Close() // idempotent
}

func TestNew_LauncherWiring(t *testing.T) {
	cfg := config.Default()
	cfg.Launcher.Concurrency = 3
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer rt.Close()
	require.NotNil(t, rt.Launcher)
	require.NotNil(t, rt.Ports.State)
	require.NotNil(t, rt.Ports.RunBroker)

	steps, runs := rt.WorkerFactory.Options(), rt.WorkerFactory.RunOptions()
	require.Equal(t, cfg.Worker.Concurrency, steps.Concurrency)
	require.Equal(t, cfg.Worker.MaxExtensions, steps.MaxExtensions)
	require.Equal(t, 3, runs.Concurrency, "launcher.concurrency: run slots of their own")
	require.Equal(t, app.RunWorkerMaxExtensions, runs.MaxExtensions, "a run task keeps its lease for the whole run")
	require.Equal(t, cfg.Worker.Lease, steps.Lease)
	require.Equal(t, cfg.Launcher.StaleAfter, runs.Lease, "a dead run worker's run task comes back when its heartbeat goes stale")
	require.Equal(t, []string{dag.RunTaskName}, runs.Registry.Names(), "run workers run only run tasks")
	require.NotContains(t, steps.Registry.Names(), dag.RunTaskName, "step workers run only steps")
	require.NotEqual(t, steps.Ports.Broker, runs.Ports.Broker)
	_, err = core.NewWorker(runs)
	require.NoError(t, err, "run worker options are valid")
}

// A run task holds a worker slot for the whole run; on a queue of its own
// it never starves the run's steps, even with one slot per worker.
func TestLaunch_OneSlotWorkersDoNotStarve(t *testing.T) {
	cfg := config.Default()
	cfg.Worker.Concurrency = 1
	cfg.Launcher.Concurrency = 1
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	steps, err := rt.StartWorkers(ctx, 1)
	require.NoError(t, err)
	defer func() { require.NoError(t, steps.Stop()) }()
	runs, err := rt.StartRunWorkers(ctx, 1)
	require.NoError(t, err)
	defer func() { require.NoError(t, runs.Stop()) }()

	job := dag.Job{Name: "j", Steps: []dag.Step{
		{Name: "a", Task: builtin.Echo, Args: json.RawMessage(`"x"`)},
		{Name: "b", Task: builtin.Transform, Args: json.RawMessage(`"upper"`), Upstream: []string{"a"}},
		{Name: "c", Task: builtin.Transform, Args: json.RawMessage(`"reverse"`), Upstream: []string{"a"}},
	}}
	var ids []string
	for range 2 { // the second run waits for the one run slot
		id, err := rt.Launcher.Launch(ctx, job, dag.LaunchOptions{})
		require.NoError(t, err)
		ids = append(ids, id)
	}
	for _, id := range ids {
		rec, err := rt.Launcher.Wait(ctx, id)
		require.NoError(t, err)
		require.Equal(t, dag.RunSucceeded, rec.State)
	}
}

func TestNew_CancellationSwitchOff(t *testing.T) {
	cfg := config.Default()
	cfg.Cancellation.Enabled = false
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer rt.Close()
	require.Nil(t, rt.Ports.Cancels, "no cancel channel is wired")
	require.Nil(t, rt.WorkerFactory.Options().Ports.Cancels)
	require.True(t, rt.WorkerFactory.Options().Ports.NoCancel, "workers run without cancellation on purpose")
}

func TestNew_Errors(t *testing.T) {
	cfg := config.Default()
	cfg.Transport = config.TransportSQS
	cfg.Worker.Concurrency = 0
	_, err := app.New(cfg, builtins(t))
	require.ErrorContains(t, err, `sqs.queue_url: is required with transport "sqs"`)
	require.ErrorContains(t, err, "worker.concurrency")
	require.ErrorIs(t, err, config.ErrInvalid)

	_, err = app.New(config.Default(), nil)
	require.ErrorContains(t, err, "registry is required")
}

func TestInitMemory_CleanupClosesClient(t *testing.T) {
	rt, cleanup, err := app.InitMemory(config.Default(), builtins(t), quiet(), nil)
	require.NoError(t, err)
	cleanup()
	_, err = rt.Client.Submit(context.Background(), core.Request{Task: builtin.Echo})
	require.Error(t, err, "the client is closed")
}

func TestNewLogger(t *testing.T) {
	for _, f := range config.LogFormats {
		for _, l := range config.LogLevels {
			_, err := app.NewLogger(config.LogConfig{Level: l, Format: f}, io.Discard)
			require.NoError(t, err)
		}
	}
	_, err := app.NewLogger(config.LogConfig{Level: "loud", Format: "text"}, io.Discard)
	require.ErrorContains(t, err, "log.level")
	_, err = app.NewLogger(config.LogConfig{Level: "info", Format: "xml"}, io.Discard)
	require.ErrorContains(t, err, "log.format")
}

// Durations are written for people in both formats: "10ms", not the
// nanoseconds encoding/json makes of a time.Duration.
func TestNewLogger_Durations(t *testing.T) {
	for _, f := range []string{config.LogFormatJSON, config.LogFormatText} {
		var buf bytes.Buffer
		log, err := app.NewLogger(config.LogConfig{Level: "info", Format: f}, &buf)
		require.NoError(t, err)
		log.Info("task failed; retrying", "retry_in", 10*time.Millisecond,
			slog.Group("lease", slog.Duration("left", 90*time.Second)))
		out := buf.String()
		require.NotContains(t, out, "10000000", f)
		if f == config.LogFormatJSON {
			require.Contains(t, out, `"retry_in":"10ms"`)
			require.Contains(t, out, `"lease":{"left":"1m30s"}`)
		} else {
			require.Contains(t, out, "retry_in=10ms")
			require.Contains(t, out, "lease.left=1m30s")
		}
	}
}

// payload.threshold and sqs.message_group reach the runtime's Client.
func TestNew_ClientKeys(t *testing.T) {
	cfg := config.Default()
	cfg.Queue, cfg.Launcher.Queue = "steps.fifo", "runs.fifo"
	cfg.SQS.MessageGroup = "task"
	cfg.Payload.Threshold = 1024
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer rt.Close()
	ctx := context.Background()

	_, err = rt.Client.SubmitBatch(ctx,
		core.Request{Task: builtin.Echo, ID: "r.a", RunID: "r", Args: "small"},
		core.Request{Task: builtin.Echo, ID: "r.b", RunID: "r", Args: string(make([]byte, 2048))})
	require.NoError(t, err)
	ds, err := rt.Ports.Broker.Receive(ctx, 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, ds, 2, "one group per task: both handed out at once")
	byID := map[string]ports.Delivery{}
	for _, d := range ds {
		byID[d.ID] = d
	}
	require.Equal(t, "r.a", byID["r.a"].GroupID)
	require.Empty(t, byID["r.a"].Attributes[wire.PayloadAttribute], "below the threshold: inline")
	require.NotEmpty(t, byID["r.b"].Attributes[wire.PayloadAttribute], "above payload.threshold: claim check")
}
