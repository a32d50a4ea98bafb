package builtin_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/core"
)

func registry(t *testing.T) *core.Registry {
	t.Helper()
	reg := core.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	return reg
}

// call runs the built-in task name on a task built from args and mod.
func call(t *testing.T, ctx context.Context, name, args string, mod func(*core.Task)) (json.RawMessage, error) {
	t.Helper()
	h, ok := registry(t).Lookup(name)
	require.True(t, ok, name)
	task := &core.Task{ID: "t1", Name: name, Attempt: 1}
	if args != "" {
		task.Args = json.RawMessage(args)
	}
	if mod != nil {
		mod(task)
	}
	return h.ProcessTask(ctx, task)
}

func inputs(kv ...string) func(*core.Task) {
	return func(t *core.Task) {
		t.Inputs = map[string]json.RawMessage{}
		for i := 0; i+1 < len(kv); i += 2 {
			t.Inputs[kv[i]] = json.RawMessage(kv[i+1])
		}
	}
}

func TestRegister(t *testing.T) {
	reg := registry(t)
	require.Equal(t, []string{"concat", "echo", "fail", "hash", "sleep", "transform"}, reg.Names())
	for _, n := range builtin.Names() {
		require.NotEmpty(t, builtin.Describe()[n], n)
	}
	err := builtin.Register(reg)
	require.ErrorContains(t, err, `"echo"`, "registering twice names the clash")
}

func TestEcho(t *testing.T) {
	ctx := context.Background()
	out, err := call(t, ctx, "echo", `{"x":[1,"two"]}`, nil)
	require.NoError(t, err)
	require.JSONEq(t, `{"x":[1,"two"]}`, string(out))

	out, err = call(t, ctx, "echo", "", nil)
	require.NoError(t, err)
	require.Equal(t, "null", string(out))

	out, err = call(t, ctx, "echo", `{"msg":"hello, ${who}!","keep":"${other}","n":[ "${who}" ]}`,
		func(t *core.Task) { t.Params = map[string]string{"who": "dagq"} })
	require.NoError(t, err)
	require.JSONEq(t, `{"msg":"hello, dagq!","keep":"${other}","n":["dagq"]}`, string(out))
}

func TestSleep(t *testing.T) {
	out, err := call(t, context.Background(), "sleep", `"10ms"`, nil)
	require.NoError(t, err)
	require.JSONEq(t, `{"slept":"10ms"}`, string(out))

	out, err = call(t, context.Background(), "sleep", `{"duration":"1ms"}`, nil)
	require.NoError(t, err)
	require.JSONEq(t, `{"slept":"1ms"}`, string(out))

	ctx, cancel := context.WithCancelCause(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel(core.ErrTaskCanceled) }()
	start := time.Now()
	_, err = call(t, ctx, "sleep", `"1h"`, nil)
	require.ErrorIs(t, err, core.ErrTaskCanceled, "honours the context and reports its cause")
	require.Less(t, time.Since(start), 5*time.Second)

	_, err = call(t, context.Background(), "sleep", `"soon"`, nil)
	require.ErrorIs(t, err, core.ErrSkipRetry)
	require.ErrorContains(t, err, `duration "soon"`)
	_, err = call(t, context.Background(), "sleep", `{"durration":"1s"}`, nil)
	require.ErrorIs(t, err, core.ErrSkipRetry, "unknown fields are refused")
}

func TestFail(t *testing.T) {
	ctx := context.Background()
	_, err := call(t, ctx, "fail", `"boom"`, nil)
	require.EqualError(t, err, "boom (attempt 1)")
	require.False(t, errors.Is(err, core.ErrSkipRetry), "a failure is retried per policy")

	_, err = call(t, ctx, "fail", "", func(t *core.Task) { t.Attempt = 7 })
	require.EqualError(t, err, "failed on purpose (attempt 7)")

	// times: fail on attempts 1..n, then succeed.
	for attempt, wantErr := range map[int]bool{1: true, 2: true, 3: false, 4: false} {
		out, err := call(t, ctx, "fail", `{"message":"flaky","times":2}`, func(t *core.Task) { t.Attempt = attempt })
		if wantErr {
			require.Error(t, err, "attempt %d", attempt)
			continue
		}
		require.NoError(t, err, "attempt %d", attempt)
		require.Contains(t, string(out), "succeeded on attempt")
	}
	_, err = call(t, ctx, "fail", `{"times":-1}`, nil)
	require.ErrorIs(t, err, core.ErrSkipRetry)

	// when: a run parameter switches the failure on and off.
	broken := func(v string) func(*core.Task) {
		return func(t *core.Task) { t.Params = map[string]string{"broken": v} }
	}
	_, err = call(t, ctx, "fail", `{"message":"upstream down","when":"${broken}"}`, broken("true"))
	require.EqualError(t, err, "upstream down (attempt 1)")
	out, err := call(t, ctx, "fail", `{"message":"upstream down","when":"${broken}"}`, broken("false"))
	require.NoError(t, err)
	require.JSONEq(t, `"succeeded on attempt 1 (when: false)"`, string(out))
	_, err = call(t, ctx, "fail", `{"times":1,"when":"${broken}"}`, broken("1"))
	require.Error(t, err, "true: times applies")
	_, err = call(t, ctx, "fail", `{"when":"${broken}"}`, nil)
	require.ErrorIs(t, err, core.ErrSkipRetry, "no such parameter")
	require.ErrorContains(t, err, `when is "${broken}" (from "${broken}"); want true or false`)
	_, err = call(t, ctx, "fail", `{"when":"maybe"}`, nil)
	require.ErrorIs(t, err, core.ErrSkipRetry)
}

func TestHash(t *testing.T) {
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return `"` + hex.EncodeToString(h[:]) + `"` }
	ctx := context.Background()

	out, err := call(t, ctx, "hash", "", inputs("b", `"B"`, "a", `"A"`))
	require.NoError(t, err)
	require.Equal(t, sum("AB"), string(out), "sorted by step name; strings by content")

	out, err = call(t, ctx, "hash", `{"inputs":["b","a"]}`, inputs("b", `"B"`, "a", `"A"`))
	require.NoError(t, err)
	require.Equal(t, sum("BA"), string(out), "the inputs arg sets the order")

	out, err = call(t, ctx, "hash", "", inputs("a", `{ "k" : 1 }`))
	require.NoError(t, err)
	require.Equal(t, sum(`{"k":1}`), string(out), "other JSON by its compact text")

	out, err = call(t, ctx, "hash", "", nil)
	require.NoError(t, err)
	require.Equal(t, sum(""), string(out))

	_, err = call(t, ctx, "hash", `{"inputs":["zz"]}`, inputs("a", `"A"`))
	require.ErrorIs(t, err, core.ErrSkipRetry)
	require.ErrorContains(t, err, `input "zz": no such upstream step (upstreams: a)`)
}

func TestConcat(t *testing.T) {
	ctx := context.Background()
	out, err := call(t, ctx, "concat", "", inputs("c", `"world"`, "b", `"hello"`, "d", `42`))
	require.NoError(t, err)
	require.Equal(t, `"hello world 42"`, string(out))

	out, err = call(t, ctx, "concat", `{"sep":" | ","inputs":["c","b"]}`, inputs("c", `"world"`, "b", `"hello"`))
	require.NoError(t, err)
	require.Equal(t, `"world | hello"`, string(out))
}

func TestTransform(t *testing.T) {
	ctx := context.Background()
	for op, want := range map[string]string{
		"upper":   `" HELLO, DAGQ "`,
		"lower":   `" hello, dagq "`,
		"reverse": `" qgaD ,olleh "`,
		"trim":    `"hello, Dagq"`,
	} {
		out, err := call(t, ctx, "transform", `{"op":"`+op+`"}`, inputs("a", `" hello, Dagq "`))
		require.NoError(t, err, op)
		require.Equal(t, want, string(out), op)
	}
	out, err := call(t, ctx, "transform", `"upper"`, inputs("b", `"b"`, "a", `"a"`))
	require.NoError(t, err)
	require.Equal(t, `"AB"`, string(out), "short form; inputs joined without separator")

	out, err = call(t, ctx, "transform", `{"op":"reverse","text":"héllo"}`, nil)
	require.NoError(t, err)
	require.Equal(t, `"olléh"`, string(out), "text arg, rune-wise")

	_, err = call(t, ctx, "transform", `{"op":"shout"}`, nil)
	require.ErrorIs(t, err, core.ErrSkipRetry)
	require.ErrorContains(t, err, "valid ops: upper, lower, reverse, trim")
}

func TestText(t *testing.T) {
	require.Equal(t, "x", builtin.Text(json.RawMessage(`"x"`)))
	require.Equal(t, `[1,2]`, builtin.Text(json.RawMessage("[1, 2]")))
	require.Equal(t, "null", builtin.Text(json.RawMessage("null")))
}
