package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/dagq/dagq/ports"
)

// ErrUnknownTask is the cause recorded for a task whose name no handler is
// registered for on the worker that received it.
var ErrUnknownTask = errors.New("unknown task")

// Task is one invocation as a handler sees it.
type Task struct {
	ID   string
	Name string
	// Attempt is 1 on the first run and grows with every retry or redelivery.
	Attempt int
	// Args is the JSON-encoded argument.
	Args   json.RawMessage
	Labels map[string]string
	Meta   map[string]string
	RunID  string
	StepID string
	// Inputs are the outputs of the upstream steps of a DAG step, keyed by
	// step name (read them with Input); nil outside a run.
	Inputs map[string]json.RawMessage
	// Params are the run's parameters (RunOptions.Params); nil outside a run.
	Params   map[string]string
	Deadline time.Time
}

// Handler runs tasks. It is modelled on net/http: ProcessTask returns the
// JSON-encoded output, or an error (wrap ErrSkipRetry to fail without retry).
// It must return promptly once ctx is done; context.Cause(ctx) tells why
// (ErrTaskCanceled, ports.ErrLeaseLost, ErrShutdown or a deadline).
type Handler interface {
	ProcessTask(ctx context.Context, t *Task) (json.RawMessage, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, t *Task) (json.RawMessage, error)

// ProcessTask calls f.
func (f HandlerFunc) ProcessTask(ctx context.Context, t *Task) (json.RawMessage, error) {
	return f(ctx, t)
}

// Middleware wraps a Handler (logging, metrics, tracing, ...).
type Middleware func(Handler) Handler

// Registry maps task names to handlers. It is safe for concurrent use; register
// handlers before starting workers.
type Registry struct {
	mu       sync.RWMutex
	handlers map[string]Handler
	mw       []Middleware
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{handlers: make(map[string]Handler)}
}

// Handle registers h for name. An empty name, a name longer than
// MaxTaskNameLen bytes (no task of that name could be submitted), a nil
// handler or a name registered twice is an error.
func (r *Registry) Handle(name string, h Handler) error {
	if name == "" {
		return errors.New("dagq: register: empty task name")
	}
	if len(name) > MaxTaskNameLen {
		return fmt.Errorf("dagq: register %.32q…: %w: the task name is %d bytes; the limit is %d (MaxTaskNameLen)",
			name, ports.ErrInvalidArgument, len(name), MaxTaskNameLen)
	}
	if h == nil {
		return fmt.Errorf("dagq: register %q: nil handler", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.handlers[name]; dup {
		return fmt.Errorf("dagq: register %q: a handler is already registered under that name", name)
	}
	r.handlers[name] = h
	return nil
}

// HandleFunc registers f for name.
func (r *Registry) HandleFunc(name string, f func(ctx context.Context, t *Task) (json.RawMessage, error)) error {
	return r.Handle(name, HandlerFunc(f))
}

// Use appends middleware applied to every handler, the first one outermost.
func (r *Registry) Use(mw ...Middleware) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mw = append(r.mw, mw...)
}

// Lookup returns the handler for name wrapped in the registry's middleware.
func (r *Registry) Lookup(name string) (Handler, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, ok := r.handlers[name]
	if !ok {
		return nil, false
	}
	for i := len(r.mw) - 1; i >= 0; i-- {
		h = r.mw[i](h)
	}
	return h, true
}

// Names lists the registered task names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.handlers))
	for n := range r.handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// TaskType is a typed task definition: its name plus the Go types of its
// argument and result, so that submitting, handling and reading the result are
// checked by the compiler.
//
//	var Resize = core.NewTaskType[ResizeArgs, ResizeResult]("resize")
//	Resize.MustRegister(reg, func(ctx context.Context, a ResizeArgs) (ResizeResult, error) { ... })
//	id, err := client.Submit(ctx, Resize.Request(ResizeArgs{...}))
//	out, err := Resize.Wait(ctx, client, id)
type TaskType[A, R any] struct {
	Name string
	// Result is the result policy of the type's requests (Request fills it
	// in unless an option sets one); empty means ResultDurable.
	Result ResultPolicy
}

// NewTaskType defines a task type.
func NewTaskType[A, R any](name string) TaskType[A, R] {
	return TaskType[A, R]{Name: name}
}

// WithResult returns the task type with result policy p (see ResultPolicy):
//
//	var Ping = core.NewTaskType[PingArgs, PingResult]("ping").WithResult(core.ResultReply)
func (tt TaskType[A, R]) WithResult(p ResultPolicy) TaskType[A, R] {
	tt.Result = p
	return tt
}

// Register registers fn as the handler of the task type: args are decoded
// from JSON (an undecodable argument fails the task without retry) and the
// result is encoded to JSON.
func (tt TaskType[A, R]) Register(r *Registry, fn func(ctx context.Context, args A) (R, error)) error {
	return r.Handle(tt.Name, HandlerFunc(func(ctx context.Context, t *Task) (json.RawMessage, error) {
		var args A
		if len(t.Args) > 0 {
			if err := json.Unmarshal(t.Args, &args); err != nil {
				return nil, fmt.Errorf("decode args of task %q: %v: %w", tt.Name, err, ErrSkipRetry)
			}
		}
		out, err := fn(ctx, args)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(out)
		if err != nil {
			return nil, fmt.Errorf("encode result of task %q: %v: %w", tt.Name, err, ErrSkipRetry)
		}
		return b, nil
	}))
}

// MustRegister is Register that panics on error, for program initialisation.
func (tt TaskType[A, R]) MustRegister(r *Registry, fn func(ctx context.Context, args A) (R, error)) {
	if err := tt.Register(r, fn); err != nil {
		panic(err)
	}
}

// Request builds a submission of this task type with args.
func (tt TaskType[A, R]) Request(args A, opts ...RequestOption) Request {
	req := Request{Task: tt.Name, Args: args, Result: tt.Result}
	for _, o := range opts {
		o(&req)
	}
	return req
}

// Decode reads the task's output from its result. A failed or cancelled result
// gives a *TaskError.
func (tt TaskType[A, R]) Decode(res ports.Result) (R, error) {
	var out R
	if err := ResultErr(res); err != nil {
		return out, err
	}
	if len(res.Output) == 0 {
		return out, nil
	}
	if err := json.Unmarshal(res.Output, &out); err != nil {
		return out, fmt.Errorf("dagq: decode output of task %q (%s): %w", tt.Name, res.TaskID, err)
	}
	return out, nil
}
