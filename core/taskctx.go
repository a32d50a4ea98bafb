package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrNoInput is matched by the errors of Input when the handler's context
// carries no task or the task has no upstream of the requested name.
var ErrNoInput = errors.New("no such input")

// taskKey is the context key of the running *Task.
type taskKey struct{}

// workerIDKey is the context key of the ID of the worker running a handler.
type workerIDKey struct{}

// ContextWithWorkerID returns a copy of ctx that carries the worker ID id,
// as the worker's handler contexts do: for unit tests of handlers that call
// WorkerIDFromContext.
func ContextWithWorkerID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, workerIDKey{}, id)
}

// WorkerIDFromContext returns the ID of the Worker running the handler whose
// context ctx is (WorkerOptions.ID or its generated default), or "" outside
// a handler run by a Worker.
func WorkerIDFromContext(ctx context.Context) string {
	id, _ := ctx.Value(workerIDKey{}).(string)
	return id
}

// handlerCtx is the context the worker hands a handler: its task context
// carrying the task and the worker's ID (what ContextWithTask and
// ContextWithWorkerID add, in one value instead of two context layers and a
// boxed string). It lives in the worker's job, so it costs no allocation.
type handlerCtx struct {
	context.Context
	task     *Task
	workerID string
}

func (c *handlerCtx) Value(key any) any {
	switch key.(type) {
	case taskKey:
		return c.task
	case workerIDKey:
		return c.workerID
	}
	return c.Context.Value(key)
}

func (c *handlerCtx) String() string { return "dagq.handlerCtx(" + c.task.ID + ")" }

// ContextWithTask returns a copy of ctx that carries t, as the worker's
// handler contexts do: for unit tests of handlers that call TaskFromContext
// or Input.
func ContextWithTask(ctx context.Context, t *Task) context.Context {
	return context.WithValue(ctx, taskKey{}, t)
}

// TaskFromContext returns the task whose handler ctx belongs to. The worker
// stores it in every handler's context, so typed handlers (TaskType), which
// receive only their arguments, can reach Task.Inputs, Task.Params,
// Task.Attempt and the rest. Middleware sees it too.
func TaskFromContext(ctx context.Context) (*Task, bool) {
	t, ok := ctx.Value(taskKey{}).(*Task)
	return t, ok && t != nil
}

// Input decodes the output of upstream step step of the running DAG step
// into a T:
//
//	func(ctx context.Context, a Args) (Out, error) {
//		img, err := core.Input[Image](ctx, "fetch")
//		if err != nil {
//			return Out{}, err
//		}
//		...
//
// An upstream that returned no output gives T's zero value. The errors say
// what is wrong and wrap ErrSkipRetry, because running the task again cannot
// fix them: no task in ctx (Input called outside a handler run by a Worker)
// or no upstream named step (both also match ErrNoInput), or an output that
// does not decode into T.
func Input[T any](ctx context.Context, step string) (T, error) {
	var out T
	t, ok := TaskFromContext(ctx)
	if !ok {
		return out, fmt.Errorf("dagq: input %q: %w: the context carries no task (call Input from a handler run by a Worker): %w",
			step, ErrNoInput, ErrSkipRetry)
	}
	raw, ok := t.Inputs[step]
	if !ok {
		names := make([]string, 0, len(t.Inputs))
		for n := range t.Inputs {
			names = append(names, n)
		}
		sort.Strings(names)
		have := "it has no upstream steps"
		if len(names) > 0 {
			have = "its upstreams are: " + strings.Join(names, ", ")
		}
		where := fmt.Sprintf("task %s", t.ID)
		if t.StepID != "" {
			where = fmt.Sprintf("step %q (task %s)", t.StepID, t.ID)
		}
		return out, fmt.Errorf("dagq: input %q: %w: %s has no upstream step %q; %s: %w",
			step, ErrNoInput, where, step, have, ErrSkipRetry)
	}
	if len(raw) == 0 {
		return out, nil
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, fmt.Errorf("dagq: input %q: decode the output of step %q into %T: %v: %w",
			step, step, out, err, ErrSkipRetry)
	}
	return out, nil
}
