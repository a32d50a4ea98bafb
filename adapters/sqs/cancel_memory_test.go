package sqs_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/s3"
	"github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/ports"
)

// countingS3 is a copy of the harness's S3 client whose requests are
// counted by an SDK middleware.
func (h cancelHarness) countingS3() (*awss3.Client, *opCounter) {
	c := &opCounter{n: map[string]int{}}
	client := awss3.New(h.s3.Options(), func(o *awss3.Options) {
		o.APIOptions = append(o.APIOptions, c.apiOption)
	})
	return client, c
}

// memChannels returns a channel whose S3 requests are counted, with the
// given options, and a second channel (another process) on the same
// prefix and bucket.
type memEnv struct {
	c      *sqs.CancelChannel // its S3 requests are counted
	count  *opCounter
	other  *sqs.CancelChannel // another process
	s3     *awss3.Client      // counted
	bucket string
}

func (h cancelHarness) memChannels(t *testing.T, o sqs.CancelOptions) memEnv {
	t.Helper()
	prefix := "dagqt-cancel-m" + randHex(6) + "-"
	h.checkNoQueuesLeft(t, prefix)
	bucket := h.newBucket(t)
	s3c, count := h.countingS3()
	open := func(c *awss3.Client) *sqs.CancelChannel {
		marks, err := s3.NewStateStore(c, bucket, &s3.Options{Prefix: "dagq/test/"})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, marks.Close()) })
		o := o
		o.QueuePrefix, o.WaitTime = prefix, waitTime
		ch, err := sqs.NewCancelChannel(h.client, marks, &o)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, ch.Close()) })
		return ch
	}
	return memEnv{c: open(s3c), count: count, other: open(h.s3), s3: s3c, bucket: bucket}
}

// pump receives from s until ctx ends, as core's shared subscription does;
// it returns a function that stops it and waits.
func pump(ctx context.Context, s ports.CancelSubscription) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			if _, err := s.Receive(ctx); err != nil && ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond) // broken: keep the loop slow
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}

// subscribePumped subscribes c and pumps the subscription until the test
// ends, then closes it.
func subscribePumped(t *testing.T, c ports.CancelChannel) ports.CancelSubscription {
	t.Helper()
	sub, err := c.Subscribe(t.Context())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sub.Close()) })
	t.Cleanup(pump(t.Context(), sub)) // stops first
	return sub
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
	}
}

func gets(c *opCounter) int { return c.get("GetObject") }

// With ListLag none and an open, received subscription, Canceled answers
// from memory once settled: a mark made before the subscription existed
// (found by the LIST), requests made after (by the broadcast, or by this
// channel), and no S3 request. Without a subscription, and after it
// closes, Canceled reads S3 again.
func TestCanceledFromMemory(t *testing.T) {
	h := newCancelHarness(t)
	ctx := t.Context()
	e := h.memChannels(t, sqs.CancelOptions{ListLag: -1})
	c, count, other, _ := e.c, e.count, e.other, e.s3

	require.NoError(t, other.Cancel(ctx, "before"))
	got, err := c.Canceled(ctx, "before", "x")
	require.NoError(t, err)
	require.Equal(t, []string{"before"}, got)
	require.Equal(t, 2, gets(count), "GETs without a subscription")
	require.False(t, c.Settled())

	sub, err := c.Subscribe(ctx)
	require.NoError(t, err)
	stop := pump(ctx, sub)
	waitFor(t, 5*time.Second, "settled", c.Settled)
	require.Equal(t, 1, count.get("ListObjectsV2"), "one LIST to settle")

	require.NoError(t, other.Cancel(ctx, "after"))
	count.reset()
	waitFor(t, 5*time.Second, "broadcast request known", func() bool {
		got, err := c.Canceled(ctx, "after")
		require.NoError(t, err)
		return len(got) == 1
	})
	require.NoError(t, c.Cancel(ctx, "own"))
	count.reset()
	got, err = c.Canceled(ctx, "x", "own", "after", "before", "y")
	require.NoError(t, err)
	require.Equal(t, []string{"own", "after", "before"}, got)
	odd := "task \uFFFE with space" // hashed mark key
	require.NoError(t, other.Cancel(ctx, odd))
	waitFor(t, 5*time.Second, "hashed ID known", func() bool {
		got, err := c.Canceled(ctx, odd)
		require.NoError(t, err)
		return len(got) == 1
	})
	require.Zero(t, gets(count), "GETs once settled")
	require.Zero(t, count.get("ListObjectsV2"), "LISTs once settled")
	count.reset()

	// The subscription closes: back to GETs.
	stop()
	require.NoError(t, sub.Close())
	require.False(t, c.Settled())
	got, err = c.Canceled(ctx, "before", "x")
	require.NoError(t, err)
	require.Equal(t, []string{"before"}, got)
	require.Equal(t, 2, gets(count), "GETs after the subscription closed")

	// A subscription that is not being received does not answer either.
	sub2, err := c.Subscribe(ctx)
	require.NoError(t, err)
	defer func() { require.NoError(t, sub2.Close()) }()
	time.Sleep(200 * time.Millisecond)
	require.False(t, c.Settled(), "settled without a Receive")
}

// A subscription whose queue is deleted (its Receive fails with
// ErrNotFound) stops answering from memory.
func TestCanceledSubscriptionLost(t *testing.T) {
	h := newCancelHarness(t)
	ctx := t.Context()
	e := h.memChannels(t, sqs.CancelOptions{ListLag: -1})
	c, count, other, _ := e.c, e.count, e.other, e.s3
	sub := subscribePumped(t, c)
	waitFor(t, 5*time.Second, "settled", c.Settled)

	url := sub.(*sqs.CancelSubscription).QueueURL()
	_, err := h.client.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: &url})
	require.NoError(t, err)
	waitFor(t, 2*waitTime+5*time.Second, "unsettled after the queue vanished", func() bool { return !c.Settled() })
	// A request now reaches no queue of c's, but Canceled reads S3.
	require.NoError(t, other.Cancel(ctx, "lost"))
	count.reset()
	got, err := c.Canceled(ctx, "lost")
	require.NoError(t, err)
	require.Equal(t, []string{"lost"}, got)
	require.Equal(t, 1, gets(count))
}

// In real time with a ListLag of 1s: GETs before the subscription settles
// (1.1s after its queue was created), none after.
func TestCanceledSettlesAfterListLag(t *testing.T) {
	h := newCancelHarness(t)
	ctx := t.Context()
	e := h.memChannels(t, sqs.CancelOptions{ListLag: time.Second})
	c, count, other, _ := e.c, e.count, e.other, e.s3
	require.NoError(t, other.Cancel(ctx, "early"))
	start := time.Now()
	subscribePumped(t, c)

	count.reset()
	got, err := c.Canceled(ctx, "early", "x")
	require.NoError(t, err)
	require.Equal(t, []string{"early"}, got)
	require.Equal(t, 2, gets(count), "GETs before settling")
	require.False(t, c.Settled())
	waitFor(t, 5*time.Second, "settled", c.Settled)
	settledIn := time.Since(start)
	require.GreaterOrEqual(t, settledIn, 1100*time.Millisecond)

	require.NoError(t, other.Cancel(ctx, "late"))
	waitFor(t, 5*time.Second, "broadcast request known", func() bool {
		got, err := c.Canceled(ctx, "late")
		require.NoError(t, err)
		return len(got) == 1
	})
	count.reset()
	got, err = c.Canceled(ctx, "early", "late", "x")
	require.NoError(t, err)
	require.Equal(t, []string{"early", "late"}, got)
	require.Zero(t, gets(count), "GETs after settling")
	t.Logf("settled %v after Subscribe returned", settledIn.Round(time.Millisecond))
}

// S3 requests for 200 tasks received in batches of 10: the durable check
// per batch and one result PUT per task (as core's worker does), before
// (no subscription: one GET per task) and after settling.
func TestCanceledRequestsPerTask(t *testing.T) {
	h := newCancelHarness(t)
	ctx := t.Context()
	e := h.memChannels(t, sqs.CancelOptions{ListLag: -1})
	c, count, other, s3c := e.c, e.count, e.other, e.s3
	results, err := s3.NewResultBackend(s3c, h.newBucket(t), nil)
	require.NoError(t, err)
	require.NoError(t, other.Cancel(ctx, "t-7", "t-150"))

	const n = 200
	run := func(tag string) int {
		count.reset()
		canceled := 0
		for b := 0; b < n; b += ports.MaxBatch {
			ids := make([]string, ports.MaxBatch)
			for i := range ids {
				ids[i] = fmt.Sprintf("t-%d", b+i)
			}
			got, err := c.Canceled(ctx, ids...)
			require.NoError(t, err)
			canceled += len(got)
			for _, id := range ids {
				require.NoError(t, results.Put(ctx, ports.Result{TaskID: tag + id, State: ports.StateSucceeded}))
			}
		}
		require.Equal(t, 2, canceled)
		var total int
		count.mu.Lock()
		for _, v := range count.n {
			total += v
		}
		count.mu.Unlock()
		return total
	}
	before := run("before-")
	subscribePumped(t, c)
	count.reset()
	waitFor(t, 5*time.Second, "settled", c.Settled)
	settle := count.get("ListObjectsV2")
	after := run("after-")
	require.Equal(t, 2*n, before, "S3 requests without a subscription: a GET and a PUT per task")
	require.Equal(t, n, after, "S3 requests once settled: the PUTs")
	t.Logf("S3 requests for %d tasks (cancel check + result PUT): %d without a subscription (%.2f/task); once settled %d plus %d LIST to settle (%.3f/task)",
		n, before, float64(before)/n, after, settle, float64(after+settle)/n)
}

// The periodic re-LIST drops marks deleted from the StateStore (as an S3
// lifecycle rule does) and keeps the requests delivered since.
func TestCanceledRelist(t *testing.T) {
	h := newCancelHarness(t)
	ctx := t.Context()
	e := h.memChannels(t, sqs.CancelOptions{ListLag: -1, Relist: 300 * time.Millisecond})
	c, count, other, s3c := e.c, e.count, e.other, e.s3
	require.NoError(t, other.Cancel(ctx, "expiring", "kept"))
	subscribePumped(t, c)
	waitFor(t, 5*time.Second, "settled", c.Settled)
	got, err := c.Canceled(ctx, "expiring", "kept")
	require.NoError(t, err)
	require.Equal(t, []string{"expiring", "kept"}, got)

	// Expire a mark behind the channel's back.
	bucketStore, err := s3.NewStateStore(s3c, e.bucket, &s3.Options{Prefix: "dagq/test/"})
	require.NoError(t, err)
	require.NoError(t, bucketStore.Delete(ctx, sqs.CancelMarkPrefix+"expiring"))
	require.NoError(t, other.Cancel(ctx, "new"))
	waitFor(t, 5*time.Second, "expired mark dropped", func() bool {
		got, err := c.Canceled(ctx, "expiring", "kept", "new")
		require.NoError(t, err)
		return len(got) == 2 && got[0] == "kept" && got[1] == "new"
	})
	require.Zero(t, gets(count))
	require.Positive(t, count.get("ListObjectsV2"))
}
