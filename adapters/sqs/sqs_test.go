package sqs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
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
	client := awssqs.New(awssqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  testCredentials(),
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
		// Requeue on standard queues only: on FIFO queues a copy would be
		// dropped by deduplication (RequeueFIFO undeclared).
		Requeue:     true,
		DeadLetters: true,
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
func (h harness) NewDeadLetteredQueue(t *testing.T, maxReceives int) ports.Broker {
	dlq := h.createQueue(t, false)
	arn, err := h.client.GetQueueAttributes(t.Context(), &awssqs.GetQueueAttributesInput{
		QueueUrl: &dlq, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	require.NoError(t, err, "GetQueueAttributes QueueArn")
	url := h.createQueue(t, false)
	_, err = h.client.SetQueueAttributes(t.Context(), &awssqs.SetQueueAttributesInput{QueueUrl: &url, Attributes: map[string]string{
		string(types.QueueAttributeNameRedrivePolicy): fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":%d}`,
			arn.Attributes[string(types.QueueAttributeNameQueueArn)], maxReceives),
	}})
	require.NoError(t, err, "SetQueueAttributes RedrivePolicy")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, u := range []string{url, dlq} {
			_, err := h.client.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: &u})
			require.NoError(t, err, "DeleteQueue")
		}
	})
	b, err := sqs.New(h.client, url, &sqs.Options{WaitTime: waitTime})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

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

// completionHarness runs the CompletionBus suite against fauxqs: every
// NewBus call uses a prefix of its own, so that leftover inboxes of one
// subtest are told apart from another's.
type completionHarness struct{ harness }

func (completionHarness) Features() porttest.Features {
	return porttest.Features{Synctest: false, LeaseGranularity: time.Second, PollBound: waitTime}
}

func (h completionHarness) NewBus(t *testing.T, n int) []ports.CompletionBus {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "dagq-reply-t" + hex.EncodeToString(b) + "-"
	bs := make([]ports.CompletionBus, n)
	for i := range bs {
		bus, err := sqs.NewCompletionBus(h.client, &sqs.CompletionOptions{QueuePrefix: prefix, WaitTime: waitTime})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, bus.Close()) })
		bs[i] = bus
	}
	return bs
}

func TestCompletionBus(t *testing.T) {
	porttest.TestCompletionBus(t, completionHarness{newHarness(t)})
}

// TestInboxQueue checks what the suite cannot: the inbox queue's name, tag
// and retention, that undecodable messages are dropped (and deleted) without
// failing Receive, and that a completion with characters SQS refuses in a
// body travels base64-encoded.
func TestInboxQueue(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "dagq-reply-t" + hex.EncodeToString(b) + "-"
	bus, err := sqs.NewCompletionBus(h.client, &sqs.CompletionOptions{QueuePrefix: prefix, WaitTime: waitTime})
	require.NoError(t, err)
	defer func() { require.NoError(t, bus.Close()) }()
	ib, err := bus.Open(ctx)
	require.NoError(t, err)
	url := ib.Address()

	name := url[strings.LastIndex(url, "/")+1:]
	require.True(t, strings.HasPrefix(name, prefix), "queue name %q", name)
	require.Len(t, name, len(prefix)+32)
	attrs, err := h.client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl: &url, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameMessageRetentionPeriod},
	})
	require.NoError(t, err)
	require.Equal(t, "3600", attrs.Attributes[string(types.QueueAttributeNameMessageRetentionPeriod)])
	tags, err := h.client.ListQueueTags(ctx, &awssqs.ListQueueTagsInput{QueueUrl: &url})
	require.NoError(t, err)
	require.Equal(t, sqs.InboxTagValue, tags.Tags[sqs.InboxTagKey])

	for _, body := range []string{"not json", `{"state":"succeeded"}`} {
		_, err := h.client.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(body)})
		require.NoError(t, err)
	}
	odd := ports.Completion{TaskID: "task-\uFFFE", State: ports.StateRetrying, Attempt: 2, Error: "bad \uFFFF char"}
	require.NoError(t, bus.Publish(ctx, url, odd))

	var got []ports.Completion
	for deadline := time.Now().Add(10 * time.Second); len(got) == 0 && time.Now().Before(deadline); {
		cs, err := ib.Receive(ctx)
		require.NoError(t, err)
		got = append(got, cs...)
	}
	require.Equal(t, []ports.Completion{odd}, got)
	// The undecodable messages were deleted too (or arrive, and are dropped,
	// later): nothing else comes out of the inbox.
	for range 2 {
		cs, err := ib.Receive(ctx)
		require.NoError(t, err)
		require.Empty(t, cs)
	}
	out, err := h.client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 0, MaxNumberOfMessages: 10})
	require.NoError(t, err)
	require.Empty(t, out.Messages, "messages left in the inbox queue")
}

// testCredentials are the emulators' static credentials (AWS_ACCESS_KEY_ID
// and AWS_SECRET_ACCESS_KEY from scripts/emulators.sh env, else "test").
func testCredentials() aws.CredentialsProvider {
	key, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if key == "" {
		key, secret = "test", "test"
	}
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: key, SecretAccessKey: secret, Source: "dagq-test"}, nil
	})
}
