package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// The environment variables Setup reads itself; the exporters and the SDK
// read the others (OTEL_EXPORTER_OTLP_*, OTEL_TRACES_SAMPLER*, OTEL_BSP_*,
// OTEL_SPAN_*, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES).
const (
	EnvTracesExporter      = "OTEL_TRACES_EXPORTER"
	EnvSDKDisabled         = "OTEL_SDK_DISABLED"
	EnvOTLPProtocol        = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvOTLPTracesProtocol  = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	defaultServiceName     = "dagq"
	protocolGRPC           = "grpc"
	protocolHTTPProtobuf   = "http/protobuf"
	exporterOTLP           = "otlp"
	exporterConsole        = "console"
	exporterNone           = "none"
	validExporterValues    = `"otlp", "console" or "none" (comma-separated for several)`
	validOTLPProtocolValue = `"http/protobuf" (default) or "grpc"`
)

// SetupOptions configures Setup.
type SetupOptions struct {
	// ServiceName is the service.name resource attribute unless
	// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES set it (default "dagq").
	ServiceName string
	// ServiceVersion is the service.version resource attribute (optional).
	ServiceVersion string
	// Console is where the console exporter writes (default os.Stderr, so
	// that spans never mix with a command's output on stdout).
	Console io.Writer
	// Global also installs the provider and the W3C trace-context and
	// baggage propagator as OpenTelemetry's globals (otel.SetTracerProvider,
	// otel.SetTextMapPropagator), so that handlers' otel.Tracer(…) spans are
	// recorded too, and routes OpenTelemetry's internal errors (e.g. failed
	// exports) to Logger. Programs that own their OpenTelemetry setup leave
	// it false.
	Global bool
	// Logger receives OpenTelemetry's errors with Global (default
	// slog.Default()).
	Logger *slog.Logger
}

// Enabled reports whether the environment turns tracing on: whether
// OTEL_TRACES_EXPORTER is set to something other than "none" and
// OTEL_SDK_DISABLED is not "true". Tracing is off by default: unlike the
// OpenTelemetry default, an unset OTEL_TRACES_EXPORTER does not mean "otlp".
func Enabled() bool {
	if disabled, _ := strconv.ParseBool(os.Getenv(EnvSDKDisabled)); disabled {
		return false
	}
	for _, name := range exporterNames() {
		if name != exporterNone {
			return true
		}
	}
	return false
}

// exporterNames lists the non-empty names of OTEL_TRACES_EXPORTER.
func exporterNames() []string {
	var names []string
	for n := range strings.SplitSeq(os.Getenv(EnvTracesExporter), ",") {
		if n = strings.ToLower(strings.TrimSpace(n)); n != "" {
			names = append(names, n)
		}
	}
	return names
}

// Setup builds a TracerProvider from the OTEL_* environment (see
// docs/tracing.md). When tracing is off (see Enabled) it returns a nil
// provider and a shutdown that does nothing. Otherwise the provider batches
// spans to the exporters OTEL_TRACES_EXPORTER names: "otlp" (protocol
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL:
// "http/protobuf", the default, or "grpc"; endpoint, headers, TLS, timeout
// and compression from OTEL_EXPORTER_OTLP_*), "console" (JSON lines to
// SetupOptions.Console) or "none". An unknown exporter or protocol is an
// error naming the valid values. Setup connects to nothing: exports start
// with the first spans.
//
// Call shutdown before the program exits: it flushes the spans not exported
// yet and stops the exporters (bound it with ctx's deadline).
func Setup(ctx context.Context, opts SetupOptions) (trace.TracerProvider, func(context.Context) error, error) {
	noop := func(context.Context) error { return nil }
	if !Enabled() {
		return nil, noop, nil
	}
	var exporters []sdktrace.SpanExporter
	fail := func(err error) (trace.TracerProvider, func(context.Context) error, error) {
		for _, e := range exporters {
			_ = e.Shutdown(ctx)
		}
		return nil, noop, err
	}
	for _, name := range exporterNames() {
		var (
			e   sdktrace.SpanExporter
			err error
		)
		switch name {
		case exporterNone:
			continue
		case exporterConsole:
			w := opts.Console
			if w == nil {
				w = os.Stderr
			}
			e, err = stdouttrace.New(stdouttrace.WithWriter(w))
		case exporterOTLP:
			e, err = otlpExporter(ctx)
		default:
			err = fmt.Errorf("%s=%q: unknown exporter %q; valid values: %s",
				EnvTracesExporter, os.Getenv(EnvTracesExporter), name, validExporterValues)
		}
		if err != nil {
			return fail(fmt.Errorf("tracing: %w", err))
		}
		exporters = append(exporters, e)
	}

	service := opts.ServiceName
	if service == "" {
		service = defaultServiceName
	}
	attrs := []resource.Option{resource.WithAttributes(semconv.ServiceName(service))}
	if opts.ServiceVersion != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceVersion(opts.ServiceVersion)))
	}
	// Later options win: the environment overrides the defaults above.
	attrs = append(attrs, resource.WithTelemetrySDK(), resource.WithHost(), resource.WithProcessPID(),
		resource.WithFromEnv())
	res, err := resource.New(ctx, attrs...)
	if err != nil && res == nil {
		return fail(fmt.Errorf("tracing: resource: %w", err))
	}
	// A partial resource (e.g. a malformed OTEL_RESOURCE_ATTRIBUTES entry) is
	// used as it is; the error is reported by the logger below.

	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, e := range exporters {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(e))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...) // reads OTEL_TRACES_SAMPLER*, OTEL_BSP_*, OTEL_SPAN_*
	if opts.Global {
		log := opts.Logger
		if log == nil {
			log = slog.Default()
		}
		if err != nil {
			log.Warn("tracing: some resource attributes could not be read", "err", err)
		}
		otel.SetTracerProvider(tp)
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("tracing: OpenTelemetry error", "err", err)
		}))
	}
	return tp, tp.Shutdown, nil
}

// otlpExporter returns the OTLP span exporter of the protocol the
// environment names; the exporter reads its other OTEL_EXPORTER_OTLP_*
// settings itself.
func otlpExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	proto, key := os.Getenv(EnvOTLPTracesProtocol), EnvOTLPTracesProtocol
	if proto == "" {
		proto, key = os.Getenv(EnvOTLPProtocol), EnvOTLPProtocol
	}
	switch strings.TrimSpace(proto) {
	case "", protocolHTTPProtobuf:
		return otlptracehttp.New(ctx)
	case protocolGRPC:
		return otlptracegrpc.New(ctx)
	}
	return nil, errors.New(key + "=" + strconv.Quote(proto) + ": unknown protocol; valid values: " + validOTLPProtocolValue)
}
