package metrics_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/cli/metrics"
	"github.com/dagq/dagq/core"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func probe(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// /readyz: 503 while starting, then the broker check (its answer reused
// for the TTL, its error on one line), 503 for good once shutting down.
// On the synctest clock (the probes call the handler, no network): the TTL
// is exact, not a sleep raced against a machine.
func TestReadyz(t *testing.T) { synctest.Test(t, testReadyz) }

func testReadyz(t *testing.T) {
	const ttl = 200 * time.Millisecond
	var calls atomic.Int32
	var fail atomic.Bool
	m := metrics.New(metrics.Options{
		Logger:   quiet(),
		ReadyTTL: ttl,
		Ready: func(ctx context.Context) error {
			calls.Add(1)
			if fail.Load() {
				return errors.New("dial tcp:\n  connection refused")
			}
			return nil
		},
	})
	h := m.Handler()
	code, body := probe(t, h, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready: starting: workers not running yet\n", body)
	code, _ = probe(t, h, "/healthz")
	require.Equal(t, http.StatusOK, code)

	m.MarkServing()
	for range 10 {
		code, body = probe(t, h, "/readyz")
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "ready\n", body)
	}
	require.EqualValues(t, 1, calls.Load(), "one check per TTL")
	require.NoError(t, testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP dagq_ready 1 when the last /readyz answer was ready (serving, broker reachable, not shutting down), else 0.
# TYPE dagq_ready gauge
dagq_ready 1
`), "dagq_ready"))

	fail.Store(true)
	time.Sleep(ttl - time.Nanosecond)
	code, body = probe(t, h, "/readyz")
	require.Equal(t, http.StatusOK, code, "the answer is reused until the TTL ends")
	require.Equal(t, "ready\n", body)
	require.EqualValues(t, 1, calls.Load())
	time.Sleep(time.Nanosecond)
	code, body = probe(t, h, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "checked again once the TTL ended")
	require.Equal(t, "not ready: broker unreachable: dial tcp: connection refused\n", body)
	require.EqualValues(t, 2, calls.Load())

	fail.Store(false)
	m.MarkShuttingDown()
	time.Sleep(ttl)
	code, body = probe(t, h, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready: shutting down: draining in-flight tasks\n", body)
	require.EqualValues(t, 2, calls.Load(), "no check while shutting down")
}

// The observer maps events to the counters by queue and task; a failing
// depth poll counts an error; the AWS counts are read at each scrape.
func TestObserverDepthAndAWS(t *testing.T) {
	var aws atomic.Int64
	m := metrics.New(metrics.Options{
		Logger: quiet(),
		Queues: []metrics.Queue{
			{Name: "q", Depth: func(context.Context) (metrics.QueueDepth, error) {
				return metrics.QueueDepth{Visible: 3, InFlight: 2, Delayed: 1}, nil
			}},
			{Name: "broken", Depth: func(context.Context) (metrics.QueueDepth, error) { return metrics.QueueDepth{}, errors.New("boom") }},
		},
		AWSRequests: func() []metrics.AWSRequests {
			return []metrics.AWSRequests{{Service: "SQS", Operation: "ReceiveMessage", Requests: aws.Load(), Errors: 1}}
		},
	})
	o := m.Observer(metrics.WorkerInfo{Queue: "q", Concurrency: 4, Tasks: []string{"a", "b"}, Pools: []string{"db", "gpu"}})
	o.MessagesReceived(2)
	ti := core.TaskInfo{Name: "a"}
	o.TaskReceived(ti)
	o.TaskStarted(ti)
	o.TaskFinished(ti, core.TaskResult{Outcome: core.OutcomeRetried, Ran: true, Duration: 2 * time.Second})
	o.TaskReceived(ti)
	o.TaskFinished(ti, core.TaskResult{Outcome: core.OutcomeCancelled})
	o.MessageDone()
	o.MessageRejected()
	o.LeasesExtended(3, 1)
	o.CancelRequested(5)
	o.ReceiveFailed()
	o.ReceiveFailed()
	o.ResultStoreFailed()
	o.CompletionPublishFailed()
	o.CompletionPublishFailed()
	o.CompletionPublishFailed()
	o.PoolWaited("db")
	o.PoolWaited("db")
	o.PoolAcquired("db", 3*time.Second)
	o.PoolAcquired("db", 0)
	o.PoolReleased("db", false)
	o.PoolAcquired("gpu", 0)
	o.PoolReleased("gpu", true)
	m.PollDepth(context.Background())
	aws.Store(7)

	want := `
# HELP dagq_worker_tasks_finished_total Tasks finished by the worker, by task name and outcome: succeeded, failed (final), retried (handed back for another attempt), cancelled, lease_lost, released (at shutdown), duplicate (a redelivery that had a result), delayed (received before its due time and sent on; once per sqs.max_delay while a task waits), postponed (handed back to wait for a pool slot, no attempt counted).
# TYPE dagq_worker_tasks_finished_total counter
`
	var b strings.Builder
	b.WriteString(want)
	for _, task := range []string{"a", "b"} {
		for _, oc := range []string{"cancelled", "delayed", "duplicate", "failed", "lease_lost", "postponed", "released", "retried", "succeeded"} {
			v := "0"
			if task == "a" && (oc == "cancelled" || oc == "retried") {
				v = "1"
			}
			b.WriteString(`dagq_worker_tasks_finished_total{outcome="` + oc + `",queue="q",task="` + task + `"} ` + v + "\n")
		}
	}
	require.NoError(t, testutil.GatherAndCompare(m.Registry(), strings.NewReader(b.String()), "dagq_worker_tasks_finished_total"))

	require.NoError(t, testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP dagq_worker_pool_waits_total Tasks of a concurrency pool postponed because the pool had no slot for them (each re-check that finds none counts); no attempt is counted.
# TYPE dagq_worker_pool_waits_total counter
dagq_worker_pool_waits_total{pool="db",queue="q"} 2
dagq_worker_pool_waits_total{pool="gpu",queue="q"} 0
# HELP dagq_worker_pool_slots_held Slots of a concurrency pool the worker's tasks hold now.
# TYPE dagq_worker_pool_slots_held gauge
dagq_worker_pool_slots_held{pool="db",queue="q"} 1
dagq_worker_pool_slots_held{pool="gpu",queue="q"} 0
# HELP dagq_worker_pool_slots_lost_total Pool slots whose lease the worker could not renew in time (or another task took): the task's handler was cancelled and its attempt retried.
# TYPE dagq_worker_pool_slots_lost_total counter
dagq_worker_pool_slots_lost_total{pool="db",queue="q"} 0
dagq_worker_pool_slots_lost_total{pool="gpu",queue="q"} 1
`), "dagq_worker_pool_waits_total", "dagq_worker_pool_slots_held", "dagq_worker_pool_slots_lost_total"))

	require.NoError(t, testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP dagq_queue_messages Messages in the queue by state, polled: visible (ApproximateNumberOfMessages), in_flight (ApproximateNumberOfMessagesNotVisible), delayed (ApproximateNumberOfMessagesDelayed).
# TYPE dagq_queue_messages gauge
dagq_queue_messages{queue="q",state="delayed"} 1
dagq_queue_messages{queue="q",state="in_flight"} 2
dagq_queue_messages{queue="q",state="visible"} 3
# HELP dagq_queue_depth_errors_total Queue depth polls that failed (the gauge keeps its last value).
# TYPE dagq_queue_depth_errors_total counter
dagq_queue_depth_errors_total{queue="broken"} 1
dagq_queue_depth_errors_total{queue="q"} 0
# HELP dagq_aws_requests_total AWS API requests (HTTP attempts, retries included) of this process, by service and operation.
# TYPE dagq_aws_requests_total counter
dagq_aws_requests_total{operation="ReceiveMessage",service="SQS"} 7
# HELP dagq_worker_messages_in_flight Messages the worker holds (received, not yet deleted or handed back): worker slots in use.
# TYPE dagq_worker_messages_in_flight gauge
dagq_worker_messages_in_flight{queue="q"} 1
# HELP dagq_worker_concurrency Worker slots (worker.concurrency, launcher.concurrency for the run queue).
# TYPE dagq_worker_concurrency gauge
dagq_worker_concurrency{queue="q"} 4
# HELP dagq_worker_lease_extensions_total Leases (visibility timeouts) of running tasks extended by the heartbeat.
# TYPE dagq_worker_lease_extensions_total counter
dagq_worker_lease_extensions_total{queue="q"} 3
# HELP dagq_worker_lease_extension_failures_total Lease extensions that failed (the call or its item failed, or the lease was lost).
# TYPE dagq_worker_lease_extension_failures_total counter
dagq_worker_lease_extension_failures_total{queue="q"} 1
# HELP dagq_worker_cancel_requests_total Cancellation requests received from the cancel subscription (task IDs, whether or not they run here).
# TYPE dagq_worker_cancel_requests_total counter
dagq_worker_cancel_requests_total{queue="q"} 5
# HELP dagq_worker_messages_rejected_total Messages never executed: not a valid envelope, a field over its limit, a newer envelope version given up on, a missing claim-check object, a bad signature. Recorded as failed and deleted; one whose message ID cannot hold a result is handed back for the queue's DLQ instead, and counted at every delivery.
# TYPE dagq_worker_messages_rejected_total counter
dagq_worker_messages_rejected_total{queue="q"} 1
# HELP dagq_worker_receive_failures_total Receive calls of the worker that failed (it backs off and tries again): the worker gets no work meanwhile.
# TYPE dagq_worker_receive_failures_total counter
dagq_worker_receive_failures_total{queue="q"} 2
# HELP dagq_worker_result_store_failures_total Results the worker could not store in the result backend after its retries; the task is handed back for redelivery.
# TYPE dagq_worker_result_store_failures_total counter
dagq_worker_result_store_failures_total{queue="q"} 1
# HELP dagq_worker_completion_publish_failures_total Completions that could not be pushed to their reply inbox (the result is stored; waiters read it from the result backend).
# TYPE dagq_worker_completion_publish_failures_total counter
dagq_worker_completion_publish_failures_total{queue="q"} 3
`), "dagq_queue_messages", "dagq_queue_depth_errors_total", "dagq_aws_requests_total", "dagq_worker_messages_in_flight",
		"dagq_worker_concurrency", "dagq_worker_lease_extensions_total", "dagq_worker_lease_extension_failures_total",
		"dagq_worker_cancel_requests_total", "dagq_worker_messages_rejected_total", "dagq_worker_receive_failures_total",
		"dagq_worker_result_store_failures_total", "dagq_worker_completion_publish_failures_total"))

	n, err := testutil.GatherAndCount(m.Registry(), "dagq_worker_task_duration_seconds")
	require.NoError(t, err)
	assert.Equal(t, 2, n, "a series per task")
	lint, err := testutil.GatherAndLint(m.Registry())
	require.NoError(t, err)
	assert.Empty(t, lint)
}

// Start binds at once (a bad address fails), serves the probes and stops
// the poller on Close.
func TestStartAndClose(t *testing.T) {
	var polls atomic.Int32
	m := metrics.New(metrics.Options{Logger: quiet(), DepthInterval: 20 * time.Millisecond, Queues: []metrics.Queue{{
		Name: "q", Depth: func(context.Context) (metrics.QueueDepth, error) { polls.Add(1); return metrics.QueueDepth{}, nil },
	}}})
	_, err := m.Start("not an address")
	require.ErrorContains(t, err, "metrics: listen on not an address")
	srv, err := m.Start("127.0.0.1:0")
	require.NoError(t, err)
	resp, err := http.Get("http://" + srv.Addr() + "/healthz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Eventually(t, func() bool { return polls.Load() >= 3 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, srv.Close(context.Background()))
	require.NoError(t, srv.Close(context.Background()), "idempotent")
	n := polls.Load()
	time.Sleep(60 * time.Millisecond)
	require.Equal(t, n, polls.Load(), "the poller stopped")
}
