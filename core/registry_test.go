package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

type addArgs struct{ A, B int }

var addTask = core.NewTaskType[addArgs, int]("add")

func TestRegistry_TypedHandler(t *testing.T) {
	reg := core.NewRegistry()
	require.NoError(t, addTask.Register(reg, func(_ context.Context, a addArgs) (int, error) { return a.A + a.B, nil }))

	h, ok := reg.Lookup("add")
	require.True(t, ok)
	out, err := h.ProcessTask(context.Background(), &core.Task{Name: "add", Args: json.RawMessage(`{"A":2,"B":3}`)})
	require.NoError(t, err)
	require.JSONEq(t, `5`, string(out))

	_, err = h.ProcessTask(context.Background(), &core.Task{Name: "add", Args: json.RawMessage(`"nope"`)})
	require.ErrorIs(t, err, core.ErrSkipRetry, "undecodable args are not worth retrying")
	require.Contains(t, err.Error(), `decode args of task "add"`)
}

func TestRegistry_Errors(t *testing.T) {
	reg := core.NewRegistry()
	noop := core.HandlerFunc(func(context.Context, *core.Task) (json.RawMessage, error) { return nil, nil })
	require.NoError(t, reg.Handle("a", noop))
	require.ErrorContains(t, reg.Handle("a", noop), "already registered")
	require.ErrorContains(t, reg.Handle("", noop), "empty task name")
	require.ErrorContains(t, reg.Handle("b", nil), "nil handler")
	_, ok := reg.Lookup("missing")
	require.False(t, ok)
	require.Equal(t, []string{"a"}, reg.Names())
}

func TestRegistry_MiddlewareOrder(t *testing.T) {
	reg := core.NewRegistry()
	var trace []string
	mw := func(name string) core.Middleware {
		return func(next core.Handler) core.Handler {
			return core.HandlerFunc(func(ctx context.Context, tk *core.Task) (json.RawMessage, error) {
				trace = append(trace, name+">")
				out, err := next.ProcessTask(ctx, tk)
				trace = append(trace, "<"+name)
				return out, err
			})
		}
	}
	reg.Use(mw("outer"), mw("inner"))
	require.NoError(t, reg.HandleFunc("x", func(context.Context, *core.Task) (json.RawMessage, error) {
		trace = append(trace, "handler")
		return nil, nil
	}))
	h, _ := reg.Lookup("x")
	_, err := h.ProcessTask(context.Background(), &core.Task{})
	require.NoError(t, err)
	require.Equal(t, []string{"outer>", "inner>", "handler", "<inner", "<outer"}, trace)
}

func TestTaskType_Decode(t *testing.T) {
	v, err := addTask.Decode(ports.Result{TaskID: "t", State: ports.StateSucceeded, Output: []byte("7")})
	require.NoError(t, err)
	require.Equal(t, 7, v)

	_, err = addTask.Decode(ports.Result{TaskID: "t", State: ports.StateCancelled, Error: "stop"})
	require.ErrorIs(t, err, core.ErrTaskCanceled)
	var te *core.TaskError
	require.True(t, errors.As(err, &te))
	require.Equal(t, ports.StateCancelled, te.Result.State)

	_, err = addTask.Decode(ports.Result{TaskID: "t", State: ports.StateFailed, Error: "boom"})
	require.ErrorContains(t, err, "boom")
	require.False(t, errors.Is(err, core.ErrTaskCanceled))

	_, err = addTask.Decode(ports.Result{TaskID: "t", State: ports.StateSucceeded, Output: []byte(`"x"`)})
	require.ErrorContains(t, err, "decode output")
}

func TestTaskType_Request(t *testing.T) {
	req := addTask.Request(addArgs{1, 2}, core.WithID("id1"), core.WithRun("r", "s"), core.WithLabels(map[string]string{"k": "v"}))
	require.Equal(t, "add", req.Task)
	require.Equal(t, "id1", req.ID)
	require.Equal(t, "r", req.RunID)
	require.Equal(t, "s", req.StepID)
	require.Equal(t, map[string]string{"k": "v"}, req.Labels)
	require.Equal(t, addArgs{1, 2}, req.Args)
}
