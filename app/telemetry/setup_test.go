package telemetry_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/telemetry"
)

// Setup reads the OTEL_* environment; these tests set it (t.Setenv: not
// parallel) and never export over the network.

func TestSetupOffByDefault(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"unset":            {},
		"empty":            {"OTEL_TRACES_EXPORTER": ""},
		"none":             {"OTEL_TRACES_EXPORTER": "none"},
		"sdk disabled":     {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"},
		"endpoint alone":   {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
		"none, spaced out": {"OTEL_TRACES_EXPORTER": " none , "},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_EXPORTER", "")
			t.Setenv("OTEL_SDK_DISABLED", "")
			for k, v := range env {
				t.Setenv(k, v)
			}
			assert.False(t, telemetry.Enabled())
			tp, shutdown, err := telemetry.Setup(context.Background(), telemetry.SetupOptions{})
			require.NoError(t, err)
			assert.Nil(t, tp)
			assert.NoError(t, shutdown(context.Background()))
		})
	}
}

func TestSetupConsole(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
	var out bytes.Buffer
	tp, shutdown, err := telemetry.Setup(context.Background(), telemetry.SetupOptions{Console: &out, ServiceVersion: "v9"})
	require.NoError(t, err)
	require.NotNil(t, tp)
	_, span := tp.Tracer("test").Start(context.Background(), "hello")
	span.End()
	require.NoError(t, shutdown(context.Background()))
	assert.Contains(t, out.String(), `"Name":"hello"`)
	assert.Contains(t, out.String(), `"Value":"dagq"`, "service.name defaults to dagq")
	assert.Contains(t, out.String(), `"Value":"v9"`)
	assert.Contains(t, out.String(), `"Value":"test"`, "OTEL_RESOURCE_ATTRIBUTES is read")
}

func TestSetupOTLPConnectsToNothing(t *testing.T) {
	for _, proto := range []string{"", "http/protobuf", "grpc"} {
		t.Run("protocol="+proto, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", proto)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1") // nothing listens; nothing is exported
			tp, shutdown, err := telemetry.Setup(context.Background(), telemetry.SetupOptions{})
			require.NoError(t, err)
			require.NotNil(t, tp)
			require.NoError(t, shutdown(context.Background()))
		})
	}
}

func TestSetupRejectsUnknownValues(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "zipkin")
	_, _, err := telemetry.Setup(context.Background(), telemetry.SetupOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown exporter "zipkin"`)
	assert.Contains(t, err.Error(), `"otlp", "console" or "none"`)

	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
	_, _, err = telemetry.Setup(context.Background(), telemetry.SetupOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/json": unknown protocol`)
}
