package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
	"github.com/dagq/dagq/ports/portsmock"
)

// Large payloads (claim check) over the memory adapters, whose queue refuses
// bodies above 1 MiB.

// keyStore records the keys Put in a PayloadStore and can fail Gets.
type keyStore struct {
	ports.PayloadStore
	mu       sync.Mutex
	keys     []string
	failGets int // the next failGets Gets fail with ErrUnavailable
}

func (s *keyStore) Put(ctx context.Context, key string, data []byte) error {
	s.mu.Lock()
	s.keys = append(s.keys, key)
	s.mu.Unlock()
	return s.PayloadStore.Put(ctx, key, data)
}

func (s *keyStore) Get(ctx context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	fail := s.failGets > 0
	if fail {
		s.failGets--
	}
	s.mu.Unlock()
	if fail {
		return nil, fmt.Errorf("keystore: get %s: %w", key, ports.ErrUnavailable)
	}
	return s.PayloadStore.Get(ctx, key)
}

func (s *keyStore) onlyKey(t *testing.T) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Len(t, s.keys, 1)
	return s.keys[0]
}

// bigArgs is a JSON string argument of n bytes.
func bigArgs(n int) string { return strings.Repeat("x", n) }

// argLen is a handler returning the length of its string argument.
func argLen(_ context.Context, task *core.Task) (json.RawMessage, error) {
	var s string
	if err := json.Unmarshal(task.Args, &s); err != nil {
		return nil, err
	}
	return json.Marshal(len(s))
}

func (m *wmWorld) payloadClient(store ports.PayloadStore) *core.Client {
	m.t.Helper()
	c, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:      m.tr.Broker(wmQueue),
			Results:     m.tr.ResultBackend(),
			Completions: m.tr.CompletionBus(),
			Payloads:    store,
			NoCancel:    true,
		},
		Logger: quietLogger(),
	})
	require.NoError(m.t, err)
	m.t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestPayload_LargeArgsRoundTripAndObjectDeleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		store := &keyStore{PayloadStore: m.tr.PayloadStore()}
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("len", argLen))
		w := m.startWorker(reg, func(o *core.WorkerOptions) { o.Ports.Payloads = m.tr.PayloadStore() })
		client := m.payloadClient(store)
		ctx := context.Background()

		const size = 5 << 20
		id, err := client.Submit(ctx, core.Request{Task: "len", Args: bigArgs(size)})
		require.NoError(t, err)
		key := store.onlyKey(t)
		require.True(t, strings.HasPrefix(key, id+"/"), "key %q is under the task ID", key)

		res, err := client.Wait(ctx, id)
		require.NoError(t, err)
		require.Equal(t, ports.StateSucceeded, res.State, res.Error)
		require.JSONEq(t, fmt.Sprint(size), string(res.Output))

		require.NoError(t, w.stop()) // every ack (and its Delete) done
		_, err = store.Get(ctx, key)
		require.ErrorIs(t, err, ports.ErrNotFound, "the payload object is deleted after the ack")
		require.Zero(t, m.stats())

		// Small tasks are not offloaded.
		w2 := m.startWorker(reg, func(o *core.WorkerOptions) { o.Ports.Payloads = m.tr.PayloadStore() })
		id, err = client.Submit(ctx, core.Request{Task: "len", Args: "abc"})
		require.NoError(t, err)
		res, err = client.Wait(ctx, id)
		require.NoError(t, err)
		require.JSONEq(t, `3`, string(res.Output))
		store.onlyKey(t)
		require.NoError(t, w2.stop())
	})
}

func TestPayload_WithoutStoreRefusedAtSubmit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		client := m.payloadClient(nil)
		ctx := context.Background()
		_, err := client.Submit(ctx, core.Request{Task: "len", Args: bigArgs(5 << 20)})
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
		for _, want := range []string{"nothing sent", "above the payload threshold of 204800 bytes",
			"Ports.PayloadThreshold", "Ports.Payloads", "the envelope is 52430"} {
			require.ErrorContains(t, err, want)
		}
		// A batch with one large request sends nothing at all.
		ids, err := client.SubmitBatch(ctx,
			core.Request{Task: "len", Args: "small"},
			core.Request{Task: "len", Args: bigArgs(core.DefaultPayloadThreshold)})
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
		require.ErrorContains(t, err, "request 1")
		require.Nil(t, ids)
		require.Zero(t, m.stats())
	})
}

func TestPayload_ThresholdOption(t *testing.T) {
	m := newWmWorld(t)
	_, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:           m.producer,
			Results:          m.results,
			PayloadThreshold: -1,
			NoCancel:         true,
		},
	})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	require.ErrorContains(t, err, "PayloadThreshold")

	// A low threshold offloads even small envelopes.
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		store := &keyStore{PayloadStore: m.tr.PayloadStore()}
		c, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:           m.producer,
				Results:          m.results,
				Payloads:         store,
				PayloadThreshold: 10,
				NoCancel:         true,
			},
			Logger: quietLogger(),
		})
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Submit(context.Background(), core.Request{Task: "len", Args: "abc"})
		require.NoError(t, err)
		store.onlyKey(t)
	})
}

func TestPayload_MissingObjectFailsAndWorkerKeepsServing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("len", argLen))
		require.NoError(t, reg.HandleFunc("a", wkOK(`"ok"`)))
		w := m.startWorker(reg, func(o *core.WorkerOptions) { o.Ports.Payloads = m.tr.PayloadStore() })
		ctx := context.Background()
		require.NoError(t, m.producer.Send(ctx, ports.Message{ID: "gone", Body: []byte(`{"id":"gone","task":"len"}`),
			Attributes: map[string]string{wire.PayloadAttribute: "gone/nope"}}))
		res := m.result("gone")
		require.Equal(t, ports.StateFailed, res.State)
		require.Equal(t, "claim-check object gone/nope is missing", res.Error)

		m.submit(wkEnv("t2", "a"))
		require.Equal(t, ports.StateSucceeded, m.result("t2").State)
		require.NoError(t, w.stop())
		require.Zero(t, m.stats(), "the claim check was acked")
	})
}

func TestPayload_WorkerWithoutStoreFailsClearly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		store := &keyStore{PayloadStore: m.tr.PayloadStore()}
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("len", wkNever(t)))
		w := m.startWorker(reg, nil)
		client := m.payloadClient(store)
		ctx := context.Background()
		id, err := client.Submit(ctx, core.Request{Task: "len", Args: bigArgs(300 << 10)})
		require.NoError(t, err)
		res, err := client.Wait(ctx, id) // the completion reaches the client
		require.NoError(t, err)
		require.Equal(t, ports.StateFailed, res.State)
		require.Contains(t, res.Error, "Ports.Payloads")
		require.NoError(t, w.stop())
		require.Zero(t, m.stats(), "the message was acked")
	})
}

func TestPayload_RetriedTaskKeepsObjectUntilFinalAck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		store := &keyStore{PayloadStore: m.tr.PayloadStore()}
		workerStore := &keyStore{PayloadStore: m.tr.PayloadStore(), failGets: 1} // a transient Get error first
		reg := core.NewRegistry()
		var seen []int
		require.NoError(t, reg.HandleFunc("flaky", func(ctx context.Context, task *core.Task) (json.RawMessage, error) {
			seen = append(seen, len(task.Args))
			if task.Attempt < 4 {
				return nil, fmt.Errorf("attempt %d fails", task.Attempt)
			}
			return json.RawMessage(`"ok"`), nil
		}))
		w := m.startWorker(reg, func(o *core.WorkerOptions) { o.Ports.Payloads = workerStore })
		client := m.payloadClient(store)
		ctx := context.Background()
		id, err := client.Submit(ctx, core.Request{Task: "flaky", Args: bigArgs(1 << 20),
			Retry: &core.RetryPolicy{MaxAttempts: 4, InitialBackoff: time.Second, MaxBackoff: time.Minute, Multiplier: 2}})
		require.NoError(t, err)
		key := store.onlyKey(t)

		res, err := client.Wait(ctx, id)
		require.NoError(t, err)
		require.Equal(t, ports.StateSucceeded, res.State, res.Error)
		// Delivery 1: Get failed (nacked, not run); deliveries 2 and 3 failed
		// and were nacked; delivery 4 succeeded: every run saw the arguments.
		require.Equal(t, 4, res.Attempts)
		require.Len(t, seen, 3)
		for _, n := range seen {
			require.Equal(t, 1<<20+2, n)
		}
		require.NoError(t, w.stop())
		_, err = store.Get(ctx, key)
		require.ErrorIs(t, err, ports.ErrNotFound, "deleted after the final ack")
		require.Zero(t, m.stats())
	})
}

func TestPayload_NackedTaskKeepsObject(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		store := &keyStore{PayloadStore: m.tr.PayloadStore()}
		reg := core.NewRegistry()
		ran := make(chan struct{}, 1)
		require.NoError(t, reg.HandleFunc("fail", func(context.Context, *core.Task) (json.RawMessage, error) {
			ran <- struct{}{}
			return nil, errors.New("boom")
		}))
		w := m.startWorker(reg, func(o *core.WorkerOptions) { o.Ports.Payloads = m.tr.PayloadStore() })
		client := m.payloadClient(store)
		ctx := context.Background()
		_, err := client.Submit(ctx, core.Request{Task: "fail", Args: bigArgs(300 << 10)})
		require.NoError(t, err)
		<-ran
		synctest.Wait() // the nack is done; the retry waits for its backoff
		_, err = store.Get(ctx, store.onlyKey(t))
		require.NoError(t, err, "a nacked message keeps its object")
		require.NoError(t, w.stop())
	})
}

func TestPayload_SendFailureDeletesObject(t *testing.T) {
	ctrl := gomock.NewController(t)
	store := portsmock.NewMockPayloadStore(ctrl)
	f := newFixture(t, fixtureOpts{opts: core.ClientOptions{
		Ports: core.Ports{
			Payloads:         store,
			PayloadThreshold: 100,
			NoCancel:         true,
		},
	}})
	args := bigArgs(500)
	var key string
	store.EXPECT().Put(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, k string, data []byte) error {
		key = k
		env, err := wire.Decode(data)
		require.NoError(t, err)
		require.Equal(t, "t1", env.TaskID)
		return nil
	})
	f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, ms ...ports.Message) error {
		require.Len(t, ms, 1)
		require.Equal(t, key, ms[0].Attributes[wire.PayloadAttribute])
		require.Less(t, len(ms[0].Body), 200, "the claim check is short")
		return &ports.BatchError{Failed: map[int]error{0: &apiError{code: "Throttled"}}}
	})
	store.EXPECT().Delete(gomock.Any(), gomock.Any()).DoAndReturn(func(ctx context.Context, keys ...string) error {
		require.Equal(t, []string{key}, keys)
		require.NoError(t, ctx.Err())
		return nil
	})
	_, err := f.client.Submit(context.Background(), core.Request{Task: "t", ID: "t1", Args: args})
	var ae *apiError
	require.ErrorAs(t, err, &ae)
	require.True(t, strings.HasPrefix(key, "t1/"), key)
}

// After an ambiguous Send failure the message may be queued: its object stays
// (the mock fails the test if Delete is called).
func TestPayload_AmbiguousSendFailureKeepsObject(t *testing.T) {
	ctrl := gomock.NewController(t)
	store := portsmock.NewMockPayloadStore(ctrl)
	f := newFixture(t, fixtureOpts{opts: core.ClientOptions{
		Ports: core.Ports{
			Payloads:         store,
			PayloadThreshold: 100,
			NoCancel:         true,
		},
	}})
	store.EXPECT().Put(gomock.Any(), gomock.Any(), gomock.Any()).Return(nil)
	f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).Return(fmt.Errorf("sqs: send: %w: timeout", ports.ErrUnavailable))
	_, err := f.client.Submit(context.Background(), core.Request{Task: "t", ID: "t1", Args: bigArgs(500)})
	require.ErrorIs(t, err, ports.ErrUnavailable)
}

func TestPayload_PutFailureSendsNothing(t *testing.T) {
	ctrl := gomock.NewController(t)
	store := portsmock.NewMockPayloadStore(ctrl)
	f := newFixture(t, fixtureOpts{opts: core.ClientOptions{
		Ports: core.Ports{
			Payloads:         store,
			PayloadThreshold: 100,
			NoCancel:         true,
		},
	}})
	store.EXPECT().Put(gomock.Any(), gomock.Any(), gomock.Any()).Return(fmt.Errorf("s3: %w", ports.ErrUnavailable))
	// One small request is still sent.
	f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, ms ...ports.Message) error {
		require.Len(t, ms, 1)
		require.Equal(t, "small", ms[0].ID)
		return nil
	})
	ids, err := f.client.SubmitBatch(context.Background(),
		core.Request{Task: "t", ID: "big", Args: bigArgs(500)},
		core.Request{Task: "t", ID: "small"})
	require.ErrorIs(t, err, ports.ErrUnavailable)
	var se *core.SubmitError
	require.ErrorAs(t, err, &se)
	require.Len(t, se.Failed, 1)
	require.Contains(t, se.Failed, 0)
	require.ErrorContains(t, err, "payload store")
	require.Equal(t, []string{"big", "small"}, ids)
}
