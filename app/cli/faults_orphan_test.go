package cli_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/core/dag"
)

// Fault 8 (issue 13, item 1, on the emulators): the only worker process
// driving a launched run is killed and the run task's message is gone (here
// deleted, as an expired, purged or dead-lettered one would be). health
// tells the truth (FAILED: the worker stopped heartbeating; not "waits in
// the queue"), and terminate --wait ends the run at once, cancelled, instead
// of leaving it "running (termination requested)" forever.
func TestFault_TerminateOrphanedRun(t *testing.T) {
	cfg, flags := sqsEnv(t) // launcher: heartbeat 200ms, stale_after 5s
	c := newFaultCluster(t, cfg, flags, 2, faultEnv(8*time.Second, time.Second))
	c.args = append([]string{"worker", "--concurrency", "2",
		"--launcher-heartbeat-interval", cfg.Launcher.HeartbeatInterval.String(),
		"--launcher-stale-after", cfg.Launcher.StaleAfter.String()}, flags...)
	p := c.start("worker1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	arg, _ := json.Marshal("10m")
	runID, err := c.rt.Launcher.Launch(ctx, dag.Job{Name: "orphan", Steps: []dag.Step{
		{Name: "long", Task: builtin.Sleep, Args: arg},
		{Name: "after", Task: builtin.Echo, Args: json.RawMessage(`"x"`), Upstream: []string{"long"}},
	}}, dag.LaunchOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		rec, err := c.rt.Launcher.Status(ctx, runID)
		require.NoError(t, err)
		return rec.State == dag.RunRunning && len(rec.Steps) == 2 && rec.Steps[0].State == dag.StepRunning
	}, time.Minute, 100*time.Millisecond, "the run never started its first step")
	p.kill9(t)
	killed := time.Now()

	// The run task's message comes back once its lease (stale_after) ends;
	// take it away for good.
	sq, _ := awsClients(t, cfg)
	require.Eventually(t, func() bool {
		out, err := sq.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: aws.String(cfg.SQS.RunQueueURL),
			MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		require.NoError(t, err)
		for _, m := range out.Messages {
			_, err := sq.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: aws.String(cfg.SQS.RunQueueURL), ReceiptHandle: m.ReceiptHandle})
			require.NoError(t, err)
		}
		return len(out.Messages) > 0
	}, time.Minute, 100*time.Millisecond, "the run task never came back")

	// Once the heartbeat is older than stale_after, health says so.
	var h struct{ Status, Message string }
	require.Eventually(t, func() bool {
		r := inCtx(t, ctx, c.rt, "health", runID, "-o", "json")
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &h))
		if h.Status == "RUNNING" {
			return false
		}
		require.Equal(t, cli.ExitFailed, r.code)
		return true
	}, 10*time.Second, 200*time.Millisecond)
	require.Equal(t, "FAILED", h.Status)
	require.Contains(t, h.Message, "stopped heartbeating")
	require.NotContains(t, h.Message, "waits in the queue")

	start := time.Now()
	r := inCtx(t, ctx, c.rt, "terminate", runID, "--wait")
	took := time.Since(start)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	rec, err := c.rt.Launcher.Status(ctx, runID)
	require.NoError(t, err)
	require.Equal(t, dag.RunCancelled, rec.State)
	require.Contains(t, rec.Error, "terminated with no live execution")
	require.Equal(t, dag.StepCancelled, rec.Steps[0].State)
	require.Equal(t, dag.StepSkipped, rec.Steps[1].State)
	t.Logf("orphaned run: killed %v before terminate; terminate --wait ended it in %v", start.Sub(killed).Round(time.Millisecond), took.Round(time.Millisecond))
}
