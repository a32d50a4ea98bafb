package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// Result policies (durable, reply, none) over the memory transport: what
// the worker stores and publishes, and what a waiting client gets.

// countingBus counts the Publishes of a CompletionBus and fails them with
// fail when set.
type countingBus struct {
	ports.CompletionBus
	publishes atomic.Int32
	fail      error
}

func (b *countingBus) Publish(ctx context.Context, to string, cs ...ports.Completion) error {
	b.publishes.Add(1)
	if b.fail != nil {
		return b.fail
	}
	return b.CompletionBus.Publish(ctx, to, cs...)
}

var rpEcho = core.NewTaskType[string, string]("echo")

func rpRegistry(t *testing.T, ran *atomic.Int32) *core.Registry {
	t.Helper()
	reg := core.NewRegistry()
	rpEcho.MustRegister(reg, func(_ context.Context, s string) (string, error) {
		if ran != nil {
			ran.Add(1)
		}
		return s, nil
	})
	return reg
}

// rpClient is a client on m's transport; without completions it waits by
// polling Results.
func rpClient(t *testing.T, m *wmWorld, completions bool) *core.Client {
	t.Helper()
	p := core.Ports{Broker: m.tr.Broker(wmQueue), Results: m.tr.ResultBackend(), Cancels: m.tr.CancelChannel()}
	if completions {
		p.Completions = m.tr.CompletionBus()
	}
	c, err := core.NewClient(core.ClientOptions{Ports: p, Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestResultPolicy_DurableIsTheDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		w := m.startWorker(rpRegistry(t, nil), nil)
		c := rpClient(t, m, true)
		ctx := context.Background()
		id, err := rpEcho.Submit(ctx, c, "kept")
		require.NoError(t, err)
		out, err := rpEcho.Wait(ctx, c, id)
		require.NoError(t, err)
		require.Equal(t, "kept", out)
		require.JSONEq(t, `"kept"`, string(m.result(id).Output), "durable: the result is in the backend")
		require.NoError(t, w.stop())
	})
}

func TestResultPolicy_ReplyDeliversWithoutStoring(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		w := m.startWorker(rpRegistry(t, nil), nil)
		c := rpClient(t, m, true)
		ctx := context.Background()
		reply := rpEcho.WithResult(core.ResultReply)
		var ids []string
		for _, s := range []string{"a", "b", "c"} {
			id, err := reply.Submit(ctx, c, s)
			require.NoError(t, err)
			ids = append(ids, id)
		}
		for i, id := range ids {
			out, err := reply.Wait(ctx, c, id)
			require.NoError(t, err)
			require.Equal(t, []string{"a", "b", "c"}[i], out)
			m.noResult(id) // reply: nothing written to the result backend
		}
		synctest.Wait()
		require.Equal(t, memory.QueueStats{}, m.stats(), "every message acked")
		require.NoError(t, w.stop())
	})
}

func TestResultPolicy_ReplyFallsBackToDurable(t *testing.T) {
	cases := []struct {
		name        string
		completions bool                      // the client has an inbox
		worker      func(*core.WorkerOptions) // adjusts the worker
		arg         string
	}{
		{name: "client without inbox", completions: false, arg: "x"},
		{name: "result above the inline limit", completions: true, arg: strings.Repeat("y", 100),
			worker: func(o *core.WorkerOptions) { o.InlineResultLimit = 16 }},
		{name: "publish fails", completions: true, arg: "z",
			worker: func(o *core.WorkerOptions) {
				o.Ports.Completions = &countingBus{CompletionBus: o.Ports.Completions, fail: ports.ErrUnavailable}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := newWmWorld(t)
				w := m.startWorker(rpRegistry(t, nil), tc.worker)
				c := rpClient(t, m, tc.completions)
				ctx := context.Background()
				reply := rpEcho.WithResult(core.ResultReply)
				id, err := reply.Submit(ctx, c, tc.arg)
				require.NoError(t, err)
				out, err := reply.Wait(ctx, c, id)
				require.NoError(t, err)
				require.Equal(t, tc.arg, out)
				stored := m.result(id)
				require.Equal(t, ports.StateSucceeded, stored.State, "the result could not travel inline: it was stored")
				require.NoError(t, w.stop())
			})
		})
	}
}

func TestResultPolicy_ReplyToAGoneInboxIsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		var ran atomic.Int32
		w := m.startWorker(rpRegistry(t, &ran), nil)
		bus := m.tr.CompletionBus()
		inbox, err := bus.Open(context.Background())
		require.NoError(t, err)
		addr := inbox.Address()
		require.NoError(t, inbox.Close()) // the client is gone
		env := wkEnv("t-gone", "echo")
		env.Args = json.RawMessage(`"q"`)
		env.ReplyTo, env.Result = addr, string(core.ResultReply)
		m.submit(env)
		synctest.Wait()
		require.Equal(t, int32(1), ran.Load())
		require.Equal(t, memory.QueueStats{}, m.stats(), "acked: nobody waits for the reply, and it is not run again")
		m.noResult("t-gone")
		require.NoError(t, w.stop())
		require.NoError(t, bus.Close())
	})
}

func TestResultPolicy_NoneRecordsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		var ran atomic.Int32
		bus := &countingBus{CompletionBus: m.tr.CompletionBus()}
		w := m.startWorker(rpRegistry(t, &ran), func(o *core.WorkerOptions) { o.Ports.Completions = bus })
		c := rpClient(t, m, true)
		ctx := context.Background()
		id, err := c.Submit(ctx, rpEcho.Request("fire", core.WithResult(core.ResultNone)))
		require.NoError(t, err)
		_, err = c.Wait(ctx, id)
		require.ErrorIs(t, err, core.ErrNoResult)
		synctest.Wait()
		require.Equal(t, int32(1), ran.Load(), "the task ran")
		require.Equal(t, memory.QueueStats{}, m.stats(), "its message was acked")
		require.Equal(t, int32(0), bus.publishes.Load(), "no completion was published")
		m.noResult(id)
		require.NoError(t, w.stop())
	})
}

func TestResultPolicy_NoneWorkerFailureStillAcked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("boom", func(context.Context, *core.Task) (json.RawMessage, error) {
			return nil, fmt.Errorf("bad input: %w", core.ErrSkipRetry)
		}))
		w := m.startWorker(reg, nil)
		env := wkEnv("t-none-fail", "boom")
		env.Result = string(core.ResultNone)
		m.submit(env)
		synctest.Wait()
		require.Equal(t, memory.QueueStats{}, m.stats())
		m.noResult("t-none-fail")
		require.NoError(t, w.stop())
	})
}

func TestResultPolicy_UnknownValueOnTheWireIsDurable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		w := m.startWorker(rpRegistry(t, nil), nil)
		env := wkEnv("t-future", "echo")
		env.Args = json.RawMessage(`"f"`)
		env.Result = "some-future-policy"
		m.submit(env)
		require.JSONEq(t, `"f"`, string(m.result("t-future").Output), "a policy this worker does not know loses nothing")
		require.NoError(t, w.stop())
	})
}

func TestResultPolicy_InvalidRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		c := rpClient(t, m, true)
		ctx := context.Background()
		_, err := c.Submit(ctx, rpEcho.Request("x", core.WithResult("forever")))
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
		require.ErrorContains(t, err, `"forever"`)
		require.ErrorContains(t, err, `"durable" (default), "reply", "none"`)

		watch, err := c.Watch(ctx)
		require.NoError(t, err)
		_, err = watch.SubmitBatch(ctx, rpEcho.Request("x", core.WithResult(core.ResultNone)))
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
		require.ErrorContains(t, err, "none")
		watch.Close()
		require.Equal(t, memory.QueueStats{}, m.stats(), "nothing was sent")
	})
}

func TestResultPolicy_TaskTypeAndOptions(t *testing.T) {
	reply := rpEcho.WithResult(core.ResultReply)
	require.Equal(t, core.ResultReply, reply.Request("a").Result)
	require.Equal(t, core.ResultPolicy(""), rpEcho.Request("a").Result, "WithResult returns a copy")
	require.Equal(t, core.ResultNone, reply.Request("a", core.WithResult(core.ResultNone)).Result, "an option overrides the type")
	for _, p := range []core.ResultPolicy{"", core.ResultDurable, core.ResultReply, core.ResultNone} {
		require.True(t, p.Valid(), p)
	}
	require.False(t, core.ResultPolicy("Durable").Valid())
}
