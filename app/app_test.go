package app_test

import (
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
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// os/signal's relay goroutine lives for the process once a command
		// has listened for Ctrl-C.
		goleak.IgnoreTopFunction("os/signal.signal_recv"),
		goleak.IgnoreTopFunction("os/signal.loop"),
	)
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
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer rt.Close()
	require.True(t, rt.Embedded())
	require.NotNil(t, rt.Client)
	require.NotNil(t, rt.Executor)
	require.NotNil(t, rt.Ports.Cancels, "cancellation is on by default")

	opts := rt.Workers.Options()
	require.Equal(t, cfg.Worker.Concurrency, opts.Concurrency)
	require.Equal(t, cfg.Worker.Lease, opts.Lease)
	require.Equal(t, cfg.Retry.Policy(), opts.Retry)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := rt.StartWorkers(ctx, 2)
	require.NoError(t, err)
	require.Len(t, pool.IDs(), 2)
	defer func() { require.NoError(t, pool.Stop()) }()

	job := core.Job{Name: "j", Steps: []core.Step{
		{Name: "a", Task: builtin.Echo, Args: json.RawMessage(`"x"`)},
		{Name: "b", Task: builtin.Transform, Args: json.RawMessage(`"upper"`), Upstream: []string{"a"}},
	}}
	res, err := rt.Executor.Run(ctx, job, core.RunOptions{})
	require.NoError(t, err)
	require.Equal(t, core.RunSucceeded, res.State)
	b, _ := res.Step("b")
	require.JSONEq(t, `"X"`, string(b.Output))
}

func TestNew_FIFOQueue(t *testing.T) {
	cfg := config.Default()
	cfg.Queue = "jobs.fifo"
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	rt.Close()
	rt.Close() // idempotent
}

func TestNew_CancellationSwitchOff(t *testing.T) {
	cfg := config.Default()
	cfg.Cancellation.Enabled = false
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer rt.Close()
	require.Nil(t, rt.Ports.Cancels, "no cancel channel is wired")
	require.Nil(t, rt.Workers.Options().Cancels)
}

func TestNew_Errors(t *testing.T) {
	cfg := config.Default()
	cfg.Transport = config.TransportSQS
	cfg.Worker.Concurrency = 0
	_, err := app.New(cfg, builtins(t))
	require.ErrorContains(t, err, `transport: "sqs" is not yet supported by this build; valid values: memory`)
	require.ErrorContains(t, err, "worker.concurrency")
	require.ErrorIs(t, err, config.ErrInvalid)

	_, err = app.New(config.Default(), nil)
	require.ErrorContains(t, err, "registry is required")
}

func TestInitMemory_CleanupClosesClient(t *testing.T) {
	rt, cleanup, err := app.InitMemory(config.Default(), builtins(t), quiet())
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
