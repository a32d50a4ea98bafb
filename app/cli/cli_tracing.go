package cli

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/app/telemetry"
	"github.com/dagq/dagq/core"
)

// tracingShutdownTimeout bounds the flush of the spans not exported yet
// when a command ends, so that an unreachable collector cannot hold the
// command up.
const tracingShutdownTimeout = 5 * time.Second

// setupTracing builds the tracer provider of a command from the OTEL_*
// environment (telemetry.Setup; off unless OTEL_TRACES_EXPORTER names an
// exporter), installed as OpenTelemetry's global so that handlers' own
// spans are recorded too. It returns the Option that hands app.New a
// tracer over it (messaging.system after transport; no tracer when tracing
// is off) and the function that flushes and stops it; the console exporter
// writes to logs (stderr), never to stdout.
func setupTracing(logs io.Writer, logger *slog.Logger, transport string) (app.Option, func(), error) {
	tp, shutdown, err := telemetry.Setup(context.Background(), telemetry.SetupOptions{
		ServiceVersion: Version,
		Console:        logs,
		Global:         true,
		Logger:         logger,
	})
	if err != nil {
		return nil, nil, err
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			logger.Warn("tracing: flushing the last spans failed", "err", err)
		}
	}
	var tracer core.Tracer // nil: tracing off
	if tp != nil {
		tracer = telemetry.NewTracer(tp, telemetry.WithMessagingSystem(messagingSystem(transport)))
	}
	return app.WithTracer(tracer), stop, nil
}

// messagingSystem is the OpenTelemetry messaging.system of a transport.
func messagingSystem(transport string) string {
	if transport == config.TransportSQS {
		return "aws_sqs" // the OpenTelemetry messaging.system of Amazon SQS
	}
	return telemetry.DefaultMessagingSystem
}
