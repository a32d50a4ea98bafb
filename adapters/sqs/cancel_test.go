package sqs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/s3"
	"github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/ports"
	"github.com/dagq/dagq/ports/porttest"
)

// cancelHarness runs the CancelChannel suite against fauxqs (broadcast) and
// versitygw at DAGQ_TEST_S3_ENDPOINT (durable marks). Every NewChannel call
// uses a queue prefix and a bucket of its own, shared by its n channels.
type cancelHarness struct {
	harness
	s3 *awss3.Client
}

func newCancelHarness(t *testing.T) cancelHarness {
	t.Helper()
	h := newHarness(t)
	endpoint := os.Getenv("DAGQ_TEST_S3_ENDPOINT")
	if endpoint == "" {
		t.Fatal("DAGQ_TEST_S3_ENDPOINT not set: run `make emulators-up` (make test does it) and export `scripts/emulators.sh env`")
	}
	c := awss3.New(awss3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  testCredentials(),
	})
	return cancelHarness{harness: h, s3: c}
}

func (cancelHarness) Features() porttest.Features {
	return porttest.Features{Synctest: false, LeaseGranularity: time.Second, PollBound: waitTime}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newBucket creates a fresh bucket and removes it (emptied) afterwards.
func (h cancelHarness) newBucket(t *testing.T) string {
	t.Helper()
	name := "dagq-test-" + randHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.s3.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: &name})
	require.NoErrorf(t, err, "creating bucket %s at %s (is versitygw running? `make emulators-up`)", name, os.Getenv("DAGQ_TEST_S3_ENDPOINT"))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p := awss3.NewListObjectsV2Paginator(h.s3, &awss3.ListObjectsV2Input{Bucket: &name})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Errorf("listing bucket %s for cleanup: %v", name, err)
				return
			}
			for _, o := range page.Contents {
				if _, err := h.s3.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &name, Key: o.Key}); err != nil {
					t.Errorf("cleanup: deleting %s/%s: %v", name, aws.ToString(o.Key), err)
				}
			}
		}
		if _, err := h.s3.DeleteBucket(ctx, &awss3.DeleteBucketInput{Bucket: &name}); err != nil {
			t.Errorf("cleanup: deleting bucket %s: %v", name, err)
		}
	})
	return name
}

// listQueues returns the URLs of the queues named with prefix.
func (h cancelHarness) listQueues(ctx context.Context, t *testing.T, prefix string) []string {
	t.Helper()
	out, err := h.client.ListQueues(ctx, &awssqs.ListQueuesInput{QueueNamePrefix: &prefix, MaxResults: aws.Int32(1000)})
	require.NoError(t, err, "ListQueues")
	return out.QueueUrls
}

// checkNoQueuesLeft registers a cleanup, run after the test's own (so after
// its subscriptions and channels are closed), that fails the test if queues
// named with prefix are left, and deletes them.
func (h cancelHarness) checkNoQueuesLeft(t *testing.T, prefix string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		left := h.listQueues(ctx, t, prefix)
		for _, u := range left {
			_, _ = h.client.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: &u})
		}
		require.Empty(t, left, "subscription queues left after Close")
	})
}

func (h cancelHarness) newChannels(t *testing.T, n int) ([]*sqs.CancelChannel, string) {
	prefix := "dagqt-cancel-" + randHex(6) + "-" // not under the default prefix (dagq-cancel-), which other packages' tests broadcast to on the same emulator
	h.checkNoQueuesLeft(t, prefix)
	bucket := h.newBucket(t)
	cs := make([]*sqs.CancelChannel, n)
	for i := range cs {
		marks, err := s3.NewStateStore(h.s3, bucket, &s3.Options{Prefix: "dagq/test/"})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, marks.Close()) })
		c, err := sqs.NewCancelChannel(h.client, marks, &sqs.CancelOptions{QueuePrefix: prefix, WaitTime: waitTime, ListLag: -1}) // fauxqs lists at once
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, c.Close()) })
		cs[i] = c
	}
	return cs, prefix
}

func (h cancelHarness) NewChannel(t *testing.T, n int) []ports.CancelChannel {
	cs, _ := h.newChannels(t, n)
	out := make([]ports.CancelChannel, n)
	for i, c := range cs {
		out[i] = c
	}
	return out
}

func TestCancelChannel(t *testing.T) {
	porttest.TestCancelChannel(t, newCancelHarness(t))
}

// TestCancelSubscriptionQueue checks what the suite cannot: the
// subscription queue's name, tag and retention, that a vanished subscriber
// queue does not fail Cancel, that IDs SQS refuses in a body travel, and
// the Cancel→Receive latency (logged).
func TestCancelSubscriptionQueue(t *testing.T) {
	h := newCancelHarness(t)
	ctx := t.Context()
	cs, prefix := h.newChannels(t, 2)
	sub, err := cs[1].Subscribe(ctx)
	require.NoError(t, err)
	defer func() { require.NoError(t, sub.Close()) }()
	url := sub.(*sqs.CancelSubscription).QueueURL()

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
	require.Equal(t, sqs.CancelTagValue, tags.Tags[sqs.InboxTagKey])

	// A subscriber that vanished (a worker whose queue was deleted) does not
	// fail Cancel.
	gone, err := cs[0].Subscribe(ctx)
	require.NoError(t, err)
	goneURL := gone.(*sqs.CancelSubscription).QueueURL()
	_, err = h.client.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: &goneURL})
	require.NoError(t, err)
	defer func() { require.NoError(t, gone.Close()) }()

	odd := "task \uFFFE with space"
	require.NoError(t, cs[0].Cancel(ctx, odd, "plain"))
	got, err := cs[1].Canceled(ctx, "plain", odd, "other")
	require.NoError(t, err)
	require.Equal(t, []string{"plain", odd}, got)
	seen := map[string]bool{}
	for deadline := time.Now().Add(10 * time.Second); len(seen) < 2 && time.Now().Before(deadline); {
		ids, err := sub.Receive(ctx)
		require.NoError(t, err)
		for _, id := range ids {
			seen[id] = true
		}
	}
	require.Equal(t, map[string]bool{odd: true, "plain": true}, seen)

	// Latency: Cancel returns, then the blocked Receive wakes up.
	const rounds = 5
	var total, worst time.Duration
	for i := range rounds {
		id := "lat-" + randHex(4)
		type res struct {
			at  time.Time
			err error
		}
		ch := make(chan res, 1)
		go func() {
			for {
				ids, err := sub.Receive(ctx)
				if err != nil || len(ids) > 0 {
					if err == nil && ids[0] != id {
						continue
					}
					ch <- res{time.Now(), err}
					return
				}
			}
		}()
		time.Sleep(200 * time.Millisecond) // let Receive block
		start := time.Now()
		require.NoError(t, cs[0].Cancel(ctx, id), "round %d", i)
		r := <-ch
		require.NoError(t, r.err)
		d := r.at.Sub(start)
		total += d
		worst = max(worst, d)
	}
	t.Logf("Cancel→Receive latency (2 subscriber queues, 1 ID): mean %v, worst %v over %d rounds",
		total/rounds, worst, rounds)
}

func TestNewCancelChannelValidation(t *testing.T) {
	client := awssqs.New(awssqs.Options{Region: "us-east-1"})
	marks := &s3.StateStore{}
	_, err := sqs.NewCancelChannel(nil, marks, nil)
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	_, err = sqs.NewCancelChannel(client, nil, nil)
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	_, err = sqs.NewCancelChannel(client, marks, &sqs.CancelOptions{QueuePrefix: "bad.prefix"})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	_, err = sqs.NewCancelChannel(client, marks, &sqs.CancelOptions{QueuePrefix: strings.Repeat("x", 49)})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	_, err = sqs.NewCancelChannel(client, marks, &sqs.CancelOptions{WaitTime: 21 * time.Second})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	c, err := sqs.NewCancelChannel(client, marks, nil)
	require.NoError(t, err)
	require.NoError(t, c.Close())
}
