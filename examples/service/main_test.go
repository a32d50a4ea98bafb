package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core/dag"
)

// The service on the emulators (make emulators-up; scripts/emulators.sh
// env), configured from the environment as in production: a job submitted
// through POST /jobs runs on the service's own worker over SQS + S3, and
// GET /jobs/{id} reports its outputs. It fails when the emulators'
// variables are missing: tests never skip.
func TestService(t *testing.T) {
	sqsEP, s3EP := os.Getenv("DAGQ_TEST_SQS_ENDPOINT"), os.Getenv("DAGQ_TEST_S3_ENDPOINT")
	if sqsEP == "" || s3EP == "" {
		t.Fatalf("DAGQ_TEST_SQS_ENDPOINT=%q DAGQ_TEST_S3_ENDPOINT=%q: this test needs the emulators; "+
			`run "make test", or "make emulators-up" and eval "$(scripts/emulators.sh env)"`, sqsEP, s3EP)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "dagq-service-" + hex.EncodeToString(b)
	t.Setenv("AWS_ENDPOINT_URL_SQS", sqsEP) // read by the AWS SDK itself
	t.Setenv("AWS_ENDPOINT_URL_S3", s3EP)
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	require.NoError(t, err)
	q, err := awssqs.NewFromConfig(cfg).CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(name)})
	require.NoError(t, err, "create the queue on fauxqs at %s", sqsEP)
	defer func() {
		_, _ = awssqs.NewFromConfig(cfg).DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: q.QueueUrl})
	}()
	_, err = awss3.NewFromConfig(cfg, func(o *awss3.Options) { o.UsePathStyle = true }).
		CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(name)})
	require.NoError(t, err, "create the bucket on versitygw at %s", s3EP)

	t.Setenv("DAGQ_SQS_QUEUE_URL", *q.QueueUrl)
	t.Setenv("DAGQ_S3_BUCKET", name)
	t.Setenv("DAGQ_S3_PATH_STYLE", "true")
	t.Setenv("DAGQ_SQS_WAIT_TIME", "1s")
	opts, err := OptionsFromEnv(os.Getenv)
	require.NoError(t, err)
	svc, shutdown, err := Start(ctx, opts, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer shutdown()
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/jobs", "application/json", strings.NewReader(`{"text": "hello dagq world"}`))
	require.NoError(t, err)
	var started struct {
		RunID string `json:"run_id"`
	}
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&started))
	resp.Body.Close()
	require.NotEmpty(t, started.RunID)

	var view RunView
	for !view.State.Final() { // each GET waits up to 10s for the run to end
		require.NoError(t, ctx.Err(), "the run did not end; last view: %+v", view)
		view = getJSON[RunView](t, srv.URL+"/jobs/"+started.RunID+"?wait=10s", http.StatusOK)
	}
	require.Equal(t, dag.RunSucceeded, view.State, view.Error)
	require.JSONEq(t, `"HELLO DAGQ WORLD"`, string(view.Outputs["upper"]))
	require.JSONEq(t, `3`, string(view.Outputs["words"]))
	require.JSONEq(t, `"HELLO DAGQ WORLD (3 words)"`, string(view.Outputs["summary"]))

	resp, err = http.Get(srv.URL + "/jobs/nope")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func getJSON[T any](t *testing.T, url string, code int) T {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, code, resp.StatusCode, string(body))
	var v T
	require.NoError(t, json.Unmarshal(body, &v), string(body))
	return v
}

// Configuration problems name the variable and what is valid.
func TestOptionsFromEnv(t *testing.T) {
	env := map[string]string{"DAGQ_S3_PATH_STYLE": "yes", "DAGQ_SQS_WAIT_TIME": "20"}
	_, err := OptionsFromEnv(func(k string) string { return env[k] })
	for _, want := range []string{"DAGQ_SQS_QUEUE_URL is not set", "DAGQ_S3_BUCKET is not set",
		`DAGQ_S3_PATH_STYLE: "yes" is not a boolean`, `DAGQ_SQS_WAIT_TIME: "20" is not a duration`} {
		require.ErrorContains(t, err, want)
	}
	env = map[string]string{"DAGQ_SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q", "DAGQ_S3_BUCKET": "b", "DAGQ_S3_PREFIX": "p/"}
	o, err := OptionsFromEnv(func(k string) string { return env[k] })
	require.NoError(t, err)
	require.Equal(t, "p/", o.Prefix)
	require.Equal(t, "https://sqs.us-east-1.amazonaws.com/1/q", o.QueueURL)
}
