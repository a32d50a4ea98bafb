package ui_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/app/ui"
	"github.com/dagq/dagq/core/dag"
)

// The browser against the emulators (SQS: fauxqs, S3: versitygw): a
// dashboard with a runtime of its own, as dagq ui has, next to workers with
// theirs, as dagq worker processes have.

// sqsConfig returns a configuration of the sqs transport on the emulators
// with queues and a bucket of its own, created (dagq queue init). It fails
// the test when the emulators' variables are missing: tests never skip.
func sqsConfig(t *testing.T) config.Config {
	t.Helper()
	sqsEP, s3EP := os.Getenv("DAGQ_TEST_SQS_ENDPOINT"), os.Getenv("DAGQ_TEST_S3_ENDPOINT")
	if sqsEP == "" || s3EP == "" {
		t.Fatalf("DAGQ_TEST_SQS_ENDPOINT=%q DAGQ_TEST_S3_ENDPOINT=%q: the sqs transport tests need the emulators; "+
			`run "make test", or "make emulators-up" and eval "$(scripts/emulators.sh env)"`, sqsEP, s3EP)
	}
	id := fmt.Sprintf("%x", time.Now().UnixNano())
	cfg := config.Default()
	cfg.Transport = config.TransportSQS
	cfg.SQS.QueueURL = sqsEP + "/000000000000/dagq-ui-steps-" + id
	cfg.SQS.RunQueueURL = sqsEP + "/000000000000/dagq-ui-runs-" + id
	cfg.SQS.Region = "us-east-1"
	cfg.SQS.Endpoint = sqsEP
	cfg.SQS.WaitTime = time.Second
	cfg.SQS.CancelListLag = 0 // fauxqs lists new queues at once
	cfg.S3.Bucket = "dagq-ui-" + id
	cfg.S3.Endpoint = s3EP
	cfg.S3.PathStyle = true
	fastLauncher(&cfg)
	cfg.Launcher.HeartbeatInterval = 200 * time.Millisecond
	cfg.Launcher.StaleAfter = 5 * time.Second
	require.NoError(t, cfg.Validate())
	t.Setenv("DAGQ_S3_PATH_STYLE", "true")
	var out, errb bytes.Buffer
	code := cli.Execute(context.Background(), builtins(t), []string{"queue", "init",
		"--transport", "sqs", "--sqs-queue-url", cfg.SQS.QueueURL, "--sqs-run-queue-url", cfg.SQS.RunQueueURL,
		"--sqs-region", cfg.SQS.Region, "--sqs-endpoint", sqsEP, "--s3-bucket", cfg.S3.Bucket, "--s3-endpoint", s3EP,
	}, &out, &errb)
	require.Equal(t, cli.ExitOK, code, "dagq queue init: %s%s", out.String(), errb.String())
	return cfg
}

// sqsRuntime wires cfg, closed when the test ends.
func sqsRuntime(t *testing.T, cfg config.Config, opts ...app.Option) *app.Runtime {
	t.Helper()
	rt, err := app.New(cfg, builtins(t), append([]app.Option{app.WithLogger(quiet())}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(rt.Close)
	return rt
}

// sqsWorld is a fleet (step and run workers with their own runtime) and a
// dashboard with another, served, and a browser on it.
type sqsWorld struct {
	fleet, dash *app.Runtime
	b           *browser
}

func newSQSWorld(t *testing.T) *sqsWorld {
	t.Helper()
	cfg := sqsConfig(t)
	w := &sqsWorld{fleet: sqsRuntime(t, cfg), dash: sqsRuntime(t, cfg)}
	startWorkers(t, w.fleet)
	s := newServer(t, ui.Options{Runtime: w.dash})
	w.b = newBrowser(t, serve(t, s))
	return w
}

// Launch a job and watch its DAG's steps turn succeeded in the browser.
func TestBrowserSQS_LaunchAndWatch(t *testing.T) {
	w := newSQSWorld(t)
	job := dag.Job{Name: "watched", Steps: []dag.Step{
		{Name: "a", Task: "sleep", Args: raw("1s")},
		{Name: "b", Task: "sleep", Upstream: []string{"a"}, Args: raw("1s")},
		{Name: "c", Task: "sleep", Upstream: []string{"a"}, Args: raw("4s")},
		{Name: "d", Task: "echo", Upstream: []string{"b", "c"}, Args: raw("done")},
	}}
	id := launch(t, w.fleet, job, "watch-"+stamp())
	w.b.open("/runs/" + id)
	w.b.waitFor(nodeIn("a", "running")+" || "+nodeIn("a", "succeeded"), 30*time.Second)
	w.b.waitFor(nodeIn("c", "running"), 30*time.Second)
	w.b.waitFor(nodesIn("succeeded", 4), 60*time.Second)
	w.b.waitFor(`document.querySelector('#run-state').textContent === 'succeeded' && window.dagqUI.finished`, 30*time.Second)
	require.Equal(t, `"done"`, w.b.text(`#steps tr[data-step="d"] .c-output code`))
	require.Equal(t, "succeeded", w.b.text(`#steps tr[data-step="b"] .c-state`))
	polls := eval[int](w.b, `window.dagqUI.polls`)
	time.Sleep(3 * time.Second) // a finished run's page stops asking
	require.Equal(t, polls, eval[int](w.b, `window.dagqUI.polls`), "the page polled a finished run")
}

// Press Terminate on a long run and see it cancelled.
func TestBrowserSQS_Terminate(t *testing.T) {
	w := newSQSWorld(t)
	id := launch(t, w.fleet, long(), "term-"+stamp())
	terminateAtEnd(t, w.fleet, id)
	w.b.open("/runs/" + id)
	w.b.waitFor(nodeIn("work", "running"), 60*time.Second)
	start := time.Now()
	w.b.submit(`#terminate button`)
	require.Contains(t, w.b.text(`.flash`), "Terminate requested")
	w.b.waitFor(`document.querySelector('#run-state').textContent === 'cancelled'`, 60*time.Second)
	w.b.waitFor(nodeIn("work", "cancelled")+" && "+nodeIn("publish", "skipped"), 30*time.Second)
	require.Less(t, time.Since(start), 45*time.Second, "the cancellation reached the sleeping step long before its minute")
	require.Zero(t, eval[int](w.b, `document.querySelectorAll('#terminate').length`), "no Terminate button on a finished run")
	rec, err := w.dash.Launcher.Record(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, dag.RunCancelled, rec.State)
}

// Redrive a dead letter from the queues page and see it run.
func TestBrowserSQS_Redrive(t *testing.T) {
	w := newSQSWorld(t)
	id := deadLetter(t, w.dash, "dead-"+stamp())
	w.b.open("/queues")
	row := `tr[data-task="` + id + `"]`
	w.b.waitFor(`document.querySelector('`+row+`') !== null`, 10*time.Second)
	require.Equal(t, "echo", w.b.text(row+` td:nth-child(2)`))
	w.b.submit(row + ` button.redrive`)
	require.Contains(t, w.b.text(`.flash`), "1 dead letter(s) moved back to the tasks queue")
	require.Zero(t, eval[int](w.b, `document.querySelectorAll('`+row+`').length`), "it left the DLQ")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := w.dash.Client.Wait(ctx, id)
	require.NoError(t, err, "the redriven task ran")
	require.JSONEq(t, `"redriven"`, string(res.Output))
}
