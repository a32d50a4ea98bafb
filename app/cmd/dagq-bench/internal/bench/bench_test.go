package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/cmd/dagq-bench/internal/bench"
)

// TestMain turns the test binary into a worker process when the bench
// starts it as one.
func TestMain(m *testing.M) {
	switch os.Getenv(bench.RoleEnv) {
	case "worker":
		os.Exit(bench.WorkerMain(context.Background(), os.Stdout, os.Stderr))
	case "raw":
		os.Exit(bench.RawMain(context.Background(), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// The harness in quick mode (tiny sizes) runs every scenario, on the
// emulators for the sqs and raw ones, and ends its output with one JSON
// object holding exactly the documented keys, also written to -out: every
// one measured (not negative).
func TestQuick(t *testing.T) {
	if os.Getenv("DAGQ_TEST_SQS_ENDPOINT") == "" || os.Getenv("DAGQ_TEST_S3_ENDPOINT") == "" {
		t.Fatal(`the bench needs the emulators: run "make test", or "make emulators-up" and eval "$(scripts/emulators.sh env)"`)
	}
	out := filepath.Join(t.TempDir(), "bench.json")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Setenv("BENCH_QUICK", "1")
	t.Setenv("BENCH_OUT", out)
	start := time.Now()
	code := bench.Main(ctx, nil, &stdout, &stderr)
	t.Logf("took %s\nstdout:\n%s\nstderr:\n%s", time.Since(start), stdout.String(), stderr.String())
	require.Equal(t, 0, code)

	lines := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(last), &got), "the last line is one JSON object")
	keys := make([]string, 0, len(got))
	for k, v := range got {
		keys = append(keys, k)
		n, ok := v.(float64)
		require.True(t, ok, "%s is a number: %v", k, v)
		require.GreaterOrEqual(t, n, 0.0, k)
	}
	require.ElementsMatch(t, bench.Keys, keys)
	require.Greater(t, got["sqs_requests_per_task"].(float64), 0.0, "the counters saw requests")
	require.Greater(t, got["sqs_requests_per_task_c1"].(float64), 0.0, "the counters saw requests at c=1")
	require.Greater(t, got["mem_tasks_per_sec"].(float64), 0.0)
	for _, k := range []string{"sqs_vs_raw_c1", "sqs_vs_raw_c10", "sqs_vs_raw_c32", "sqs_durable_vs_raw_c32", "sqs_none_vs_raw_c10",
		"raw_tasks_per_sec_c1", "raw_tasks_per_sec_c10", "raw_tasks_per_sec_c32", "e2e_p50_ms_c1",
		"pool_e2e_p50_ms", "pool_e2e_p50_ms_without"} {
		require.Greater(t, got[k].(float64), 0.0, "%s is measured", k)
	}
	require.GreaterOrEqual(t, got["pool_s3_requests_added_per_task"].(float64), 3.0, "a pool slot costs a list, a get and two puts")
	require.Contains(t, stdout.String(), "sqs: throughput c=10 none", "the policy none round ran")
	require.Contains(t, stdout.String(), "sqs: throughput c=32 durable", "the policy durable round ran")
	require.True(t, slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "SCENARIO") }), "a table comes first")

	file, err := os.ReadFile(out)
	require.NoError(t, err)
	require.JSONEq(t, last, string(file))
}

// -only runs the named scenarios (the memory ones need no emulators), reports
// -1 for the others, and refuses an unknown name, listing the valid ones.
func TestOnly(t *testing.T) {
	t.Setenv("DAGQ_TEST_SQS_ENDPOINT", "")
	t.Setenv("DAGQ_TEST_S3_ENDPOINT", "")
	t.Setenv("BENCH_OUT", "")
	var stdout, stderr bytes.Buffer
	code := bench.Main(context.Background(), []string{"-quick", "-only", "mem,dag"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	lines := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
	var got map[string]float64
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &got))
	require.Greater(t, got["mem_tasks_per_sec"], 0.0)
	require.Greater(t, got["mem_dag_us_per_step_chain"], 0.0)
	for _, k := range []string{"sqs_tasks_per_sec", "e2e_p50_ms", "cancel_p99_ms", "idle_requests_per_worker_min", "usd_per_million_tasks",
		"sqs_vs_raw_c1", "raw_tasks_per_sec_c32", "cpu_ms_per_task_c32", "e2e_p50_ms_c1", "sqs_none_vs_raw_c10"} {
		require.Equal(t, -1.0, got[k], k)
	}
	require.Contains(t, stdout.String(), "skipped")

	stdout.Reset()
	stderr.Reset()
	code = bench.Main(context.Background(), []string{"-only", "mem,bogus"}, &stdout, &stderr)
	require.Equal(t, 1, code)
	require.Contains(t, stderr.String(), `unknown scenario "bogus"; valid: mem, dag, sqs, raw, e2e, cancel, idle, pool`)
}
