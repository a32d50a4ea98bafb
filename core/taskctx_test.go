package core_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
)

func TestInput(t *testing.T) {
	type pair struct{ X, Y int }
	task := &core.Task{ID: "r.d", StepID: "d", Inputs: map[string]json.RawMessage{
		"b": json.RawMessage(`{"X":1,"Y":2}`), "a": json.RawMessage(`"text"`), "empty": nil, "null": json.RawMessage(`null`),
	}}
	ctx := core.ContextWithTask(context.Background(), task)

	got, ok := core.TaskFromContext(ctx)
	require.True(t, ok)
	assert.Same(t, task, got)

	p, err := core.Input[pair](ctx, "b")
	require.NoError(t, err)
	assert.Equal(t, pair{1, 2}, p)

	for _, name := range []string{"empty", "null"} {
		p, err := core.Input[pair](ctx, name)
		require.NoError(t, err, name)
		assert.Zero(t, p, "no output decodes to the zero value")
	}

	_, err = core.Input[pair](ctx, "a")
	require.ErrorIs(t, err, core.ErrSkipRetry, "undecodable: retrying cannot help")
	assert.NotErrorIs(t, err, core.ErrNoInput)
	assert.Contains(t, err.Error(), `dagq: input "a": decode the output of step "a" into core_test.pair`)

	_, err = core.Input[pair](ctx, "x")
	require.ErrorIs(t, err, core.ErrNoInput)
	require.ErrorIs(t, err, core.ErrSkipRetry)
	assert.Contains(t, err.Error(), `step "d" (task r.d) has no upstream step "x"; its upstreams are: a, b, empty, null`)

	_, err = core.Input[int](core.ContextWithTask(context.Background(), &core.Task{ID: "t1"}), "x")
	require.ErrorIs(t, err, core.ErrNoInput)
	assert.Contains(t, err.Error(), "task t1 has no upstream step \"x\"; it has no upstream steps")

	_, ok = core.TaskFromContext(context.Background())
	assert.False(t, ok)
	_, err = core.Input[int](context.Background(), "a")
	require.ErrorIs(t, err, core.ErrNoInput)
	require.ErrorIs(t, err, core.ErrSkipRetry)
	assert.Contains(t, err.Error(), "the context carries no task")
}
