package core

import (
	"context"
	"errors"
	"fmt"
	"maps"
)

// Tracer is the tracing hook of a Client (ClientOptions.Tracer) and a Worker
// (WorkerOptions.Tracer); the Executor and the Launcher use their Client's.
// core implements no tracing itself and depends on no tracing library:
// app/telemetry implements Tracer with OpenTelemetry. A nil Tracer, the
// default, costs nothing, records nothing and adds nothing to Request.Meta.
//
// dagq calls it at these points:
//
//   - Submit, SubmitBatch (and the Executor's and Launcher's submissions):
//     one SpanSubmit per request, started from the caller's ctx before the
//     request is validated and ended once its Send returned; Inject then
//     writes the span's context into a copy of the request's Meta, which
//     travels to the worker in the envelope (Task.Meta).
//   - A Worker running a handler: Extract reads Task.Meta into the
//     task's context, then one SpanTask per attempt wraps the handler, which
//     gets the returned context (so the handler's own spans are children of
//     it). It ends with the handler's error, joined with the context's cause
//     when the task was interrupted. Tasks that never reach their handler
//     (cancelled before start, unknown task, deadline passed) get no span.
//   - Executor.Run: one SpanRun around the run; its steps are submitted
//     from its context, so their submit spans are its children. It ends with
//     Run's error or, for a run that did not succeed, RunResult.Err().
//   - Launcher.Launch: one SpanLaunch around writing the record and
//     submitting the run task. The run task's span on its worker is then the
//     parent of the Executor's SpanRun.
//
// Implementations must be safe for concurrent use, must not block, and must
// tolerate a nil error and a nil or empty meta.
type Tracer interface {
	// Start starts the span s describes as a child of the span in ctx (if
	// any) and returns a context carrying it and the function that ends it
	// with the operation's error (nil: success). end is called exactly once.
	Start(ctx context.Context, s SpanStart) (_ context.Context, end func(err error))
	// Inject writes the trace context of ctx into meta (e.g. the W3C
	// "traceparent" and "tracestate" keys); meta is never nil.
	Inject(ctx context.Context, meta map[string]string)
	// Extract returns ctx with the remote trace context meta carries, or
	// ctx when it carries none.
	Extract(ctx context.Context, meta map[string]string) context.Context
}

// SpanKind says which dagq operation a span covers.
type SpanKind string

// Span kinds.
const (
	// SpanSubmit: a request handed to the broker (a producer span).
	SpanSubmit SpanKind = "submit"
	// SpanTask: one attempt of a task's handler on a worker (a consumer
	// span, child of the task's submit span).
	SpanTask SpanKind = "task"
	// SpanRun: Executor.Run of a job.
	SpanRun SpanKind = "run"
	// SpanLaunch: Launcher.Launch of a job.
	SpanLaunch SpanKind = "launch"
)

// SpanStart describes the span Tracer.Start starts. Empty fields are
// unknown or do not apply.
type SpanStart struct {
	Kind SpanKind
	// Name is the task name (submit, task) or the job name (run, launch).
	Name   string
	TaskID string
	RunID  string
	StepID string
	// Attempt is the task's attempt number (task spans).
	Attempt int
	// WorkerID is the worker running the task (task spans).
	WorkerID string
}

// submitBatch is submitBatchUntraced with one SpanSubmit per request, whose
// context travels in the request's Meta.
func (c *Client) submitBatch(ctx context.Context, w *Watch, reqs []Request) ([]string, error) {
	if c.tracer == nil || len(reqs) == 0 {
		return c.submitBatchUntraced(ctx, w, reqs)
	}
	traced := make([]Request, len(reqs))
	ends := make([]func(error), len(reqs))
	for i, req := range reqs {
		if req.ID == "" {
			req.ID = NewTaskID() // as newEnvelope would, but known to the span
		}
		sctx, end := c.tracer.Start(ctx, SpanStart{Kind: SpanSubmit, Name: req.Task, TaskID: req.ID,
			RunID: req.RunID, StepID: req.StepID})
		meta := make(map[string]string, len(req.Meta)+2)
		maps.Copy(meta, req.Meta) // the caller's map stays as it is
		c.tracer.Inject(sctx, meta)
		if len(meta) > 0 {
			req.Meta = meta
		}
		traced[i], ends[i] = req, end
	}
	ids, err := c.submitBatchUntraced(ctx, w, traced)
	var se *SubmitError
	isSubmitErr := errors.As(err, &se)
	for i, end := range ends {
		switch {
		case err == nil:
			end(nil)
		case isSubmitErr:
			end(se.Failed[i])
		default:
			end(err)
		}
	}
	return ids, err
}

// startTaskSpan starts the span of j's attempt: j.ctx becomes the context of
// the span (the handler's); the returned function ends it with the
// handler's error and the context's cause.
func (w *Worker) startTaskSpan(j *workerJob) func(err, cause error) {
	if w.tracer == nil {
		return func(error, error) {}
	}
	ctx := w.tracer.Extract(j.ctx, j.env.Meta)
	ctx, end := w.tracer.Start(ctx, SpanStart{Kind: SpanTask, Name: j.env.Task, TaskID: j.env.TaskID,
		RunID: j.env.RunID, StepID: j.env.StepID, Attempt: j.attempt, WorkerID: w.id})
	j.ctx = ctx // values only: Done, Err and Cause stay those of the task's context
	return func(err, cause error) {
		if err != nil && cause != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w (cause: %w)", err, cause)
		}
		end(err)
	}
}
