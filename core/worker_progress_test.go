package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// receiveUntilFinal collects completions of one inbox until a final one.
func receiveUntilFinal(t *testing.T, inbox ports.Inbox) []ports.Completion {
	t.Helper()
	var got []ports.Completion
	for range 1000 {
		cs, err := inbox.Receive(context.Background())
		require.NoError(t, err)
		got = append(got, cs...)
		if len(got) > 0 && got[len(got)-1].State.Final() {
			return got
		}
	}
	t.Fatal("no final completion")
	return nil
}

func TestWorkerMemory_ProgressNotifications(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("flaky", func(_ context.Context, task *core.Task) (json.RawMessage, error) {
			if task.Attempt < 3 {
				return nil, fmt.Errorf("attempt %d fails", task.Attempt)
			}
			return json.RawMessage(`"ok"`), nil
		}))
		bus := m.tr.CompletionBus()
		defer bus.Close()
		inbox, err := bus.Open(context.Background())
		require.NoError(t, err)
		w := m.startWorker(reg, func(o *core.WorkerOptions) { o.ID = "w-1" })

		env := wkEnv("t1", "flaky")
		env.ReplyTo, env.Progress = inbox.Address(), true
		env.Retry = &wire.Retry{MaxAttempts: 3, InitialBackoff: time.Second}
		m.submit(env)
		got := receiveUntilFinal(t, inbox)
		require.Len(t, got, 6)
		final := got[5]
		require.NotNil(t, final.Result)
		got[5].Result = nil
		assert.Equal(t, []ports.Completion{
			{TaskID: "t1", State: ports.StateRunning, Attempt: 1, Worker: "w-1"},
			{TaskID: "t1", State: ports.StateRetrying, Attempt: 2, Error: "attempt 1 fails", Worker: "w-1"},
			{TaskID: "t1", State: ports.StateRunning, Attempt: 2, Worker: "w-1"},
			{TaskID: "t1", State: ports.StateRetrying, Attempt: 3, Error: "attempt 2 fails", Worker: "w-1"},
			{TaskID: "t1", State: ports.StateRunning, Attempt: 3, Worker: "w-1"},
			{TaskID: "t1", State: ports.StateSucceeded},
		}, got)
		assert.Equal(t, 3, final.Result.Attempts)

		// Without Progress: the final completion only.
		env = wkEnv("t2", "flaky")
		env.ReplyTo = inbox.Address()
		env.Retry = &wire.Retry{MaxAttempts: 3, InitialBackoff: time.Second}
		m.submit(env)
		got = receiveUntilFinal(t, inbox)
		require.Len(t, got, 1)
		assert.Equal(t, ports.StateSucceeded, got[0].State)
		require.NoError(t, w.stop())
	})
}

func TestWorkerMemory_TaskInputsParamsAndContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		var fromMiddleware *core.Task
		reg.Use(func(next core.Handler) core.Handler {
			return core.HandlerFunc(func(ctx context.Context, t *core.Task) (json.RawMessage, error) {
				fromMiddleware, _ = core.TaskFromContext(ctx)
				return next.ProcessTask(ctx, t)
			})
		})
		type out struct {
			Up     int
			Param  string
			SameAs bool
		}
		show := core.NewTaskType[struct{}, out]("show")
		show.MustRegister(reg, func(ctx context.Context, _ struct{}) (out, error) {
			t, ok := core.TaskFromContext(ctx)
			if !ok {
				return out{}, fmt.Errorf("no task: %w", core.ErrSkipRetry)
			}
			up, err := core.Input[int](ctx, "up")
			return out{Up: up, Param: t.Params["p"], SameAs: t == fromMiddleware}, err
		})
		w := m.startWorker(reg, nil)
		env := wkEnv("t1", "show")
		env.Inputs = map[string]json.RawMessage{"up": json.RawMessage(`41`)}
		env.Params = map[string]string{"p": "v"}
		m.submit(env)
		r := m.result("t1")
		require.Equal(t, ports.StateSucceeded, r.State, r.Error)
		assert.JSONEq(t, `{"Up":41,"Param":"v","SameAs":true}`, string(r.Output))

		m.submit(wkEnv("t2", "show")) // no inputs: Input fails without retry
		r = m.result("t2")
		assert.Equal(t, ports.StateFailed, r.State)
		assert.Equal(t, 1, r.Attempts)
		assert.Contains(t, r.Error, `no upstream step "up"`)
		require.NoError(t, w.stop())
	})
}
