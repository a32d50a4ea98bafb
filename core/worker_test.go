package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/testutil"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
	"github.com/dagq/dagq/ports/portsmock"
)

// ---- test harness: a worker over gomock ports, inside a synctest bubble ----

// wkReporter turns gomock's fatal failures (an unexpected call, usually from
// a worker goroutine) into a panic: Goexit in a worker goroutine would hang
// the synctest bubble and hide the message.
type wkReporter struct{ *testing.T }

func (r wkReporter) Fatalf(format string, args ...any) {
	r.Helper()
	r.Errorf(format, args...)
	panic(fmt.Sprintf(format, args...))
}

// wkNoJitter is the retry policy of most tests: 3 attempts, 2s then 4s.
var wkNoJitter = core.RetryPolicy{MaxAttempts: 3, InitialBackoff: 2 * time.Second, MaxBackoff: time.Minute, Multiplier: 2}

type wkHarness struct {
	t       *testing.T
	ctrl    *gomock.Controller
	broker  *portsmock.MockBroker
	results *portsmock.MockResultBackend
	bus     *portsmock.MockCompletionBus
	cancels *portsmock.MockCancelChannel
	sub     *portsmock.MockCancelSubscription
	reg     *core.Registry
	logs    *testutil.LogSink
	obs     *obsRecorder // the worker's Observer
	opts    core.WorkerOptions

	// deliveries feeds the mocked Receive; cancelIDs feeds the mocked
	// subscription.
	deliveries chan []ports.Delivery
	cancelIDs  chan []string

	mu      sync.Mutex
	recvMax []int // the max argument of every Receive call

	// stop cancels Run's context and returns Run's error (set by start).
	stop func() error
	// stopping is closed by stop after it cancelled Run's context: the
	// Receive in flight then returns empty, as a long poll would at its end
	// (the worker lets it end rather than cancel it).
	stopping chan struct{}
}

func newWkHarness(t *testing.T) *wkHarness {
	ctrl := gomock.NewController(wkReporter{t})
	logger, sink := testutil.NewLogger(t)
	h := &wkHarness{
		t:          t,
		ctrl:       ctrl,
		broker:     portsmock.NewMockBroker(ctrl),
		results:    portsmock.NewMockResultBackend(ctrl),
		bus:        portsmock.NewMockCompletionBus(ctrl),
		reg:        core.NewRegistry(),
		logs:       sink,
		obs:        newObsRecorder(),
		deliveries: make(chan []ports.Delivery),
		cancelIDs:  make(chan []string),
		stopping:   make(chan struct{}),
	}
	h.opts = core.WorkerOptions{
		Ports: core.Ports{
			Broker:      h.broker,
			Results:     h.results,
			Completions: h.bus,
			NoCancel:    true,
		},
		Registry: h.reg,
		ID:       "w1",
		Retry:    wkNoJitter,
		Logger:   logger,
		Observer: h.obs,
		// The harness scripts every Receive: no prefetch unless a test
		// asks for it.
		Prefetch: -1,
	}
	return h
}

// serveReceive makes Receive hand out what send puts in, blocking otherwise
// until its context is done.
func (h *wkHarness) serveReceive() {
	h.broker.EXPECT().Receive(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(
		func(ctx context.Context, max int, lease time.Duration) ([]ports.Delivery, error) {
			h.mu.Lock()
			h.recvMax = append(h.recvMax, max)
			h.mu.Unlock()
			select {
			case ds := <-h.deliveries:
				if len(ds) > max {
					h.t.Errorf("Receive asked for %d messages but the test sends %d", max, len(ds))
				}
				return ds, nil
			case <-h.stopping: // as a long poll ending empty
				return nil, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}).AnyTimes()
}

func (h *wkHarness) receiveMaxes() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.recvMax)
}

// withCancels plugs in a mocked cancel channel whose subscription delivers
// what cancel sends. The test sets the Canceled expectations.
func (h *wkHarness) withCancels() {
	h.cancels = portsmock.NewMockCancelChannel(h.ctrl)
	h.sub = portsmock.NewMockCancelSubscription(h.ctrl)
	h.opts.Ports.Cancels, h.opts.Ports.NoCancel = h.cancels, false
	h.cancels.EXPECT().Subscribe(gomock.Any()).Return(h.sub, nil)
	h.sub.EXPECT().Receive(gomock.Any()).DoAndReturn(func(ctx context.Context) ([]string, error) {
		select {
		case ids := <-h.cancelIDs:
			return ids, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}).AnyTimes()
	h.sub.EXPECT().Close().Return(nil)
}

// start runs the worker in the background.
func (h *wkHarness) start() *core.Worker {
	h.t.Helper()
	w, err := core.NewWorker(h.opts)
	require.NoError(h.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var runErr error
	h.stop = func() error {
		once.Do(func() {
			cancel()
			close(h.stopping)
			runErr = <-done
		})
		return runErr
	}
	h.t.Cleanup(func() { _ = h.stop() }) // after a failed assertion too
	return w
}

// run is serveReceive + start.
func (h *wkHarness) run() *core.Worker {
	h.t.Helper()
	h.serveReceive()
	return h.start()
}

// send hands one batch to the next Receive call.
func (h *wkHarness) send(ds ...ports.Delivery) { h.deliveries <- ds }

// cancel delivers cancellation requests over the subscription.
func (h *wkHarness) cancel(ids ...string) { h.cancelIDs <- ids }

func wkEnv(id, task string) wire.Envelope {
	return wire.Envelope{TaskID: id, Task: task}
}

func wkDelivery(t *testing.T, env wire.Envelope, attempt int, receipt string) ports.Delivery {
	t.Helper()
	body, err := env.Encode()
	require.NoError(t, err)
	return ports.Delivery{
		Message: ports.Message{ID: env.TaskID, Body: body},
		Receipt: ports.Receipt(receipt),
		Attempt: attempt,
	}
}

func wkRaw(id string, body string, receipt string, attempt int) ports.Delivery {
	return ports.Delivery{Message: ports.Message{ID: id, Body: []byte(body)}, Receipt: ports.Receipt(receipt), Attempt: attempt}
}

// capturePut expects one Put and stores its result in *dst.
func capturePut(h *wkHarness, dst *ports.Result) *portsmock.MockResultBackendPutCall {
	return h.results.EXPECT().Put(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, r ports.Result) error {
		*dst = r
		return nil
	})
}

func notFoundErr(id string) error { return fmt.Errorf("mock: get %s: %w", id, ports.ErrNotFound) }

func wkOK(out string) func(context.Context, *core.Task) (json.RawMessage, error) {
	return func(context.Context, *core.Task) (json.RawMessage, error) { return json.RawMessage(out), nil }
}

func wkNever(t *testing.T) func(context.Context, *core.Task) (json.RawMessage, error) {
	return func(_ context.Context, task *core.Task) (json.RawMessage, error) {
		t.Errorf("handler ran for task %s; it must not", task.ID)
		return nil, nil
	}
}

// ---- NewWorker ----

func TestNewWorker_Validation(t *testing.T) {
	valid := func() core.WorkerOptions {
		ctrl := gomock.NewController(t)
		return core.WorkerOptions{
			Ports: core.Ports{
				Broker:   portsmock.NewMockBroker(ctrl),
				Results:  portsmock.NewMockResultBackend(ctrl),
				NoCancel: true,
			},
			Registry: core.NewRegistry(),
		}
	}
	cases := []struct {
		name    string
		mod     func(*core.WorkerOptions)
		mention []string
	}{
		{"no broker", func(o *core.WorkerOptions) { o.Ports.Broker = nil }, []string{"Broker is required"}},
		{"no results", func(o *core.WorkerOptions) { o.Ports.Results = nil }, []string{"Results is required"}},
		{"no registry", func(o *core.WorkerOptions) { o.Registry = nil }, []string{"Registry is required"}},
		{"negative concurrency", func(o *core.WorkerOptions) { o.Concurrency = -1 }, []string{"Concurrency is -1", "0 (default 10) or more"}},
		{"negative lease", func(o *core.WorkerOptions) { o.Lease = -time.Second }, []string{"Lease is -1s", "12h0m0s"}},
		{"lease too long", func(o *core.WorkerOptions) { o.Lease = 13 * time.Hour }, []string{"Lease is 13h0m0s"}},
		{"heartbeat too slow", func(o *core.WorkerOptions) { o.Lease, o.HeartbeatInterval = 10*time.Second, 6*time.Second },
			[]string{"HeartbeatInterval is 6s", "half the Lease (5s)"}},
		{"negative heartbeat", func(o *core.WorkerOptions) { o.HeartbeatInterval = -time.Second }, []string{"HeartbeatInterval is -1s"}},
		{"negative max extensions", func(o *core.WorkerOptions) { o.MaxExtensions = -2 }, []string{"MaxExtensions is -2"}},
		{"invalid retry", func(o *core.WorkerOptions) { o.Retry = core.RetryPolicy{MaxAttempts: 0, Multiplier: 2} }, []string{"Retry:", "max_attempts"}},
		{"negative shutdown timeout", func(o *core.WorkerOptions) { o.ShutdownTimeout = -1 }, []string{"ShutdownTimeout is -1ns"}},
		{"batch above 10", func(o *core.WorkerOptions) { o.Concurrency = 50; o.ReceiveBatch = 11 }, []string{"ReceiveBatch is 11", "between 1 and 10"}},
		{"batch above concurrency", func(o *core.WorkerOptions) { o.Concurrency = 2; o.Prefetch = -1; o.ReceiveBatch = 3 }, []string{"ReceiveBatch is 3", "between 1 and 2"}},
		{"batch above concurrency+prefetch", func(o *core.WorkerOptions) { o.Concurrency = 2; o.Prefetch = 3; o.ReceiveBatch = 6 }, []string{"ReceiveBatch is 6", "between 1 and 5"}},
		{"negative settle depth", func(o *core.WorkerOptions) { o.SettleDepth = -1 }, []string{"SettleDepth is -1"}},
		{"negative batch", func(o *core.WorkerOptions) { o.ReceiveBatch = -1 }, []string{"ReceiveBatch is -1"}},
		{"several problems at once", func(o *core.WorkerOptions) { o.Ports.Broker = nil; o.Concurrency = -5 },
			[]string{"Broker is required", "Concurrency is -5"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.mod(&o)
			w, err := core.NewWorker(o)
			require.Error(t, err)
			require.Nil(t, w)
			for _, m := range tc.mention {
				require.Contains(t, err.Error(), m)
			}
		})
	}

	t.Run("defaults", func(t *testing.T) {
		w, err := core.NewWorker(valid())
		require.NoError(t, err)
		require.NotEmpty(t, w.ID())
		w2, err := core.NewWorker(valid())
		require.NoError(t, err)
		require.NotEqual(t, w.ID(), w2.ID(), "generated IDs differ")
	})
	t.Run("explicit ID and limits", func(t *testing.T) {
		o := valid()
		o.ID, o.Concurrency, o.ReceiveBatch, o.Lease, o.HeartbeatInterval = "me", 3, 3, time.Minute, 30*time.Second
		o.InlineResultLimit = -1
		w, err := core.NewWorker(o)
		require.NoError(t, err)
		require.Equal(t, "me", w.ID())
	})
}

func TestWorker_RunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		w := h.run()
		synctest.Wait()
		require.ErrorContains(t, w.Run(context.Background()), "more than once")
		require.NoError(t, h.stop())
	})
}

// ---- outcomes ----

func TestWorker_Success_PutPublishAck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		var got *core.Task
		require.NoError(t, h.reg.HandleFunc("echo", func(ctx context.Context, task *core.Task) (json.RawMessage, error) {
			got = task
			time.Sleep(time.Second)
			return json.RawMessage(`{"ok":true}`), nil
		}))
		var put ports.Result
		var published []ports.Completion
		gomock.InOrder(
			capturePut(h, &put),
			h.bus.EXPECT().Publish(gomock.Any(), "inbox-1", gomock.Any()).DoAndReturn(
				func(_ context.Context, _ string, cs ...ports.Completion) error {
					published = cs
					return nil
				}),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")).Return(nil),
		)
		h.run()

		deadline := time.Now().Add(time.Hour)
		env := wire.Envelope{
			TaskID: "t1", Task: "echo", Args: json.RawMessage(`{"n":1}`),
			Labels: map[string]string{"team": "x"}, Meta: map[string]string{"k": "v"},
			RunID: "run-1", StepID: "step-1", ReplyTo: "inbox-1", Deadline: deadline,
		}
		start := time.Now()
		h.send(wkDelivery(t, env, 1, "r1"))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.NoError(t, h.stop())

		require.NotNil(t, got)
		require.Equal(t, core.Task{
			ID: "t1", Name: "echo", Attempt: 1, Args: json.RawMessage(`{"n":1}`),
			Labels: map[string]string{"team": "x"}, Meta: map[string]string{"k": "v"},
			RunID: "run-1", StepID: "step-1", Deadline: got.Deadline,
		}, *got)
		require.True(t, got.Deadline.Equal(deadline))

		require.Equal(t, "t1", put.TaskID)
		require.Equal(t, ports.StateSucceeded, put.State)
		require.JSONEq(t, `{"ok":true}`, string(put.Output))
		require.Empty(t, put.Error)
		require.Equal(t, 1, put.Attempts)
		require.Equal(t, "w1", put.Worker)
		require.Equal(t, start, put.StartedAt)
		require.Equal(t, start.Add(time.Second), put.FinishedAt)

		require.Len(t, published, 1)
		require.Equal(t, "t1", published[0].TaskID)
		require.Equal(t, ports.StateSucceeded, published[0].State)
		require.NotNil(t, published[0].Result, "a small result is inlined")
		require.Equal(t, put, *published[0].Result)
	})
}

func TestWorker_LargeResultNotInlined(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		h.opts.InlineResultLimit = 8
		require.NoError(t, h.reg.HandleFunc("big", wkOK(`"0123456789"`)))
		require.NoError(t, h.reg.HandleFunc("small", wkOK(`"0123"`)))
		h.results.EXPECT().Put(gomock.Any(), gomock.Any()).Times(2)
		var mu sync.Mutex
		var cs []ports.Completion
		h.bus.EXPECT().Publish(gomock.Any(), "in", gomock.Any()).DoAndReturn(func(_ context.Context, _ string, c ...ports.Completion) error {
			mu.Lock()
			cs = append(cs, c...)
			mu.Unlock()
			return nil
		}).Times(2)
		h.broker.EXPECT().Ack(gomock.Any(), gomock.Any()).Times(2)
		h.run()
		big, small := wkEnv("t1", "big"), wkEnv("t2", "small")
		big.ReplyTo, small.ReplyTo = "in", "in"
		h.send(wkDelivery(t, big, 1, "r1"))
		h.send(wkDelivery(t, small, 1, "r2"))
		synctest.Wait()
		require.NoError(t, h.stop())
		require.Len(t, cs, 2)
		slices.SortFunc(cs, func(a, b ports.Completion) int { return strings.Compare(a.TaskID, b.TaskID) })
		require.Equal(t, ports.Completion{TaskID: "t1", State: ports.StateSucceeded}, cs[0], "10 bytes > limit 8: not inlined")
		require.NotNil(t, cs[1].Result, "6 bytes ≤ limit 8: inlined")
	})
}

func TestWorker_NoReplyToNoPublish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", wkOK(`1`)))
		h.results.EXPECT().Put(gomock.Any(), gomock.Any())
		h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1"))
		// No Publish expectation: the strict mock fails the test on a call.
		h.run()
		h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"))
		synctest.Wait()
		require.NoError(t, h.stop())
	})
}

func TestWorker_RetryNackWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		var attempts []int
		require.NoError(t, h.reg.HandleFunc("flaky", func(_ context.Context, task *core.Task) (json.RawMessage, error) {
			attempts = append(attempts, task.Attempt)
			if task.Attempt < 3 {
				return nil, errors.New("temporarily broken")
			}
			return json.RawMessage(`"fine"`), nil
		}))
		var put ports.Result
		gomock.InOrder(
			h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r1"), 2*time.Second),
			h.results.EXPECT().Get(gomock.Any(), "t1").Return(ports.Result{}, notFoundErr("t1")),
			h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r2"), 4*time.Second),
			h.results.EXPECT().Get(gomock.Any(), "t1").Return(ports.Result{}, notFoundErr("t1")),
			capturePut(h, &put),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r3")),
		)
		h.run()
		env := wkEnv("t1", "flaky")
		for i, r := range []string{"r1", "r2", "r3"} {
			h.send(wkDelivery(t, env, i+1, r))
			synctest.Wait()
		}
		require.NoError(t, h.stop())
		require.Equal(t, []int{1, 2, 3}, attempts)
		require.Equal(t, ports.StateSucceeded, put.State)
		require.Equal(t, 3, put.Attempts)
		require.Equal(t, []core.TaskOutcome{core.OutcomeRetried, core.OutcomeRetried, core.OutcomeSucceeded}, h.obs.outcomes("t1"),
			"the failed attempts are handed back for another")
	})
}

func TestWorker_EnvelopeRetryOverridesWorkerPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", func(context.Context, *core.Task) (json.RawMessage, error) {
			return nil, errors.New("nope")
		}))
		h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r1"), 7*time.Second)
		h.run()
		env := wkEnv("t1", "a")
		env.Retry = &wire.Retry{MaxAttempts: 9, InitialBackoff: 7 * time.Second, MaxBackoff: time.Hour, Multiplier: 3}
		h.send(wkDelivery(t, env, 1, "r1"))
		synctest.Wait()
		require.NoError(t, h.stop())
	})
}

func TestWorker_SkipRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", func(context.Context, *core.Task) (json.RawMessage, error) {
			return nil, fmt.Errorf("bad input: %w", core.ErrSkipRetry)
		}))
		var put ports.Result
		gomock.InOrder(
			capturePut(h, &put),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")),
		)
		h.run()
		h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"))
		synctest.Wait()
		require.NoError(t, h.stop())
		require.Equal(t, ports.StateFailed, put.State)
		// The error says what happened, not the sentinel's name.
		require.Equal(t, "failed without retry: bad input", put.Error)
		require.Equal(t, 1, put.Attempts)
	})
}

func TestWorker_InvalidJSONOutputFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", wkOK(`{not json`)))
		var put ports.Result
		capturePut(h, &put)
		h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1"))
		h.run()
		h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"))
		synctest.Wait()
		require.NoError(t, h.stop())
		require.Equal(t, ports.StateFailed, put.State)
		require.Contains(t, put.Error, "not valid JSON")
		require.Empty(t, put.Output)
	})
}

func TestWorker_AttemptsExhausted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		var seen int
		require.NoError(t, h.reg.HandleFunc("a", func(_ context.Context, task *core.Task) (json.RawMessage, error) {
			seen = task.Attempt
			return nil, errors.New("still broken")
		}))
		var put ports.Result
		gomock.InOrder(
			h.results.EXPECT().Get(gomock.Any(), "t1").Return(ports.Result{}, notFoundErr("t1")),
			capturePut(h, &put),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r2")),
		)
		h.run()
		// A producer re-submitted the task after one attempt (envelope attempt
		// 2) and this is the message's second delivery: effective attempt 3 of 3.
		env := wkEnv("t1", "a")
		env.Attempt = 2
		h.send(wkDelivery(t, env, 2, "r2"))
		synctest.Wait()
		require.NoError(t, h.stop())
		require.Equal(t, 3, seen, "attempt = envelope attempt + delivery attempt - 1")
		require.Equal(t, ports.StateFailed, put.State)
		require.Equal(t, "still broken", put.Error)
		require.Equal(t, 3, put.Attempts)
	})
}

func TestWorker_AttemptsExhaustedBeforeStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", wkNever(t)))
		var put ports.Result
		h.results.EXPECT().Get(gomock.Any(), "t1").Return(ports.Result{}, notFoundErr("t1"))
		capturePut(h, &put)
		h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r4"))
		h.run()
		// Delivered a 4th time with MaxAttempts 3: earlier runs lost their
		// lease (e.g. the task crashes its worker); stop trying.
		h.send(wkDelivery(t, wkEnv("t1", "a"), 4, "r4"))
		synctest.Wait()
		require.NoError(t, h.stop())
		require.Equal(t, ports.StateFailed, put.State)
		require.Contains(t, put.Error, "attempts exhausted before start")
		require.Equal(t, 3, put.Attempts)
	})
}

func TestWorker_PanicRecovered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		h.opts.Retry = core.RetryPolicy{MaxAttempts: 1, Multiplier: 1}
		require.NoError(t, h.reg.HandleFunc("boom", func(context.Context, *core.Task) (json.RawMessage, error) {
			panic("kaboom")
		}))
		require.NoError(t, h.reg.HandleFunc("ok", wkOK(`1`)))
		var failed, ok ports.Result
		gomock.InOrder(
			capturePut(h, &failed),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")),
			capturePut(h, &ok),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r2")),
		)
		h.run()
		h.send(wkDelivery(t, wkEnv("t1", "boom"), 1, "r1"))
		synctest.Wait()
		h.send(wkDelivery(t, wkEnv("t2", "ok"), 1, "r2"))
		synctest.Wait()
		require.NoError(t, h.stop())
		require.Equal(t, ports.StateFailed, failed.State)
		require.Equal(t, "panic: kaboom", failed.Error)
		require.Equal(t, ports.StateSucceeded, ok.State, "the worker keeps serving after a panic")
		require.Equal(t, []core.TaskOutcome{core.OutcomeFailed}, h.obs.outcomes("t1"))
		require.True(t, h.obs.last("t1").Ran)
		// The operator gets the panic's stack: one ERROR record.
		recs := h.logs.WithAttr("stack")
		require.Len(t, recs, 1)
		require.Equal(t, slog.LevelError, recs[0].Level)
		require.Contains(t, recs[0].Attrs["stack"], "worker_test.go", "the stack names the panicking handler")
		require.Equal(t, "kaboom", recs[0].Attrs["panic"])
		require.Equal(t, "t1", recs[0].Attrs["task_id"])
	})
}

func TestWorker_PanicIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("boom", func(context.Context, *core.Task) (json.RawMessage, error) {
			panic(errors.New("nil map"))
		}))
		h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r1"), 2*time.Second)
		h.run()
		h.send(wkDelivery(t, wkEnv("t1", "boom"), 1, "r1"))
		synctest.Wait()
		require.NoError(t, h.stop())
	})
}

func TestWorker_UnknownTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("b", wkNever(t)))
		require.NoError(t, h.reg.HandleFunc("a", wkNever(t)))
		var put ports.Result
		gomock.InOrder(
			capturePut(h, &put),
			h.bus.EXPECT().Publish(gomock.Any(), "in", gomock.Any()),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")),
		)
		h.run()
		env := wkEnv("t1", "x")
		env.ReplyTo = "in"
		h.send(wkDelivery(t, env, 1, "r1"))
		synctest.Wait()
		require.NoError(t, h.stop())
		require.Equal(t, ports.StateFailed, put.State)
		require.Equal(t, `unknown task "x"; this worker handles: a, b`, put.Error)
		require.Equal(t, 0, put.Attempts)
		require.Equal(t, []core.TaskResult{{Outcome: core.OutcomeFailed}}, h.obs.results("t1"), "failed, never ran")
		require.Empty(t, h.obs.startedIDs())
		// The operator sees why: a misrouted task (or a worker missing a
		// handler) is an ERROR naming ErrUnknownTask.
		recs := h.logs.WithErr(core.ErrUnknownTask)
		require.Len(t, recs, 1)
		require.Equal(t, slog.LevelError, recs[0].Level)
		require.Equal(t, "t1", recs[0].Attrs["task_id"])
	})
}

func TestWorker_UndecodableNeverExecuted(t *testing.T) {
	bodies := map[string]string{
		"garbage":            "\x00\xffnot json at all",
		"empty":              "",
		"json array":         `[1,2,3]`,
		"json of a stranger": `{"hello":"world","reply_to":"in"}`,
		"wrong field type":   `{"v":1,"id":"t1","task":5}`,
		"no task name":       `{"v":1,"id":"t1"}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newWkHarness(t)
				require.NoError(t, h.reg.HandleFunc("t1", wkNever(t)))
				var put ports.Result
				gomock.InOrder(
					capturePut(h, &put),
					h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")),
				)
				if strings.Contains(body, "reply_to") {
					h.bus.EXPECT().Publish(gomock.Any(), "in", gomock.Any())
				}
				h.run()
				h.send(wkRaw("m1", body, "r1", 1))
				synctest.Wait()
				require.NoError(t, h.stop())
				require.Equal(t, "m1", put.TaskID, "keyed by the message ID")
				require.Equal(t, ports.StateFailed, put.State)
				require.True(t, strings.HasPrefix(put.Error, "undecodable message: "), put.Error)
				require.Contains(t, put.Error, "malformed envelope")
				require.Equal(t, 0, put.Attempts)
				c := h.obs.counts()
				require.Equal(t, 1, c.rejected, "rejected, never a task")
				require.Empty(t, c.taskReceived)
			})
		})
	}

	t.Run("no message ID", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newWkHarness(t)
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1"))
			h.run()
			h.send(wkRaw("", "garbage", "r1", 1))
			synctest.Wait()
			require.NoError(t, h.stop())
			// No Put (the strict mock fails the test on one): deleted only.
			c := h.obs.counts()
			require.Equal(t, 1, c.rejected, "rejected, never a task")
			require.Empty(t, c.taskReceived)
		})
	})
}

func TestWorker_FutureEnvelopeVersion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", wkNever(t)))
		var put ports.Result
		gomock.InOrder(
			h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r1"), 2*time.Second),
			h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r2"), 4*time.Second),
			capturePut(h, &put),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r3")),
		)
		h.run()
		body := `{"v":3,"id":"t1","task":"a","hologram":true}`
		for i, r := range []string{"r1", "r2", "r3"} {
			h.send(wkRaw("t1", body, r, i+1))
			synctest.Wait()
		}
		require.NoError(t, h.stop())
		require.Equal(t, "t1", put.TaskID)
		require.Equal(t, ports.StateFailed, put.State)
		require.Contains(t, put.Error, "unsupported envelope version")
		require.Contains(t, put.Error, "version 3 is newer")
		require.Contains(t, put.Error, "gave up after 3 deliveries")
	})
}

// ---- before start ----

func TestWorker_CancelQueuedNeverStarts(t *testing.T) {
	t.Run("durable check, once per batch", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newWkHarness(t)
			h.withCancels()
			var ran []string
			var mu sync.Mutex
			require.NoError(t, h.reg.HandleFunc("a", func(_ context.Context, task *core.Task) (json.RawMessage, error) {
				mu.Lock()
				ran = append(ran, task.ID)
				mu.Unlock()
				return json.RawMessage(`1`), nil
			}))
			h.cancels.EXPECT().Canceled(gomock.Any(), "t1", "t2", "t3").Return([]string{"t2"}, nil).Times(1)
			puts := map[string]ports.Result{}
			h.results.EXPECT().Put(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, r ports.Result) error {
				mu.Lock()
				puts[r.TaskID] = r
				mu.Unlock()
				return nil
			}).Times(3)
			h.bus.EXPECT().Publish(gomock.Any(), "in", gomock.Any()).Times(3)
			h.broker.EXPECT().Ack(gomock.Any(), gomock.Any()).Times(3)
			h.run()
			var ds []ports.Delivery
			for i := 1; i <= 3; i++ {
				env := wkEnv(fmt.Sprintf("t%d", i), "a")
				env.ReplyTo = "in"
				ds = append(ds, wkDelivery(t, env, 1, fmt.Sprintf("r%d", i)))
			}
			h.send(ds...)
			synctest.Wait()
			require.NoError(t, h.stop())
			slices.Sort(ran)
			require.Equal(t, []string{"t1", "t3"}, ran)
			require.Equal(t, ports.StateCancelled, puts["t2"].State)
			require.Equal(t, "cancelled before start", puts["t2"].Error)
			require.Equal(t, 0, puts["t2"].Attempts)
			require.Equal(t, ports.StateSucceeded, puts["t1"].State)
		})
	})

	t.Run("request seen on the subscription before the task arrives", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newWkHarness(t)
			h.withCancels()
			require.NoError(t, h.reg.HandleFunc("a", wkNever(t)))
			// No Canceled call: the recent set answers already.
			var put ports.Result
			capturePut(h, &put)
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1"))
			h.run()
			h.cancel("t1")
			synctest.Wait()
			env := wkEnv("t1", "a")
			env.Attempt = 3 // re-submitted after 2 attempts
			h.send(wkDelivery(t, env, 1, "r1"))
			synctest.Wait()
			require.NoError(t, h.stop())
			require.Equal(t, ports.StateCancelled, put.State)
			require.Equal(t, 2, put.Attempts, "the handler ran twice before")
		})
	})

	t.Run("durable check failing starts the task", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newWkHarness(t)
			h.withCancels()
			require.NoError(t, h.reg.HandleFunc("a", wkOK(`1`)))
			h.cancels.EXPECT().Canceled(gomock.Any(), "t1").Return(nil, ports.ErrUnavailable).Times(3)
			h.results.EXPECT().Put(gomock.Any(), gomock.Any())
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1"))
			h.run()
			h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"))
			synctest.Wait()
			require.NoError(t, h.stop())
			require.Equal(t, []string{"t1"}, h.obs.startedIDs())
			require.Equal(t, []core.TaskOutcome{core.OutcomeSucceeded}, h.obs.outcomes("t1"))
			// Only the log tells that the tasks started unchecked, and why.
			recs := h.logs.WithErr(ports.ErrUnavailable)
			require.Len(t, recs, 1)
			require.Equal(t, slog.LevelWarn, recs[0].Level)
			require.Equal(t, []string{"t1"}, recs[0].Attrs["tasks"])
		})
	})
}

func TestWorker_RedeliveredFinishedNotRerun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", wkNever(t)))
		stored := ports.Result{TaskID: "t1", State: ports.StateSucceeded, Output: []byte(`42`), Attempts: 1, Worker: "w0"}
		var published []ports.Completion
		gomock.InOrder(
			h.results.EXPECT().Get(gomock.Any(), "t1").Return(stored, nil),
			h.bus.EXPECT().Publish(gomock.Any(), "in", gomock.Any()).DoAndReturn(
				func(_ context.Context, _ string, cs ...ports.Completion) error {
					published = cs
					return nil
				}),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r2")),
		)
		h.run()
		env := wkEnv("t1", "a")
		env.ReplyTo = "in"
		h.send(wkDelivery(t, env, 2, "r2"))
		synctest.Wait()
		require.NoError(t, h.stop())
		require.Equal(t, []ports.Completion{{TaskID: "t1", State: ports.StateSucceeded, Result: &stored}}, published)
	})
}

func TestWorker_FirstDeliveryReadsNoResult(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", wkOK(`1`)))
		// No Get expectation: a first delivery costs no backend read.
		h.results.EXPECT().Put(gomock.Any(), gomock.Any())
		h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1"))
		h.run()
		env := wkEnv("t1", "a")
		env.Attempt = 2 // re-submitted by a producer: still a first delivery
		h.send(wkDelivery(t, env, 1, "r1"))
		synctest.Wait()
		require.NoError(t, h.stop())
	})
}

func TestWorker_DeadlinePassed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", wkNever(t)))
		var put ports.Result
		gomock.InOrder(
			capturePut(h, &put),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")),
		)
		h.run()
		env := wkEnv("t1", "a")
		env.Deadline = time.Now().Add(-time.Second)
		h.send(wkDelivery(t, env, 1, "r1"))
		synctest.Wait()
		require.NoError(t, h.stop())
		require.Equal(t, ports.StateFailed, put.State)
		require.Equal(t, "deadline exceeded before start", put.Error)
		require.Equal(t, 0, put.Attempts)
	})
}

func TestWorker_DeadlineExceededWhileRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		var cause error
		var at time.Time
		require.NoError(t, h.reg.HandleFunc("a", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
			<-ctx.Done()
			cause, at = context.Cause(ctx), time.Now()
			return nil, ctx.Err()
		}))
		var put ports.Result
		gomock.InOrder(
			capturePut(h, &put),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")),
		)
		h.run()
		env := wkEnv("t1", "a")
		env.Deadline = time.Now().Add(5 * time.Second)
		h.send(wkDelivery(t, env, 1, "r1"))
		time.Sleep(10 * time.Second)
		synctest.Wait()
		require.NoError(t, h.stop())
		require.ErrorIs(t, cause, context.DeadlineExceeded)
		require.Equal(t, env.Deadline, at)
		require.Equal(t, ports.StateFailed, put.State, "no retry although attempts remain")
		require.Equal(t, "deadline exceeded: context deadline exceeded", put.Error)
	})
}

// ---- recording ----

func TestWorker_PutAlreadyExistsKeepsStored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", wkOK(`"mine"`)))
		stored := ports.Result{TaskID: "t1", State: ports.StateSucceeded, Output: []byte(`"theirs"`), Attempts: 1, Worker: "w0"}
		var published []ports.Completion
		gomock.InOrder(
			h.results.EXPECT().Put(gomock.Any(), gomock.Any()).Return(fmt.Errorf("mock: %w", ports.ErrAlreadyExists)),
			h.results.EXPECT().Get(gomock.Any(), "t1").Return(stored, nil),
			h.bus.EXPECT().Publish(gomock.Any(), "in", gomock.Any()).DoAndReturn(
				func(_ context.Context, _ string, cs ...ports.Completion) error {
					published = cs
					return nil
				}),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")),
		)
		h.run()
		env := wkEnv("t1", "a")
		env.ReplyTo = "in"
		h.send(wkDelivery(t, env, 1, "r1"))
		synctest.Wait()
		require.NoError(t, h.stop())
		require.Len(t, published, 1)
		require.Equal(t, &stored, published[0].Result, "the completion carries the stored result")
	})
}

func TestWorker_PutFailingReleasesTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", wkOK(`1`)))
		var putAt []time.Time
		h.results.EXPECT().Put(gomock.Any(), gomock.Any()).DoAndReturn(func(context.Context, ports.Result) error {
			putAt = append(putAt, time.Now())
			return fmt.Errorf("mock: %w", ports.ErrUnavailable)
		}).Times(4)
		h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r1"), 5*time.Second)
		// No Ack: the result is not stored.
		h.run()
		start := time.Now()
		h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"))
		time.Sleep(time.Second)
		synctest.Wait()
		require.NoError(t, h.stop())
		require.Equal(t, []time.Time{start, start.Add(100 * time.Millisecond), start.Add(300 * time.Millisecond), start.Add(700 * time.Millisecond)}, putAt)
		require.Equal(t, 1, h.obs.counts().storeFailed, "one result given up on")
		require.Equal(t, []core.TaskOutcome{core.OutcomeSucceeded}, h.obs.outcomes("t1"), "the outcome stays the handler's")
	})
}

func TestWorker_PublishFailureDoesNotFailTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", wkOK(`1`)))
		var put ports.Result
		gomock.InOrder(
			capturePut(h, &put),
			h.bus.EXPECT().Publish(gomock.Any(), "in", gomock.Any()).Return(errors.New("bus down")),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")),
		)
		h.run()
		env := wkEnv("t1", "a")
		env.ReplyTo = "in"
		h.send(wkDelivery(t, env, 1, "r1"))
		synctest.Wait()
		require.NoError(t, h.stop())
		require.Equal(t, ports.StateSucceeded, put.State)
		require.Equal(t, []core.TaskOutcome{core.OutcomeSucceeded}, h.obs.outcomes("t1"))
		require.Equal(t, 1, h.obs.counts().publishFailed)
	})
}

// ---- cancellation while running ----

func TestWorker_CancelRunningCancelsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		h.withCancels()
		var cause error
		var stoppedAt time.Time
		require.NoError(t, h.reg.HandleFunc("a", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
			<-ctx.Done()
			cause, stoppedAt = context.Cause(ctx), time.Now()
			return nil, ctx.Err()
		}))
		h.cancels.EXPECT().Canceled(gomock.Any(), "t1").Return(nil, nil)
		var put ports.Result
		gomock.InOrder(
			capturePut(h, &put),
			h.bus.EXPECT().Publish(gomock.Any(), "in", gomock.Any()),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")),
		)
		h.run()
		env := wkEnv("t1", "a")
		env.ReplyTo = "in"
		h.send(wkDelivery(t, env, 1, "r1"))
		time.Sleep(3 * time.Second)
		synctest.Wait()
		requested := time.Now()
		h.cancel("unrelated", "t1")
		synctest.Wait()
		require.NoError(t, h.stop())
		require.ErrorIs(t, cause, core.ErrTaskCanceled)
		require.Equal(t, requested, stoppedAt, "the handler is interrupted at once")
		require.Equal(t, ports.StateCancelled, put.State)
		require.Equal(t, "cancelled by request", put.Error)
		require.Equal(t, 1, put.Attempts)
	})
}

func TestWorker_CancelSubscriptionRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		cancels := portsmock.NewMockCancelChannel(h.ctrl)
		sub := portsmock.NewMockCancelSubscription(h.ctrl)
		h.opts.Ports.Cancels, h.opts.Ports.NoCancel = cancels, false
		var subscribes, receives int
		cancels.EXPECT().Subscribe(gomock.Any()).DoAndReturn(func(context.Context) (ports.CancelSubscription, error) {
			subscribes++
			if subscribes < 3 {
				return nil, fmt.Errorf("mock: %w", ports.ErrUnavailable)
			}
			return sub, nil
		}).Times(3)
		sub.EXPECT().Receive(gomock.Any()).DoAndReturn(func(ctx context.Context) ([]string, error) {
			receives++
			if receives <= 20 {
				return nil, fmt.Errorf("mock: %w", ports.ErrUnavailable)
			}
			select {
			case ids := <-h.cancelIDs:
				return ids, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}).AnyTimes()
		sub.EXPECT().Close()
		cancels.EXPECT().Canceled(gomock.Any(), "t1").Return(nil, nil)
		var cause error
		require.NoError(t, h.reg.HandleFunc("a", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
			<-ctx.Done()
			cause = context.Cause(ctx)
			return nil, ctx.Err()
		}))
		h.results.EXPECT().Put(gomock.Any(), gomock.Any())
		h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1"))
		h.opts.Lease = time.Hour // no heartbeats in this test
		h.run()
		h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"))
		time.Sleep(10 * time.Second)
		synctest.Wait()
		require.Equal(t, 3, subscribes, "a failed subscription is retried")
		require.Less(t, receives, 12, "receive errors back off instead of spinning")
		time.Sleep(10 * time.Minute)
		h.cancel("t1")
		synctest.Wait()
		require.ErrorIs(t, cause, core.ErrTaskCanceled, "the recovered subscription delivers requests")
		require.NoError(t, h.stop())
	})
}

// ---- concurrency ----

func TestWorker_ConcurrencyLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		h.opts.Concurrency = 3
		var mu sync.Mutex
		running, peak := 0, 0
		release := make(chan struct{})
		require.NoError(t, h.reg.HandleFunc("a", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
			mu.Lock()
			running++
			peak = max(peak, running)
			mu.Unlock()
			select {
			case <-release:
			case <-ctx.Done(): // only when the test fails and shuts down
			}
			mu.Lock()
			running--
			mu.Unlock()
			return json.RawMessage(`1`), nil
		}))
		h.results.EXPECT().Put(gomock.Any(), gomock.Any()).AnyTimes()
		h.broker.EXPECT().Ack(gomock.Any(), gomock.Any()).AnyTimes()
		h.opts.Lease = time.Hour
		h.run()
		d := func(i int) ports.Delivery {
			return wkDelivery(t, wkEnv(fmt.Sprintf("t%d", i), "a"), 1, fmt.Sprintf("r%d", i))
		}
		h.send(d(1), d(2))
		synctest.Wait()
		h.send(d(3))
		synctest.Wait()
		time.Sleep(time.Minute)
		synctest.Wait()
		require.Equal(t, []int{3, 1}, h.receiveMaxes(), "asks for the free slots only, and not at all when none is free")

		release <- struct{}{}
		synctest.Wait()
		require.Equal(t, []int{3, 1, 1}, h.receiveMaxes(), "a freed slot is filled")
		h.send(d(4))
		synctest.Wait()
		close(release)
		synctest.Wait()
		require.NoError(t, h.stop())
		require.Equal(t, 3, peak)
	})
}

// ---- leases ----

// blockUntilDone is a handler that returns when its context is done and
// reports why and when.
func blockUntilDone(causes chan<- error) func(context.Context, *core.Task) (json.RawMessage, error) {
	return func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return nil, ctx.Err()
	}
}

func TestWorker_HeartbeatExtendsUntilCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		h.opts.Lease, h.opts.HeartbeatInterval, h.opts.MaxExtensions = 30*time.Second, 10*time.Second, 3
		causes := make(chan error, 1)
		require.NoError(t, h.reg.HandleFunc("a", blockUntilDone(causes)))
		var extendedAt []time.Time
		h.broker.EXPECT().Extend(gomock.Any(), 30*time.Second, ports.Receipt("r1")).DoAndReturn(
			func(context.Context, time.Duration, ...ports.Receipt) error {
				extendedAt = append(extendedAt, time.Now())
				return nil
			}).Times(3)
		// No Put, Ack or Nack: with the lease gone, another delivery owns the task.
		h.run()
		t0 := time.Now()
		h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"))
		time.Sleep(59 * time.Second)
		synctest.Wait()
		require.Empty(t, causes, "the handler runs while the last extension holds")
		time.Sleep(time.Second)
		synctest.Wait()
		require.ErrorIs(t, <-causes, ports.ErrLeaseLost, "cancelled when the capped lease runs out")
		require.Equal(t, []time.Time{t0.Add(10 * time.Second), t0.Add(20 * time.Second), t0.Add(30 * time.Second)}, extendedAt)
		require.NoError(t, h.stop())
		c := h.obs.counts()
		require.Equal(t, 3, c.extended, "extended up to the cap, no further")
		require.Zero(t, c.extendFailed)
		require.Equal(t, []core.TaskOutcome{core.OutcomeLeaseLost}, h.obs.outcomes("t1"))
		// The lease's log records (they count its extensions) carry the
		// task's attributes.
		recs := h.logs.WithAttr("extensions")
		require.NotEmpty(t, recs)
		for _, r := range recs {
			require.Equal(t, slog.LevelWarn, r.Level)
			require.Equal(t, int64(3), r.Attrs["extensions"])
			require.Equal(t, "t1", r.Attrs["task_id"], "lease logs carry the task's attributes")
			require.Equal(t, "a", r.Attrs["task"])
			require.Equal(t, int64(1), r.Attrs["attempt"])
		}
	})
}

func TestWorker_HeartbeatBatchesReceipts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		h.opts.Concurrency = 12
		release := make(chan struct{})
		require.NoError(t, h.reg.HandleFunc("a", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
			select {
			case <-release:
			case <-ctx.Done(): // only when the test fails and shuts down
			}
			return json.RawMessage(`1`), nil
		}))
		var mu sync.Mutex
		var calls [][]ports.Receipt
		h.broker.EXPECT().Extend(gomock.Any(), 30*time.Second, gomock.Any()).DoAndReturn(
			func(_ context.Context, _ time.Duration, rs ...ports.Receipt) error {
				mu.Lock()
				calls = append(calls, rs)
				mu.Unlock()
				return nil
			}).AnyTimes()
		h.results.EXPECT().Put(gomock.Any(), gomock.Any()).Times(12)
		h.broker.EXPECT().Ack(gomock.Any(), gomock.Any()).Times(12)
		h.run()
		var first, second []ports.Delivery
		for i := range 12 {
			d := wkDelivery(t, wkEnv(fmt.Sprintf("t%02d", i), "a"), 1, fmt.Sprintf("r%02d", i))
			if i < 10 {
				first = append(first, d)
			} else {
				second = append(second, d)
			}
		}
		h.send(first...)
		h.send(second...)
		time.Sleep(15 * time.Second) // one heartbeat (every 10s)
		synctest.Wait()
		mu.Lock()
		require.Len(t, calls, 2, "12 due leases: one call per 10 receipts")
		require.Len(t, calls[0], 10)
		require.Len(t, calls[1], 2)
		all := append(slices.Clone(calls[0]), calls[1]...)
		mu.Unlock()
		slices.Sort(all)
		require.Len(t, slices.Compact(all), 12)
		close(release)
		synctest.Wait()
		require.NoError(t, h.stop())
	})
}

func TestWorker_ExtendLeaseLostCancelsHandler(t *testing.T) {
	t.Run("single receipt", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newWkHarness(t)
			causes := make(chan error, 1)
			require.NoError(t, h.reg.HandleFunc("a", blockUntilDone(causes)))
			h.broker.EXPECT().Extend(gomock.Any(), 30*time.Second, ports.Receipt("r1")).
				Return(fmt.Errorf("mock: extend: %w", ports.ErrLeaseLost))
			// No Put, Ack or Nack.
			h.run()
			t0 := time.Now()
			h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"))
			time.Sleep(10 * time.Second)
			synctest.Wait()
			require.ErrorIs(t, <-causes, ports.ErrLeaseLost)
			require.Equal(t, t0.Add(10*time.Second), time.Now())
			require.NoError(t, h.stop())
			c := h.obs.counts()
			require.Equal(t, 1, c.extendFailed)
			require.Zero(t, c.extended)
			require.Equal(t, []core.TaskOutcome{core.OutcomeLeaseLost}, h.obs.outcomes("t1"))
		})
	})

	t.Run("batch item errors map to their tasks", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newWkHarness(t)
			release := make(chan struct{})
			var cause2 error
			require.NoError(t, h.reg.HandleFunc("keep", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
				select {
				case <-release:
					return json.RawMessage(`1`), nil
				case <-ctx.Done():
					t.Errorf("task 1 was cancelled: %v", context.Cause(ctx))
					return nil, ctx.Err()
				}
			}))
			require.NoError(t, h.reg.HandleFunc("lose", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
				<-ctx.Done()
				cause2 = context.Cause(ctx)
				return nil, ctx.Err()
			}))
			h.broker.EXPECT().Extend(gomock.Any(), 30*time.Second, ports.Receipt("r1"), ports.Receipt("r2")).
				Return(&ports.BatchError{Failed: map[int]error{1: fmt.Errorf("mock: %w", ports.ErrLeaseLost)}})
			h.results.EXPECT().Put(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, r ports.Result) error {
				require.Equal(t, "t1", r.TaskID)
				return nil
			})
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1"))
			h.run()
			h.send(wkDelivery(t, wkEnv("t1", "keep"), 1, "r1"), wkDelivery(t, wkEnv("t2", "lose"), 1, "r2"))
			time.Sleep(10 * time.Second)
			synctest.Wait()
			require.ErrorIs(t, cause2, ports.ErrLeaseLost)
			close(release)
			synctest.Wait()
			require.NoError(t, h.stop())
		})
	})

	t.Run("failing extensions until the lease runs out", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newWkHarness(t)
			causes := make(chan error, 1)
			require.NoError(t, h.reg.HandleFunc("a", blockUntilDone(causes)))
			h.broker.EXPECT().Extend(gomock.Any(), 30*time.Second, ports.Receipt("r1")).
				Return(fmt.Errorf("mock: %w", ports.ErrUnavailable)).Times(2) // at 10s and 20s
			h.run()
			h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"))
			time.Sleep(time.Minute)
			synctest.Wait()
			require.ErrorIs(t, <-causes, ports.ErrLeaseLost)
			require.NoError(t, h.stop())
			c := h.obs.counts()
			require.Equal(t, 2, c.extendFailed)
			require.Zero(t, c.extended)
			require.Equal(t, []core.TaskOutcome{core.OutcomeLeaseLost}, h.obs.outcomes("t1"))
		})
	})

	t.Run("success after a lost lease is still recorded", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newWkHarness(t)
			require.NoError(t, h.reg.HandleFunc("a", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
				<-ctx.Done()
				return json.RawMessage(`"done anyway"`), nil
			}))
			h.broker.EXPECT().Extend(gomock.Any(), gomock.Any(), gomock.Any()).Return(ports.ErrLeaseLost)
			var put ports.Result
			capturePut(h, &put)
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")) // stale acks are harmless
			h.run()
			h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"))
			time.Sleep(10 * time.Second)
			synctest.Wait()
			require.NoError(t, h.stop())
			require.Equal(t, ports.StateSucceeded, put.State)
		})
	})
}

// ---- receive errors and shutdown ----

func TestWorker_ReceiveErrorBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		var calls []time.Time
		h.broker.EXPECT().Receive(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(
			func(context.Context, int, time.Duration) ([]ports.Delivery, error) {
				calls = append(calls, time.Now())
				return nil, fmt.Errorf("mock: %w", ports.ErrUnavailable)
			}).AnyTimes()
		h.start()
		t0 := time.Now()
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		require.NoError(t, h.stop(), "receive errors never end Run")
		// 100ms doubling to a 30s cap, minus up to 20% jitter: about 10 calls
		// in the first minute and 2 more in the second — not thousands.
		require.GreaterOrEqual(t, len(calls), 10)
		require.LessOrEqual(t, len(calls), 16)
		for i := 1; i < len(calls); i++ {
			gap := calls[i].Sub(calls[i-1])
			require.GreaterOrEqual(t, gap, 80*time.Millisecond, "never spins")
			require.LessOrEqual(t, gap, 30*time.Second, "capped")
		}
		require.Equal(t, t0, calls[0])
		require.Equal(t, len(calls), h.obs.counts().receiveFailed, "every failed receive is counted")
		// The log gives the operator the cause.
		recs := h.logs.WithErr(ports.ErrUnavailable)
		require.Len(t, recs, len(calls))
		for _, r := range recs {
			require.Equal(t, slog.LevelError, r.Level)
		}
	})
}

func TestWorker_BrokerClosedEndsRunAfterDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", func(context.Context, *core.Task) (json.RawMessage, error) {
			time.Sleep(2 * time.Second)
			return json.RawMessage(`1`), nil
		}))
		d := wkDelivery(t, wkEnv("t1", "a"), 1, "r1")
		gomock.InOrder(
			h.broker.EXPECT().Receive(gomock.Any(), gomock.Any(), gomock.Any()).Return([]ports.Delivery{d}, nil),
			h.broker.EXPECT().Receive(gomock.Any(), gomock.Any(), gomock.Any()).Return(nil, fmt.Errorf("mock: %w", ports.ErrClosed)),
		)
		h.results.EXPECT().Put(gomock.Any(), gomock.Any())
		h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1"))
		w, err := core.NewWorker(h.opts)
		require.NoError(t, err)
		t0 := time.Now()
		err = w.Run(context.Background())
		require.ErrorIs(t, err, ports.ErrClosed)
		require.Equal(t, t0.Add(2*time.Second), time.Now(), "in-flight work is drained first")
	})
}

func TestWorker_GracefulShutdownDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		h.opts.Lease, h.opts.HeartbeatInterval = 3*time.Second, time.Second
		require.NoError(t, h.reg.HandleFunc("a", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
			time.Sleep(5500 * time.Millisecond)
			if ctx.Err() != nil {
				t.Errorf("handler context cancelled during the drain: %v", context.Cause(ctx))
			}
			return json.RawMessage(`1`), nil
		}))
		var mu sync.Mutex
		var extends []time.Time
		h.broker.EXPECT().Extend(gomock.Any(), 3*time.Second, ports.Receipt("r1")).DoAndReturn(
			func(context.Context, time.Duration, ...ports.Receipt) error {
				mu.Lock()
				extends = append(extends, time.Now())
				mu.Unlock()
				return nil
			}).AnyTimes()
		var put ports.Result
		gomock.InOrder(
			capturePut(h, &put),
			h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r1")),
		)
		// No Nack: nothing is released.
		h.run()
		t0 := time.Now()
		h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"))
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		receives := len(h.receiveMaxes())
		require.NoError(t, h.stop())
		require.Equal(t, t0.Add(5500*time.Millisecond), time.Now(), "Run returns when the task is done")
		require.Equal(t, ports.StateSucceeded, put.State)
		require.Len(t, h.receiveMaxes(), receives, "no Receive after shutdown began")
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, extends, 5, "heartbeats continue during the drain (1s..5s)")
	})
}

func TestWorker_ShutdownReleasesUnfinished(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		h.opts.ShutdownTimeout = 2 * time.Second
		causes := make(chan error, 1)
		require.NoError(t, h.reg.HandleFunc("a", blockUntilDone(causes)))
		var nackedAt time.Time
		h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r1"), time.Duration(0)).DoAndReturn(
			func(context.Context, ports.Receipt, time.Duration) error {
				nackedAt = time.Now()
				return nil
			})
		// No Put, no Ack.
		h.run()
		h.send(wkDelivery(t, wkEnv("t1", "a"), 1, "r1"))
		synctest.Wait()
		t0 := time.Now()
		require.NoError(t, h.stop())
		require.Equal(t, t0.Add(2*time.Second), time.Now(), "Run returns after the timeout")
		require.Equal(t, t0.Add(2*time.Second), nackedAt, "released at once")
		require.ErrorIs(t, <-causes, core.ErrShutdown)
	})
}

func TestWorker_ShutdownReleasesWhatTheCancelledReceiveReturned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", wkNever(t)))
		d := wkDelivery(t, wkEnv("t1", "a"), 1, "r1")
		// Receive honours its contract: when ctx is done it returns what it
		// has leased, with ctx's error.
		h.broker.EXPECT().Receive(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(
			func(ctx context.Context, _ int, _ time.Duration) ([]ports.Delivery, error) {
				<-ctx.Done()
				return []ports.Delivery{d}, ctx.Err()
			})
		h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r1"), time.Duration(0))
		h.start()
		synctest.Wait()
		require.NoError(t, h.stop())
	})
}

func TestWorker_ShutdownAbortsTaskBeforeStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		h.opts.ShutdownTimeout = time.Second
		require.NoError(t, h.reg.HandleFunc("a", wkNever(t)))
		// The redelivery check hangs (a slow backend) until shutdown aborts it.
		h.results.EXPECT().Get(gomock.Any(), "t1").DoAndReturn(func(ctx context.Context, _ string) (ports.Result, error) {
			<-ctx.Done()
			return ports.Result{}, ctx.Err()
		})
		h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r1"), time.Duration(0))
		h.run()
		h.send(wkDelivery(t, wkEnv("t1", "a"), 2, "r1"))
		synctest.Wait()
		t0 := time.Now()
		require.NoError(t, h.stop())
		require.Equal(t, t0.Add(time.Second), time.Now())
	})
}

func TestWorker_ShutdownBeforeAnything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		h.withCancels()
		h.run()
		synctest.Wait()
		require.NoError(t, h.stop())
	})
}

func TestWorker_NoCancelChannelIsAnError(t *testing.T) {
	reg := core.NewRegistry()
	ctrl := gomock.NewController(t)
	p := core.Ports{Broker: portsmock.NewMockBroker(ctrl), Results: portsmock.NewMockResultBackend(ctrl)}
	_, err := core.NewWorker(core.WorkerOptions{Ports: p, Registry: reg})
	require.ErrorIs(t, err, ports.ErrInvalidArgument, "a worker cancellation could never reach is refused at construction")
	require.ErrorContains(t, err, "Ports.Cancels")

	p.NoCancel = true
	_, err = core.NewWorker(core.WorkerOptions{Ports: p, Registry: reg})
	require.NoError(t, err, "cancellation switched off on purpose")

	p.Cancels = portsmock.NewMockCancelChannel(ctrl)
	_, err = core.NewWorker(core.WorkerOptions{Ports: p, Registry: reg})
	require.ErrorIs(t, err, ports.ErrInvalidArgument, "NoCancel with a channel is contradictory")
}

// ---- logging ----

func TestWorker_LogsCarryTaskAttributes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWkHarness(t)
		require.NoError(t, h.reg.HandleFunc("a", func(_ context.Context, task *core.Task) (json.RawMessage, error) {
			if task.Attempt == 1 {
				return nil, errors.New("first try fails")
			}
			return json.RawMessage(`1`), nil
		}))
		h.broker.EXPECT().Nack(gomock.Any(), ports.Receipt("r1"), gomock.Any())
		h.results.EXPECT().Get(gomock.Any(), "t1").Return(ports.Result{}, notFoundErr("t1"))
		h.results.EXPECT().Put(gomock.Any(), gomock.Any())
		h.broker.EXPECT().Ack(gomock.Any(), ports.Receipt("r2"))
		h.run()
		env := wkEnv("t1", "a")
		env.RunID, env.StepID = "run-9", "step-3"
		h.send(wkDelivery(t, env, 1, "r1"))
		synctest.Wait()
		h.send(wkDelivery(t, env, 2, "r2"))
		synctest.Wait()
		require.NoError(t, h.stop())

		var taskLines int
		for _, r := range h.logs.Records() {
			if _, ok := r.Attrs["task_id"]; !ok {
				continue
			}
			taskLines++
			require.Equal(t, "t1", r.Attrs["task_id"], r.Msg)
			require.Equal(t, "a", r.Attrs["task"], r.Msg)
			require.Contains(t, []any{int64(1), int64(2)}, r.Attrs["attempt"], r.Msg)
			require.Equal(t, "run-9", r.Attrs["run_id"], r.Msg)
			require.Equal(t, "step-3", r.Attrs["step_id"], r.Msg)
			require.Equal(t, "w1", r.Attrs["worker"], r.Msg)
		}
		require.GreaterOrEqual(t, taskLines, 2)
	})
}
