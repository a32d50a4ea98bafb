package sqs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/ports"
)

// opCounter counts the requests of a client by operation name.
type opCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *opCounter) get(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[op]
}

func (c *opCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = map[string]int{}
}

// apiOption is the SDK option that counts a client's requests in c.
func (c *opCounter) apiOption(st *middleware.Stack) error {
	return st.Initialize.Add(middleware.InitializeMiddlewareFunc("dagq-test-count",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			c.mu.Lock()
			c.n[middleware.GetOperationName(ctx)]++
			c.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

// countingClient is a copy of the harness's client whose requests are
// counted by an SDK middleware.
func (h harness) countingClient() (*awssqs.Client, *opCounter) {
	c := &opCounter{n: map[string]int{}}
	client := awssqs.New(h.client.Options(), func(o *awssqs.Options) {
		o.APIOptions = append(o.APIOptions, c.apiOption)
	})
	return client, c
}

func (h harness) tempQueue(t *testing.T, fifo bool) string {
	t.Helper()
	url := h.createQueue(t, fifo)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := h.client.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: &url})
		require.NoError(t, err, "DeleteQueue")
	})
	return url
}

// drain receives from b until want messages came or nothing more comes,
// acking each; it returns the bodies by ID and fails on a duplicate. The
// lease is short, so that a receive whose response was lost on a loaded
// machine (the SDK retries it; the messages stay leased) delays its
// messages by seconds instead of hiding them past the deadline.
func drain(t *testing.T, b ports.Broker, want int) map[string][]byte {
	t.Helper()
	const lease = 5 * time.Second
	got := map[string][]byte{}
	for deadline := time.Now().Add(40 * time.Second); len(got) < want && time.Now().Before(deadline); {
		ds, err := b.Receive(t.Context(), ports.MaxBatch, lease)
		require.NoError(t, err)
		rs := make([]ports.Receipt, 0, len(ds))
		for _, d := range ds {
			_, dup := got[d.ID]
			require.False(t, dup, "message %s received twice", d.ID)
			got[d.ID] = d.Body
			rs = append(rs, d.Receipt)
		}
		if len(rs) > 0 {
			require.NoError(t, b.Ack(t.Context(), rs...))
		}
	}
	// Nothing more: every message exactly once.
	ds, err := b.Receive(t.Context(), ports.MaxBatch, lease)
	require.NoError(t, err)
	require.Empty(t, ds, "more messages than sent")
	return got
}

// concurrentSends sends n single-message Sends from g goroutines and
// returns the wall time.
func concurrentSends(t *testing.T, b ports.Broker, n, g int, prefix string) time.Duration {
	t.Helper()
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	start := time.Now()
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for i := range next {
				id := fmt.Sprintf("%s-%03d", prefix, i)
				require.NoError(t, b.Send(t.Context(), ports.Message{ID: id, Body: []byte(`{"n":"` + id + `"}`)}))
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// TestSendCoalescing: 200 single Sends from 32 goroutines share
// SendMessageBatch requests (at most 30, against 200 without coalescing),
// and every message arrives exactly once with its body. It logs the
// requests and wall times with and without coalescing, and the latency of
// a lone Send with and without it (group commit adds none).
func TestSendCoalescing(t *testing.T) {
	h := newHarness(t)
	client, count := h.countingClient()
	const n, g = 200, 32

	measure := func(off bool) (int, time.Duration) {
		url := h.tempQueue(t, false)
		b, err := sqs.New(client, url, &sqs.Options{WaitTime: waitTime, NoCoalescing: off})
		require.NoError(t, err)
		defer func() { require.NoError(t, b.Close()) }()
		count.reset()
		took := concurrentSends(t, b, n, g, "m")
		reqs := count.get("SendMessageBatch")
		got := drain(t, b, n)
		require.Len(t, got, n)
		for id, body := range got {
			require.Equal(t, `{"n":"`+id+`"}`, string(body))
		}
		return reqs, took
	}
	reqs, took := measure(false)
	require.LessOrEqual(t, reqs, 30, "coalesced SendMessageBatch requests")
	reqsOff, tookOff := measure(true)
	require.Equal(t, n, reqsOff, "one request per Send without coalescing")
	t.Logf("%d Sends from %d goroutines: coalesced %d requests in %v; uncoalesced %d requests in %v", n, g, reqs, took, reqsOff, tookOff)

	// Latency of a lone Send, with and without coalescing.
	lone := func(off bool) time.Duration {
		url := h.tempQueue(t, false)
		b, err := sqs.New(client, url, &sqs.Options{WaitTime: waitTime, NoCoalescing: off})
		require.NoError(t, err)
		defer func() { require.NoError(t, b.Close()) }()
		const k = 30
		start := time.Now()
		for i := range k {
			require.NoError(t, b.Send(t.Context(), ports.Message{ID: fmt.Sprint("lone-", i), Body: []byte("x")}))
		}
		return time.Since(start) / k
	}
	on, off := lone(false), lone(true)
	t.Logf("lone Send: %v coalesced, %v without (difference %v)", on, off, on-off)
}

// TestSendLargeBodies: concurrent Sends of 300 KiB bodies are packed into
// requests within the 1 MiB batch limit (fauxqs refuses larger ones, see
// the first check) and arrive intact.
func TestSendLargeBodies(t *testing.T) {
	h := newHarness(t)
	client, count := h.countingClient()
	url := h.tempQueue(t, false)
	big := func(i int) []byte { return bytes.Repeat([]byte{'a' + byte(i)}, 300<<10) }

	// The emulator enforces the batch limit: 4 × 300 KiB in one request fail.
	entries := make([]types.SendMessageBatchRequestEntry, 4)
	for i := range entries {
		entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), MessageBody: aws.String(string(big(i)))}
	}
	_, err := h.client.SendMessageBatch(t.Context(), &awssqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
	require.Error(t, err, "fauxqs enforces the 1 MiB batch limit")
	t.Logf("raw 1.2 MiB batch: %v", err)

	b, err := sqs.New(client, url, &sqs.Options{WaitTime: waitTime, MaxBodyBytes: 1 << 20})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	count.reset()
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			require.NoError(t, b.Send(t.Context(), ports.Message{ID: fmt.Sprint("big-", i), Body: big(i)}))
		})
	}
	// And one caller with 10 such messages: split, in order.
	many := make([]ports.Message, 10)
	for i := range many {
		many[i] = ports.Message{ID: fmt.Sprint("many-", i), Body: big(i)}
	}
	wg.Go(func() { require.NoError(t, b.Send(t.Context(), many...)) })
	wg.Wait()
	require.GreaterOrEqual(t, count.get("SendMessageBatch"), 6, "15 × 300 KiB need at least 5 requests")
	got := drain(t, b, 15)
	require.Len(t, got, 15)
	for i := range 5 {
		require.Equal(t, big(i), got[fmt.Sprint("big-", i)])
	}
	for i := range 10 {
		require.Equal(t, big(i), got[fmt.Sprint("many-", i)])
	}
}

// TestBodyOnTheWire: a JSON body travels as text (dagq-enc "text"), binary
// bodies base64, and messages of older senders (base64 text) still decode.
func TestBodyOnTheWire(t *testing.T) {
	h := newHarness(t)
	url := h.tempQueue(t, false)
	b, err := sqs.New(h.client, url, &sqs.Options{WaitTime: waitTime})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()

	js := `{"task":"ünï ✓","crlf":"a` + "\r\n" + `b","tab":"\t"}`
	bin := []byte{0, 1, 2, 0xff, 0xfe, '<', '&'}
	require.NoError(t, b.Send(t.Context(), ports.Message{ID: "json", Body: []byte(js)}))
	raw, err := h.client.ReceiveMessage(t.Context(), &awssqs.ReceiveMessageInput{
		QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"},
	})
	require.NoError(t, err)
	require.Len(t, raw.Messages, 1)
	require.Equal(t, js, *raw.Messages[0].Body, "the raw SQS body is the JSON itself")
	require.Equal(t, "text", *raw.Messages[0].MessageAttributes["dagq-enc"].StringValue)
	_, err = h.client.ChangeMessageVisibility(t.Context(), &awssqs.ChangeMessageVisibilityInput{
		QueueUrl: &url, ReceiptHandle: raw.Messages[0].ReceiptHandle, VisibilityTimeout: 0,
	})
	require.NoError(t, err, "release it for the broker")

	require.NoError(t, b.Send(t.Context(), ports.Message{ID: "bin", Body: bin}, ports.Message{ID: "empty"}))
	_, err = h.client.SendMessage(t.Context(), &awssqs.SendMessageInput{
		QueueUrl: &url, MessageBody: aws.String("aGVsbG8="),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"dagq-id":  {DataType: aws.String("String"), StringValue: aws.String("old")},
			"dagq-enc": {DataType: aws.String("String"), StringValue: aws.String("base64")},
		},
	})
	require.NoError(t, err)
	got := drain(t, b, 4)
	require.Equal(t, map[string][]byte{"json": []byte(js), "bin": bin, "empty": {}, "old": []byte("hello")}, got)
}

// TestPublishCoalescing: concurrent Publishes to one inbox share requests
// and every completion arrives.
func TestPublishCoalescing(t *testing.T) {
	h := newHarness(t)
	client, count := h.countingClient()
	p := make([]byte, 6)
	_, _ = rand.Read(p)
	bus, err := sqs.NewCompletionBus(client, &sqs.CompletionOptions{QueuePrefix: "dagq-reply-t" + hex.EncodeToString(p) + "-", WaitTime: waitTime})
	require.NoError(t, err)
	defer func() { require.NoError(t, bus.Close()) }()
	ib, err := bus.Open(t.Context())
	require.NoError(t, err)

	const n = 100
	count.reset()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			require.NoError(t, bus.Publish(t.Context(), ib.Address(), ports.Completion{TaskID: fmt.Sprint("t-", i), State: ports.StateSucceeded}))
		})
	}
	wg.Wait()
	reqs := count.get("SendMessageBatch")
	require.LessOrEqual(t, reqs, 20)
	t.Logf("%d concurrent Publishes: %d SendMessageBatch requests", n, reqs)
	// The deadline outlives the inbox visibility (30 s): a receive whose
	// response is lost on a loaded machine (the SDK retries; the message
	// stays in flight) delays the packed completions, it does not lose them.
	seen := map[string]bool{}
	for deadline := time.Now().Add(45 * time.Second); len(seen) < n && time.Now().Before(deadline); {
		cs, err := ib.Receive(t.Context())
		require.NoError(t, err)
		for _, c := range cs {
			seen[c.TaskID] = true
		}
	}
	require.Len(t, seen, n)
}

// TestFairOnStandardQueue: FairOn on a standard queue logs one warning and
// the messages reach SQS without a MessageGroupId.
func TestFairOnStandardQueue(t *testing.T) {
	h := newHarness(t)
	url := h.tempQueue(t, false)
	var logs bytes.Buffer
	b, err := sqs.New(h.client, url, &sqs.Options{WaitTime: waitTime, FairQueue: sqs.FairOn, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	require.Contains(t, logs.String(), "level=WARN")
	require.Contains(t, logs.String(), "fair-queue mode needs a FIFO queue")
	require.NoError(t, b.Send(t.Context(), ports.Message{ID: "m", GroupID: "tenant-1"}))
	raw, err := h.client.ReceiveMessage(t.Context(), &awssqs.ReceiveMessageInput{
		QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameMessageGroupId},
	})
	require.NoError(t, err)
	require.Len(t, raw.Messages, 1)
	require.Empty(t, raw.Messages[0].Attributes[string(types.MessageSystemAttributeNameMessageGroupId)])

	_, err = sqs.New(h.client, h.tempQueue(t, true), &sqs.Options{FairQueue: sqs.FairOff})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
}
