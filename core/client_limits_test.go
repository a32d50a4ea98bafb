package core_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// Size limits: ClientOptions.MaxEnvelopeBytes at Submit and
// WorkerOptions.MaxResultBytes in the worker.

func TestLimits_EnvelopeCapEvenWithPayloadStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		store := &keyStore{PayloadStore: m.tr.PayloadStore()}
		c, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:   m.producer,
				Results:  m.results,
				Payloads: store,
				NoCancel: true,
			},
			MaxEnvelopeBytes: 1 << 20,
			Logger:           quietLogger(),
		})
		require.NoError(t, err)
		defer c.Close()
		ctx := context.Background()

		_, err = c.Submit(ctx, core.Request{Task: "len", Args: bigArgs(2 << 20)})
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
		for _, want := range []string{"nothing sent", `task "len"`, "the envelope is 2097", "above the limit of 1048576 bytes",
			"ClientOptions.MaxEnvelopeBytes"} {
			require.ErrorContains(t, err, want)
		}
		// In a batch: the index is named and nothing at all is sent or stored.
		ids, err := c.SubmitBatch(ctx, core.Request{Task: "len", Args: "small"},
			core.Request{Task: "len", Args: bigArgs(2 << 20)})
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
		require.ErrorContains(t, err, "request 1")
		require.Nil(t, ids)
		require.Empty(t, store.keys, "nothing stored")
		require.Zero(t, m.stats())

		// Below the cap and above the threshold: the claim check as before.
		_, err = c.Submit(ctx, core.Request{Task: "len", Args: bigArgs(900 << 10)})
		require.NoError(t, err)
		store.onlyKey(t)
	})
}

func TestLimits_EnvelopeCapOption(t *testing.T) {
	m := newWmWorld(t)
	_, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:   m.producer,
			Results:  m.results,
			NoCancel: true,
		},
		MaxEnvelopeBytes: -1,
	})
	require.NoError(t, err, "negative: no limit")

	_, err = core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:   m.producer,
			Results:  m.results,
			NoCancel: true,
		},
		MaxEnvelopeBytes: 100,
	})
	require.NoError(t, err, "a cap below the payload threshold is allowed: the threshold never matters then")
	require.Equal(t, 64<<20, core.DefaultMaxEnvelopeBytes)
}

func TestLimits_OversizedResultFailsWithoutRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		var runs atomic.Int32
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("big", func(_ context.Context, task *core.Task) (json.RawMessage, error) {
			runs.Add(1)
			var n int
			if err := json.Unmarshal(task.Args, &n); err != nil {
				return nil, err
			}
			return json.Marshal(strings.Repeat("x", n))
		}))
		w := m.startWorker(reg, func(o *core.WorkerOptions) {
			o.MaxResultBytes = 1000
			o.Retry.MaxAttempts = 5
		})
		c, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:      m.producer,
				Results:     m.results,
				Completions: m.tr.CompletionBus(),
				NoCancel:    true,
			},
			Logger: quietLogger(),
		})
		require.NoError(t, err)
		defer c.Close()
		ctx := context.Background()

		id, err := c.Submit(ctx, core.Request{Task: "big", Args: 2000})
		require.NoError(t, err)
		res, err := c.Wait(ctx, id)
		require.NoError(t, err)
		require.Equal(t, ports.StateFailed, res.State)
		require.Equal(t, 1, res.Attempts)
		require.Contains(t, res.Error, "result of 2002 bytes exceeds the limit of 1000 (WorkerOptions.MaxResultBytes)")
		require.Empty(t, res.Output)
		require.Equal(t, int32(1), runs.Load(), "not retried")

		// At the limit: stored as usual.
		id, err = c.Submit(ctx, core.Request{Task: "big", Args: 998})
		require.NoError(t, err)
		res, err = c.Wait(ctx, id)
		require.NoError(t, err)
		require.Equal(t, ports.StateSucceeded, res.State, res.Error)
		require.Len(t, res.Output, 1000)

		require.NoError(t, w.stop())
		require.Zero(t, m.stats(), "every message acked")
	})
}

func TestLimits_DefaultResultCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("big", func(context.Context, *core.Task) (json.RawMessage, error) {
			return json.Marshal(strings.Repeat("x", core.DefaultMaxResultBytes))
		}))
		w := m.startWorker(reg, nil)
		m.submit(wire.Envelope{TaskID: "t1", Task: "big"})
		res := m.result("t1")
		require.Equal(t, ports.StateFailed, res.State)
		require.Contains(t, res.Error, "exceeds the limit of 4194304 (WorkerOptions.MaxResultBytes)")
		require.NoError(t, w.stop())

		// Negative: no limit.
		w = m.startWorker(reg, func(o *core.WorkerOptions) { o.MaxResultBytes = -1 })
		m.submit(wire.Envelope{TaskID: "t2", Task: "big"})
		res = m.result("t2")
		require.Equal(t, ports.StateSucceeded, res.State, res.Error)
		require.NoError(t, w.stop())
	})
}
