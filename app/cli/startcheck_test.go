package cli_test

// The start-up check of the sqs transport (issue 13): dagq worker, run and
// launch check their queues, dead-letter queues and bucket before they
// serve or submit, exit 1 naming each problem's configuration key and fix,
// and --wait-for-transport waits for them.

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
)

// startBound bounds a command that should refuse to start: before the
// check, a worker on a missing queue served (and logged errors) until
// interrupted, so without a bound such a test would hang instead of fail.
const startBound = 45 * time.Second

// refuses runs the dagq command args, which must exit ExitFailed within
// startBound without serving, and returns its stderr.
func refuses(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startBound)
	defer cancel()
	r := dagqCtx(t, ctx, builtins(t), args...)
	require.NoError(t, ctx.Err(), "dagq %s did not exit within %v: it should refuse to start", args[0], startBound)
	require.Equal(t, cli.ExitFailed, r.code, r.stderr)
	assert.NotContains(t, r.stderr, "serving queue")
	return r.stderr
}

// closedEndpoint is an http URL on a local port nothing listens on.
func closedEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ep := "http://" + l.Addr().String()
	require.NoError(t, l.Close())
	return ep
}

// withFlag returns flags with the value of flag replaced.
func withFlag(flags []string, flag, value string) []string {
	out := append([]string(nil), flags...)
	for i := range out {
		if out[i] == flag {
			out[i+1] = value
			return out
		}
	}
	return append(out, flag, value)
}

// A worker whose task queue does not exist exits 1 at once, naming
// sqs.queue_url and `dagq queue init`; the run queue and the bucket, which
// exist, are not named.
func TestStartCheck_WorkerMissingQueue(t *testing.T) {
	cfg, flags := sqsEnv(t)
	r := dagq(t, append([]string{"queue", "init"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	sq, _ := awsClients(t, cfg)
	_, err := sq.DeleteQueue(context.Background(), &awssqs.DeleteQueueInput{QueueUrl: aws.String(cfg.SQS.QueueURL)})
	require.NoError(t, err)

	stderr := refuses(t, append([]string{"worker"}, flags...)...)
	require.Contains(t, stderr, "sqs.queue_url")
	require.Contains(t, stderr, "dagq queue init")
	require.NotContains(t, stderr, "sqs.run_queue_url")
	require.NotContains(t, stderr, "s3.bucket")
}

// Nothing created: every problem is reported, not only the first: the
// task queue, the run queue and the bucket, each by its key. With
// --runs=false the run queue is not checked.
func TestStartCheck_WorkerReportsEveryProblem(t *testing.T) {
	_, flags := sqsEnv(t)
	stderr := refuses(t, append([]string{"worker"}, flags...)...)
	for _, key := range []string{"sqs.queue_url", "sqs.run_queue_url", "s3.bucket"} {
		require.Contains(t, stderr, key)
	}
	stderr = refuses(t, append([]string{"worker", "--runs=false"}, flags...)...)
	require.Contains(t, stderr, "sqs.queue_url")
	require.NotContains(t, stderr, "sqs.run_queue_url")
}

// A missing bucket is named by s3.bucket; a deleted dead-letter queue that
// the task queue's redrive policy names is named by sqs.queue_url with the
// DLQ's name.
func TestStartCheck_WorkerMissingBucketAndDLQ(t *testing.T) {
	cfg, flags := sqsEnv(t)
	r := dagq(t, append([]string{"queue", "init"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)

	stderr := refuses(t, append([]string{"worker"}, withFlag(flags, "--s3-bucket", cfg.S3.Bucket+"-missing")...)...)
	require.Contains(t, stderr, "s3.bucket")
	require.Contains(t, stderr, cfg.S3.Bucket+"-missing")
	require.NotContains(t, stderr, "sqs.queue_url")

	sq, _ := awsClients(t, cfg)
	dlq := app.DLQName(config.QueueName(cfg.SQS.QueueURL))
	got, err := sq.GetQueueUrl(context.Background(), &awssqs.GetQueueUrlInput{QueueName: aws.String(dlq)})
	require.NoError(t, err)
	_, err = sq.DeleteQueue(context.Background(), &awssqs.DeleteQueueInput{QueueUrl: got.QueueUrl})
	require.NoError(t, err)
	stderr = refuses(t, append([]string{"worker"}, flags...)...)
	require.Contains(t, stderr, "sqs.queue_url")
	require.Contains(t, stderr, dlq)
	require.Contains(t, stderr, "dagq queue init")
	require.NotContains(t, stderr, "sqs.run_queue_url")
}

// An SQS endpoint nothing listens on is named by sqs.endpoint, once,
// however many queues are reached through it.
func TestStartCheck_WorkerUnreachableEndpoint(t *testing.T) {
	_, flags := sqsEnv(t)
	ep := closedEndpoint(t)
	flags = withFlag(flags, "--sqs-endpoint", ep)
	stderr := refuses(t, append([]string{"worker"}, flags...)...)
	require.Contains(t, stderr, "sqs.endpoint")
	require.Contains(t, stderr, ep)
	require.Equal(t, 1, strings.Count(stderr, "sqs.endpoint:"), "one line for the endpoint, not one per queue")
	require.NotContains(t, stderr, "sqs.queue_url:")
}

// dagq run and dagq launch refuse the same way, each checking what it
// uses: run the task queue (not the run queue), launch the run queue (not
// the task queue); both the bucket.
func TestStartCheck_RunAndLaunchRefuse(t *testing.T) {
	_, flags := sqsEnv(t)
	stderr := refuses(t, append([]string{"run", examples + "diamond.yaml"}, flags...)...)
	require.Contains(t, stderr, "sqs.queue_url")
	require.Contains(t, stderr, "s3.bucket")
	require.Contains(t, stderr, "dagq queue init")
	require.NotContains(t, stderr, "sqs.run_queue_url")

	stderr = refuses(t, append([]string{"launch", examples + "diamond.yaml"}, flags...)...)
	require.Contains(t, stderr, "sqs.run_queue_url")
	require.Contains(t, stderr, "s3.bucket")
	require.NotContains(t, stderr, "sqs.queue_url")

	stderr = refuses(t, append([]string{"launch", examples + "diamond.yaml", "--wait"}, withFlag(flags, "--sqs-endpoint", closedEndpoint(t))...)...)
	require.Contains(t, stderr, "sqs.endpoint")
}

// --wait-for-transport: a worker process started before its queues exist
// waits (saying what it misses), and serves once "dagq queue init" created
// them: a job run afterwards runs on it.
func TestStartCheck_WaitForTransport(t *testing.T) {
	_, flags := sqsEnv(t)
	env := []string{"DAGQ_S3_PATH_STYLE=true", "DAGQ_SQS_WAIT_TIME=1s", "DAGQ_LOG_FORMAT=json", "DAGQ_LOG_LEVEL=info"}
	p := startE2EWorker(t, "worker", append([]string{"worker", "--wait-for-transport", "5m"}, flags...), env)
	// The worker is waiting once it has named the missing task queue.
	require.Eventually(t, func() bool {
		return p.exited() || strings.Contains(p.logs(), "sqs.queue_url")
	}, time.Minute, 50*time.Millisecond, "the worker did not say what it waits for")
	require.False(t, p.exited(), "the worker exited instead of waiting: %v", p.waitErr)
	require.NotContains(t, p.logs(), "serving queue")

	r := dagq(t, append([]string{"queue", "init"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	p.waitReady(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r = dagqCtx(t, ctx, builtins(t), append([]string{"run", examples + "diamond.yaml"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	waitJournal(t, []*e2eProc{p}, time.Minute, func(js []journalEntry) error {
		if n := len(js); n < 8 {
			return fmt.Errorf("%d journal lines, want the start and end of 4 steps", n)
		}
		return nil
	})
}
