package cli_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
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
)

// sqsEnv returns a configuration of the sqs transport on the local
// emulators (make emulators-up; scripts/emulators.sh env) with queue and
// bucket names of its own, and the matching command-line flags. It fails
// the test when the emulators' variables are missing: tests never skip.
func sqsEnv(t testing.TB) (config.Config, []string) {
	t.Helper()
	sqsEP, s3EP := os.Getenv("DAGQ_TEST_SQS_ENDPOINT"), os.Getenv("DAGQ_TEST_S3_ENDPOINT")
	if sqsEP == "" || s3EP == "" {
		t.Fatalf("DAGQ_TEST_SQS_ENDPOINT=%q DAGQ_TEST_S3_ENDPOINT=%q: the sqs transport tests need the emulators; "+
			`run "make test", or "make emulators-up" and eval "$(scripts/emulators.sh env)"`, sqsEP, s3EP)
	}
	id := fmt.Sprintf("%x", time.Now().UnixNano())
	cfg := config.Default()
	cfg.Transport = config.TransportSQS
	cfg.SQS.QueueURL = sqsEP + "/000000000000/dagq-app-steps-" + id
	cfg.SQS.RunQueueURL = sqsEP + "/000000000000/dagq-app-runs-" + id
	cfg.SQS.Region = "us-east-1"
	cfg.SQS.Endpoint = sqsEP
	cfg.SQS.WaitTime = time.Second
	cfg.S3.Bucket = "dagq-app-" + id
	cfg.S3.Endpoint = s3EP
	cfg.S3.PathStyle = true
	cfg.Worker.ShutdownTimeout = time.Second
	cfg.Launcher.HeartbeatInterval = 200 * time.Millisecond
	cfg.Launcher.StaleAfter = 5 * time.Second
	require.NoError(t, cfg.Validate())
	// s3.path_style and sqs.wait_time have no flags.
	t.Setenv("DAGQ_S3_PATH_STYLE", "true")
	t.Setenv("DAGQ_SQS_WAIT_TIME", "1s")
	flags := []string{
		"--transport", "sqs",
		"--sqs-queue-url", cfg.SQS.QueueURL, "--sqs-run-queue-url", cfg.SQS.RunQueueURL,
		"--sqs-region", cfg.SQS.Region, "--sqs-endpoint", sqsEP,
		"--s3-bucket", cfg.S3.Bucket, "--s3-endpoint", s3EP,
	}
	return cfg, flags
}

// The sqs transport end to end on the emulators: queue init creates the
// queues, DLQs and bucket (idempotently); a runtime wired from the same
// configuration runs the diamond job through its Executor (dagq run) and
// through the Launcher on the run queue (dagq launch --wait).
func TestSQS_QueueInitRunAndLaunch(t *testing.T) {
	cfg, flags := sqsEnv(t)
	r := dagq(t, append([]string{"queue", "init"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code)
	steps, runs := config.QueueName(cfg.SQS.QueueURL), config.QueueName(cfg.SQS.RunQueueURL)
	for _, want := range []string{
		"created queue " + steps + "-dlq ", "created queue " + steps + " ",
		"created queue " + runs + "-dlq ", "created queue " + runs + " ",
		"created bucket " + cfg.S3.Bucket + "\n",
	} {
		require.Contains(t, r.stdout, want)
	}
	r = dagq(t, append([]string{"queue", "init"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code, "queue init is idempotent")
	require.Contains(t, r.stdout, "queue "+steps+" exists")
	require.Contains(t, r.stdout, "bucket "+cfg.S3.Bucket+" exists\n")

	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer rt.Close()
	require.False(t, rt.Embedded())
	require.NotNil(t, rt.Ports.Cancels, "cancellation: marks in S3, broadcast to a queue per worker")
	require.NotNil(t, rt.Ports.Completions, "completions are pushed to a reply queue per client")
	require.NotNil(t, rt.Ports.Payloads, "large envelopes go to S3")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, err := rt.StartWorkers(ctx, 2)
	require.NoError(t, err)
	defer func() { require.NoError(t, pool.Stop()) }()
	runPool, err := rt.StartRunWorkers(ctx, 1)
	require.NoError(t, err)
	defer func() { require.NoError(t, runPool.Stop()) }()

	r = inCtx(t, ctx, rt, "run", examples+"diamond.yaml")
	require.Equal(t, cli.ExitOK, r.code)
	require.Regexp(t, regexp.MustCompile(`(?m)^a\s+echo\s+succeeded\s+1\s+\S+\s+"hello, dagq"$`), r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^d\s+concat\s+succeeded\s+1\s+\S+\s+"HELLO, DAGQ \| qgad ,olleh"$`), r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^run \w+ of job diamond succeeded in \S+: 4 succeeded$`), r.stdout)

	runID := "sqs-" + strings.ReplaceAll(config.QueueName(cfg.SQS.QueueURL), "dagq-app-steps-", "")
	r = inCtx(t, ctx, rt, "launch", examples+"diamond.yaml", "--wait", "--run-id", runID, "-p", "who=world")
	require.Equal(t, cli.ExitOK, r.code)
	require.Regexp(t, regexp.MustCompile(`(?m)^d\s+concat\s+succeeded\s+1\s+\S+\s+"HELLO, WORLD \| dlrow ,olleh"$`), r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^run `+runID+` of job diamond succeeded in \S+: 4 succeeded$`), r.stdout)

	r = inCtx(t, ctx, rt, "health", runID)
	require.Equal(t, cli.ExitOK, r.code)
	require.Equal(t, "SUCCESS: the run succeeded\n", r.stdout)

	// Terminating a running run reaches its steps over SQS: the sleeping
	// steps are cancelled long before their minute is up.
	longID := runID + "-long"
	r = inCtx(t, ctx, rt, "launch", examples+"long.yaml", "--run-id", longID)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Eventually(t, func() bool {
		rec, err := rt.Launcher.Status(ctx, longID)
		if err != nil {
			return false
		}
		for _, s := range rec.Steps {
			if s.Name == "work" && s.State == dag.StepRunning {
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "step work never ran")
	start := time.Now()
	r = inCtx(t, ctx, rt, "terminate", longID)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	rec, err := rt.Launcher.Wait(ctx, longID)
	require.NoError(t, err)
	require.Equal(t, dag.RunCancelled, rec.State)
	require.Less(t, time.Since(start), 20*time.Second, "cancellation reached the running steps")
	for _, s := range rec.Steps {
		if s.Name == "work" || s.Name == "side" {
			require.Equal(t, dag.StepCancelled, s.State, s.Name)
		}
		if s.Name == "publish" {
			require.Equal(t, dag.StepSkipped, s.State)
		}
	}
}

func TestQueueInit_Memory(t *testing.T) {
	r := dagq(t, "queue", "init")
	require.Equal(t, cli.ExitOK, r.code)
	require.Equal(t, "transport memory: nothing to create (its queues and stores live in the dagq process)\n", r.stdout)
}

// New fails, naming both keys, when the AWS chain's region differs from
// the region of a queue URL and sqs.region is empty.
func TestNew_SQSRegionFromChainMismatch(t *testing.T) {
	t.Setenv("AWS_REGION", "us-west-2")
	cfg := config.Default()
	cfg.Transport = config.TransportSQS
	cfg.Cancellation.Enabled = false
	cfg.SQS.QueueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/a"
	cfg.SQS.RunQueueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/b"
	cfg.S3.Bucket = "my-dagq"
	_, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.ErrorContains(t, err, `sqs.queue_url: "https://sqs.eu-west-1.amazonaws.com/123456789012/a" is in region eu-west-1 but the AWS region is us-west-2`)
	require.ErrorContains(t, err, "set sqs.region (DAGQ_SQS_REGION) to eu-west-1")
}

// The DLQ must not cut retries short: every attempt is one receive.
func TestMaxReceiveCount(t *testing.T) {
	require.Equal(t, 10, app.MaxReceiveCount(3), "never below the minimum")
	require.Equal(t, 12, app.MaxReceiveCount(10))
	require.Greater(t, app.MaxReceiveCount(dag.DefaultRunTaskRetry.MaxAttempts), dag.DefaultRunTaskRetry.MaxAttempts,
		"run tasks keep all their attempts")
}

// sqs.fair_queue reaches the adapter: "on" with standard queues warns once
// per queue at start (New logs the configuration's notices; the adapter,
// given auto for them, says nothing more) and is ignored; every mode of the
// key maps to one.
func TestSQS_FairQueueOnStandardQueueWarns(t *testing.T) {
	cfg, flags := sqsEnv(t)
	require.Equal(t, cli.ExitOK, dagq(t, append([]string{"queue", "init"}, flags...)...).code)
	cfg.SQS.FairQueue = "on"
	var logs strings.Builder
	rt, err := app.New(cfg, builtins(t), app.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	defer rt.Close()
	for _, key := range []string{"sqs.queue_url", "sqs.run_queue_url"} {
		require.Equal(t, 1, strings.Count(logs.String(), "configuration notice: sqs.fair_queue: on, but "+key+" "), "%s: %s", key, logs.String())
	}
	require.Equal(t, 2, strings.Count(logs.String(), "is a standard queue"), logs.String())
	require.NotContains(t, logs.String(), "fair-queue mode needs a FIFO queue", "said once, by New")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := rt.StartWorkers(ctx, 1)
	require.NoError(t, err)
	defer func() { require.NoError(t, pool.Stop()) }()
	id, err := rt.Client.Submit(ctx, core.Request{Task: "echo", Args: "fair", RunID: "r1"})
	require.NoError(t, err)
	res, err := rt.Client.Wait(ctx, id)
	require.NoError(t, err)
	require.JSONEq(t, `"fair"`, string(res.Output), "the task still runs: the mode is ignored, not an error")

	for _, m := range config.FairQueueModes {
		c := cfg
		c.SQS.FairQueue = m
		require.NoError(t, c.Validate(), m)
	}
}

// dagq worker prints each configuration notice once: the CLI prints them
// when it loads the configuration, and neither New nor the adapter repeats
// them in the log.
func TestSQS_WorkerFairQueueNoticeOnce(t *testing.T) {
	_, flags := sqsEnv(t)
	require.Equal(t, cli.ExitOK, dagq(t, append([]string{"queue", "init"}, flags...)...).code)
	t.Setenv("DAGQ_SQS_FAIR_QUEUE", "on")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	_, errb, done := startWorkerCmd(t, wctx, append([]string{"--metrics-addr", "127.0.0.1:0"}, flags...))
	stop()
	select {
	case code := <-done:
		require.Equal(t, cli.ExitOK, code, errb.String())
	case <-ctx.Done():
		t.Fatal("worker did not stop")
	}
	out := errb.String()
	for _, key := range []string{"sqs.queue_url", "sqs.run_queue_url"} {
		require.Equal(t, 1, strings.Count(out, "dagq: warning: sqs.fair_queue: on, but "+key+" "), "%s: %s", key, out)
	}
	require.Equal(t, 2, strings.Count(out, "is a standard queue"), out)
	require.NotContains(t, out, "fair-queue mode needs a FIFO queue", out)
}

// scripts/emulators.sh cli-env is all the dagq CLI needs to run on the
// emulators (docs/aws.md, "Try the SQS transport locally"): with its exports
// and nothing else, queue init creates the queues and bucket and dagq run
// runs the diamond job on them.
func TestEmulatorsCLIEnv(t *testing.T) {
	sqsEnv(t) // fails loudly without the emulators
	name := fmt.Sprintf("dagq-clienv-%x", time.Now().UnixNano())
	cmd := exec.Command("bash", "../../scripts/emulators.sh", "cli-env")
	cmd.Env = append(os.Environ(), "EMULATORS_LOCAL_NAME="+name)
	out, err := cmd.Output()
	require.NoError(t, err)
	for _, kv := range os.Environ() { // only what cli-env says
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "DAGQ_") && !strings.HasPrefix(k, "DAGQ_TEST_") {
			t.Setenv(k, "")
			require.NoError(t, os.Unsetenv(k))
		}
	}
	var keys []string
	for line := range strings.Lines(string(out)) {
		kv, ok := strings.CutPrefix(strings.TrimSpace(line), "export ")
		require.True(t, ok, "%q is an export", line)
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
		keys = append(keys, k)
	}
	assert.Subset(t, keys, []string{"DAGQ_TRANSPORT", "DAGQ_SQS_ENDPOINT", "DAGQ_SQS_QUEUE_URL", "DAGQ_SQS_RUN_QUEUE_URL",
		"DAGQ_S3_ENDPOINT", "DAGQ_S3_BUCKET", "DAGQ_S3_PATH_STYLE"})
	t.Setenv("DAGQ_SQS_WAIT_TIME", "1s") // not needed; it only lets the worker below stop sooner
	r := dagq(t, "queue", "init")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "created queue "+name+"-steps ")
	assert.Contains(t, r.stdout, "created bucket "+name)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wctx, stopWorker := context.WithCancel(ctx)
	worker := make(chan result, 1)
	go func() { worker <- dagqCtx(t, wctx, builtins(t), "worker") }()
	r = dagqCtx(t, ctx, builtins(t), "run", "../../examples/jobs/diamond.yaml")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "4 succeeded")
	assert.Empty(t, r.stderr, "no warning about the environment")
	stopWorker()
	w := <-worker
	assert.Equal(t, cli.ExitOK, w.code, w.stderr)
	assert.NotContains(t, w.stderr, "warning")
}
