package dag_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/testutil"
	"github.com/dagq/dagq/ports"
)

// The DAG layer's tests run real Workers over the in-memory adapters (SQS/S3
// semantics: leases, redelivery, write-once results, broadcast cancels),
// mostly on synctest's fake clock.

const wmQueue = "tasks"

// wmWorld is one memory transport with its task queue.
type wmWorld struct {
	t       *testing.T
	tr      *memory.Transport
	results ports.ResultBackend
	cancels ports.CancelChannel
}

// wmRunning is a worker running in the background.
type wmRunning struct {
	w    *core.Worker
	logs *testutil.LogSink
	stop func() error
}

// wkNoJitter is the retry policy of most tests: 3 attempts, 2s then 4s.
var wkNoJitter = core.RetryPolicy{MaxAttempts: 3, InitialBackoff: 2 * time.Second, MaxBackoff: time.Minute, Multiplier: 2}

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
			for _, c := range []interface{ Close() error }{opts.Ports.Broker, opts.Ports.Results, opts.Ports.Cancels, opts.Ports.Completions} {
				if c != nil {
					_ = c.Close()
				}
			}
		})
		return runErr
	}}
	m.t.Cleanup(func() { _ = r.stop() }) // after a failed assertion too
	return r
}
