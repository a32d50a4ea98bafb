package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/testutil"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
	"github.com/dagq/dagq/ports/portsmock"
)

// apiError stands in for an SDK error that must stay reachable with errors.As.
type apiError struct{ code string }

func (e *apiError) Error() string { return "api error " + e.code }

// fixture is a Client over gomock ports. With push, the completion bus opens
// one inbox whose Receive returns what the test sends on push.
type fixture struct {
	ctrl    *gomock.Controller
	broker  *portsmock.MockBroker
	results *portsmock.MockResultBackend
	cancels *portsmock.MockCancelChannel
	bus     *portsmock.MockCompletionBus
	inbox   *portsmock.MockInbox
	push    chan []ports.Completion
	client  *core.Client
}

type fixtureOpts struct {
	push    bool // with a CompletionBus
	cancels bool // with a CancelChannel
	opts    core.ClientOptions
}

func quietLogger() *slog.Logger { return testutil.QuietLogger() }

func newFixture(t *testing.T, fo fixtureOpts) *fixture {
	t.Helper()
	ctrl := gomock.NewController(t)
	f := &fixture{
		ctrl:    ctrl,
		broker:  portsmock.NewMockBroker(ctrl),
		results: portsmock.NewMockResultBackend(ctrl),
		push:    make(chan []ports.Completion),
	}
	opts := fo.opts
	opts.Ports.Broker, opts.Ports.Results = f.broker, f.results
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if fo.cancels {
		f.cancels = portsmock.NewMockCancelChannel(ctrl)
		opts.Ports.Cancels, opts.Ports.NoCancel = f.cancels, false
	} else {
		opts.Ports.NoCancel = true
	}
	if fo.push {
		f.bus = portsmock.NewMockCompletionBus(ctrl)
		f.inbox = portsmock.NewMockInbox(ctrl)
		f.bus.EXPECT().Open(gomock.Any()).Return(f.inbox, nil).MaxTimes(1)
		f.inbox.EXPECT().Address().Return("inbox-1").AnyTimes()
		f.inbox.EXPECT().Receive(gomock.Any()).DoAndReturn(func(ctx context.Context) ([]ports.Completion, error) {
			select {
			case cs := <-f.push:
				return cs, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}).AnyTimes()
		f.inbox.EXPECT().Close().Return(nil).MaxTimes(1)
		opts.Ports.Completions = f.bus
	}
	c, err := core.NewClient(opts)
	require.NoError(t, err)
	f.client = c
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return f
}

// submit submits one task with a given ID through a Send that succeeds.
func (f *fixture) submit(t *testing.T, id string) {
	t.Helper()
	f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).Return(nil)
	got, err := f.client.Submit(context.Background(), core.Request{Task: "t", ID: id})
	require.NoError(t, err)
	require.Equal(t, id, got)
}

func succeeded(id string, out string) ports.Result {
	return ports.Result{TaskID: id, State: ports.StateSucceeded, Output: []byte(out), Attempts: 1}
}

// clientGoroutines counts the goroutines of the caller's synctest bubble
// that run Client code.
func clientGoroutines() int { return testutil.BubbleGoroutines("dagq/core.(*Client)") }

func notFound(id string) error { return fmt.Errorf("mock: get %s: %w", id, ports.ErrNotFound) }

// ---- NewClient -------------------------------------------------------------

func TestNewClientValidation(t *testing.T) {
	ctrl := gomock.NewController(t)
	b, r := portsmock.NewMockBroker(ctrl), portsmock.NewMockResultBackend(ctrl)
	tests := []struct {
		name  string
		opts  core.ClientOptions
		field string
	}{
		{"no broker", core.ClientOptions{
			Ports: core.Ports{
				Results:  r,
				NoCancel: true,
			},
		}, "Broker"},
		{"no results", core.ClientOptions{
			Ports: core.Ports{
				Broker:   b,
				NoCancel: true,
			},
		}, "Results"},
		{"no cancels and cancellation not switched off", core.ClientOptions{
			Ports: core.Ports{Broker: b, Results: r},
		}, "Ports.Cancels"},
		{"cancellation switched off with a channel", core.ClientOptions{
			Ports: core.Ports{Broker: b, Results: r, Cancels: portsmock.NewMockCancelChannel(ctrl), NoCancel: true},
		}, "NoCancel"},
		{"negative poll", core.ClientOptions{
			Ports: core.Ports{
				Broker:   b,
				Results:  r,
				NoCancel: true,
			},
			PollInterval: -1,
		}, "PollInterval"},
		{"negative poll max", core.ClientOptions{
			Ports: core.Ports{
				Broker:   b,
				Results:  r,
				NoCancel: true,
			},
			PollMaxInterval: -1,
		}, "PollMaxInterval"},
		{"poll max below poll", core.ClientOptions{
			Ports: core.Ports{
				Broker:   b,
				Results:  r,
				NoCancel: true,
			},
			PollInterval:    time.Second,
			PollMaxInterval: time.Millisecond,
		}, "PollMaxInterval"},
		{"negative reconcile", core.ClientOptions{
			Ports: core.Ports{
				Broker:   b,
				Results:  r,
				NoCancel: true,
			},
			Reconcile: -time.Second,
		}, "Reconcile"},
		{"negative cache", core.ClientOptions{
			Ports: core.Ports{
				Broker:   b,
				Results:  r,
				NoCancel: true,
			},
			CacheSize: -1,
		}, "CacheSize"},
		{"negative pending limit", core.ClientOptions{
			Ports: core.Ports{
				Broker:   b,
				Results:  r,
				NoCancel: true,
			},
			PendingLimit: -1,
		}, "PendingLimit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := core.NewClient(tt.opts)
			require.ErrorIs(t, err, ports.ErrInvalidArgument)
			assert.Nil(t, c)
			assert.Contains(t, err.Error(), tt.field)
		})
	}

	c, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:   b,
			Results:  r,
			NoCancel: true,
		},
	})
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close is idempotent")
}

// ---- Submit ----------------------------------------------------------------

func TestSubmitWrapsSendError(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cause := &apiError{code: "Throttling"}
	f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).
		Return(fmt.Errorf("sqs: send: %w: %w", ports.ErrUnavailable, cause))

	id, err := f.client.Submit(context.Background(), core.Request{Task: "resize", ID: "task-1"})
	require.Error(t, err)
	assert.ErrorIs(t, err, ports.ErrUnavailable)
	var got *apiError
	require.ErrorAs(t, err, &got)
	assert.Same(t, cause, got)
	assert.Equal(t, "task-1", id, "the ID is returned: the task may have been queued")
	assert.Contains(t, err.Error(), "resize")
	assert.Contains(t, err.Error(), "task-1")
}

func TestSubmitWrapsBatchItemError(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).
		Return(&ports.BatchError{Failed: map[int]error{0: fmt.Errorf("sqs: %w", ports.ErrInvalidArgument)}})
	_, err := f.client.Submit(context.Background(), core.Request{Task: "t"})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
}

func TestSubmitEnvelope(t *testing.T) {
	for _, push := range []bool{false, true} {
		t.Run(fmt.Sprintf("push=%v", push), func(t *testing.T) {
			f := newFixture(t, fixtureOpts{push: push})
			var sent []ports.Message
			f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, msgs ...ports.Message) error {
				sent = append(sent, msgs...)
				return nil
			}).Times(2)

			retry := core.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Second, MaxBackoff: time.Minute, Multiplier: 2}
			deadline := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
			before := time.Now()
			type args struct {
				W int `json:"w"`
			}
			id, err := f.client.Submit(context.Background(), core.Request{
				Task: "resize", Args: args{W: 640},
				Labels: map[string]string{"team": "img"}, Meta: map[string]string{"traceparent": "x"},
				RunID: "run-1", StepID: "step-a", Deadline: deadline, Delay: 3 * time.Second, Retry: &retry,
				Inputs: map[string]json.RawMessage{"up": json.RawMessage(`{"n":1}`)}, Params: map[string]string{"k": "v"},
				Progress: true,
			})
			require.NoError(t, err)
			require.Len(t, id, 32, "a new random ID")
			id2, err := f.client.Submit(context.Background(), core.Request{Task: "plain", ID: "my-id", Args: json.RawMessage(`[1,2]`)})
			require.NoError(t, err)
			require.Equal(t, "my-id", id2)

			require.Len(t, sent, 2)
			m := sent[0]
			assert.Equal(t, id, m.ID)
			assert.Equal(t, "run-1", m.GroupID, "group is the run")
			assert.Equal(t, 3*time.Second, m.Delay)
			env, err := wire.Decode(m.Body)
			require.NoError(t, err)
			assert.Equal(t, 1, env.Version, "version 1: nothing a version-1 worker would misread")
			assert.Equal(t, id, env.TaskID)
			assert.Equal(t, "resize", env.Task)
			assert.Equal(t, 1, env.Attempt)
			assert.JSONEq(t, `{"w":640}`, string(env.Args))
			assert.Equal(t, map[string]string{"team": "img"}, env.Labels)
			assert.Equal(t, map[string]string{"traceparent": "x"}, env.Meta)
			assert.Equal(t, "run-1", env.RunID)
			assert.Equal(t, "step-a", env.StepID)
			assert.True(t, deadline.Equal(env.Deadline))
			assert.Equal(t, map[string]json.RawMessage{"up": json.RawMessage(`{"n":1}`)}, env.Inputs)
			assert.Equal(t, map[string]string{"k": "v"}, env.Params)
			assert.True(t, env.Progress)
			require.NotNil(t, env.Retry)
			assert.Equal(t, retry, core.RetryPolicy(*env.Retry))
			assert.False(t, env.SentAt.Before(before.Add(-time.Second)) || env.SentAt.After(time.Now().Add(time.Second)), "SentAt is now: %v", env.SentAt)
			if push {
				assert.Equal(t, "inbox-1", env.ReplyTo)
			} else {
				assert.Empty(t, env.ReplyTo)
			}

			m2 := sent[1]
			assert.Equal(t, "my-id", m2.ID)
			assert.Equal(t, "my-id", m2.GroupID, "without a run the group is the task")
			env2, err := wire.Decode(m2.Body)
			require.NoError(t, err)
			assert.JSONEq(t, `[1,2]`, string(env2.Args))
			assert.Equal(t, env.ReplyTo, env2.ReplyTo, "one inbox for all submits")
		})
	}
}

func TestSubmitValidation(t *testing.T) {
	badRetry := core.RetryPolicy{MaxAttempts: 0}
	tests := []struct {
		name string
		req  core.Request
		want string
	}{
		{"empty task", core.Request{}, "empty task name"},
		{"bad retry", core.Request{Task: "t", Retry: &badRetry}, "max_attempts"},
		{"negative delay", core.Request{Task: "t", Delay: -time.Second}, "delay -1s; valid delays are 0..8760h0m0s (MaxTaskDelay)"},
		{"delay over max", core.Request{Task: "t", Delay: core.MaxTaskDelay + time.Second}, "delay 8760h0m1s; valid delays are 0..8760h0m0s"},
		{"delay and not before", core.Request{Task: "t", Delay: time.Hour, NotBefore: time.Now().Add(time.Hour)},
			"both Delay (1h0m0s) and NotBefore ("},
		{"not before too far", core.Request{Task: "t", NotBefore: time.Now().Add(core.MaxTaskDelay + time.Hour)}, "ahead; at most 8760h0m0s (MaxTaskDelay)"},
		{"deadline before due", core.Request{Task: "t", Delay: 2 * time.Hour, Deadline: time.Now().Add(time.Hour)}, "is not after the task's due time"},
		{"deadline before short delay", core.Request{Task: "t", Delay: time.Minute, Deadline: time.Now().Add(time.Second)}, "it would never run"},
		{"args not JSON", core.Request{Task: "needs-json", Args: make(chan int)}, `"needs-json"`},
		{"invalid raw args", core.Request{Task: "t", Args: json.RawMessage(`{`)}, "not valid JSON"},
		{"invalid input", core.Request{Task: "t", Inputs: map[string]json.RawMessage{"up": json.RawMessage(`{`)}}, `input "up" is not valid JSON`},
		{"ID with space", core.Request{Task: "t", ID: "a b"}, "printable"},
		{"ID too long", core.Request{Task: "t", ID: strings.Repeat("x", 129)}, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{push: true})
			f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).Times(0)
			id, err := f.client.Submit(context.Background(), tt.req)
			require.ErrorIs(t, err, ports.ErrInvalidArgument)
			assert.Empty(t, id)
			assert.Contains(t, err.Error(), tt.want)
		})
	}

	t.Run("marshal error keeps the cause", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		_, err := f.client.Submit(context.Background(), core.Request{Task: "t", Args: make(chan int)})
		var je *json.UnsupportedTypeError
		require.ErrorAs(t, err, &je)
	})
}

func TestSubmitBatchChunks(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	var sizes []int
	var sentIDs []string
	f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, msgs ...ports.Message) error {
		sizes = append(sizes, len(msgs))
		for _, m := range msgs {
			sentIDs = append(sentIDs, m.ID)
		}
		return nil
	}).Times(3)

	reqs := make([]core.Request, 25)
	for i := range reqs {
		reqs[i] = core.Request{Task: "t", Args: i}
	}
	ids, err := f.client.SubmitBatch(context.Background(), reqs...)
	require.NoError(t, err)
	assert.Equal(t, []int{10, 10, 5}, sizes)
	assert.Equal(t, sentIDs, ids, "IDs in request order")
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	assert.Len(t, seen, 25, "distinct IDs")

	none, err := f.client.SubmitBatch(context.Background())
	require.NoError(t, err)
	assert.Empty(t, none)
}

func TestSubmitBatchPartialFailure(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cause := &apiError{code: "ServiceUnavailable"}
	gomock.InOrder(
		f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).Return(nil),
		f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).Return(&ports.BatchError{Failed: map[int]error{
			3: fmt.Errorf("sqs: send: %w: %w", ports.ErrUnavailable, cause),
		}}),
		f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).Return(fmt.Errorf("sqs: send: %w", ports.ErrNotFound)),
	)
	reqs := make([]core.Request, 25)
	for i := range reqs {
		reqs[i] = core.Request{Task: "t", ID: fmt.Sprintf("id-%02d", i)}
	}
	ids, err := f.client.SubmitBatch(context.Background(), reqs...)
	require.Error(t, err)
	require.Len(t, ids, 25, "all IDs are returned")
	var se *core.SubmitError
	require.ErrorAs(t, err, &se)
	var idx []int
	for i := range 25 {
		if se.Failed[i] != nil {
			idx = append(idx, i)
		}
	}
	assert.Equal(t, []int{13, 20, 21, 22, 23, 24}, idx)
	assert.Len(t, se.Failed, 6)
	assert.ErrorIs(t, err, ports.ErrUnavailable)
	assert.ErrorIs(t, err, ports.ErrNotFound)
	var got *apiError
	require.ErrorAs(t, err, &got)
	assert.Same(t, cause, got)
	assert.Contains(t, se.Failed[13].Error(), "id-13")
	assert.Contains(t, err.Error(), "6 request(s)")
}

func TestSubmitBatchInvalidSendsNothing(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).Times(0)
	ids, err := f.client.SubmitBatch(context.Background(),
		core.Request{Task: "ok"}, core.Request{}, core.Request{Task: "ok"}, core.Request{Task: "t", Delay: -1})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	assert.Nil(t, ids)
	assert.Contains(t, err.Error(), "request 1")
	assert.Contains(t, err.Error(), "request 3")
	assert.NotContains(t, err.Error(), "request 0")
}

func TestSubmitBatchStopsWhenContextDone(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).DoAndReturn(func(context.Context, ...ports.Message) error {
		cancel()
		return nil
	}).Times(1)
	reqs := make([]core.Request, 15)
	for i := range reqs {
		reqs[i] = core.Request{Task: "t"}
	}
	ids, err := f.client.SubmitBatch(ctx, reqs...)
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, ids, 15)
	var se *core.SubmitError
	require.ErrorAs(t, err, &se)
	assert.Len(t, se.Failed, 5)
	assert.NotNil(t, se.Failed[10])
}

func TestSubmitInboxOpenFailure(t *testing.T) {
	ctrl := gomock.NewController(t)
	broker, results := portsmock.NewMockBroker(ctrl), portsmock.NewMockResultBackend(ctrl)
	bus := portsmock.NewMockCompletionBus(ctrl)
	bus.EXPECT().Open(gomock.Any()).Return(nil, fmt.Errorf("sqs: create queue: %w", ports.ErrUnavailable))
	broker.EXPECT().Send(gomock.Any(), gomock.Any()).Times(0)
	c, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:      broker,
			Results:     results,
			Completions: bus,
			NoCancel:    true,
		},
		Logger: quietLogger(),
	})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Submit(context.Background(), core.Request{Task: "t"})
	require.ErrorIs(t, err, ports.ErrUnavailable)
	assert.Contains(t, err.Error(), "inbox")
}

// ---- Wait with completions --------------------------------------------------

func TestWaitPushInlineResultReadsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).Times(0)
		f.submit(t, "a")

		want := succeeded("a", `"done"`)
		go func() {
			time.Sleep(time.Second)
			f.push <- []ports.Completion{{TaskID: "a", State: ports.StateSucceeded, Result: &want}}
		}()
		got, err := f.client.Wait(context.Background(), "a")
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})
}

func TestWaitPushWithoutResultReadsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		want := succeeded("a", `{"big":true}`)
		f.results.EXPECT().Get(gomock.Any(), "a").Return(want, nil).Times(1)
		f.submit(t, "a")

		go func() {
			time.Sleep(time.Second)
			f.push <- []ports.Completion{{TaskID: "a", State: ports.StateSucceeded}}
		}()
		start := time.Now()
		got, err := f.client.Wait(context.Background(), "a")
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.Equal(t, time.Second, time.Since(start), "read as soon as the completion arrived")

		// The result is remembered: waiting again reads nothing.
		got, err = f.client.Wait(context.Background(), "a")
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})
}

func TestWaitCompletionBeforeWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).Times(0)
		f.submit(t, "a")
		f.submit(t, "b")
		ra, rb := succeeded("a", "1"), ports.Result{TaskID: "b", State: ports.StateFailed, Error: "boom", Attempts: 3}
		f.push <- []ports.Completion{{TaskID: "a", State: ra.State, Result: &ra}, {TaskID: "b", State: rb.State, Result: &rb}}
		// A duplicate is harmless.
		f.push <- []ports.Completion{{TaskID: "a", State: ra.State, Result: &ra}}
		synctest.Wait()

		got, err := f.client.WaitAll(context.Background(), "b", "a")
		require.NoError(t, err, "a failed task is not an error of Wait")
		assert.Equal(t, []ports.Result{rb, ra}, got)
		var te *core.TaskError
		require.ErrorAs(t, core.ResultErr(got[0]), &te)
	})
}

func TestWaitCompletionWithoutResultBeforeWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		want := succeeded("a", "1")
		f.results.EXPECT().Get(gomock.Any(), "a").Return(want, nil).Times(1)
		f.submit(t, "a")
		f.push <- []ports.Completion{{TaskID: "a", State: ports.StateSucceeded}}
		synctest.Wait()
		start := time.Now()
		got, err := f.client.Wait(context.Background(), "a")
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.Zero(t, time.Since(start), "read at once, not after the reconcile interval")
	})
}

func TestWaitReconcilesWithoutPush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		f.submit(t, "a")
		start := time.Now()
		var reads []time.Duration
		want := succeeded("a", "1")
		f.results.EXPECT().Get(gomock.Any(), "a").DoAndReturn(func(_ context.Context, id string) (ports.Result, error) {
			reads = append(reads, time.Since(start))
			if len(reads) < 4 {
				return ports.Result{}, notFound(id)
			}
			return want, nil
		}).Times(4)

		got, err := f.client.Wait(context.Background(), "a")
		require.NoError(t, err)
		assert.Equal(t, want, got)
		// 30s, then doubling: +60s, +120s, +240s.
		assert.Equal(t, []time.Duration{30 * time.Second, 90 * time.Second, 210 * time.Second, 450 * time.Second}, reads)
	})
}

func TestWaitReconcileIntervalIsCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true, opts: core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
			Reconcile: time.Minute,
		}})
		f.submit(t, "a")
		var reads []time.Time
		f.results.EXPECT().Get(gomock.Any(), "a").DoAndReturn(func(_ context.Context, id string) (ports.Result, error) {
			reads = append(reads, time.Now())
			return ports.Result{}, notFound(id)
		}).AnyTimes()
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		_, err := f.client.Wait(ctx, "a")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		// 1m, 3m, 7m, then every 5m: 12, 17, ..., 57 → 13 reads in an hour.
		assert.Len(t, reads, 13)
		for i := 3; i < len(reads); i++ {
			assert.Equal(t, core.ReconcileMaxInterval, reads[i].Sub(reads[i-1]))
		}
	})
}

func TestWaitUnknownIDReadsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		want := succeeded("elsewhere", "1")
		f.results.EXPECT().Get(gomock.Any(), "elsewhere").Return(want, nil).Times(1)
		start := time.Now()
		got, err := f.client.Wait(context.Background(), "elsewhere")
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.Zero(t, time.Since(start))
	})
}

func TestWaitUnknownIDIsPolledNotReconciled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		want := succeeded("elsewhere", "1")
		var n int
		f.results.EXPECT().Get(gomock.Any(), "elsewhere").DoAndReturn(func(_ context.Context, id string) (ports.Result, error) {
			if n++; n < 3 {
				return ports.Result{}, notFound(id)
			}
			return want, nil
		}).Times(3)
		start := time.Now()
		_, err := f.client.Wait(context.Background(), "elsewhere")
		require.NoError(t, err)
		// No completion will come to this inbox: read at 0, 100ms, 300ms.
		assert.Equal(t, 300*time.Millisecond, time.Since(start))
	})
}

// ---- Wait by polling --------------------------------------------------------

func TestWaitPollingBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		start := time.Now()
		var reads []time.Duration
		f.results.EXPECT().Get(gomock.Any(), "x").DoAndReturn(func(_ context.Context, id string) (ports.Result, error) {
			reads = append(reads, time.Since(start))
			return ports.Result{}, notFound(id)
		}).AnyTimes()

		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := f.client.Wait(ctx, "x")
		require.ErrorIs(t, err, context.DeadlineExceeded)

		// Unknown ID: at once, then 100ms doubling up to 5s.
		want := []time.Duration{0}
		for d, at := 100*time.Millisecond, time.Duration(0); ; d = min(2*d, 5*time.Second) {
			if at += d; at >= time.Minute {
				break
			}
			want = append(want, at)
		}
		assert.Equal(t, want, reads)
		assert.Less(t, len(reads), 20, "not a polling storm")
	})
}

func TestWaitPollingSubmittedTaskWaitsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{opts: core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
			PollInterval:    time.Second,
			PollMaxInterval: 4 * time.Second,
		}})
		f.submit(t, "a")
		start := time.Now()
		var reads []time.Duration
		want := succeeded("a", "1")
		f.results.EXPECT().Get(gomock.Any(), "a").DoAndReturn(func(_ context.Context, id string) (ports.Result, error) {
			reads = append(reads, time.Since(start))
			if len(reads) < 5 {
				return ports.Result{}, notFound(id)
			}
			return want, nil
		}).Times(5)
		got, err := f.client.Wait(context.Background(), "a")
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.Equal(t, []time.Duration{1 * time.Second, 3 * time.Second, 7 * time.Second, 11 * time.Second, 15 * time.Second}, reads)
	})
}

func TestWaitAllManyIDsSharesOneGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		const n = 500
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("t%03d", i)
		}
		var mu sync.Mutex
		reads := map[string]int{}
		var done atomic.Bool
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, id string) (ports.Result, error) {
			mu.Lock()
			defer mu.Unlock()
			reads[id]++
			if done.Load() {
				return succeeded(id, `"`+id+`"`), nil
			}
			return ports.Result{}, notFound(id)
		}).AnyTimes()

		var got []ports.Result
		var err error
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			got, err = f.client.WaitAll(context.Background(), ids...)
		}()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		// The waiting goroutine plus the client's checker, not one per ID.
		assert.Equal(t, 2, clientGoroutines())
		mu.Lock()
		for _, id := range ids {
			// 0, .1, .3, .7, 1.5, 3.1, 6.3 s: 7 reads each in 10s.
			assert.Equal(t, 7, reads[id], id)
		}
		mu.Unlock()
		done.Store(true)
		<-finished
		require.NoError(t, err)
		require.Len(t, got, n)
		for i, r := range got {
			assert.Equal(t, ids[i], r.TaskID, "input order")
		}
	})
}

func TestWaitSameIDManyWaitersShareReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		var reads atomic.Int32
		var ready atomic.Bool
		f.results.EXPECT().Get(gomock.Any(), "a").DoAndReturn(func(_ context.Context, id string) (ports.Result, error) {
			reads.Add(1)
			if ready.Load() {
				return succeeded(id, "1"), nil
			}
			return ports.Result{}, notFound(id)
		}).AnyTimes()
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				r, err := f.client.Wait(context.Background(), "a")
				assert.NoError(t, err)
				assert.Equal(t, "a", r.TaskID)
			})
		}
		time.Sleep(time.Second) // reads at 0, .1, .3, .7
		synctest.Wait()
		assert.Equal(t, int32(4), reads.Load(), "one schedule for all waiters")
		ready.Store(true)
		wg.Wait()
	})
}

func TestWaitTransientErrorsAreRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		gomock.InOrder(
			f.results.EXPECT().Get(gomock.Any(), "a").Return(ports.Result{}, fmt.Errorf("s3: %w", ports.ErrUnavailable)),
			f.results.EXPECT().Get(gomock.Any(), "a").Return(succeeded("a", "1"), nil),
		)
		r, err := f.client.Wait(context.Background(), "a")
		require.NoError(t, err)
		assert.Equal(t, "a", r.TaskID)
	})
}

func TestWaitPermanentResultsErrorFailsWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		f.results.EXPECT().Get(gomock.Any(), "a").Return(ports.Result{}, fmt.Errorf("s3: %w", ports.ErrClosed))
		_, err := f.client.Wait(context.Background(), "a")
		require.ErrorIs(t, err, ports.ErrClosed)
		assert.Contains(t, err.Error(), "a")
	})
}

func TestWaitAllOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).Times(0)
		for _, id := range []string{"a", "b", "c"} {
			f.submit(t, id)
		}
		go func() {
			for i, id := range []string{"c", "b", "a"} {
				time.Sleep(time.Second)
				r := succeeded(id, fmt.Sprint(i))
				f.push <- []ports.Completion{{TaskID: id, State: r.State, Result: &r}}
			}
		}()
		got, err := f.client.WaitAll(context.Background(), "a", "b", "c", "a")
		require.NoError(t, err)
		var order []string
		for _, r := range got {
			order = append(order, r.TaskID)
		}
		assert.Equal(t, []string{"a", "b", "c", "a"}, order)
		assert.Equal(t, "2", string(got[0].Output))

		got, err = f.client.WaitAll(context.Background())
		require.NoError(t, err)
		assert.Empty(t, got)
	})
}

func TestWaitResultsDoNotAlias(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		f.results.EXPECT().Get(gomock.Any(), "a").Return(succeeded("a", "abc"), nil).Times(1)
		r1, err := f.client.Wait(context.Background(), "a")
		require.NoError(t, err)
		r1.Output[0] = 'X'
		r2, err := f.client.Wait(context.Background(), "a")
		require.NoError(t, err)
		assert.Equal(t, "abc", string(r2.Output))
	})
}

func TestWaitContextCancelRemovesWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		var reads atomic.Int32
		f.results.EXPECT().Get(gomock.Any(), "a").DoAndReturn(func(_ context.Context, id string) (ports.Result, error) {
			reads.Add(1)
			return ports.Result{}, notFound(id)
		}).AnyTimes()

		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(1050*time.Millisecond, cancel)
		start := time.Now()
		_, err := f.client.Wait(ctx, "a")
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 1050*time.Millisecond, time.Since(start), "returns promptly")
		synctest.Wait()
		n := reads.Load()
		assert.Zero(t, clientGoroutines(), "the checker stopped")

		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Equal(t, n, reads.Load(), "nothing polls for a removed waiter")
	})
}

func TestWaitContextCancelWithPush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).Times(0)
		f.submit(t, "a")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := f.client.Wait(ctx, "a")
		require.ErrorIs(t, err, context.DeadlineExceeded)

		// The completion arrives later: cached, and a new Wait gets it.
		r := succeeded("a", "1")
		f.push <- []ports.Completion{{TaskID: "a", State: r.State, Result: &r}}
		time.Sleep(time.Hour) // no reconcile read for the removed waiter
		got, err := f.client.Wait(context.Background(), "a")
		require.NoError(t, err)
		assert.Equal(t, r, got)
	})
}

func TestWaitAllContextCancelReleasesAll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		var reads atomic.Int32
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, id string) (ports.Result, error) {
			reads.Add(1)
			if id == "a" {
				return succeeded(id, "1"), nil
			}
			return ports.Result{}, notFound(id)
		}).AnyTimes()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		got, err := f.client.WaitAll(ctx, "a", "b", "c")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Nil(t, got)
		synctest.Wait()
		n := reads.Load()
		time.Sleep(time.Hour)
		assert.Equal(t, n, reads.Load())
	})
}

func TestWaitInvalidID(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	_, err := f.client.Wait(context.Background(), "")
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	_, err = f.client.WaitAll(context.Background(), "ok", "not ok")
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
}

// ---- Close -------------------------------------------------------------------

func TestCloseFailsPendingWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).Return(ports.Result{}, notFound("x")).AnyTimes()
		f.submit(t, "a")
		errs := make(chan error, 3)
		for _, id := range []string{"a", "a", "unknown"} {
			go func() {
				_, err := f.client.Wait(context.Background(), id)
				errs <- err
			}()
		}
		time.Sleep(time.Second)
		synctest.Wait()
		require.NoError(t, f.client.Close())
		for range 3 {
			assert.ErrorIs(t, <-errs, ports.ErrClosed)
		}
		require.NoError(t, f.client.Close(), "idempotent")

		_, err := f.client.Wait(context.Background(), "a")
		assert.ErrorIs(t, err, ports.ErrClosed)
		_, err = f.client.Submit(context.Background(), core.Request{Task: "t"})
		assert.ErrorIs(t, err, ports.ErrClosed)
		_, err = f.client.Status(context.Background(), "a")
		assert.ErrorIs(t, err, ports.ErrClosed)
	})
}

func TestCloseWithoutInboxMakesNoCalls(t *testing.T) {
	f := newFixture(t, fixtureOpts{push: true})
	f.bus.EXPECT().Open(gomock.Any()).Times(0)
	require.NoError(t, f.client.Close())
}

// ---- inbox failures ----------------------------------------------------------

func TestInboxReceiveErrorsBackOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctrl := gomock.NewController(t)
		broker, results := portsmock.NewMockBroker(ctrl), portsmock.NewMockResultBackend(ctrl)
		bus, inbox := portsmock.NewMockCompletionBus(ctrl), portsmock.NewMockInbox(ctrl)
		bus.EXPECT().Open(gomock.Any()).Return(inbox, nil)
		inbox.EXPECT().Address().Return("inbox-1").AnyTimes()
		var receives atomic.Int32
		inbox.EXPECT().Receive(gomock.Any()).DoAndReturn(func(context.Context) ([]ports.Completion, error) {
			receives.Add(1)
			return nil, fmt.Errorf("sqs: receive: %w", ports.ErrUnavailable)
		}).AnyTimes()
		inbox.EXPECT().Close().Return(nil)
		broker.EXPECT().Send(gomock.Any(), gomock.Any()).Return(nil)
		c, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:      broker,
				Results:     results,
				Completions: bus,
				NoCancel:    true,
			},
			Logger: quietLogger(),
		})
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Submit(context.Background(), core.Request{Task: "t"})
		require.NoError(t, err)

		time.Sleep(time.Minute)
		synctest.Wait()
		// 0, .1, .3, .7, 1.5, 3.1, 6.3, 12.7, 22.7, 32.7, 42.7, 52.7 s.
		assert.Equal(t, int32(12), receives.Load(), "backoff, not a spin")
	})
}

func TestInboxGoneFallsBackToPolling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctrl := gomock.NewController(t)
		broker, results := portsmock.NewMockBroker(ctrl), portsmock.NewMockResultBackend(ctrl)
		bus, inbox := portsmock.NewMockCompletionBus(ctrl), portsmock.NewMockInbox(ctrl)
		bus.EXPECT().Open(gomock.Any()).Return(inbox, nil).Times(1)
		inbox.EXPECT().Address().Return("inbox-1").AnyTimes()
		gone := make(chan struct{})
		inbox.EXPECT().Receive(gomock.Any()).DoAndReturn(func(ctx context.Context) ([]ports.Completion, error) {
			select {
			case <-gone:
				return nil, fmt.Errorf("memory: inbox: %w", ports.ErrClosed)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}).Times(1)
		inbox.EXPECT().Close().Return(fmt.Errorf("memory: %w", ports.ErrClosed))
		var sent []ports.Message
		broker.EXPECT().Send(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, m ...ports.Message) error {
			sent = append(sent, m...)
			return nil
		}).Times(2)
		var reads []time.Duration
		start := time.Now()
		results.EXPECT().Get(gomock.Any(), "a").DoAndReturn(func(_ context.Context, id string) (ports.Result, error) {
			reads = append(reads, time.Since(start))
			if len(reads) < 2 {
				return ports.Result{}, notFound(id)
			}
			return succeeded(id, "1"), nil
		}).Times(2)
		c, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:      broker,
				Results:     results,
				Completions: bus,
				NoCancel:    true,
			},
			Logger: quietLogger(),
		})
		require.NoError(t, err)
		defer func() { require.NoError(t, c.Close()) }()
		_, err = c.Submit(context.Background(), core.Request{Task: "t", ID: "a"})
		require.NoError(t, err)

		time.AfterFunc(2*time.Second, func() { close(gone) })
		_, err = c.Wait(context.Background(), "a")
		require.NoError(t, err)
		assert.Equal(t, []time.Duration{2 * time.Second, 2*time.Second + 100*time.Millisecond}, reads)

		// Later submits carry no reply address.
		_, err = c.Submit(context.Background(), core.Request{Task: "t"})
		require.NoError(t, err)
		env, err := wire.Decode(sent[1].Body)
		require.NoError(t, err)
		assert.Empty(t, env.ReplyTo)
		env, err = wire.Decode(sent[0].Body)
		require.NoError(t, err)
		assert.Equal(t, "inbox-1", env.ReplyTo)
	})
}

// ---- Cancel ------------------------------------------------------------------

func TestCancelChunks(t *testing.T) {
	f := newFixture(t, fixtureOpts{cancels: true})
	var calls [][]string
	f.cancels.EXPECT().Cancel(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, ids ...string) error {
		calls = append(calls, ids)
		return nil
	}).Times(3)
	ids := make([]string, 23)
	for i := range ids {
		ids[i] = fmt.Sprintf("id-%02d", i)
	}
	require.NoError(t, f.client.Cancel(context.Background(), ids...))
	require.Len(t, calls, 3)
	assert.Equal(t, ids[:10], calls[0])
	assert.Equal(t, ids[10:20], calls[1])
	assert.Equal(t, ids[20:], calls[2])

	require.NoError(t, f.client.Cancel(context.Background()), "nothing to cancel")
}

func TestCancelPartialFailure(t *testing.T) {
	f := newFixture(t, fixtureOpts{cancels: true})
	cause := &apiError{code: "Throttled"}
	gomock.InOrder(
		f.cancels.EXPECT().Cancel(gomock.Any(), gomock.Any()).Return(fmt.Errorf("sns: %w: %w", ports.ErrUnavailable, cause)),
		f.cancels.EXPECT().Cancel(gomock.Any(), gomock.Any()).Return(&ports.BatchError{Failed: map[int]error{1: ports.ErrUnavailable}}),
	)
	ids := make([]string, 12)
	for i := range ids {
		ids[i] = fmt.Sprintf("id-%02d", i)
	}
	err := f.client.Cancel(context.Background(), ids...)
	require.ErrorIs(t, err, ports.ErrUnavailable)
	var got *apiError
	require.ErrorAs(t, err, &got)
	var be *ports.BatchError
	require.ErrorAs(t, err, &be)
	assert.Len(t, be.Failed, 11)
	assert.NotNil(t, be.Failed[11])
	assert.Nil(t, be.Failed[10])
	assert.Contains(t, be.Failed[11].Error(), "id-11")
}

func TestCancelErrors(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	err := f.client.Cancel(context.Background(), "a")
	require.ErrorIs(t, err, ports.ErrUnsupported)
	assert.Contains(t, err.Error(), "Ports.NoCancel", "names the switch")

	f = newFixture(t, fixtureOpts{cancels: true})
	f.cancels.EXPECT().Cancel(gomock.Any(), gomock.Any()).Times(0)
	require.ErrorIs(t, f.client.Cancel(context.Background(), "a", ""), ports.ErrInvalidArgument)
}

func TestCancelIsIdempotent(t *testing.T) {
	f := newFixture(t, fixtureOpts{cancels: true})
	f.cancels.EXPECT().Cancel(gomock.Any(), "a").Return(nil).Times(2)
	require.NoError(t, f.client.Cancel(context.Background(), "a"))
	require.NoError(t, f.client.Cancel(context.Background(), "a"))
}

// ---- Status ------------------------------------------------------------------

func TestStatus(t *testing.T) {
	final := []ports.Result{
		succeeded("s", "1"),
		{TaskID: "f", State: ports.StateFailed, Error: "boom", Attempts: 3},
		{TaskID: "c", State: ports.StateCancelled, Error: "cancelled"},
	}
	for _, r := range final {
		t.Run(string(r.State), func(t *testing.T) {
			f := newFixture(t, fixtureOpts{cancels: true})
			f.results.EXPECT().Get(gomock.Any(), r.TaskID).Return(r, nil).Times(1)
			f.cancels.EXPECT().Canceled(gomock.Any(), gomock.Any()).Times(0)
			st, err := f.client.Status(context.Background(), r.TaskID)
			require.NoError(t, err)
			assert.Equal(t, core.TaskState(r.State), st.State)
			assert.True(t, st.State.Final())
			require.NotNil(t, st.Result)
			assert.Equal(t, r, *st.Result)
			// Results are write-once: the second Status is answered from memory.
			st2, err := f.client.Status(context.Background(), r.TaskID)
			require.NoError(t, err)
			assert.Equal(t, st, st2)
		})
	}

	t.Run("cancel_requested", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{cancels: true})
		f.results.EXPECT().Get(gomock.Any(), "a").Return(ports.Result{}, notFound("a"))
		f.cancels.EXPECT().Canceled(gomock.Any(), "a").Return([]string{"a"}, nil)
		st, err := f.client.Status(context.Background(), "a")
		require.NoError(t, err)
		assert.Equal(t, core.Status{TaskID: "a", State: core.TaskCancelRequested}, st)
		assert.False(t, st.State.Final())
	})
	t.Run("pending", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{cancels: true})
		f.results.EXPECT().Get(gomock.Any(), "a").Return(ports.Result{}, notFound("a"))
		f.cancels.EXPECT().Canceled(gomock.Any(), "a").Return(nil, nil)
		st, err := f.client.Status(context.Background(), "a")
		require.NoError(t, err)
		assert.Equal(t, core.Status{TaskID: "a", State: core.TaskPending}, st)
	})
	t.Run("pending without cancel channel", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		f.results.EXPECT().Get(gomock.Any(), "a").Return(ports.Result{}, notFound("a"))
		st, err := f.client.Status(context.Background(), "a")
		require.NoError(t, err)
		assert.Equal(t, core.TaskPending, st.State)
	})
	t.Run("results error", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{cancels: true})
		cause := &apiError{code: "SlowDown"}
		f.results.EXPECT().Get(gomock.Any(), "a").Return(ports.Result{}, fmt.Errorf("s3: %w: %w", ports.ErrUnavailable, cause))
		_, err := f.client.Status(context.Background(), "a")
		require.ErrorIs(t, err, ports.ErrUnavailable)
		var got *apiError
		require.ErrorAs(t, err, &got)
	})
	t.Run("cancel channel error", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{cancels: true})
		f.results.EXPECT().Get(gomock.Any(), "a").Return(ports.Result{}, notFound("a"))
		f.cancels.EXPECT().Canceled(gomock.Any(), "a").Return(nil, fmt.Errorf("x: %w", ports.ErrUnavailable))
		_, err := f.client.Status(context.Background(), "a")
		require.ErrorIs(t, err, ports.ErrUnavailable)
	})
	t.Run("invalid ID", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		_, err := f.client.Status(context.Background(), "")
		require.ErrorIs(t, err, ports.ErrInvalidArgument)
	})
}

// ---- typed helpers -------------------------------------------------------------

func TestTaskTypeSubmitAndWait(t *testing.T) {
	type in struct{ N int }
	type out struct{ Sq int }
	sq := core.NewTaskType[in, out]("square")

	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		var body []byte
		f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, m ...ports.Message) error {
			body = m[0].Body
			return nil
		})
		id, err := sq.Submit(context.Background(), f.client, in{N: 3}, core.WithID("sq-3"))
		require.NoError(t, err)
		assert.Equal(t, "sq-3", id)
		env, err := wire.Decode(body)
		require.NoError(t, err)
		assert.Equal(t, "square", env.Task)
		assert.JSONEq(t, `{"N":3}`, string(env.Args))

		f.results.EXPECT().Get(gomock.Any(), "sq-3").Return(succeeded("sq-3", `{"Sq":9}`), nil)
		got, err := sq.Wait(context.Background(), f.client, "sq-3")
		require.NoError(t, err)
		assert.Equal(t, out{Sq: 9}, got)

		f.results.EXPECT().Get(gomock.Any(), "bad").Return(ports.Result{TaskID: "bad", State: ports.StateCancelled}, nil)
		_, err = sq.Wait(context.Background(), f.client, "bad")
		require.ErrorIs(t, err, core.ErrTaskCanceled)

		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		f.results.EXPECT().Get(gomock.Any(), "never").Return(ports.Result{}, notFound("never")).AnyTimes()
		_, err = sq.Wait(ctx, f.client, "never")
		require.ErrorIs(t, err, context.Canceled)
	})
}

func TestWaitEvictedCompletionIsRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true, opts: core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
			CacheSize:    1,
			PendingLimit: 1,
		}})
		for _, id := range []string{"a", "b", "c"} {
			f.submit(t, id)
		}
		var cs []ports.Completion
		for _, id := range []string{"a", "b", "c"} {
			r := succeeded(id, id)
			cs = append(cs, ports.Completion{TaskID: id, State: r.State, Result: &r})
		}
		f.push <- cs
		synctest.Wait()

		// a and b were forgotten as pending (PendingLimit 1); their
		// completions went to the LRU (CacheSize 1), which kept b's. c's is
		// held until waited for. a is read at once.
		f.results.EXPECT().Get(gomock.Any(), "a").Return(succeeded("a", "a"), nil).Times(1)
		start := time.Now()
		got, err := f.client.WaitAll(context.Background(), "a", "b", "c")
		require.NoError(t, err)
		assert.Zero(t, time.Since(start))
		for i, id := range []string{"a", "b", "c"} {
			assert.Equal(t, id, string(got[i].Output))
		}
	})
}
