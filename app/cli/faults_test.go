package cli_test

// Fault tests: "dagq worker" processes on the emulators (the harness is in
// procs_test.go) killed with SIGKILL, stopped with SIGTERM, cut off from
// their broker, and fed poison messages. Each test logs what it measured.
//
// What happened is read from behaviour, not from log wording: the stored
// results (state, attempts, the worker that wrote it, when its execution
// started), each worker process's Prometheus metrics (tasks running,
// outcomes, executions, lease extensions) and its handler journal (every
// handler start and end, written by the handlers: the executions of a
// worker killed with SIGKILL, whose metrics die with it). Logs are asserted
// on only where logging is the behaviour under test (bounded error logging
// during an outage) or the only trace there is: a result that could not be
// stored.

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// faultCluster is the client side of a fault test (this process: it
// submits and checks, and runs no worker) and its worker processes.
type faultCluster struct {
	t          *testing.T
	cfg        config.Config
	flags      []string
	rt         *app.Runtime
	clientLogs *syncBuffer
	args, env  []string // of the worker processes
	procs      []*e2eProc
}

// faultEnv is the environment of the fault tests' worker processes: JSON
// logs (printed when a test fails; read for readiness, error logging and a
// result that could not be stored), a metrics listener on a free port
// (e2eProc.metrics), and no prefetch (the tests place tasks on workers by
// their free slots).
func faultEnv(lease, shutdownTimeout time.Duration, extra ...string) []string {
	return append([]string{
		"DAGQ_S3_PATH_STYLE=true",
		"DAGQ_SQS_WAIT_TIME=1s",
		"DAGQ_WORKER_LEASE=" + lease.String(),
		"DAGQ_WORKER_SHUTDOWN_TIMEOUT=" + shutdownTimeout.String(),
		// No prefetch: a task waits for whichever worker has a free slot,
		// never behind a busy worker's running task.
		"DAGQ_WORKER_PREFETCH=0",
		"DAGQ_WORKER_METRICS_ADDR=127.0.0.1:0",
		"DAGQ_LOG_LEVEL=info",
		"DAGQ_LOG_FORMAT=json",
	}, extra...)
}

// newFaultCluster creates the queues (dagq queue init) and bucket of cfg
// and the client runtime; worker processes serve the task queue only
// (--runs=false) with concurrency slots each, in env.
func newFaultCluster(t *testing.T, cfg config.Config, flags []string, concurrency int, env []string) *faultCluster {
	t.Helper()
	r := dagq(t, append([]string{"queue", "init"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	c := &faultCluster{t: t, cfg: cfg, flags: flags, clientLogs: &syncBuffer{}, env: env,
		args: append([]string{"worker", "--runs=false", "--concurrency", fmt.Sprint(concurrency)}, flags...)}
	rt, err := app.New(cfg, builtins(t), app.WithLogger(slog.New(slog.NewTextHandler(c.clientLogs, nil))))
	require.NoError(t, err)
	c.rt = rt
	t.Cleanup(func() {
		rt.Close()
		if t.Failed() {
			t.Logf("=== client (this process) log:\n%s", c.clientLogs.String())
		}
	})
	return c
}

// start starts a worker process and waits until it serves.
func (c *faultCluster) start(name string) *e2eProc {
	c.t.Helper()
	p := startReadyWorker(c.t, name, c.args, c.env)
	c.procs = append(c.procs, p)
	return p
}

// metrics scrapes the /metrics of worker process p (faultEnv turns the
// listener on; its address is on the process's "dagq: metrics on" line).
func (p *e2eProc) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	m := metricsAddrRE.FindStringSubmatch(p.logs())
	require.NotNil(t, m, "%s has no metrics listener", p.name)
	return scrape(t, m[1])
}

// sum adds the values of the series of metric name whose labels include
// labels (name, value pairs), as scrape keys them.
func sum(m map[string]float64, name string, labels ...string) float64 {
	var n float64
	for k, v := range m {
		base, rest, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			pair := fmt.Sprintf("%s=%q", labels[i], labels[i+1])
			if !strings.HasPrefix(rest, pair) && !strings.Contains(rest, ","+pair) {
				match = false
				break
			}
		}
		if match {
			n += v
		}
	}
	return n
}

// live returns the worker processes of c that were not killed and have
// not exited.
func (c *faultCluster) live() []*e2eProc {
	var out []*e2eProc
	for _, p := range c.procs {
		if !p.killed && !p.exited() {
			out = append(out, p)
		}
	}
	return out
}

// settled scrapes every process of procs once none holds a message and
// the series of metric name with labels add up to at least want over them
// (outcomes are counted once their message is settled). It then scrapes
// them all once more, as one scrape reads its collectors concurrently.
func (c *faultCluster) settled(procs []*e2eProc, within time.Duration, want int, name string, labels ...string) map[*e2eProc]map[string]float64 {
	c.t.Helper()
	got := 0.0
	require.Eventually(c.t, func() bool {
		got = 0
		for _, p := range procs {
			m := p.metrics(c.t)
			if sum(m, "dagq_worker_messages_in_flight") != 0 {
				return false
			}
			got += sum(m, name, labels...)
		}
		return got >= float64(want)
	}, within, 50*time.Millisecond, "the workers never settled: %s%v at %v, want %d", name, labels, got, want)
	out := map[*e2eProc]map[string]float64{}
	for _, p := range procs {
		out[p] = p.metrics(c.t)
	}
	return out
}

// waitRunning waits until one of procs (but not those of except) runs a
// task (dagq_worker_tasks_running), and returns it; nil after timeout.
func waitRunning(t *testing.T, procs []*e2eProc, timeout time.Duration, except ...*e2eProc) *e2eProc {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, p := range procs {
			if !slices.Contains(except, p) && !p.exited() && sum(p.metrics(t), "dagq_worker_tasks_running") > 0 {
				return p
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// waitAllRunning waits until procs together run n tasks.
func waitAllRunning(t *testing.T, procs []*e2eProc, n int, timeout time.Duration) {
	t.Helper()
	got := 0.0
	require.Eventually(t, func() bool {
		got = 0
		for _, p := range procs {
			got += sum(p.metrics(t), "dagq_worker_tasks_running")
		}
		return got == float64(n)
	}, timeout, 20*time.Millisecond, "%d tasks never ran at once (last %v running)", n, got)
}

// waitInHandler waits until p's handler journal shows a handler running (a
// start without its end), and fails the test when none runs within timeout.
// Only the handler marks its return: dagq_worker_tasks_running also counts
// a task while its result is stored and its message deleted, which with
// 50ms tasks on a loaded machine can be what every busy slot is doing, and
// a kill then interrupts no execution (seen under make test). It only picks
// the moment of a kill; what the kill did is read from the results and the
// journals.
func waitInHandler(t *testing.T, p *e2eProc, timeout time.Duration) {
	t.Helper()
	waitJournal(t, []*e2eProc{p}, timeout, func([]journalEntry) error {
		if len(inHandler(t, p)) == 0 {
			return fmt.Errorf("no handler runs on %s", p.name)
		}
		return nil
	})
}

// byWorker maps step worker IDs to their processes.
func (c *faultCluster) byWorker() map[string]*e2eProc {
	m := map[string]*e2eProc{}
	for _, p := range c.procs {
		m[p.stepWorker] = p
	}
	return m
}

// starts returns every handler start in the journals of c's processes per
// task ID, in time order.
func (c *faultCluster) starts() map[string][]journalEntry { return journalStarts(c.t, c.procs...) }

// countMsg counts the log lines of procs whose message is msg.
func countMsg(msg string, procs ...*e2eProc) int {
	n := 0
	for _, p := range procs {
		for _, l := range p.logLines() {
			if l.Msg == msg {
				n++
			}
		}
	}
	return n
}

// getAll reads the stored result of every ID (16 at a time).
func getAll(ctx context.Context, t *testing.T, results ports.ResultBackend, ids []string) map[string]ports.Result {
	t.Helper()
	var (
		mu   sync.Mutex
		out  = make(map[string]ports.Result, len(ids))
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 16)
	)
	for _, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			res, err := results.Get(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", id, err))
				return
			}
			out[id] = res
		})
	}
	wg.Wait()
	require.Empty(t, errs, "every task has a stored result")
	return out
}

// Fault 1: 1,000 tasks over three worker processes; one worker is killed
// with SIGKILL after ~20% of the results, and another after ~60%, and each
// is replaced by a new process. Every task ends with a succeeded result; the
// only tasks that ran twice are those the killed workers were running (at
// least once: they are redelivered when their lease runs out), and each of
// them has one result, written by the worker that ran it again.
//
// It counts executions from the workers' handler journals (a start line per
// execution, written before the handler runs, so it survives the SIGKILL):
// the killed workers' executions are recorded nowhere else (their metrics
// die with them, and a result's Attempts counts deliveries, so a receive
// lost at the kill adds one without an execution).
func TestFault_WorkerCrash(t *testing.T) {
	const (
		tasks       = 1000
		concurrency = 8
		// Long enough that a live worker's heartbeat keeps its leases even
		// on a machine loaded by parallel test runs (a 3s lease lapsed there).
		lease = 8 * time.Second
		sleep = "50ms"
	)
	cfg, flags := sqsEnv(t)
	c := newFaultCluster(t, cfg, flags, concurrency, faultEnv(lease, time.Second))
	for i := range 3 {
		c.start(fmt.Sprintf("worker%d", i+1))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	w, err := c.rt.Client.Watch(ctx)
	require.NoError(t, err)
	defer w.Close()
	reqs := make([]core.Request, tasks)
	for i := range reqs {
		reqs[i] = core.Request{Task: builtin.Sleep, Args: sleep}
	}
	began := time.Now()
	ids, err := w.SubmitBatch(ctx, reqs...)
	require.NoError(t, err)
	submitted := time.Since(began)

	type kill struct {
		after               int // results seen before the kill
		victim, replacement string
		proc                *e2eProc
		at                  time.Time
	}
	kills := []*kill{{after: tasks / 5, victim: "worker1", replacement: "worker4"},
		{after: tasks * 3 / 5, victim: "worker2", replacement: "worker5"}}
	results := map[string]ports.Result{}
	next := 0
	for len(results) < tasks {
		evs, err := w.Next(ctx)
		require.NoError(t, err, "%d of %d results after %v", len(results), tasks, time.Since(began))
		for _, ev := range evs {
			if ev.Final {
				require.NoError(t, ev.Err, ev.TaskID)
				results[ev.TaskID] = ev.Result
			}
		}
		if next < len(kills) && len(results) >= kills[next].after {
			k := kills[next]
			next++
			for _, p := range c.procs {
				if p.name == k.victim {
					k.proc = p
				}
			}
			require.NotNil(t, k.proc)
			// Kill it while a handler runs there, so that the kill
			// interrupts work.
			waitInHandler(t, k.proc, 30*time.Second)
			k.proc.kill9(t)
			k.at = time.Now()
			t.Logf("SIGKILL %s (pid %d) after %d results, %v into the run", k.victim, k.proc.cmd.Process.Pid,
				len(results), k.at.Sub(began).Round(time.Millisecond))
			c.start(k.replacement)
		}
	}
	elapsed := time.Since(began)
	require.Equal(t, len(kills), next, "both kills happened")

	// Every task has a stored, succeeded result.
	stored := getAll(ctx, t, c.rt.Ports.Results, ids)
	require.Len(t, stored, tasks)
	for _, id := range ids {
		assert.Equal(t, ports.StateSucceeded, stored[id].State, "%s: %s", id, stored[id].Error)
	}

	// Executions: the duplicates are exactly the tasks a killed worker was
	// running (started there, result written elsewhere).
	starts := c.starts()
	killedBy := map[*e2eProc]*kill{}
	for _, k := range kills {
		killedBy[k.proc] = k
	}
	workers := c.byWorker()
	executions, duplicates := 0, 0
	attempts := map[int]int{}
	recovery := map[string]time.Duration{} // victim → last re-execution start after the kill
	lost := map[string]int{}               // victim → tasks it was running when killed
	for _, id := range ids {
		s := starts[id]
		executions += len(s)
		res := stored[id]
		attempts[res.Attempts]++
		require.NotEmpty(t, s, "task %s has a result but never started", id)
		last := s[len(s)-1]
		assert.Equal(t, last.proc, workers[res.Worker], "task %s: the result was written by the worker of its last execution", id)
		if len(s) == 1 {
			continue
		}
		duplicates++
		// Every run but the last was on a killed worker, before its kill.
		for _, e := range s[:len(s)-1] {
			k := killedBy[e.proc]
			if assert.NotNil(t, k, "task %s ran again although %s, which ran it, was not killed", id, e.proc.name) {
				assert.True(t, e.At.Before(k.at), "task %s", id)
				lost[k.victim]++
				recovery[k.victim] = max(recovery[k.victim], last.At.Sub(k.at))
			}
		}
		assert.Nil(t, killedBy[last.proc], "task %s: its result comes from a live worker", id)
		assert.Equal(t, len(s), res.Attempts, "task %s: attempts count the lost run", id)
	}
	assert.Positive(t, duplicates, "the killed workers were running tasks")
	assert.LessOrEqual(t, duplicates, len(kills)*concurrency, "at most the killed workers' slots ran again")
	// No time bound on the recovery here: a redelivered task queues behind
	// the backlog (hundreds of tasks); TestFault_LongTask measures it alone.

	// Write-once: results of redelivered tasks found stored are not
	// overwritten; a second Put of a stored result is refused and the
	// first stays.
	alreadyDone := countMsg("redelivered task already has a result; not running it again", c.procs...)
	keptFirst := countMsg("a result was stored before; keeping it", c.procs...)
	first := stored[ids[0]]
	again := first
	again.Worker, again.Output = "someone-else", []byte(`"overwritten"`)
	require.ErrorIs(t, c.rt.Ports.Results.Put(ctx, again), ports.ErrAlreadyExists)
	now, err := c.rt.Ports.Results.Get(ctx, ids[0])
	require.NoError(t, err)
	require.Equal(t, first.Worker, now.Worker)
	require.JSONEq(t, string(first.Output), string(now.Output))

	t.Logf("crash: %d tasks (sleep %s) submitted in %v, all %d results succeeded in %v (lease %v, %d slots per worker, "+
		"2 SIGKILLs, replaced)", tasks, sleep, submitted.Round(time.Millisecond), len(stored), elapsed.Round(time.Millisecond),
		lease, concurrency)
	t.Logf("crash: %d executions for %d tasks: %d duplicates (tasks running on a killed worker: %v); attempts per result: %v",
		executions, tasks, duplicates, lost, attempts)
	t.Logf("crash: kill → last re-execution start (lease, then the backlog): %v; redelivered tasks found already done: %d; "+
		"results found already stored (ErrAlreadyExists): %d; a second Put of a stored result: ErrAlreadyExists, first kept",
		roundMap(recovery), alreadyDone, keptFirst)
}

func roundMap(m map[string]time.Duration) map[string]time.Duration {
	out := map[string]time.Duration{}
	for k, v := range m {
		out[k] = v.Round(time.Millisecond)
	}
	return out
}

// Fault 2: a task that runs three times the lease (visibility timeout) runs
// exactly once while its worker lives: the heartbeat extends its lease. When
// the worker running such a task is killed, another worker process starts
// it again within about a lease.
func TestFault_LongTask(t *testing.T) {
	const (
		// A lease extended on time even when parallel test runs load the
		// machine (2s lapsed there).
		lease = 5 * time.Second
		task  = 3 * lease
	)
	cfg, flags := sqsEnv(t)
	c := newFaultCluster(t, cfg, flags, 1, faultEnv(lease, time.Second))
	for i := range 3 {
		c.start(fmt.Sprintf("worker%d", i+1))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A: on a worker that lives.
	idA, err := c.rt.Client.Submit(ctx, core.Request{Task: builtin.Sleep, Args: task.String()})
	require.NoError(t, err)
	pa := waitRunning(t, c.procs, 10*time.Second)
	require.NotNil(t, pa, "task A never ran")
	// B: on another worker (one slot each), killed in the middle of it.
	idB, err := c.rt.Client.Submit(ctx, core.Request{Task: builtin.Sleep, Args: task.String()})
	require.NoError(t, err)
	pb := waitRunning(t, c.procs, 10*time.Second, pa)
	require.NotNil(t, pb, "task B never ran on another worker")
	bAt := time.Now()                                // B runs since this at the latest
	time.Sleep(time.Until(bAt.Add(lease + lease/2))) // past the first lease: extended at least once
	require.Positive(t, sum(pb.metrics(t), "dagq_worker_lease_extensions_total"), "B's lease was extended")
	pb.kill9(t)
	killed := time.Now()

	resA, err := c.rt.Client.Wait(ctx, idA)
	require.NoError(t, err)
	assert.Equal(t, ports.StateSucceeded, resA.State, resA.Error)
	assert.Equal(t, 1, resA.Attempts, "executed exactly once")
	assert.Equal(t, pa.stepWorker, resA.Worker)
	ranA := resA.FinishedAt.Sub(resA.StartedAt)
	assert.GreaterOrEqual(t, ranA, task)

	resB, err := c.rt.Client.Wait(ctx, idB)
	require.NoError(t, err)
	assert.Equal(t, ports.StateSucceeded, resB.State, resB.Error)
	assert.Equal(t, 2, resB.Attempts, "run again once, after the kill")
	assert.NotEqual(t, pb.stepWorker, resB.Worker)
	recovery := resB.StartedAt.Sub(killed)
	assert.Less(t, recovery, 2*lease, "redelivered within about a lease of the kill")

	// The live workers ran A once and B once more, kept every lease, and
	// extended A's, which outlived three leases.
	live := c.live()
	metrics := c.settled(live, 30*time.Second, 2, "dagq_worker_task_duration_seconds_count")
	var executions, succeeded float64
	rerun := "?"
	for _, p := range live {
		m := metrics[p]
		executions += sum(m, "dagq_worker_task_duration_seconds_count")
		succeeded += sum(m, "dagq_worker_tasks_finished_total", "outcome", "succeeded")
		assert.Zero(t, sum(m, "dagq_worker_tasks_finished_total", "outcome", "lease_lost"), "%s lost no lease", p.name)
		assert.Zero(t, sum(m, "dagq_worker_lease_extension_failures_total"), "%s: every extension worked", p.name)
		if p.stepWorker == resB.Worker {
			rerun = p.name
		}
	}
	assert.Equal(t, 2.0, executions, "A ran once, B once more after the kill")
	assert.Equal(t, 2.0, succeeded)
	extA := sum(metrics[pa], "dagq_worker_lease_extensions_total")
	assert.GreaterOrEqual(t, extA, 2.0, "the heartbeat extended A's lease past its first two")
	t.Logf("long task: lease %v (heartbeat every %v), task %v: ran once on %s for %v, attempts %d, %v lease extensions there, no lease lost",
		lease, lease/3, task, pa.name, ranA.Round(time.Millisecond), resA.Attempts, extA)
	t.Logf("long task: %s killed %v into its run of task B; %s started it again %v after the kill; "+
		"result succeeded, attempts %d, %v after the kill",
		pb.name, killed.Sub(bAt).Round(time.Millisecond), rerun, recovery.Round(time.Millisecond),
		resB.Attempts, resB.FinishedAt.Sub(killed).Round(time.Millisecond))
}

// Fault 3: SIGTERM to a busy worker process: it stops receiving, lets the
// tasks that can finish within worker.shutdown_timeout finish, releases the
// others (another worker starts them at once, long before their lease would
// end) and exits 0. Every task has a result.
func TestFault_GracefulShutdown(t *testing.T) {
	const (
		lease    = 30 * time.Second
		shutdown = 4 * time.Second
		short    = 2 * time.Second // finishes within the shutdown timeout
		long     = 5 * time.Second // does not: released
	)
	cfg, flags := sqsEnv(t)
	c := newFaultCluster(t, cfg, flags, 4, faultEnv(lease, shutdown))
	pa := c.start("workerA")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var ids, shorts, longs []string
	for i := range 4 {
		d := short
		if i%2 == 1 {
			d = long
		}
		id, err := c.rt.Client.Submit(ctx, core.Request{Task: builtin.Sleep, Args: d.String()})
		require.NoError(t, err)
		ids = append(ids, id)
		if d == short {
			shorts = append(shorts, id)
		} else {
			longs = append(longs, id)
		}
	}
	waitAllRunning(t, []*e2eProc{pa}, len(ids), 10*time.Second)
	// B starts now; A's four slots are full, and A stops before B is ready.
	pb := startE2EWorker(t, "workerB", c.args, c.env)
	c.procs = append(c.procs, pb)
	require.NoError(t, pa.cmd.Process.Signal(syscall.SIGTERM))
	termed := time.Now()
	// Submitted after the SIGTERM: A no longer receives.
	var after []string
	for range 3 {
		id, err := c.rt.Client.Submit(ctx, core.Request{Task: builtin.Echo, Args: "after SIGTERM"})
		require.NoError(t, err)
		after = append(after, id)
	}
	pb.waitReady(t)
	select {
	case <-pa.done:
	case <-time.After(shutdown + 10*time.Second):
		t.Fatalf("workerA still running %v after SIGTERM", time.Since(termed))
	}
	exited := time.Since(termed)
	require.NoError(t, pa.waitErr, "workerA exits 0")

	all := append(append([]string{}, ids...), after...)
	res, err := c.rt.Client.WaitAll(ctx, all...)
	require.NoError(t, err)
	byID := map[string]ports.Result{}
	for _, r := range res {
		byID[r.TaskID] = r
		assert.Equal(t, ports.StateSucceeded, r.State, "%s: %s", r.TaskID, r.Error)
	}
	for _, id := range shorts {
		assert.Equal(t, pa.stepWorker, byID[id].Worker, "short task %s finished on A during the drain", id)
		assert.True(t, byID[id].FinishedAt.After(termed), "short task %s was still running at SIGTERM", id)
		assert.Equal(t, 1, byID[id].Attempts)
	}
	// The long tasks: held by A until the shutdown timeout, then released
	// and started again on B at once (their result's start is B's).
	var pickups []time.Duration
	for _, id := range longs {
		assert.Equal(t, pb.stepWorker, byID[id].Worker, "long task %s finished on B", id)
		assert.Equal(t, 2, byID[id].Attempts, "long task %s: run on A, interrupted, run again on B", id)
		pickup := byID[id].StartedAt.Sub(termed.Add(shutdown))
		pickups = append(pickups, pickup)
		assert.GreaterOrEqual(t, pickup, -500*time.Millisecond, "long task %s: released after the shutdown timeout", id)
		assert.Less(t, pickup, 3*time.Second, "long task %s was taken at once after the shutdown timeout, not after its %v lease", id, lease)
	}
	for _, id := range after {
		assert.Equal(t, pb.stepWorker, byID[id].Worker, "task %s submitted after SIGTERM ran on B", id)
	}
	assert.GreaterOrEqual(t, exited, shutdown-500*time.Millisecond)
	assert.Less(t, exited, shutdown+3*time.Second, "A exits soon after the shutdown timeout")
	t.Logf("graceful: SIGTERM to A with 4 running tasks (2 × %v, 2 × %v), shutdown_timeout %v, lease %v: "+
		"A exited 0 after %v; the %v tasks finished on A during the drain; the %v tasks were released and B started "+
		"them %v after the shutdown timeout (attempts 2); 3 tasks submitted after SIGTERM ran on B; %d/%d results",
		short, long, shutdown, lease, exited.Round(time.Millisecond), short, long, roundAll(pickups), len(res), len(all))
}

// privateFauxqs is a fauxqs (SQS emulator) process of one test, on a port
// of its own, persisting its state (queues and messages) in dir, so that
// it can be stopped and started again without disturbing the shared
// emulators other tests use.
type privateFauxqs struct {
	t          *testing.T
	node, main string
	port       int
	dir, log   string
	cmd        *exec.Cmd
	done       chan struct{}
}

// startPrivateFauxqs starts fauxqs on a free port with SQLite persistence
// (FAUXQS_DATA_DIR, FAUXQS_PERSISTENCE: its dist/server.js entry point). The
// command comes from scripts/emulators.sh env; without it the test fails.
func startPrivateFauxqs(t *testing.T) *privateFauxqs {
	t.Helper()
	f := &privateFauxqs{t: t, node: os.Getenv("DAGQ_TEST_FAUXQS_NODE"), main: os.Getenv("DAGQ_TEST_FAUXQS_SERVER"),
		dir: t.TempDir()}
	f.log = f.dir + "/fauxqs.log"
	for _, p := range []string{f.node, f.main} {
		if _, err := os.Stat(p); p == "" || err != nil {
			t.Fatalf("DAGQ_TEST_FAUXQS_NODE=%q DAGQ_TEST_FAUXQS_SERVER=%q: this test starts a fauxqs of its own; "+
				`run "make emulators-up" and eval "$(scripts/emulators.sh env)" (%v)`, f.node, f.main, err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f.port = l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	f.start()
	t.Cleanup(func() {
		f.stop()
		if t.Failed() {
			b, _ := os.ReadFile(f.log)
			t.Logf("=== private fauxqs log (last 4 KiB):\n%s", b[max(0, len(b)-4096):])
		}
	})
	return f
}

func (f *privateFauxqs) endpoint() string { return fmt.Sprintf("http://127.0.0.1:%d", f.port) }

// start starts the process and waits for its /health.
func (f *privateFauxqs) start() {
	f.t.Helper()
	logFile, err := os.OpenFile(f.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(f.t, err)
	defer logFile.Close()
	f.cmd = exec.Command(f.node, f.main)
	f.cmd.Env = append(os.Environ(), fmt.Sprintf("FAUXQS_PORT=%d", f.port), "FAUXQS_HOST=127.0.0.1",
		"FAUXQS_DEFAULT_REGION=us-east-1", "FAUXQS_DATA_DIR="+f.dir, "FAUXQS_PERSISTENCE=true")
	f.cmd.Stdout, f.cmd.Stderr = logFile, logFile
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives the test process
	require.NoError(f.t, f.cmd.Start())
	done := make(chan struct{})
	f.done = done
	go func() {
		_ = f.cmd.Wait()
		close(done)
	}()
	hc := &http.Client{Timeout: time.Second}
	require.Eventually(f.t, func() bool {
		resp, err := hc.Get(f.endpoint() + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "private fauxqs did not start on port %d", f.port)
}

// stop stops the process (SIGTERM, SIGKILL after 5s) and waits for it.
func (f *privateFauxqs) stop() {
	if f.cmd == nil || f.cmd.Process == nil {
		return
	}
	select {
	case <-f.done:
		return
	default:
	}
	_ = f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.done
	}
}

// onSQSEndpoint moves cfg and flags from the shared SQS emulator to ep.
func onSQSEndpoint(t *testing.T, cfg config.Config, flags []string, ep string) (config.Config, []string) {
	t.Helper()
	old := cfg.SQS.Endpoint
	cfg.SQS.Endpoint = ep
	cfg.SQS.QueueURL = strings.Replace(cfg.SQS.QueueURL, old, ep, 1)
	cfg.SQS.RunQueueURL = strings.Replace(cfg.SQS.RunQueueURL, old, ep, 1)
	require.NoError(t, cfg.Validate())
	out := make([]string, len(flags))
	for i, f := range flags {
		out[i] = f
		if strings.HasPrefix(f, old) {
			out[i] = ep + strings.TrimPrefix(f, old)
		}
	}
	return cfg, out
}

// problems returns the WARN and ERROR lines of p logged between from and to.
func problems(p *e2eProc, from, to time.Time) []e2eLogLine {
	var out []e2eLogLine
	for _, l := range p.logLines() {
		if (l.Level == "WARN" || l.Level == "ERROR") && !l.Time.Before(from) && !l.Time.After(to) {
			out = append(out, l)
		}
	}
	return out
}

// Fault 4: the SQS emulator (a private one, with persistence) is stopped for
// 10 s mid-run and started again. Workers log errors with backoff (a bounded
// number of lines, no spin) and stay up; submits during the outage fail at
// once with an error matching ports.ErrUnavailable that names the endpoint;
// after the restart the workers resume, and tasks submitted then, tasks
// that were running at the stop and the failed submits sent again (same
// IDs) all complete.
func TestFault_BrokerOutage(t *testing.T) {
	const (
		lease   = 5 * time.Second
		outage  = 10 * time.Second
		maxRate = 3.0 // WARN+ERROR lines per second per process during the outage
	)
	cfg, flags := sqsEnv(t)
	fq := startPrivateFauxqs(t)
	cfg, flags = onSQSEndpoint(t, cfg, flags, fq.endpoint())
	c := newFaultCluster(t, cfg, flags, 4, faultEnv(lease, time.Second))
	c.start("worker1")
	c.start("worker2")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	echo := func(n int, tag string) []core.Request {
		reqs := make([]core.Request, n)
		for i := range reqs {
			reqs[i] = core.Request{Task: builtin.Echo, Args: fmt.Sprintf("%s %d", tag, i)}
		}
		return reqs
	}
	waitOK := func(ids []string, within time.Duration) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, within)
		defer wcancel()
		res, err := c.rt.Client.WaitAll(wctx, ids...)
		require.NoError(t, err)
		for _, r := range res {
			require.Equal(t, ports.StateSucceeded, r.State, "%s: %s", r.TaskID, r.Error)
		}
	}

	before, err := c.rt.Client.SubmitBatch(ctx, echo(20, "before")...)
	require.NoError(t, err)
	waitOK(before, 30*time.Second)
	// Running when the broker goes away: they finish during the outage.
	running, err := c.rt.Client.SubmitBatch(ctx, core.Request{Task: builtin.Sleep, Args: "2s"},
		core.Request{Task: builtin.Sleep, Args: "2s"}, core.Request{Task: builtin.Sleep, Args: "2s"})
	require.NoError(t, err)
	waitAllRunning(t, c.procs, len(running), 10*time.Second)

	fq.stop()
	stopped := time.Now()
	clientMark := len(c.clientLogs.String())
	type attempt struct {
		id   string
		err  error
		took time.Duration
	}
	var submits []attempt
	for time.Since(stopped) < outage-time.Second {
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		t0 := time.Now()
		id, err := c.rt.Client.Submit(sctx, core.Request{Task: builtin.Echo, Args: "during the outage"})
		scancel()
		submits = append(submits, attempt{id, err, time.Since(t0)})
		time.Sleep(time.Second)
	}
	time.Sleep(time.Until(stopped.Add(outage)))
	for _, p := range c.procs {
		require.False(t, p.exited(), "%s is still running after %v without its broker", p.name, outage)
	}
	clientOutage := c.clientLogs.String()[clientMark:]
	fq.start()
	restarted := time.Now()
	t.Logf("outage: private fauxqs on port %d stopped (SIGTERM) for %v and started again on its data dir",
		fq.port, restarted.Sub(stopped).Round(time.Millisecond))

	// Submits failed at once, clearly, matching ErrUnavailable.
	var tookMax time.Duration
	host := strings.TrimPrefix(fq.endpoint(), "http://")
	for _, s := range submits {
		require.Error(t, s.err, "a submit during the outage must not claim success")
		assert.ErrorIs(t, s.err, ports.ErrUnavailable)
		assert.Contains(t, s.err.Error(), host, "the error names the endpoint")
		assert.NotEmpty(t, s.id, "the ID comes back with the error, for a resubmit")
		tookMax = max(tookMax, s.took)
	}
	assert.Less(t, tookMax, 5*time.Second, "a submit fails within the SDK's retries, not after the caller's deadline")

	// Bounded logging during the outage: backoff, no spin.
	secs := restarted.Sub(stopped).Seconds()
	perProc := map[string]int{}
	perMsg := map[string]int{}
	for _, p := range c.procs {
		ls := problems(p, stopped, restarted)
		perProc[p.name] = len(ls)
		for _, l := range ls {
			perMsg[l.Msg]++
		}
		assert.Less(t, float64(len(ls))/secs, maxRate, "%s logged %d WARN/ERROR lines in %.1fs", p.name, len(ls), secs)
		assert.Positive(t, len(ls), "%s says that it cannot reach the broker", p.name)
	}
	clientLines := 0
	for line := range strings.Lines(clientOutage) {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			clientLines++
		}
	}
	assert.Less(t, float64(clientLines)/secs, maxRate, "client logged %d WARN/ERROR lines in %.1fs", clientLines, secs)

	// Resume: new tasks, the failed submits sent again under their IDs, and
	// the tasks that were running.
	after, err := c.rt.Client.SubmitBatch(ctx, echo(20, "after")...)
	require.NoError(t, err, "submit right after the restart")
	waitOK(after, 60*time.Second)
	resumed := time.Since(restarted)
	var again []string
	for _, s := range submits {
		id, err := c.rt.Client.Submit(ctx, core.Request{ID: s.id, Task: builtin.Echo, Args: "sent again"})
		require.NoError(t, err)
		again = append(again, id)
	}
	waitOK(again, 30*time.Second)
	stored := getAll(ctx, t, c.rt.Ports.Results, running)
	for _, id := range running {
		assert.Equal(t, ports.StateSucceeded, stored[id].State, id)
	}
	for _, p := range c.procs {
		require.False(t, p.exited(), p.name)
	}
	redelivered := 0.0
	for _, p := range c.procs {
		redelivered += sum(p.metrics(t), "dagq_worker_tasks_finished_total", "outcome", "duplicate")
	}
	t.Logf("outage: %d submits during it all failed with ErrUnavailable naming %s, each within %v; e.g. %q",
		len(submits), host, tookMax.Round(time.Millisecond), submits[0].err)
	t.Logf("outage: WARN/ERROR lines while the broker was down (%.1fs): per worker process %v (limit %.0f/s), client %d; by message %v",
		secs, perProc, maxRate, clientLines, perMsg)
	t.Logf("outage: 20 tasks submitted after the restart done %v after it; %d failed submits sent again, done; "+
		"%d tasks running at the stop have their results (redeliveries found already done: %v)",
		resumed.Round(time.Millisecond), len(again), len(running), redelivered)
}

// Fault 5: poison messages sent straight to the task queue with the SDK,
// interleaved with good tasks. None crashes a worker, none is executed,
// each ends as a failed result with the reason under its message ID — or,
// when not even a result can be written, in the dead-letter queue after
// maxReceiveCount receives — and every good task succeeds meanwhile.
func TestFault_PoisonMessages(t *testing.T) {
	const maxReceives = 3 // above retry.max_attempts (2), as the docs require
	cfg, flags := sqsEnv(t)
	c := newFaultCluster(t, cfg, flags, 4, faultEnv(5*time.Second, time.Second,
		"DAGQ_RETRY_MAX_ATTEMPTS=2", "DAGQ_RETRY_INITIAL_BACKOFF=200ms"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// dagq queue init made the DLQ and a redrive policy; make it stricter.
	sq, _ := awsClients(t, cfg)
	qURL := cfg.SQS.QueueURL
	dlq, err := sq.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(app.DLQName(config.QueueName(qURL)))})
	require.NoError(t, err)
	arn, err := sq.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	require.NoError(t, err)
	redrive := fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"%d"}`,
		arn.Attributes[string(sqstypes.QueueAttributeNameQueueArn)], maxReceives)
	_, err = sq.SetQueueAttributes(ctx, &awssqs.SetQueueAttributesInput{QueueUrl: aws.String(qURL),
		Attributes: map[string]string{string(sqstypes.QueueAttributeNameRedrivePolicy): redrive}})
	require.NoError(t, err)
	c.start("worker1")
	c.start("worker2")

	str := func(v string) sqstypes.MessageAttributeValue {
		return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	// send sends body raw; with id, it carries the adapter's attributes
	// (dagq-id, dagq-enc) plus extra. It returns the message's dagq ID: id,
	// or the SQS MessageId for a message without one.
	send := func(body, id, enc string, extra map[string]string) string {
		in := &awssqs.SendMessageInput{QueueUrl: aws.String(qURL), MessageBody: aws.String(body)}
		if id != "" {
			in.MessageAttributes = map[string]sqstypes.MessageAttributeValue{"dagq-id": str(id), "dagq-enc": str(enc)}
			for k, v := range extra {
				in.MessageAttributes[k] = str(v)
			}
		}
		out, err := sq.SendMessage(ctx, in)
		require.NoError(t, err)
		if id == "" {
			return aws.ToString(out.MessageId)
		}
		return id
	}
	sfx := fmt.Sprintf("%x", time.Now().UnixNano())
	type poison struct {
		kind, id, want string // want: in the failed result's error
	}
	var poisons []poison
	var good []string
	sendGood := func() {
		ids, err := c.rt.Client.SubmitBatch(ctx, echo5()...)
		require.NoError(t, err)
		good = append(good, ids...)
	}
	began := time.Now()
	sendGood()
	poisons = append(poisons, poison{"garbage text, no attributes (a foreign producer)",
		send("this is not JSON {{{ \u00e9", "", "", nil), "undecodable message: malformed envelope"})
	sendGood()
	bin := make([]byte, 64)
	for i := range bin {
		bin[i] = byte(i * 37)
	}
	poisons = append(poisons, poison{"binary garbage (dagq-enc base64)",
		send(base64.StdEncoding.EncodeToString(bin), "poison-binary-"+sfx, "base64", nil), "undecodable message"})
	sendGood()
	id := "poison-shape-" + sfx
	poisons = append(poisons, poison{"JSON of the wrong shape",
		send(fmt.Sprintf(`{"v":1,"id":%q,"task":{"name":"echo"},"args":[1,2]}`, id), id, "text", nil), "undecodable message"})
	sendGood()
	id = "poison-unknown-" + sfx
	poisons = append(poisons, poison{"unknown task name",
		send(fmt.Sprintf(`{"v":1,"id":%q,"task":"no-such-task","attempt":1,"args":{}}`, id), id, "text", nil),
		`unknown task "no-such-task"`})
	sendGood()
	id = "poison-future-" + sfx
	poisons = append(poisons, poison{"envelope version from the future",
		send(fmt.Sprintf(`{"v":99,"id":%q,"task":"echo","args":"from the future","shiny":true}`, id), id, "text", nil),
		"version 99 is newer than the 2 this worker understands"})
	sendGood()
	id = "poison-claim-" + sfx
	key := id + "/no-such-object"
	poisons = append(poisons, poison{"claim check of a missing object",
		send(fmt.Sprintf(`{"id":%q,"task":"echo","payload":%q}`, id, key), id, "text", map[string]string{wire.PayloadAttribute: key}),
		"claim-check object " + key + " is missing"})
	sendGood()
	id = "poison-label-" + sfx
	poisons = append(poisons, poison{"valid envelope with a label over its limit",
		send(fmt.Sprintf(`{"v":1,"id":%q,"task":"echo","attempt":1,"args":"x","labels":{"k":%q}}`, id, strings.Repeat("v", 1025)), id, "text", nil),
		`message refused, not run: malformed envelope: task "` + id + `": envelope field over its limit: label "k" (field "labels") is 1025 bytes; the limit is 1024`})
	sendGood()
	id = "poison-name-" + sfx
	poisons = append(poisons, poison{"valid envelope with a task name over its limit",
		send(fmt.Sprintf(`{"v":1,"id":%q,"task":%q,"attempt":1,"args":"x"}`, id, strings.Repeat("e", 129)), id, "text", nil),
		`task name (field "task") is 129 bytes; the limit is 128`})
	sendGood()
	// Not even a result can be written for these (no task ID over 128
	// bytes, no object key over 1,024): the worker hands them back, never
	// running them, and the redrive policy moves them to the DLQ. The
	// second is issue 13's report: a valid envelope with a 1,509-byte ID,
	// which used to run on every delivery.
	unstorable := strings.Repeat("u", 1100)
	send("garbage with an ID no result can be stored under", unstorable, "text", nil)
	sendGood()
	longID := strings.Repeat("i", 1509)
	send(fmt.Sprintf(`{"v":1,"id":%q,"task":"echo","attempt":1,"args":"must never run"}`, longID), longID, "text", nil)
	sendGood()

	// Good tasks all succeed.
	res, err := c.rt.Client.WaitAll(ctx, good...)
	require.NoError(t, err)
	for _, r := range res {
		require.Equal(t, ports.StateSucceeded, r.State, "%s: %s", r.TaskID, r.Error)
	}
	goodDone := time.Since(began)

	// Each poison message: a failed result with its reason, never executed.
	outcome := map[string]string{}
	for _, p := range poisons {
		var r ports.Result
		require.Eventually(t, func() bool {
			r, err = c.rt.Ports.Results.Get(ctx, p.id)
			return err == nil
		}, 30*time.Second, 100*time.Millisecond, "%s (%s): no result", p.kind, p.id)
		assert.Equal(t, ports.StateFailed, r.State, p.kind)
		assert.Contains(t, r.Error, p.want, p.kind)
		assert.True(t, r.StartedAt.IsZero(), "%s: never executed", p.kind)
		outcome[p.kind] = fmt.Sprintf("failed result after %v: %q", r.FinishedAt.Sub(began).Round(time.Millisecond), r.Error)
	}
	assert.Contains(t, outcome["envelope version from the future"], "gave up after 2 deliveries")

	// The unstorable ones end in the DLQ; nothing else does.
	var inDLQ []string
	var dlqAt time.Duration
	require.Eventually(t, func() bool {
		out, err := sq.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: dlq.QueueUrl, MaxNumberOfMessages: 10,
			WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
		if err != nil {
			return false
		}
		for _, m := range out.Messages {
			inDLQ = append(inDLQ, aws.ToString(m.MessageAttributes["dagq-id"].StringValue))
		}
		dlqAt = time.Since(began)
		return slices.Contains(inDLQ, unstorable) && slices.Contains(inDLQ, longID)
	}, 60*time.Second, 10*time.Millisecond, "the messages no result can be stored for reach the DLQ")
	assert.ElementsMatch(t, []string{unstorable, longID}, inDLQ, "only the unstorable messages are in the DLQ")
	// Only the worker's log and metrics tell that it handed them back (no
	// result could be stored, so no result or outcome records them).
	handedBack := countMsg("no result can be stored under the message ID; handing the message back, never run, "+
		"until the queue's redrive policy moves it to the dead-letter queue", c.procs...)
	assert.Equal(t, 2*maxReceives, handedBack, "each received maxReceiveCount times, then moved by the redrive policy")
	assert.Zero(t, countMsg("result could not be stored; releasing the task for a later redelivery", c.procs...),
		"no handler ran for a task whose result cannot be stored")

	// The queue is empty and the workers are up.
	require.Eventually(t, func() bool {
		a, err := sq.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: aws.String(qURL),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		return err == nil && a.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)] == "0" &&
			a.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)] == "0"
	}, 10*time.Second, 100*time.Millisecond, "the task queue is empty")
	for _, p := range c.procs {
		require.False(t, p.exited(), p.name)
	}
	// Every execution on the workers was a good task's: no poison ran.
	metrics := c.settled(c.procs, 10*time.Second, len(good), "dagq_worker_task_duration_seconds_count")
	executions := 0.0
	for _, m := range metrics {
		executions += sum(m, "dagq_worker_task_duration_seconds_count")
		assert.Equal(t, sum(m, "dagq_worker_task_duration_seconds_count"), sum(m, "dagq_worker_task_duration_seconds_count", "task", builtin.Echo))
	}
	assert.Equal(t, float64(len(good)), executions, "the good tasks ran once each, and nothing else ran")
	rejected := 0.0
	for _, m := range metrics {
		rejected += sum(m, "dagq_worker_messages_rejected_total")
	}
	// Every poison but the unknown task (a task, failed) once, and each
	// delivery of the two unstorable ones.
	assert.GreaterOrEqual(t, rejected, float64(len(poisons)-1+2*maxReceives), "dagq_worker_messages_rejected_total")
	t.Logf("poison: %d good tasks interleaved with %d poison messages all succeeded in %v", len(good), len(poisons)+2,
		goodDone.Round(time.Millisecond))
	for _, p := range poisons {
		t.Logf("poison: %s → %s", p.kind, outcome[p.kind])
	}
	t.Logf("poison: garbage under a 1,100-byte dagq-id and a valid envelope with a 1,509-byte ID (no result can be stored) → "+
		"handed back %d times in all with the retry backoff, never run, both in the DLQ %v after the start (maxReceiveCount %d); "+
		"%.0f rejected deliveries", handedBack, dlqAt.Round(time.Millisecond), maxReceives, rejected)
}

func echo5() []core.Request {
	reqs := make([]core.Request, 5)
	for i := range reqs {
		reqs[i] = core.Request{Task: builtin.Echo, Args: fmt.Sprintf("good %d", i)}
	}
	return reqs
}
