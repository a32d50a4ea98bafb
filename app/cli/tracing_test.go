package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/dagq/dagq/app/cli"
)

// dagq run with OTEL_TRACES_EXPORTER=console: the spans of the run go to
// stderr as JSON lines, one trace, and stdout keeps only the result.
func TestRun_TracesToConsole(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Cleanup(func() { // the command installed its provider as the global
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})
	r := dagq(t, "run", examples+"diamond.yaml", "--output", "json", "--progress", "none", "--run-id", "traced-1")
	require.Equal(t, cli.ExitOK, r.code)
	var res struct{ State string }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), "stdout holds only the JSON result")
	require.Equal(t, "succeeded", res.State)

	type span struct {
		Name        string
		SpanContext struct{ TraceID string }
	}
	counts := map[string]int{}
	traces := map[string]bool{}
	for line := range strings.Lines(r.stderr) {
		var s span
		if json.Unmarshal([]byte(line), &s) != nil || s.Name == "" {
			continue
		}
		counts[s.Name]++
		traces[s.SpanContext.TraceID] = true
	}
	require.Equal(t, 1, counts["dagq.run diamond"], "stderr:\n%s", r.stderr)
	require.Equal(t, 2, counts["dagq.task transform"])
	require.Equal(t, 1, counts["dagq.submit concat"])
	require.Len(t, traces, 1, "all spans are in the run's trace")
}

// Without OTEL_TRACES_EXPORTER nothing is traced (and nothing printed).
func TestRun_NotTracedByDefault(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	r := dagq(t, "run", examples+"diamond.yaml", "--progress", "none")
	require.Equal(t, cli.ExitOK, r.code)
	require.NotContains(t, r.stderr, "dagq.run")
}
