package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/core"
)

// A runtime on the sqs transport built with WithAWSCounter has every SQS
// and S3 request of its client and workers counted, per operation.
func TestAWSCounter_Runtime(t *testing.T) {
	cfg, flags := sqsEnv(t)
	r := dagq(t, append([]string{"queue", "init"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)

	counter := cli.NewAWSCounter()
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()), cli.WithAWSCounter(counter))
	require.NoError(t, err)
	require.Zero(t, counter.Snapshot().Total(), "wiring makes no request")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := rt.StartWorkers(ctx, 1)
	require.NoError(t, err)
	id, err := rt.Client.Submit(ctx, core.Request{Task: builtin.Echo, Args: "counted"})
	require.NoError(t, err)
	res, err := rt.Client.Wait(ctx, id)
	require.NoError(t, err)
	require.JSONEq(t, `"counted"`, string(res.Output))
	require.NoError(t, pool.Stop())
	rt.Close()

	got := counter.Snapshot()
	t.Logf("requests: %+v", got)
	sends := got.Get("SQS", "SendMessageBatch") + got.Get("SQS", "SendMessage")
	require.GreaterOrEqual(t, sends, int64(2), "the task, and its completion")
	require.GreaterOrEqual(t, got.Get("SQS", "ReceiveMessage"), int64(2), "the worker's receive and the client's inbox")
	require.GreaterOrEqual(t, got.Get("SQS", "CreateQueue"), int64(2), "the reply inbox and the cancel subscription")
	require.GreaterOrEqual(t, got.Get("SQS", "DeleteQueue"), int64(2), "Close deletes them")
	require.GreaterOrEqual(t, got.Get("SQS", "DeleteMessageBatch")+got.Get("SQS", "DeleteMessage"), int64(1), "the ack")
	require.GreaterOrEqual(t, got.Get("S3", "PutObject"), int64(1), "the result")
	require.Equal(t, got.Service("SQS")+got.Service("S3"), got.Total())
	require.Equal(t, got.Total(), got.ByService()["SQS"]+got.ByService()["S3"])
	for _, c := range got {
		require.NotEqual(t, "unknown", c.Service)
		require.NotEqual(t, "unknown", c.Operation)
	}

	// Snapshot is a copy; Minus gives the requests between two snapshots.
	got[0].Requests = -1
	require.NotEqual(t, int64(-1), counter.Snapshot()[0].Requests)
	require.Empty(t, counter.Snapshot().Minus(counter.Snapshot()))
	counter.Reset()
	require.Zero(t, counter.Snapshot().Total())
}

// Every attempt counts: an operation the SDK retries counts once per
// attempt, and failed attempts count as errors too.
func TestAWSCounter_CountsEachAttempt(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	httpc := smithyhttp.ClientDoFunc(func(req *http.Request) (*http.Response, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		return &http.Response{StatusCode: http.StatusInternalServerError, Header: http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
			Body: io.NopCloser(strings.NewReader(`{"__type":"InternalError","message":"boom"}`)), Request: req}, nil
	})
	counter := cli.NewAWSCounter()
	c := awssqs.New(awssqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("http://127.0.0.1:1"),
		Credentials:  credentials.NewStaticCredentialsProvider("a", "b", ""),
		HTTPClient:   httpc,
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 3
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		}),
		// Twice: adding the counter again is a no-op.
		APIOptions: []func(*middleware.Stack) error{counter.APIOption, counter.APIOption},
	})
	_, err := c.ListQueues(context.Background(), &awssqs.ListQueuesInput{})
	require.Error(t, err)
	require.Equal(t, 3, calls)
	require.Equal(t, cli.AWSCounts{{Service: "SQS", Operation: "ListQueues", Requests: 3, Errors: 3}}, counter.Snapshot())
}

func TestAWSCounts_Arithmetic(t *testing.T) {
	a := cli.AWSCounts{{Service: "S3", Operation: "GetObject", Requests: 2}, {Service: "SQS", Operation: "ReceiveMessage", Requests: 5, Errors: 1}}
	b := cli.AWSCounts{{Service: "SQS", Operation: "ReceiveMessage", Requests: 1}, {Service: "SQS", Operation: "CreateQueue", Requests: 1}}
	sum := a.Plus(b)
	require.Equal(t, cli.AWSCounts{
		{Service: "S3", Operation: "GetObject", Requests: 2},
		{Service: "SQS", Operation: "CreateQueue", Requests: 1},
		{Service: "SQS", Operation: "ReceiveMessage", Requests: 6, Errors: 1},
	}, sum)
	require.Equal(t, a, sum.Minus(b))
	require.Equal(t, int64(9), sum.Total())
	require.Equal(t, map[string]int64{"S3": 2, "SQS": 7}, sum.ByService())
	js, err := json.Marshal(cli.AWSCounts{{Service: "S3", Operation: "PutObject", Requests: 1}})
	require.NoError(t, err)
	require.JSONEq(t, `[{"service":"S3","operation":"PutObject","requests":1}]`, string(js))
}

// A lookup's not-found answer (a GetObject or HeadObject of a key that does
// not exist, as every cancel-mark check of a task that was not cancelled
// gets) is an answer, not an error: it counts as a request only. Other
// failures of the same operations, and a 404 of any other operation, are
// errors.
func TestAWSCounter_LookupNotFoundIsNoError(t *testing.T) {
	status := map[string]int{"/b/missing": http.StatusNotFound, "/b/forbidden": http.StatusForbidden}
	httpc := smithyhttp.ClientDoFunc(func(req *http.Request) (*http.Response, error) {
		code := status[req.URL.Path]
		if code == 0 {
			code = http.StatusNotFound // PutObject into /b/put: NoSuchBucket
		}
		body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>no</Message></Error>`
		switch {
		case code == http.StatusForbidden:
			body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>no</Message></Error>`
		case req.Method == http.MethodPut:
			body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchBucket</Code><Message>no</Message></Error>`
		}
		return &http.Response{StatusCode: code, Header: http.Header{"Content-Type": {"application/xml"}},
			Body: io.NopCloser(strings.NewReader(body)), Request: req}, nil
	})
	counter := cli.NewAWSCounter()
	c := awss3.New(awss3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("http://127.0.0.1:1"),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("a", "b", ""),
		HTTPClient:   httpc,
		Retryer:      aws.NopRetryer{},
		APIOptions:   []func(*middleware.Stack) error{counter.APIOption},
	})
	ctx := context.Background()
	_, err := c.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("missing")})
	require.Error(t, err)
	_, err = c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("missing")})
	require.Error(t, err)
	_, err = c.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("forbidden")})
	require.Error(t, err)
	_, err = c.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("put"), Body: strings.NewReader("x")})
	require.Error(t, err)
	require.Equal(t, cli.AWSCounts{
		{Service: "S3", Operation: "GetObject", Requests: 2, Errors: 1},
		{Service: "S3", Operation: "HeadObject", Requests: 1},
		{Service: "S3", Operation: "PutObject", Requests: 1, Errors: 1},
	}, counter.Snapshot())
}
