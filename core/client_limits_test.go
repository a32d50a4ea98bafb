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

// Submit refuses every envelope field over its limit (the same limits the
// worker applies at decode) with an error naming the field, its size and
// the limit; nothing is sent, in a batch neither.
func TestLimits_SubmitRefusesOverLimitFields(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	many := func(n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m[strings.Repeat("k", i+1)] = "v"
		}
		return m
	}
	cases := []struct {
		name string
		req  core.Request
		want string
	}{
		{"task ID", core.Request{Task: "a", ID: long(129)}, "is 129 bytes; the limit is 128"},
		{"task name", core.Request{Task: long(129)}, `task name (field "task") is 129 bytes; the limit is 128`},
		{"group ID", core.Request{Task: "a", GroupID: long(129)}, "group ID: invalid argument: task ID"},
		{"run ID", core.Request{Task: "a", RunID: long(129)}, `run ID (field "run") is 129 bytes; the limit is 128`},
		{"step ID", core.Request{Task: "a", StepID: long(129)}, `step ID (field "step") is 129 bytes; the limit is 128`},
		{"labels", core.Request{Task: "a", Labels: many(65)}, `labels (field "labels") has 65 entries; the limit is 64`},
		{"label key", core.Request{Task: "a", Labels: map[string]string{long(129): "v"}}, `label key (field "labels") is 129 bytes; the limit is 128`},
		{"label value", core.Request{Task: "a", Labels: map[string]string{"k": long(1025)}}, `label "k" (field "labels") is 1025 bytes; the limit is 1024`},
		{"meta", core.Request{Task: "a", Meta: many(65)}, `meta (field "meta") has 65 entries; the limit is 64`},
		{"meta value", core.Request{Task: "a", Meta: map[string]string{"k": long(1025)}}, `meta "k" (field "meta") is 1025 bytes; the limit is 1024`},
		{"param name", core.Request{Task: "a", Params: map[string]string{long(129): "v"}}, `param name (field "params") is 129 bytes; the limit is 128`},
		{"input name", core.Request{Task: "a", Inputs: map[string]json.RawMessage{long(129): json.RawMessage(`1`)}}, `input name (field "inputs") is 129 bytes; the limit is 128`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newWmWorld(t)
			c, err := core.NewClient(core.ClientOptions{
				Ports:  core.Ports{Broker: m.producer, Results: m.results, NoCancel: true},
				Logger: quietLogger(),
			})
			require.NoError(t, err)
			defer c.Close()
			_, err = c.Submit(context.Background(), tc.req)
			require.ErrorIs(t, err, ports.ErrInvalidArgument)
			require.ErrorContains(t, err, "nothing sent")
			require.ErrorContains(t, err, tc.want)

			ids, err := c.SubmitBatch(context.Background(), core.Request{Task: "a"}, tc.req)
			require.ErrorIs(t, err, ports.ErrInvalidArgument)
			require.ErrorContains(t, err, "request 1")
			require.Nil(t, ids)
			require.Zero(t, m.stats(), "nothing sent")
		})
	}

	// At the limits: accepted.
	m := newWmWorld(t)
	c, err := core.NewClient(core.ClientOptions{
		Ports:  core.Ports{Broker: m.producer, Results: m.results, NoCancel: true},
		Logger: quietLogger(),
	})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Submit(context.Background(), core.Request{Task: long(128), ID: long(128), GroupID: long(128),
		RunID: long(128), StepID: long(128), Labels: many(64), Meta: map[string]string{long(128): long(1024)},
		Params: map[string]string{long(128): long(5000)}})
	require.NoError(t, err)
}

// keyLimited is a store with a key limit of its own (ports.KeyLimiter).
type keyLimited struct {
	ports.ResultBackend
	max int
}

func (k keyLimited) MaxKeyLen() int { return k.max }

type keyLimitedPayloads struct {
	ports.PayloadStore
	max int
}

func (k keyLimitedPayloads) MaxKeyLen() int { return k.max }

// A store that cannot hold every valid task ID (or claim-check key) fails
// construction, naming the limit, instead of tasks that run and then cannot
// record their results.
func TestLimits_StoreKeyLimitCheckedAtConstruction(t *testing.T) {
	m := newWmWorld(t)
	reg := core.NewRegistry()
	for _, tc := range []struct {
		name    string
		ports   core.Ports
		wantErr string
	}{
		{"results below the ID limit", core.Ports{Broker: m.producer, NoCancel: true,
			Results: keyLimited{m.results, 127}}, "Results stores keys of at most 127 bytes, but task IDs take up to 128"},
		{"payloads below the claim-check key limit", core.Ports{Broker: m.producer, NoCancel: true, Results: m.results,
			Payloads: keyLimitedPayloads{m.tr.PayloadStore(), 160}}, "Payloads stores keys of at most 160 bytes, but claim-check keys take up to 161"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := core.NewClient(core.ClientOptions{Ports: tc.ports})
			require.ErrorIs(t, err, ports.ErrInvalidArgument)
			require.ErrorContains(t, err, tc.wantErr)
			_, err = core.NewWorker(core.WorkerOptions{Ports: tc.ports, Registry: reg})
			require.ErrorIs(t, err, ports.ErrInvalidArgument)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
	// At the limits: fine.
	_, err := core.NewClient(core.ClientOptions{Ports: core.Ports{Broker: m.producer, NoCancel: true,
		Results: keyLimited{m.results, 128}, Payloads: keyLimitedPayloads{m.tr.PayloadStore(), 161}}})
	require.NoError(t, err)
}

// A task name no task could be submitted under cannot be registered.
func TestLimits_RegistryRefusesLongTaskName(t *testing.T) {
	reg := core.NewRegistry()
	err := reg.HandleFunc(strings.Repeat("n", core.MaxTaskNameLen+1), wkOK(`1`))
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	require.ErrorContains(t, err, "the task name is 129 bytes; the limit is 128")
	require.NoError(t, reg.HandleFunc(strings.Repeat("n", core.MaxTaskNameLen), wkOK(`1`)))
}
