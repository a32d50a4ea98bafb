package cli_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// e2eCluster is the client side of TestE2E and its three worker processes.
type e2eCluster struct {
	cfg   config.Config
	rt    *app.Runtime
	procs []*e2eProc
	s3    *awss3.Client
}

// stepWorkers maps the step workers' IDs to their process names.
func (c *e2eCluster) stepWorkers() map[string]string {
	m := map[string]string{}
	for _, p := range c.procs {
		m[p.stepWorker] = p.name
	}
	return m
}

// started returns, per task ID, the workers whose handler journal has a
// start of it, from every process's journal.
func (c *e2eCluster) started(t *testing.T) map[string][]string { return started(t, c.procs...) }

// payloadKeys lists the claim-check objects in the bucket.
func (c *e2eCluster) payloadKeys(ctx context.Context) ([]string, error) {
	out, err := c.s3.ListObjectsV2(ctx, &awss3.ListObjectsV2Input{
		Bucket: aws.String(c.cfg.S3.Bucket),
		Prefix: aws.String(c.cfg.S3.Prefix + "payloads/"),
	})
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(out.Contents))
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys, nil
}

// The end-to-end test: three "dagq worker" processes on the
// emulators serve one task queue and one run queue; this process only
// submits, launches, cancels and checks.
func TestE2E_ThreeWorkerProcesses(t *testing.T) {
	began := time.Now()
	cfg, flags := sqsEnv(t)
	r := dagq(t, append([]string{"queue", "init"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The client side: no workers of its own.
	var clientLogs syncBuffer
	rt, err := app.New(cfg, builtins(t), app.WithLogger(slog.New(slog.NewTextHandler(&clientLogs, nil))))
	require.NoError(t, err)
	t.Cleanup(func() {
		rt.Close()
		if t.Failed() {
			t.Logf("=== client (this process) log:\n%s", clientLogs.String())
		}
	})

	// An S3 client of its own to look into the bucket.
	_, s3c := awsClients(t, cfg)

	// Three worker processes. Four step slots each: a worker holds at most
	// four steps, so twelve running steps span all three.
	const concurrency = 4
	args := append([]string{"worker", "--concurrency", fmt.Sprint(concurrency),
		"--launcher-heartbeat-interval", cfg.Launcher.HeartbeatInterval.String(),
		"--launcher-stale-after", cfg.Launcher.StaleAfter.String()}, flags...)
	env := []string{
		"DAGQ_S3_PATH_STYLE=true",
		"DAGQ_SQS_WAIT_TIME=1s",
		"DAGQ_WORKER_LEASE=10s",
		"DAGQ_WORKER_SHUTDOWN_TIMEOUT=1s",
		// No prefetch: a worker holds at most its four slots' steps, so
		// that the slot counts of the scenarios hold.
		"DAGQ_WORKER_PREFETCH=0",
		// The handler journals tell which worker ran what; the logs (JSON:
		// waitReady reads "worker started") are for the readiness and for
		// reading when a test fails.
		"DAGQ_LOG_LEVEL=info",
		"DAGQ_LOG_FORMAT=json",
	}
	c := &e2eCluster{cfg: cfg, rt: rt, s3: s3c}
	for i := range 3 {
		c.procs = append(c.procs, startE2EWorker(t, fmt.Sprintf("worker%d", i+1), args, env))
	}
	// Ready: both workers of every process logged "worker started", which
	// comes after their cancel subscription.
	for _, p := range c.procs {
		p.waitReady(t)
	}
	t.Logf("queues, bucket and 3 worker processes ready in %v", time.Since(began).Round(time.Millisecond))

	// Steps do not depend on one another's scenario; they run one after the
	// other so that the slot counts above hold. The long run goes last: it
	// fills every slot.
	t.Run("4_payload_claim_check", func(t *testing.T) { e2ePayload(ctx, t, c) })
	t.Run("3_cancel_queued", func(t *testing.T) { e2eCancelQueued(ctx, t, c) })
	t.Run("1_fifty_steps", func(t *testing.T) { e2eFiftySteps(ctx, t, c) })
	t.Run("2_terminate", func(t *testing.T) { e2eTerminate(ctx, t, c) })
	t.Logf("wall time before stopping the workers: %v", time.Since(began).Round(time.Millisecond))
}

// fiftyStepJob is a 50-step DAG of built-in tasks, seven layers deep, and
// the output every step must have.
func fiftyStepJob() (dag.Job, map[string]string) {
	job := dag.Job{Name: "e2e-fifty"}
	want := map[string]string{} // step → output, as text (builtin.Text)
	add := func(name, task string, args any, upstream ...string) {
		raw, err := json.Marshal(args)
		if err != nil {
			panic(err)
		}
		job.Steps = append(job.Steps, dag.Step{Name: name, Task: task, Args: raw, Upstream: upstream})
	}
	sha := func(parts ...string) string {
		h := sha256.Sum256([]byte(strings.Join(parts, "")))
		return hex.EncodeToString(h[:])
	}
	reverse := func(s string) string {
		r := []rune(s)
		slices.Reverse(r)
		return string(r)
	}
	n := func(prefix string, i int) string { return fmt.Sprintf("%s%d", prefix, i) }
	for i := range 10 {
		add(n("r", i), builtin.Echo, fmt.Sprintf("root-%d", i))
		want[n("r", i)] = fmt.Sprintf("root-%d", i)
	}
	for i := range 10 {
		add(n("t", i), builtin.Transform, map[string]string{"op": "upper"}, n("r", i))
		want[n("t", i)] = fmt.Sprintf("ROOT-%d", i)
	}
	for i := range 10 {
		// Long enough that one worker's four slots cannot take them all.
		add(n("s", i), builtin.Sleep, "300ms", n("t", i))
		want[n("s", i)] = `{"slept":"300ms"}`
	}
	for i := range 10 {
		j := (i + 1) % 10
		add(n("h", i), builtin.Hash, map[string][]string{"inputs": {n("t", i), n("t", j)}}, n("t", i), n("t", j), n("s", i))
		want[n("h", i)] = sha(want[n("t", i)], want[n("t", j)])
	}
	for i := range 5 {
		add(n("c", i), builtin.Concat, map[string]string{"sep": "+"}, n("h", 2*i), n("h", 2*i+1))
		want[n("c", i)] = want[n("h", 2*i)] + "+" + want[n("h", 2*i+1)]
	}
	for i := range 4 {
		add(n("x", i), builtin.Transform, map[string]string{"op": "reverse"}, n("c", i))
		want[n("x", i)] = reverse(want[n("c", i)])
	}
	var up, texts []string // sorted by step name: c0..c4, x0..x3
	for i := range 5 {
		up, texts = append(up, n("c", i)), append(texts, want[n("c", i)])
	}
	for i := range 4 {
		up, texts = append(up, n("x", i)), append(texts, want[n("x", i)])
	}
	add("final", builtin.Hash, nil, up...)
	want["final"] = sha(texts...)
	return job, want
}

// Scenario 1: a 50-step job launched through the Launcher completes on the
// worker processes; every step has a succeeded result with the right output
// in the ResultBackend, and more than one process served steps.
func e2eFiftySteps(ctx context.Context, t *testing.T, c *e2eCluster) {
	job, want := fiftyStepJob()
	require.Len(t, job.Steps, 50)
	start := time.Now()
	runID, err := c.rt.Launcher.Launch(ctx, job, dag.LaunchOptions{})
	require.NoError(t, err)
	rec, err := c.rt.Launcher.Wait(ctx, runID)
	require.NoError(t, err)
	elapsed := time.Since(start)
	require.Equal(t, dag.RunSucceeded, rec.State, "run error: %s", rec.Error)
	runWorkers := map[string]bool{}
	for _, p := range c.procs {
		runWorkers[p.runWorker] = true
	}
	require.True(t, runWorkers[rec.Worker], "the run ran on run worker %q of a worker process", rec.Worker)
	require.Len(t, rec.Steps, 50)

	steps := c.stepWorkers()
	perProc := map[string]int{}
	for _, s := range job.Steps {
		sr, ok := rec.Step(s.Name)
		require.True(t, ok, s.Name)
		assert.Equal(t, dag.StepSucceeded, sr.State, s.Name)

		res, err := c.rt.Ports.Results.Get(ctx, dag.StepTaskID(runID, s.Name))
		require.NoError(t, err, "the result of step %s is in the ResultBackend", s.Name)
		assert.Equal(t, ports.StateSucceeded, res.State, s.Name)
		assert.GreaterOrEqual(t, res.Attempts, 1, s.Name)
		assert.Equal(t, want[s.Name], builtin.Text(res.Output), "output of step %s", s.Name)
		proc, ok := steps[res.Worker]
		assert.True(t, ok, "step %s: worker %q is a step worker of a worker process", s.Name, res.Worker)
		perProc[proc]++
	}
	assert.GreaterOrEqual(t, len(perProc), 2, "steps per process: %v", perProc)
	t.Logf("50-step run %s: succeeded in %v (driven by %s); steps per process: %v",
		runID, elapsed.Round(time.Millisecond), rec.Worker, perProc)
}

// Scenario 2: terminating a long run stops its running steps on every
// worker process within seconds; nothing succeeds after the terminate and
// the downstream steps never run.
func e2eTerminate(ctx context.Context, t *testing.T, c *e2eCluster) {
	const sleepers = 12 // three processes × four slots
	job := dag.Job{Name: "e2e-long"}
	var names []string
	for i := range sleepers {
		name := fmt.Sprintf("w%02d", i)
		names = append(names, name)
		job.Steps = append(job.Steps, dag.Step{Name: name, Task: builtin.Sleep, Args: json.RawMessage(`"60s"`)})
	}
	job.Steps = append(job.Steps,
		dag.Step{Name: "join", Task: builtin.Concat, Upstream: names},
		dag.Step{Name: "after", Task: builtin.Echo, Args: json.RawMessage(`"never"`), Upstream: []string{"join"}},
	)
	runID, err := c.rt.Launcher.Launch(ctx, job, dag.LaunchOptions{CancelWait: 20 * time.Second})
	require.NoError(t, err)

	// Wait until the workers' handler journals show every sleeper started,
	// on at least two processes, and the record says that they all run.
	steps := c.stepWorkers()
	holder := map[string]string{} // task ID → the worker that started it
	waitJournal(t, c.procs, 40*time.Second, func([]journalEntry) error {
		started := c.started(t)
		procs := map[string]bool{}
		for _, name := range names {
			ws := started[dag.StepTaskID(runID, name)]
			if len(ws) == 0 {
				return fmt.Errorf("sleeper %s has not started (of %d)", name, sleepers)
			}
			holder[dag.StepTaskID(runID, name)] = ws[len(ws)-1]
			procs[steps[ws[len(ws)-1]]] = true
		}
		if len(procs) < 2 {
			return fmt.Errorf("the %d sleepers started on %v, not on at least two worker processes", sleepers, procs)
		}
		return nil
	})
	require.Eventually(t, func() bool {
		rec, err := c.rt.Launcher.Status(ctx, runID)
		if err != nil {
			return false
		}
		for _, name := range names {
			if s, _ := rec.Step(name); s.State != dag.StepRunning {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "the run record never showed the %d sleepers running", sleepers)

	// The run's worker heartbeats through the S3 state store.
	h, err := c.rt.Launcher.Health(ctx, runID)
	require.NoError(t, err)
	require.Equal(t, dag.HealthRunning, h.Status, h.Message)
	require.WithinDuration(t, time.Now(), h.LastHeartbeat, 5*time.Second, "a fresh heartbeat: %s", h.Message)

	termStart := time.Now()
	ok, err := c.rt.Launcher.Terminate(ctx, runID)
	termAck := time.Now()
	require.NoError(t, err)
	require.True(t, ok, "the run was running")

	rec, err := c.rt.Launcher.Wait(ctx, runID)
	require.NoError(t, err)
	runDone := time.Since(termAck)
	require.Equal(t, dag.RunCancelled, rec.State, "run error: %s", rec.Error)
	assert.False(t, rec.CancelRequestedAt.IsZero())

	// Cancel latency of every sleeper, from Terminate's return (the request
	// acknowledged; a step may stop before Terminate has returned) and from
	// its call.
	var latencies, fromCall []time.Duration
	cancelledBy := map[string]int{} // process → steps it cancelled
	for _, name := range names {
		id := dag.StepTaskID(runID, name)
		res, err := c.rt.Ports.Results.Get(ctx, id)
		require.NoError(t, err, "step %s has a result", name)
		assert.Equal(t, ports.StateCancelled, res.State, "step %s: %s", name, res.Error)
		assert.Equal(t, "cancelled by request", res.Error, name)
		assert.Equal(t, 1, res.Attempts, name)
		assert.False(t, res.StartedAt.IsZero(), "step %s was running", name)
		assert.Equal(t, holder[id], res.Worker, "step %s: the cancellation was recorded by the worker that ran it", name)
		proc, isStep := steps[res.Worker]
		assert.True(t, isStep, "step %s: worker %q is a step worker of a worker process", name, res.Worker)
		cancelledBy[proc]++
		assert.False(t, res.FinishedAt.Before(termStart), "step %s finished at %v, before Terminate (%v)", name, res.FinishedAt, termStart)
		assert.WithinDuration(t, termAck, res.FinishedAt, 5*time.Second, "step %s stopped within seconds of Terminate, not after its minute", name)
		latencies = append(latencies, res.FinishedAt.Sub(termAck))
		fromCall = append(fromCall, res.FinishedAt.Sub(termStart))
		if s, ok := rec.Step(name); assert.True(t, ok) {
			assert.Equal(t, dag.StepCancelled, s.State, name)
		}
	}
	assert.GreaterOrEqual(t, len(cancelledBy), 2, "steps cancelled per process: %v", cancelledBy)

	for _, name := range []string{"join", "after"} {
		s, ok := rec.Step(name)
		require.True(t, ok)
		assert.Contains(t, []dag.StepState{dag.StepSkipped, dag.StepCancelled}, s.State, name)
		res, err := c.rt.Ports.Results.Get(ctx, dag.StepTaskID(runID, name))
		if err == nil {
			assert.NotEqual(t, ports.StateSucceeded, res.State, "downstream step %s never ran", name)
			assert.Zero(t, res.Attempts, "downstream step %s never ran", name)
		} else {
			assert.ErrorIs(t, err, ports.ErrNotFound, name)
		}
		assert.Empty(t, c.started(t)[dag.StepTaskID(runID, name)], "downstream step %s never started", name)
	}
	// Nothing succeeded after the cancellation was acknowledged.
	for _, s := range job.Steps {
		res, err := c.rt.Ports.Results.Get(ctx, dag.StepTaskID(runID, s.Name))
		if err == nil && res.State == ports.StateSucceeded {
			assert.False(t, res.FinishedAt.After(termAck), "step %s succeeded at %v, after Terminate returned (%v)", s.Name, res.FinishedAt, termAck)
		}
	}

	slices.Sort(latencies)
	slices.Sort(fromCall)
	if len(latencies) > 0 {
		t.Logf("terminate: the call took %v; the run ended cancelled %v after it returned; steps cancelled per process %v",
			termAck.Sub(termStart).Round(time.Millisecond), runDone.Round(time.Millisecond), cancelledBy)
		t.Logf("cancel latency, Terminate returned → step FinishedAt: p50 %v, max %v, all %v",
			latencies[len(latencies)/2].Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond), roundAll(latencies))
		t.Logf("cancel latency, Terminate called → step FinishedAt: p50 %v, max %v",
			fromCall[len(fromCall)/2].Round(time.Millisecond), fromCall[len(fromCall)-1].Round(time.Millisecond))
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// Scenario 3: a task cancelled while it waits in the queue (a delayed
// message) never starts: the worker that receives it records it cancelled
// before start, with no attempt.
func e2eCancelQueued(ctx context.Context, t *testing.T, c *e2eCluster) {
	const delay, sleep = 4 * time.Second, 500 * time.Millisecond
	submitted := time.Now()
	id, err := c.rt.Client.Submit(ctx, core.Request{Task: builtin.Sleep, Args: sleep.String(), Delay: delay})
	require.NoError(t, err)
	require.NoError(t, c.rt.Client.Cancel(ctx, id))
	cancelled := time.Since(submitted)
	require.Less(t, cancelled, delay, "cancelled while still delayed in the queue")
	st, err := c.rt.Client.Status(ctx, id)
	require.NoError(t, err)
	require.Equal(t, core.TaskCancelRequested, st.State)

	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	res, err := c.rt.Client.Wait(wctx, id)
	require.NoError(t, err)
	assert.Equal(t, ports.StateCancelled, res.State)
	assert.Equal(t, "cancelled before start", res.Error)
	assert.Zero(t, res.Attempts, "the handler never ran")
	assert.True(t, res.StartedAt.IsZero(), "never started")
	_, isStep := c.stepWorkers()[res.Worker]
	assert.True(t, isStep, "recorded by a worker process's step worker, not %q", res.Worker)
	// Recorded when the message was delivered, once its delay was over.
	assert.GreaterOrEqual(t, res.FinishedAt.Sub(submitted), delay-500*time.Millisecond, "delivered after its delay")

	// Until after it would have finished, it never starts anywhere.
	time.Sleep(time.Until(submitted.Add(delay + sleep + 500*time.Millisecond)))
	assert.Empty(t, c.started(t)[id], "no worker started the task")
	again, err := c.rt.Ports.Results.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, ports.StateCancelled, again.State)
	t.Logf("cancel queued: cancelled %v after submit; delivered and recorded cancelled-before-start by %s %v after submit",
		cancelled.Round(time.Millisecond), res.Worker, res.FinishedAt.Sub(submitted).Round(time.Millisecond))
}

// Scenario 4: a 5 MiB envelope travels through the claim check (S3); so
// does a 1 MiB one whose task returns it (a large result, read from the
// ResultBackend: it is not inlined in the completion, and stays below the
// workers' result size limit). The payload objects are gone once the tasks
// are acked.
func e2ePayload(ctx context.Context, t *testing.T, c *e2eCluster) {
	const size = 5 << 20
	raw := make([]byte, size*3/4)
	_, _ = rand.Read(raw)
	blob := base64.StdEncoding.EncodeToString(raw) // 5 MiB of text
	require.Len(t, blob, size)
	blobJSON, err := json.Marshal(blob)
	require.NoError(t, err)
	echoJSON, err := json.Marshal(blob[:1<<20])
	require.NoError(t, err)

	start := time.Now()
	phase := func() time.Duration { // since the previous call
		d := time.Since(start)
		start = start.Add(d)
		return d.Round(time.Millisecond)
	}
	// hash: the blob is its input; delayed, so the payload object can be
	// seen in the bucket before a worker takes the task.
	hashID, err := c.rt.Client.Submit(ctx, core.Request{Task: builtin.Hash,
		Inputs: map[string]json.RawMessage{"blob": blobJSON}, Delay: 2 * time.Second})
	require.NoError(t, err)
	submitHash := phase()
	keys, err := c.payloadKeys(ctx)
	require.NoError(t, err)
	require.Len(t, keys, 1, "the 5 MiB envelope went to the bucket: %v", keys)
	require.True(t, strings.HasPrefix(keys[0], c.cfg.S3.Prefix+"payloads/"+hashID+"/"), keys[0])
	// echo: 1 MiB args that come back as its output.
	echoID, err := c.rt.Client.Submit(ctx, core.Request{Task: builtin.Echo, Args: json.RawMessage(echoJSON)})
	require.NoError(t, err)
	submitEcho := phase()

	res, err := c.rt.Client.Wait(ctx, hashID)
	require.NoError(t, err)
	waitHash, hashSeen := phase(), time.Since(res.FinishedAt)
	require.Equal(t, ports.StateSucceeded, res.State, res.Error)
	sum := sha256.Sum256([]byte(blob))
	assert.Equal(t, hex.EncodeToString(sum[:]), builtin.Text(res.Output), "hash of the 5 MiB input")
	_, isStep := c.stepWorkers()[res.Worker]
	assert.True(t, isStep, res.Worker)
	// The handler journal of the worker that wrote the result has the
	// run (it is written before the result is stored), and the later
	// scenarios' "never started" read the same journals.
	if runs := journalStarts(t, c.procs...)[hashID]; assert.NotEmpty(t, runs, "the handler journals record the hash task's run") {
		assert.Equal(t, res.Worker, runs[len(runs)-1].Worker, "the hash task's last run in the journals is the result's")
	}
	hashRes := res

	res, err = c.rt.Client.Wait(ctx, echoID)
	require.NoError(t, err)
	waitEcho := phase()
	require.Equal(t, ports.StateSucceeded, res.State, res.Error)
	assert.True(t, bytes.Equal(echoJSON, res.Output), "echo returned the 1 MiB args unchanged (%d bytes, want %d)", len(res.Output), len(echoJSON))

	// The worker deletes a payload object right after the ack.
	var left []string
	require.Eventually(t, func() bool {
		keys, err := c.payloadKeys(ctx)
		left = keys
		return err == nil && len(keys) == 0
	}, 10*time.Second, 100*time.Millisecond, "the payload objects are deleted after the acks")
	require.Empty(t, left)
	t.Logf("payload: 5 MiB hash (delayed 2s) submitted in %v, 1 MiB echo in %v; hash result after %v more "+
		"(ran %v on %s, Wait returned %v after it finished), echo result after %v more (ran %v on %s); "+
		"payload objects deleted %v later",
		submitHash, submitEcho, waitHash, hashRes.FinishedAt.Sub(hashRes.StartedAt).Round(time.Millisecond), hashRes.Worker,
		hashSeen.Round(time.Millisecond), waitEcho, res.FinishedAt.Sub(res.StartedAt).Round(time.Millisecond), res.Worker, phase())
}
