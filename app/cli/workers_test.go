package cli_test

import (
	"context"
	"encoding/json"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/core"
)

// workersJSON runs dagq workers -o json.
func workersJSON(t *testing.T, flags []string) []app.WorkerInfo {
	t.Helper()
	r := dagq(t, append([]string{"workers", "-o", "json"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	var list []app.WorkerInfo
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list), r.stdout)
	return list
}

// byID indexes a dagq workers list.
func byID(list []app.WorkerInfo) map[string]app.WorkerInfo {
	m := map[string]app.WorkerInfo{}
	for _, w := range list {
		m[w.ID] = w
	}
	return m
}

// The worker registry across processes on the emulators: two "dagq worker"
// processes appear in "dagq workers" with their queues, slots and running
// tasks; one killed with SIGKILL turns stale after 3 registry intervals and
// is listed last; one stopped with SIGTERM deletes its record.
func TestWorkers_TwoProcessesOneKilled(t *testing.T) {
	cfg, flags := sqsEnv(t)
	r := dagq(t, append([]string{"queue", "init"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)

	const interval = time.Second // stale after 3s
	env := []string{
		"DAGQ_S3_PATH_STYLE=true",
		"DAGQ_SQS_WAIT_TIME=1s",
		"DAGQ_WORKER_SHUTDOWN_TIMEOUT=1s",
		"DAGQ_WORKER_REGISTRY_INTERVAL=" + interval.String(),
		"DAGQ_LOG_LEVEL=info",
		"DAGQ_LOG_FORMAT=json",
	}
	args := append([]string{"worker", "--concurrency", "3", "--launcher-concurrency", "2"}, flags...)
	a := startReadyWorker(t, "worker-a", args, env)
	b := startReadyWorker(t, "worker-b", args, env)

	list := workersJSON(t, flags)
	require.Len(t, list, 2, "one record per process")
	got := byID(list)
	for _, p := range []*e2eProc{a, b} {
		w, ok := got[p.stepWorker]
		require.True(t, ok, "%s (step worker %s) is listed: %+v", p.name, p.stepWorker, list)
		require.Equal(t, p.cmd.Process.Pid, w.PID)
		require.NotEmpty(t, w.Host)
		require.Equal(t, "dev", w.Version)
		require.Equal(t, []string{cfg.SQS.QueueURL, cfg.SQS.RunQueueURL}, w.Queues)
		require.Equal(t, 5, w.Concurrency, "3 step slots + 2 run slots")
		require.False(t, w.Stale)
		require.WithinDuration(t, time.Now(), w.SeenAt, 10*interval)
	}

	// A running task shows in its worker's next heartbeat.
	client, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := client.Client.Submit(ctx, cfgSleep("30s"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		n := 0
		for _, w := range workersJSON(t, flags) {
			n += w.InFlight
		}
		return n == 1
	}, 20*time.Second, interval/2, "the sleeping task is in flight on one worker")
	require.NoError(t, client.Client.Cancel(ctx, id))

	// kill -9: no graceful stop, the record stays and goes stale.
	b.kill9(t)
	killed := time.Now()
	require.Eventually(t, func() bool {
		list = workersJSON(t, flags)
		return len(list) == 2 && byID(list)[b.stepWorker].Stale
	}, 30*time.Second, interval/2, "the killed worker turns stale")
	require.GreaterOrEqual(t, time.Since(killed), 2*interval, "not before its record is about 3 intervals old")
	require.Equal(t, []string{a.stepWorker, b.stepWorker}, []string{list[0].ID, list[1].ID}, "live first, then stale")
	require.False(t, list[0].Stale)

	r = dagq(t, append([]string{"workers"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Regexp(t, `(?m)^ID\s+HOST\s+PID\s+VERSION\s+QUEUES\s+CONCURRENCY\s+IN FLIGHT\s+STARTED\s+LAST SEEN\s+STATE$`, r.stdout)
	require.Regexp(t, `(?m)^`+a.stepWorker+`\s.*\s5\s+\d+\s+\S+\s+\d+s ago\s+live$`, r.stdout)
	require.Regexp(t, `(?m)^`+b.stepWorker+`\s.*\s5\s+\d+\s+\S+\s+\d+s ago\s+stale$`, r.stdout)
	require.Contains(t, r.stdout, "2 worker process(es): 1 live, 1 stale\n")

	// SIGTERM: the graceful stop deletes the record.
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop within 30s of SIGTERM", a.name)
	}
	require.NoError(t, a.waitErr)
	list = workersJSON(t, flags)
	require.Len(t, list, 1, "only the killed worker's record is left: %+v", list)
	require.Equal(t, b.stepWorker, list[0].ID)
	require.True(t, list[0].Stale)
	require.False(t, slices.ContainsFunc(list, func(w app.WorkerInfo) bool { return w.ID == a.stepWorker }))
}

// cfgSleep is a request for the built-in sleep.
func cfgSleep(d string) core.Request { return core.Request{Task: builtin.Sleep, Args: d} }

// dagq workers needs a shared transport.
func TestWorkers_NeedsSharedTransport(t *testing.T) {
	r := dagq(t, "workers")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, `dagq: workers needs a shared transport: transport "memory" keeps the worker registry inside one dagq process`)
}
