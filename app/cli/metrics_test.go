package cli_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// scrape reads addr's /metrics in the text format: the value of every
// series, keyed by series (name{label="value",…}, labels sorted by name).
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	code, body := get(t, addr, "/metrics")
	require.Equal(t, http.StatusOK, code, body)
	out := map[string]float64{}
	for line := range strings.SplitSeq(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, line)
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	return out
}

// series names a series the way the text format prints it.
func series(name string, labels ...string) string {
	type kv struct{ k, v string }
	var l []kv
	for i := 0; i+1 < len(labels); i += 2 {
		l = append(l, kv{labels[i], labels[i+1]})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].k < l[j].k })
	parts := make([]string, len(l))
	for i, p := range l {
		parts[i] = fmt.Sprintf("%s=%q", p.k, p.v)
	}
	if len(parts) == 0 {
		return name
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

var metricsAddrRE = regexp.MustCompile(`dagq: metrics on http://(\S+)/metrics`)

// startWorkerCmd runs "dagq worker" with args until ctx is done, and returns
// the address of its metrics listener, its stderr and its exit code.
func startWorkerCmd(t *testing.T, ctx context.Context, args []string, opts ...cli.CommandOption) (addr string, errb *syncBuffer, done <-chan int) {
	t.Helper()
	errb = &syncBuffer{}
	ch := make(chan int, 1)
	reg := builtins(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker stderr:\n%s", errb)
		}
	})
	go func() {
		ch <- cli.Execute(ctx, reg, append([]string{"worker"}, args...), io.Discard, errb, opts...)
	}()
	require.Eventually(t, func() bool { return metricsAddrRE.MatchString(errb.String()) }, 30*time.Second, 10*time.Millisecond,
		"no metrics listener: %s", errb)
	return metricsAddrRE.FindStringSubmatch(errb.String())[1], errb, ch
}

// dagq worker --metrics-addr on the memory transport: a success, a failure
// retried once then final, a task cancelled while running (after lease
// extensions) show in the counters by task; the probes answer, and /readyz
// turns 503 once shutdown begins, while a task drains.
func TestWorkerMetrics_Memory(t *testing.T) {
	cfg := config.Default()
	cfg.Worker.MetricsAddr = "127.0.0.1:0"
	cfg.Worker.Lease = 900 * time.Millisecond // heartbeat every 300ms
	cfg.Retry.MaxAttempts = 2
	cfg.Retry.InitialBackoff = 10 * time.Millisecond
	cfg.Retry.Jitter = 0
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer rt.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	addr, errb, done := startWorkerCmd(t, wctx, []string{"--runs=false"}, cli.WithRuntime(rt))
	require.Eventually(t, func() bool { c, _ := get(t, addr, "/readyz"); return c == http.StatusOK }, 10*time.Second, 10*time.Millisecond)
	code, body := get(t, addr, "/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)

	q := "dagq-tasks"
	val := func(m map[string]float64, name string, labels ...string) float64 {
		return m[series(name, append([]string{"queue", q}, labels...)...)]
	}

	okID, err := rt.Client.Submit(ctx, core.Request{Task: "echo", Args: "hi"})
	require.NoError(t, err)
	failID, err := rt.Client.Submit(ctx, core.Request{Task: "fail", Args: "boom"})
	require.NoError(t, err)
	sleepID, err := rt.Client.Submit(ctx, core.Request{Task: "sleep", Args: "1m"})
	require.NoError(t, err)
	res, err := rt.Client.Wait(ctx, okID)
	require.NoError(t, err)
	require.Equal(t, ports.StateSucceeded, res.State)
	res, err = rt.Client.Wait(ctx, failID)
	require.NoError(t, err)
	require.Equal(t, ports.StateFailed, res.State)
	require.Equal(t, 2, res.Attempts)

	// The sleeping task runs long enough for its lease to be extended, then
	// is cancelled.
	require.Eventually(t, func() bool {
		m := scrape(t, addr)
		return val(m, "dagq_worker_tasks_running", "task", "sleep") == 1 && val(m, "dagq_worker_lease_extensions_total") >= 2
	}, 20*time.Second, 50*time.Millisecond)
	require.NoError(t, rt.Client.Cancel(ctx, sleepID))
	res, err = rt.Client.Wait(ctx, sleepID)
	require.NoError(t, err)
	require.Equal(t, ports.StateCancelled, res.State)

	// Outcomes are counted once the message is settled, just after the
	// result is published.
	var m map[string]float64
	require.Eventually(t, func() bool {
		m = scrape(t, addr)
		return val(m, "dagq_worker_messages_in_flight") == 0 &&
			val(m, "dagq_worker_tasks_finished_total", "task", "sleep", "outcome", "cancelled") == 1
	}, 10*time.Second, 20*time.Millisecond)
	// One scrape reads its collectors concurrently, so the one that saw the
	// last outcome may have read other series just before it was recorded:
	// read everything again now that nothing changes any more.
	m = scrape(t, addr)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"dagq_worker_messages_received_total", nil, 4},
		{"dagq_worker_messages_rejected_total", nil, 0},
		{"dagq_worker_concurrency", nil, float64(cfg.Worker.Concurrency)},
		{"dagq_worker_tasks_received_total", []string{"task", "echo"}, 1},
		{"dagq_worker_tasks_received_total", []string{"task", "fail"}, 2},
		{"dagq_worker_tasks_received_total", []string{"task", "sleep"}, 1},
		{"dagq_worker_tasks_received_total", []string{"task", "hash"}, 0},
		{"dagq_worker_tasks_finished_total", []string{"task", "echo", "outcome", "succeeded"}, 1},
		{"dagq_worker_tasks_finished_total", []string{"task", "fail", "outcome", "retried"}, 1},
		{"dagq_worker_tasks_finished_total", []string{"task", "fail", "outcome", "failed"}, 1},
		{"dagq_worker_tasks_finished_total", []string{"task", "fail", "outcome", "succeeded"}, 0},
		{"dagq_worker_tasks_finished_total", []string{"task", "sleep", "outcome", "cancelled"}, 1},
		{"dagq_worker_task_duration_seconds_count", []string{"task", "echo"}, 1},
		{"dagq_worker_task_duration_seconds_count", []string{"task", "fail"}, 2},
		{"dagq_worker_task_duration_seconds_count", []string{"task", "sleep"}, 1},
		{"dagq_worker_tasks_running", []string{"task", "sleep"}, 0},
		{"dagq_worker_lease_extension_failures_total", nil, 0},
		{"dagq_queue_depth_errors_total", nil, 0},
	} {
		assert.Equal(t, c.want, val(m, c.name, c.labels...), "%s %v", c.name, c.labels)
	}
	assert.GreaterOrEqual(t, val(m, "dagq_worker_lease_extensions_total"), 2.0)
	assert.GreaterOrEqual(t, val(m, "dagq_worker_cancel_requests_total"), 1.0)
	assert.Greater(t, val(m, "dagq_worker_task_duration_seconds_sum", "task", "sleep"), 0.5)
	assert.Contains(t, m, series("dagq_queue_messages", "queue", q, "state", "visible"))
	assert.Contains(t, m, series("dagq_build_info", "version", cli.Version))
	assert.Contains(t, m, "go_goroutines")
	for k := range m {
		assert.NotContains(t, k, "dagq_aws_", "the memory transport makes no AWS request")
	}
	_, body = get(t, addr, "/metrics")
	require.Contains(t, body, "# HELP dagq_worker_tasks_finished_total Tasks finished by the worker")

	// Shutdown: /readyz answers 503 while the running task drains.
	drainID, err := rt.Client.Submit(ctx, core.Request{Task: "sleep", Args: "1500ms"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return val(scrape(t, addr), "dagq_worker_tasks_running", "task", "sleep") == 1
	}, 10*time.Second, 10*time.Millisecond)
	stopWorker()
	require.Eventually(t, func() bool {
		c, b := get(t, addr, "/readyz")
		return c == http.StatusServiceUnavailable && b == "not ready: shutting down: draining in-flight tasks\n"
	}, 5*time.Second, 10*time.Millisecond)
	code, _ = get(t, addr, "/healthz")
	require.Equal(t, http.StatusOK, code, "alive while draining")
	select {
	case code := <-done:
		require.Equal(t, cli.ExitOK, code, errb.String())
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not stop")
	}
	res, err = rt.Client.Wait(ctx, drainID)
	require.NoError(t, err)
	require.Equal(t, ports.StateSucceeded, res.State, "the task finished during the drain")
	_, err = http.Get("http://" + addr + "/healthz")
	require.Error(t, err, "the listener is closed after the drain")
}

// --metrics-addr is validated like every key.
func TestWorkerMetrics_BadAddr(t *testing.T) {
	r := dagq(t, "worker", "--metrics-addr", "9090")
	require.NotEqual(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stderr, `worker.metrics_addr (flag --metrics-addr): "9090" is not host:port`)
}

// On the sqs transport (emulators) the worker exposes the depth of its
// queues (GetQueueAttributes) and the AWS requests of the process.
func TestWorkerMetrics_SQS(t *testing.T) {
	cfg, flags := sqsEnv(t)
	require.Equal(t, cli.ExitOK, dagq(t, append([]string{"queue", "init"}, flags...)...).code)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	addr, errb, done := startWorkerCmd(t, wctx, append([]string{"--metrics-addr", "127.0.0.1:0"}, flags...))

	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer rt.Close()
	id, err := rt.Client.Submit(ctx, core.Request{Task: "echo", Args: "over sqs"})
	require.NoError(t, err)
	res, err := rt.Client.Wait(ctx, id)
	require.NoError(t, err)
	require.Equal(t, ports.StateSucceeded, res.State)

	steps, runs := config.QueueName(cfg.SQS.QueueURL), config.QueueName(cfg.SQS.RunQueueURL)
	var m map[string]float64
	require.Eventually(t, func() bool {
		m = scrape(t, addr)
		return m[series("dagq_worker_tasks_finished_total", "queue", steps, "task", "echo", "outcome", "succeeded")] == 1
	}, 30*time.Second, 50*time.Millisecond)
	// The outcome is counted after the message's DeleteMessageBatch, but one
	// scrape reads its collectors concurrently: the AWS counts of the scrape
	// that saw the outcome may predate the delete. Read them again.
	m = scrape(t, addr)
	for _, q := range []string{steps, runs} {
		for _, state := range []string{"visible", "in_flight", "delayed"} {
			assert.Contains(t, m, series("dagq_queue_messages", "queue", q, "state", state))
		}
		assert.Zero(t, m[series("dagq_queue_depth_errors_total", "queue", q)])
	}
	assert.Contains(t, m, series("dagq_worker_tasks_received_total", "queue", runs, "task", dag.RunTaskName),
		"the run workers are observed under the run queue")
	for _, op := range []string{"ReceiveMessage", "DeleteMessageBatch", "GetQueueAttributes"} {
		assert.Positive(t, m[series("dagq_aws_requests_total", "service", "SQS", "operation", op)], op)
	}
	assert.Positive(t, m[series("dagq_aws_requests_total", "service", "S3", "operation", "PutObject")])
	assert.Contains(t, m, series("dagq_aws_request_errors_total", "service", "SQS", "operation", "ReceiveMessage"))

	// /readyz reads the task queue's attributes, at most once per 5s.
	before := m[series("dagq_aws_requests_total", "service", "SQS", "operation", "GetQueueAttributes")]
	for range 5 {
		code, body := get(t, addr, "/readyz")
		require.Equal(t, http.StatusOK, code, body)
	}
	after := scrape(t, addr)[series("dagq_aws_requests_total", "service", "SQS", "operation", "GetQueueAttributes")]
	assert.LessOrEqual(t, after-before, 2.0, "readiness answers are cached")

	stopWorker()
	select {
	case code := <-done:
		require.Equal(t, cli.ExitOK, code, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop")
	}
}
