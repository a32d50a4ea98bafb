package cli_test

import (
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/core"
)

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(e2eWorkerEnv); ok {
		os.Exit(e2eWorkerMain(args)) // a "dagq worker" process of TestE2E_ThreeWorkerProcesses
	}
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
