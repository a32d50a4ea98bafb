// Package telemetry traces dagq with OpenTelemetry: NewTracer implements
// core.Tracer (the hook of core.ClientOptions.Tracer and
// core.WorkerOptions.Tracer) with an OpenTelemetry TracerProvider, and
// Setup builds that provider from the standard OTEL_* environment
// variables, off unless OTEL_TRACES_EXPORTER names an exporter.
//
// A task's trace context travels from its submitter to its worker in the
// envelope's Meta (W3C "traceparent" and "tracestate", plus "baggage" when
// the submitter's context has some), so that one trace shows
//
//	dagq.launch <job>             (Launcher.Launch)
//	└─ dagq.submit dagq.run       (the run task, producer)
//	   └─ dagq.task dagq.run      (its run worker, consumer)
//	      └─ dagq.run <job>       (Executor.Run)
//	         └─ dagq.submit <task> (each step, producer)
//	            └─ dagq.task <task> (each attempt on a worker, consumer)
//	               └─ your spans  (from the handler's context)
//
// See docs/tracing.md.
package telemetry

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// ScopeName is the instrumentation scope of dagq's spans.
const ScopeName = "github.com/dagq/dagq"

// DefaultMessagingSystem is the messaging.system attribute of submit and
// task spans unless WithMessagingSystem sets another.
const DefaultMessagingSystem = "dagq"

// Span attribute keys of dagq's spans, besides the OpenTelemetry messaging
// conventions (messaging.system, messaging.operation.type,
// messaging.message.id) and error.type.
const (
	AttrTaskID   = attribute.Key("dagq.task.id")
	AttrTaskName = attribute.Key("dagq.task.name")
	AttrAttempt  = attribute.Key("dagq.task.attempt")
	AttrRunID    = attribute.Key("dagq.run.id")
	AttrStepID   = attribute.Key("dagq.step.id")
	AttrJobName  = attribute.Key("dagq.job.name")
	AttrWorkerID = attribute.Key("dagq.worker.id")
)

// Option configures NewTracer.
type Option func(*Tracer)

// WithPropagator sets how trace context is written to and read from the
// envelope's Meta (default: W3C trace context and baggage).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(t *Tracer) { t.prop = p }
}

// WithMessagingSystem sets the messaging.system attribute (default
// DefaultMessagingSystem; the dagq command sets "aws_sqs" on the sqs transport).
func WithMessagingSystem(system string) Option {
	return func(t *Tracer) { t.system = attribute.String("messaging.system", system) }
}

// Tracer is a core.Tracer over an OpenTelemetry TracerProvider.
type Tracer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	system attribute.KeyValue
}

var _ core.Tracer = (*Tracer)(nil)

// NewTracer returns a core.Tracer recording dagq's spans with tp (scope
// ScopeName). Give it to core.ClientOptions.Tracer and
// core.WorkerOptions.Tracer, or to app.New with app.WithTracer.
func NewTracer(tp trace.TracerProvider, opts ...Option) *Tracer {
	t := &Tracer{
		tracer: tp.Tracer(ScopeName),
		prop:   propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		system: attribute.String("messaging.system", DefaultMessagingSystem),
	}
	for _, o := range opts {
		o(t)
	}
	return t
}

// Start implements core.Tracer: "dagq.submit <task>" (producer), "dagq.task
// <task>" (consumer), "dagq.run <job>" and "dagq.launch <job>" (internal).
func (t *Tracer) Start(ctx context.Context, s core.SpanStart) (context.Context, func(error)) {
	attrs := make([]attribute.KeyValue, 0, 8)
	add := func(k attribute.Key, v string) {
		if v != "" {
			attrs = append(attrs, k.String(v))
		}
	}
	kind, op := trace.SpanKindInternal, ""
	switch s.Kind {
	case core.SpanSubmit:
		kind, op = trace.SpanKindProducer, "send"
	case core.SpanTask:
		kind, op = trace.SpanKindConsumer, "process"
	}
	if op != "" {
		attrs = append(attrs, t.system, attribute.String("messaging.operation.type", op))
		add("messaging.message.id", s.TaskID)
		add(AttrTaskName, s.Name)
		add(AttrTaskID, s.TaskID)
		if s.Attempt > 0 {
			attrs = append(attrs, AttrAttempt.Int(s.Attempt))
		}
		add(AttrWorkerID, s.WorkerID)
	} else {
		add(AttrJobName, s.Name)
	}
	add(AttrRunID, s.RunID)
	add(AttrStepID, s.StepID)
	name := "dagq." + string(s.Kind)
	if s.Name != "" {
		name += " " + s.Name
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetAttributes(attribute.String("error.type", errorType(err)))
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// errorType classifies a span's error for the error.type attribute.
func errorType(err error) string {
	switch {
	case errors.Is(err, core.ErrTaskCanceled):
		return "cancelled"
	case errors.Is(err, core.ErrShutdown):
		return "shutdown"
	case errors.Is(err, ports.ErrLeaseLost):
		return "lease_lost"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	case errors.Is(err, core.ErrSkipRetry):
		return "failed_no_retry"
	case errors.Is(err, context.Canceled):
		return "context_cancelled"
	}
	var re *dag.RunError
	if errors.As(err, &re) {
		return "run_" + string(re.State)
	}
	return "_OTHER"
}

// Inject implements core.Tracer.
func (t *Tracer) Inject(ctx context.Context, meta map[string]string) {
	t.prop.Inject(ctx, propagation.MapCarrier(meta))
}

// Extract implements core.Tracer.
func (t *Tracer) Extract(ctx context.Context, meta map[string]string) context.Context {
	if len(meta) == 0 {
		return ctx
	}
	return t.prop.Extract(ctx, propagation.MapCarrier(meta))
}
