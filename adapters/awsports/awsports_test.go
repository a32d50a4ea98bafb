package awsports_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/awsports"
	dagqsqs "github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

var (
	key1 = []byte("0123456789abcdef0123456789abcdef")
	key2 = []byte("fedcba9876543210fedcba9876543210")
)

const queueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/dagq-tasks"

func valid() awsports.Options {
	return awsports.Options{QueueURL: queueURL, Bucket: "my-dagq", Prefix: "dagq/"}
}

// Every invalid option fails New with ErrInvalidArgument, naming the option
// and what would be valid; New makes no request, so no AWS is needed.
func TestNew_InvalidOptions(t *testing.T) {
	eu := aws.Config{Region: "eu-west-1"}
	for _, tc := range []struct {
		name string
		cfg  aws.Config
		mod  func(*awsports.Options)
		want string
	}{
		{"no region", aws.Config{}, nil, "aws.Config.Region is empty; valid: the region of the queues and bucket"},
		{"no queue", eu, func(o *awsports.Options) { o.QueueURL = "" }, "Options.QueueURL: is required"},
		{"queue not a URL", eu, func(o *awsports.Options) { o.QueueURL = "dagq-tasks" }, `Options.QueueURL: "dagq-tasks" is not an http(s) URL; valid: an http(s) URL of the form`},
		{"queue without account", eu, func(o *awsports.Options) { o.QueueURL = "https://sqs.eu-west-1.amazonaws.com/q" }, "has no /<account>/<queue name> path"},
		{"region mismatch", aws.Config{Region: "us-east-1"}, nil,
			`Options.QueueURL: "` + queueURL + `" is in region eu-west-1 but aws.Config.Region is us-east-1; valid: a queue in us-east-1, or an aws.Config with Region eu-west-1`},
		{"run queue region", eu, func(o *awsports.Options) { o.RunQueueURL = "https://sqs.us-west-2.amazonaws.com/123456789012/runs" }, "Options.RunQueueURL: "},
		{"run queue is the task queue", eu, func(o *awsports.Options) { o.RunQueueURL = queueURL + "/" }, "Options.RunQueueURL: \"" + queueURL + "/\" is also the task queue (QueueURL)"},
		{"no bucket", eu, func(o *awsports.Options) { o.Bucket = "" }, "Options.Bucket: is required"},
		{"bad bucket", eu, func(o *awsports.Options) { o.Bucket = "My_Bucket" }, `Options.Bucket: "My_Bucket" is not a valid bucket name; valid: 3 to 63`},
		{"prefix", eu, func(o *awsports.Options) { o.Prefix = "dagq" }, `Options.Prefix: "dagq" must end with / and not start with one`},
		{"endpoint", eu, func(o *awsports.Options) { o.S3Endpoint = "localhost:9000" }, `Options.S3Endpoint: "localhost:9000" is not an http(s) URL`},
		{"wait time", eu, func(o *awsports.Options) { o.WaitTime = 30 * time.Second }, "Options.WaitTime: 30s is out of range; valid: 0 (default 20s) to 20s"},
		{"fair mode", eu, func(o *awsports.Options) { o.FairQueue = 7 }, "Options.FairQueue: FairMode(7) is not a mode; valid: FairAuto, FairOn or FairOff"},
		{"fair off on FIFO", eu, func(o *awsports.Options) { o.QueueURL += ".fifo"; o.FairQueue = dagqsqs.FairOff },
			"Options.FairQueue: FairOff, but QueueURL \"" + queueURL + ".fifo\" is a FIFO queue, which needs a message group on every message; valid: FairAuto or FairOn"},
		{"threshold", eu, func(o *awsports.Options) { o.PayloadThreshold = 1 << 20 }, "Options.PayloadThreshold: 1048576 is out of range; valid: 0 (default 204800) to 786432 bytes"},
		{"key ID without keys", eu, func(o *awsports.Options) { o.SigningKeyID = "k1" }, `Options.SigningKeyID: "k1" is set but SigningKeys is empty`},
		{"accept unsigned without keys", eu, func(o *awsports.Options) { o.AcceptUnsigned = true }, "Options.AcceptUnsigned: is set but SigningKeys is empty"},
		{"keys without key ID", eu, func(o *awsports.Options) { o.SigningKeys = map[string][]byte{"k1": key1, "k2": key2} },
			"Options.SigningKeyID: is required with SigningKeys: the ID of the key this process signs with; valid: one of k1, k2"},
		{"key ID not a key", eu, func(o *awsports.Options) { o.SigningKeys = map[string][]byte{"k1": key1}; o.SigningKeyID = "k9" },
			`Options.SigningKeyID: "k9" is not in SigningKeys; valid: one of k1`},
		{"short key", eu, func(o *awsports.Options) { o.SigningKeys = map[string][]byte{"k1": key1[:8]}; o.SigningKeyID = "k1" }, "Options.SigningKeys: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			if tc.mod != nil {
				tc.mod(&o)
			}
			p, cleanup, err := awsports.New(context.Background(), tc.cfg, o)
			require.ErrorIs(t, err, ports.ErrInvalidArgument)
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, cleanup)
			require.Zero(t, p)
			require.NotContains(t, err.Error(), string(key1[:8]), "errors never contain a key")
		})
	}
	// Every problem is reported at once.
	_, _, err := awsports.New(context.Background(), aws.Config{}, awsports.Options{Prefix: "x"})
	for _, want := range []string{"aws.Config.Region", "Options.QueueURL", "Options.Bucket", "Options.Prefix"} {
		require.ErrorContains(t, err, want)
	}
}

// New returns every port, with the settings applied, ready for a Client
// and a Worker; it makes no request.
func TestNew_Ports(t *testing.T) {
	o := valid()
	o.RunQueueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/dagq-runs"
	o.PayloadThreshold = 4096
	o.SigningKeys = map[string][]byte{"k1": key1, "k2": key2}
	o.SigningKeyID = "k2"
	tr, err := awsports.Open(context.Background(), aws.Config{Region: "eu-west-1"}, o)
	require.NoError(t, err)
	p := tr.Ports()
	require.Same(t, tr.Broker, p.Broker)
	require.Same(t, tr.RunBroker, p.RunBroker)
	require.NotSame(t, tr.Broker, tr.RunBroker)
	require.Same(t, tr.Results, p.Results)
	require.Same(t, tr.State, p.State)
	require.Same(t, tr.Payloads, p.Payloads)
	require.Same(t, tr.Completions, p.Completions)
	require.NotNil(t, tr.Cancels)
	require.NotEqual(t, ports.CancelChannel(tr.Cancels), p.Cancels, "the process's workers share one subscription")
	require.False(t, p.NoCancel)
	require.Equal(t, 4096, p.PayloadThreshold)
	require.Equal(t, "k2", p.Signer.KeyID())
	require.Equal(t, []string{"k1", "k2"}, p.Verifier.KeyIDs())
	c, err := core.NewClient(core.ClientOptions{Ports: p})
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, tr.Close())
	_, err = p.Results.Get(context.Background(), "t")
	require.ErrorIs(t, err, ports.ErrClosed, "Close closes the handles")

	// Without a run queue there is no RunBroker (a nil interface, not a nil
	// *Broker in one); NoCancel leaves cancellation out.
	o = valid()
	o.NoCancel = true
	p, cleanup, err := awsports.New(context.Background(), aws.Config{Region: "eu-west-1"}, o)
	require.NoError(t, err)
	defer cleanup()
	require.Nil(t, p.RunBroker)
	require.Nil(t, p.Cancels)
	require.True(t, p.NoCancel)
	require.Nil(t, p.Signer)
	require.Nil(t, p.Verifier)
	_, err = core.NewWorker(core.WorkerOptions{Ports: p, Registry: core.NewRegistry()})
	require.NoError(t, err)
}

// Echo returns its argument's length.
var Echo = core.NewTaskType[string, int]("awsports-len")

// emulator is an aws.Config and options on the local emulators (make
// emulators-up; scripts/emulators.sh env) with a fresh queue and bucket. It
// fails the test when the emulators' variables are missing: tests never
// skip.
func emulator(t *testing.T) (aws.Config, awsports.Options) {
	t.Helper()
	sqsEP, s3EP := os.Getenv("DAGQ_TEST_SQS_ENDPOINT"), os.Getenv("DAGQ_TEST_S3_ENDPOINT")
	if sqsEP == "" || s3EP == "" {
		t.Fatalf("DAGQ_TEST_SQS_ENDPOINT=%q DAGQ_TEST_S3_ENDPOINT=%q: this test needs the emulators; "+
			`run "make test", or "make emulators-up" and eval "$(scripts/emulators.sh env)"`, sqsEP, s3EP)
	}
	ctx := context.Background()
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion("us-east-1"))
	require.NoError(t, err)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	o := awsports.Options{Bucket: "dagq-awsports-" + id, Prefix: "dagq/", SQSEndpoint: sqsEP, S3Endpoint: s3EP, S3PathStyle: true,
		WaitTime: time.Second, CancelListLag: dagqsqs.NoCancelListLag}
	q, err := o.SQSClient(cfg).CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String("dagq-awsports-" + id)})
	require.NoError(t, err, "create the queue on fauxqs at %s", sqsEP)
	t.Cleanup(func() {
		_, _ = o.SQSClient(cfg).DeleteQueue(context.Background(), &awssqs.DeleteQueueInput{QueueUrl: q.QueueUrl})
	})
	_, err = o.S3Client(cfg).CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(o.Bucket)})
	require.NoError(t, err, "create the bucket on versitygw at %s", s3EP)
	o.QueueURL = *q.QueueUrl
	return cfg, o
}

// The port set of New runs tasks on the emulators: a worker and a client
// of one process share it; a large argument goes through the claim check;
// tasks are signed and an unsigned one is refused; a running task is
// cancelled through the shared cancel subscription.
func TestNew_Emulators(t *testing.T) {
	cfg, o := emulator(t)
	o.PayloadThreshold = 1024
	o.SigningKeys = map[string][]byte{"k1": key1}
	o.SigningKeyID = "k1"
	p, closePorts, err := awsports.New(context.Background(), cfg, o)
	require.NoError(t, err)
	defer closePorts()

	started := make(chan struct{}, 1)
	reg := core.NewRegistry()
	Echo.MustRegister(reg, func(ctx context.Context, s string) (int, error) {
		if s == "block" {
			started <- struct{}{}
			<-ctx.Done()
			return 0, context.Cause(ctx)
		}
		return len(s), nil
	})
	w, err := core.NewWorker(core.WorkerOptions{Ports: p, Registry: reg, Concurrency: 2, ShutdownTimeout: time.Second})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	workerCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(workerCtx) }()
	defer func() { stop(); require.NoError(t, <-done) }()

	c, err := core.NewClient(core.ClientOptions{Ports: p})
	require.NoError(t, err)
	defer c.Close()

	big := strings.Repeat("x", 1100<<10) // over the 1 MiB SQS limit: only the claim check carries it
	id, err := Echo.Submit(ctx, c, big)
	require.NoError(t, err)
	n, err := Echo.Wait(ctx, c, id)
	require.NoError(t, err)
	require.Equal(t, len(big), n)

	unsigned := p
	unsigned.Signer = nil
	uc, err := core.NewClient(core.ClientOptions{Ports: unsigned})
	require.NoError(t, err)
	defer uc.Close()
	id, err = Echo.Submit(ctx, uc, "hi")
	require.NoError(t, err)
	res, err := uc.Wait(ctx, id)
	require.NoError(t, err)
	require.Equal(t, ports.StateFailed, res.State)
	require.Contains(t, res.Error, "signature missing")

	id, err = Echo.Submit(ctx, c, "block")
	require.NoError(t, err)
	<-started
	require.NoError(t, c.Cancel(ctx, id))
	_, err = Echo.Wait(ctx, c, id)
	require.True(t, errors.Is(err, core.ErrTaskCanceled), "%v", err)
}
