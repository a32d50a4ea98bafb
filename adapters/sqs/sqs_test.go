package sqs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/ports"
	"github.com/dagq/dagq/ports/porttest"
)

// defaultParallel is the -parallel used when the flag is not given: the
// conformance subtests against the emulator spend their time waiting on
// real-time leases and long polls, not CPU, so running them all at once
// keeps the package well under a minute.
const defaultParallel = 64

func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		_ = flag.Set("test.parallel", strconv.Itoa(defaultParallel))
	}
	goleak.VerifyTestMain(m,
		// The SDK's HTTP transport keeps idle keep-alive connections.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// waitTime is the brokers' long-polling wait (and the suite's PollBound):
// short, so that empty receives do not dominate the run time.
const waitTime = time.Second

// harness runs the conformance suite against the SQS emulator (fauxqs) at
// DAGQ_TEST_SQS_ENDPOINT.
type harness struct {
	client *awssqs.Client
}

func newHarness(t *testing.T) harness {
	t.Helper()
	endpoint := os.Getenv("DAGQ_TEST_SQS_ENDPOINT")
	if endpoint == "" {
		t.Fatal("DAGQ_TEST_SQS_ENDPOINT not set: run `make emulators-up` (make test does it)")
	}
	key, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if key == "" {
		key, secret = "test", "test"
	}
	client := awssqs.New(awssqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: key, SecretAccessKey: secret, Source: "dagq-test"}, nil
		}),
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := client.ListQueues(ctx, &awssqs.ListQueuesInput{MaxResults: aws.Int32(1)}); err != nil {
		t.Fatalf("SQS emulator at DAGQ_TEST_SQS_ENDPOINT=%s not answering (run `make emulators-up`): %v", endpoint, err)
	}
	return harness{client: client}
}

func (h harness) Features() porttest.Features {
	return porttest.Features{
		FIFO:             true,
		Synctest:         false,
		LeaseGranularity: time.Second,
		PollBound:        waitTime,
		// fauxqs 2.4.1 accepts ChangeMessageVisibility with the receipt of
		// an expired, unreceived lease; SQS answers MessageNotInflight.
		ExtendsExpiredLease: true,
	}
}

func uniqueName(fifo bool) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	name := "dagq-test-" + hex.EncodeToString(b)
	if fifo {
		name += ".fifo"
	}
	return name
}

func (h harness) createQueue(t *testing.T, fifo bool) string {
	t.Helper()
	attrs := map[string]string{"MaximumMessageSize": "1048576"}
	if fifo {
		attrs[string(types.QueueAttributeNameFifoQueue)] = "true"
	}
	out, err := h.client.CreateQueue(t.Context(), &awssqs.CreateQueueInput{QueueName: aws.String(uniqueName(fifo)), Attributes: attrs})
	require.NoError(t, err, "CreateQueue")
	return *out.QueueUrl
}

func (h harness) NewQueue(t *testing.T, fifo bool, n int) []ports.Broker {
	url := h.createQueue(t, fifo)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := h.client.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: &url})
		require.NoError(t, err, "DeleteQueue")
	})
	bs := make([]ports.Broker, n)
	for i := range bs {
		b, err := sqs.New(h.client, url, &sqs.Options{WaitTime: waitTime})
		require.NoError(t, err)
		require.Equal(t, fifo, b.FIFO())
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		bs[i] = b
	}
	return bs
}

// MissingQueue returns a broker on the URL of a queue that was created and
// deleted again, so the URL has the emulator's exact form.
func (h harness) MissingQueue(t *testing.T) ports.Broker {
	url := h.createQueue(t, false)
	_, err := h.client.DeleteQueue(t.Context(), &awssqs.DeleteQueueInput{QueueUrl: &url})
	require.NoError(t, err, "DeleteQueue")
	b, err := sqs.New(h.client, url, &sqs.Options{WaitTime: waitTime})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

func TestBroker(t *testing.T) {
	porttest.TestBroker(t, newHarness(t))
}
