package sqs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/ports"
)

// fakeSender records SendMessageBatch requests and checks the SQS limits
// on each (10 entries, distinct Ids, 1 MiB in all). An entry whose dagq-id
// (or, without one, body) starts with "busy" fails as InternalError; gate,
// when set, holds every request until it is closed.
type fakeSender struct {
	gate chan struct{}

	mu   sync.Mutex
	reqs []*awssqs.SendMessageBatchInput
}

func (f *fakeSender) sendBatch(ctx context.Context, in *awssqs.SendMessageBatchInput) (*awssqs.SendMessageBatchOutput, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, in)
	f.mu.Unlock()
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if len(in.Entries) == 0 || len(in.Entries) > ports.MaxBatch {
		return nil, fmt.Errorf("fake: %d entries", len(in.Entries))
	}
	ids, size := map[string]bool{}, 0
	for _, e := range in.Entries {
		if ids[*e.Id] {
			return nil, fmt.Errorf("fake: duplicate entry id %s", *e.Id)
		}
		ids[*e.Id] = true
		size += entrySize(e)
	}
	if size > maxSQSBatchBytes {
		return nil, fmt.Errorf("fake: batch of %d bytes", size)
	}
	out := &awssqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		if strings.HasPrefix(entryName(e), "busy") {
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), Message: aws.String(entryName(e))})
		} else {
			out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id})
		}
	}
	return out, nil
}

// entryName is the dagq-id of a Send entry, or the body of a Publish one.
func entryName(e types.SendMessageBatchRequestEntry) string {
	if v, ok := e.MessageAttributes[attrID]; ok {
		return *v.StringValue
	}
	return *e.MessageBody
}

// sizes returns the number of entries of every request, sorted.
func (f *fakeSender) sizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s []int
	for _, r := range f.reqs {
		s = append(s, len(r.Entries))
	}
	slices.Sort(s)
	return s
}

// names returns the entry names of every request, in request order.
func (f *fakeSender) names() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]string
	for _, r := range f.reqs {
		var ns []string
		for _, e := range r.Entries {
			ns = append(ns, entryName(e))
		}
		out = append(out, ns)
	}
	return out
}

func fakeSendBroker(t *testing.T, url string, o *Options, f *fakeSender) *Broker {
	t.Helper()
	client := awssqs.New(awssqs.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), RetryMaxAttempts: 1})
	b, err := New(client, url, o)
	require.NoError(t, err)
	b.sendBatch = f.sendBatch
	return b
}

// The tests with a flush window run on the synctest clock (see batcher_test.go).

// TestSendCoalesces: 25 concurrent single Sends make 3 requests (10+10+5);
// every caller gets its own message's result.
func TestSendCoalesces(t *testing.T) { synctest.Test(t, testSendCoalesces) }

func testSendCoalesces(t *testing.T) {
	f := &fakeSender{}
	b := fakeSendBroker(t, "http://q/1/tasks", &Options{FlushWindow: 500 * time.Millisecond, FixedWindow: true}, f)
	defer func() { require.NoError(t, b.Close()) }()

	const n = 25
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		id := "ok-" + strconv.Itoa(i)
		if i%4 == 1 {
			id = "busy-" + strconv.Itoa(i)
		}
		wg.Go(func() { errs[i] = b.Send(t.Context(), ports.Message{ID: id, Body: []byte(id)}) })
	}
	wg.Wait()
	require.Equal(t, []int{5, 10, 10}, f.sizes())
	for i, err := range errs {
		if i%4 == 1 {
			require.ErrorIs(t, err, ports.ErrUnavailable)
			require.Contains(t, err.Error(), "busy-"+strconv.Itoa(i), "its own entry's error")
			var be *ports.BatchError
			require.False(t, errors.As(err, &be), "a one-message Send gets the item's error itself")
		} else {
			require.NoError(t, err, i)
		}
	}
}

// TestSendBatchErrorIndexes: callers sharing a request each get a
// *ports.BatchError with their own indexes.
func TestSendBatchErrorIndexes(t *testing.T) { synctest.Test(t, testSendBatchErrorIndexes) }

func testSendBatchErrorIndexes(t *testing.T) {
	f := &fakeSender{}
	b := fakeSendBroker(t, "http://q/1/tasks", &Options{FlushWindow: 200 * time.Millisecond, FixedWindow: true}, f)
	defer func() { require.NoError(t, b.Close()) }()

	// Caller c sends 3 messages; message c%3 of each is busy.
	const callers = 3
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for c := range callers {
		msgs := make([]ports.Message, 3)
		for i := range msgs {
			id := fmt.Sprintf("ok-%d-%d", c, i)
			if i == c%3 {
				id = fmt.Sprintf("busy-%d-%d", c, i)
			}
			msgs[i] = ports.Message{ID: id, Body: []byte("x")}
		}
		wg.Go(func() { errs[c] = b.Send(t.Context(), msgs...) })
	}
	wg.Wait()
	require.Equal(t, []int{9}, f.sizes(), "one shared request")
	for c, err := range errs {
		var be *ports.BatchError
		require.ErrorAs(t, err, &be, "caller %d", c)
		require.Len(t, be.Failed, 1, "caller %d", c)
		require.ErrorIs(t, be.Failed[c%3], ports.ErrUnavailable, "caller %d: index %d, relative to its own call", c, c%3)
		require.Contains(t, be.Failed[c%3].Error(), fmt.Sprintf("busy-%d-%d", c, c%3))
	}
}

// TestSendCallerNotSplit: a caller's messages join a batch as a unit: when
// they do not fit the pending batch, it is sent and they start the next.
func TestSendCallerNotSplit(t *testing.T) { synctest.Test(t, testSendCallerNotSplit) }

func testSendCallerNotSplit(t *testing.T) {
	f := &fakeSender{}
	b := fakeSendBroker(t, "http://q/1/tasks", &Options{FlushWindow: 300 * time.Millisecond, FixedWindow: true}, f)
	defer func() { require.NoError(t, b.Close()) }()

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { require.NoError(t, b.Send(t.Context(), ports.Message{ID: fmt.Sprint("single-", i)})) })
	}
	synctest.Wait()
	require.Equal(t, 8, pendingItems(b.sends, b.url), "the eight wait in one pending batch")
	require.NoError(t, b.Send(t.Context(), ports.Message{ID: "three-0"}, ports.Message{ID: "three-1"}, ports.Message{ID: "three-2"}))
	wg.Wait()
	require.Equal(t, []int{3, 8}, f.sizes())
	for _, names := range f.names() {
		if len(names) == 3 {
			require.Equal(t, []string{"three-0", "three-1", "three-2"}, names)
		}
	}
}

// TestSendPacking: requests never exceed the 1 MiB batch limit; a caller
// whose messages cannot fit one request is split in order and keeps
// per-message results.
func TestSendPacking(t *testing.T) { synctest.Test(t, testSendPacking) }

func testSendPacking(t *testing.T) {
	f := &fakeSender{}
	b := fakeSendBroker(t, "http://q/1/tasks", &Options{FlushWindow: 100 * time.Millisecond, FixedWindow: true, MaxBodyBytes: 1 << 20}, f)
	defer func() { require.NoError(t, b.Close()) }()
	big := bytes.Repeat([]byte("a"), 300<<10)

	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() { require.NoError(t, b.Send(t.Context(), ports.Message{ID: fmt.Sprint("big-", i), Body: big})) })
	}
	wg.Wait()
	require.Equal(t, []int{2, 3}, f.sizes(), "3 × 300 KiB fit 1 MiB, 4 do not")

	f.reqs = nil
	msgs := make([]ports.Message, 10)
	for i := range msgs {
		msgs[i] = ports.Message{ID: fmt.Sprint("m-", i), Body: big}
	}
	msgs[4].ID, msgs[7].ID = "busy-4", "busy-7"
	err := b.Send(t.Context(), msgs...)
	var be *ports.BatchError
	require.ErrorAs(t, err, &be)
	require.Len(t, be.Failed, 2)
	require.ErrorIs(t, be.Failed[4], ports.ErrUnavailable)
	require.ErrorIs(t, be.Failed[7], ports.ErrUnavailable)
	require.Equal(t, [][]string{{"m-0", "m-1", "m-2"}, {"m-3", "busy-4", "m-5"}, {"m-6", "busy-7", "m-8"}, {"m-9"}}, f.names(), "in order")

	// One message of exactly 1 MiB fits alone; a byte more is refused.
	f.reqs = nil
	over := ports.Message{ID: "x", Body: bytes.Repeat([]byte("a"), 1<<20-len(attrID)-len("String")-1-len(attrEncoding)-len("String")-len(encText))}
	require.Equal(t, maxSQSMessageBytes, mustEntrySize(t, b, over))
	require.NoError(t, b.Send(t.Context(), over))
	over.ID = "xy"
	err = b.Send(t.Context(), over)
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	require.Contains(t, err.Error(), "1048577 bytes")
	require.Contains(t, err.Error(), "limit of 1048576")
	require.Equal(t, []int{1}, f.sizes())
}

func mustEntrySize(t *testing.T, b *Broker, m ports.Message) int {
	e, err := b.entry(m)
	require.NoError(t, err)
	return entrySize(e)
}

// TestSendEncodedSize: the 1 MiB limit applies to the body as sent: a text
// body of 800 KiB fits, a binary one (base64, 4/3) does not.
func TestSendEncodedSize(t *testing.T) {
	f := &fakeSender{}
	b := fakeSendBroker(t, "http://q/1/tasks", &Options{FlushWindow: -1, MaxBodyBytes: 1 << 20}, f)
	defer func() { require.NoError(t, b.Close()) }()
	require.NoError(t, b.Send(t.Context(), ports.Message{ID: "text", Body: bytes.Repeat([]byte("a"), 800<<10)}))
	err := b.Send(t.Context(), ports.Message{ID: "bin", Body: bytes.Repeat([]byte{0}, 800<<10)})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	require.Contains(t, err.Error(), "base64 body")
	require.Equal(t, []int{1}, f.sizes())
}

// TestSendDisabled: a negative FlushWindow sends every Send at once, alone
// (still split when it does not fit one request).
func TestSendDisabled(t *testing.T) { synctest.Test(t, testSendDisabled) }

func testSendDisabled(t *testing.T) {
	f := &fakeSender{}
	b := fakeSendBroker(t, "http://q/1/tasks", &Options{FlushWindow: -1}, f)
	defer func() { require.NoError(t, b.Close()) }()
	start := time.Now()
	require.NoError(t, b.Send(t.Context(), ports.Message{ID: "a"}))
	require.ErrorIs(t, b.Send(t.Context(), ports.Message{ID: "busy"}), ports.ErrUnavailable)
	require.Zero(t, time.Since(start), "no window waited")
	require.Equal(t, []int{1, 1}, f.sizes())
}

// TestSendWindow: a lone Send is sent when the window ends, not before or
// later; a full one at once.
func TestSendWindow(t *testing.T) { synctest.Test(t, testSendWindow) }

func testSendWindow(t *testing.T) {
	const window = 50 * time.Millisecond
	f := &fakeSender{}
	b := fakeSendBroker(t, "http://q/1/tasks", &Options{FlushWindow: window, FixedWindow: true}, f)
	defer func() { require.NoError(t, b.Close()) }()
	start := time.Now()
	require.NoError(t, b.Send(t.Context(), ports.Message{ID: "a"}))
	require.Equal(t, window, time.Since(start))
	// A full Send is not delayed.
	start = time.Now()
	msgs := make([]ports.Message, 10)
	for i := range msgs {
		msgs[i] = ports.Message{ID: fmt.Sprint(i)}
	}
	require.NoError(t, b.Send(t.Context(), msgs...))
	require.Zero(t, time.Since(start))
	require.Equal(t, []int{1, 10}, f.sizes())
}

// TestSendContextAndClose: a caller whose ctx ends stops waiting with ctx's
// error while the others of its batch get their result; Close sends the
// pending batch at once, waits for it, and later Sends fail with ErrClosed.
func TestSendContextAndClose(t *testing.T) { synctest.Test(t, testSendContextAndClose) }

func testSendContextAndClose(t *testing.T) {
	const window = 10 * time.Millisecond
	f := &fakeSender{gate: make(chan struct{})}
	b := fakeSendBroker(t, "http://q/1/tasks", &Options{FlushWindow: window, FixedWindow: true}, f)

	ctx, cancel := context.WithCancel(t.Context())
	leaving, staying := make(chan error, 1), make(chan error, 1)
	go func() { leaving <- b.Send(ctx, ports.Message{ID: "a"}) }()
	go func() { staying <- b.Send(t.Context(), ports.Message{ID: "b"}) }()
	synctest.Wait()
	require.Empty(t, f.sizes(), "both wait in the pending batch")
	time.Sleep(window)
	synctest.Wait()
	require.Equal(t, []int{2}, f.sizes(), "their request is in flight (held by the gate)")
	cancel()
	require.ErrorIs(t, <-leaving, context.Canceled)
	close(f.gate)
	require.NoError(t, <-staying)
	require.Equal(t, []int{2}, f.sizes(), "the leaving caller's message was still sent")

	f2 := &fakeSender{}
	b.sendBatch = f2.sendBatch
	b.sends.window = time.Hour
	errs := make(chan error, 3)
	for i := range 3 {
		go func() { errs <- b.Send(t.Context(), ports.Message{ID: fmt.Sprint("c-", i)}) }()
	}
	synctest.Wait()
	require.Equal(t, 3, pendingItems(b.sends, b.url), "the three wait in one pending batch")
	require.Empty(t, f2.sizes())
	start := time.Now()
	require.NoError(t, b.Close())
	require.Zero(t, time.Since(start), "Close does not wait for the window")
	require.Equal(t, []int{3}, f2.sizes(), "flushed by Close, before it returned")
	for range 3 {
		require.NoError(t, <-errs)
	}
	require.ErrorIs(t, b.Send(t.Context(), ports.Message{ID: "late"}), ports.ErrClosed)
}

// TestSendWholeCallFailure: a failed request fails every caller of its
// batch with the request's error.
func TestSendWholeCallFailure(t *testing.T) { synctest.Test(t, testSendWholeCallFailure) }

func testSendWholeCallFailure(t *testing.T) {
	boom := errors.New("boom")
	b := fakeSendBroker(t, "http://q/1/tasks", &Options{FlushWindow: 10 * time.Millisecond, FixedWindow: true}, &fakeSender{})
	b.sendBatch = func(context.Context, *awssqs.SendMessageBatchInput) (*awssqs.SendMessageBatchOutput, error) {
		return nil, boom
	}
	defer func() { require.NoError(t, b.Close()) }()
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			err := b.Send(t.Context(), ports.Message{ID: fmt.Sprint("a-", i)}, ports.Message{ID: fmt.Sprint("b-", i)})
			require.ErrorIs(t, err, boom)
			var be *ports.BatchError
			require.False(t, errors.As(err, &be), "a whole-request failure is the request's error")
		})
	}
	wg.Wait()
}

// TestPublishCoalesces: concurrent Publishes share requests per inbox URL
// and each caller gets its own result.
func TestPublishCoalesces(t *testing.T) { synctest.Test(t, testPublishCoalesces) }

func testPublishCoalesces(t *testing.T) {
	f := &fakeSender{}
	client := awssqs.New(awssqs.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), RetryMaxAttempts: 1})
	bus, err := NewCompletionBus(client, &CompletionOptions{FlushWindow: 300 * time.Millisecond, FixedWindow: true})
	require.NoError(t, err)
	bus.sendBatch = f.sendBatch
	defer func() { require.NoError(t, bus.Close()) }()

	urls := []string{"http://q/1/inbox-a", "http://q/1/inbox-b"}
	const n = 12
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = bus.Publish(t.Context(), urls[i%2], ports.Completion{TaskID: fmt.Sprint("t-", i), State: ports.StateSucceeded})
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, []int{1, 1}, f.sizes(), "one request per inbox, one message packing its six completions")
	f.mu.Lock()
	seen := map[string]bool{}
	for _, r := range f.reqs {
		for _, e := range r.Entries {
			require.Empty(t, e.MessageAttributes, "JSON as text")
			cs, err := decodeCompletions(types.Message{Body: e.MessageBody})
			require.NoError(t, err)
			require.Len(t, cs, 6)
			for _, c := range cs {
				require.False(t, seen[c.TaskID], "completion %s sent twice", c.TaskID)
				seen[c.TaskID] = true
			}
		}
	}
	f.mu.Unlock()
	require.Len(t, seen, n, "every completion packed exactly once")

	_, err = NewCompletionBus(client, &CompletionOptions{FlushWindow: 2 * time.Second, FixedWindow: true})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
}

// TestFairQueue: FairOn on a standard queue is logged and ignored (no
// MessageGroupId); FairOff on a FIFO queue is an error; FIFO queues always
// get groups and deduplication IDs.
func TestFairQueue(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	f := &fakeSender{}
	std := fakeSendBroker(t, "http://q/1/tasks", &Options{FairQueue: FairOn, Logger: log, FlushWindow: -1}, f)
	defer func() { require.NoError(t, std.Close()) }()
	require.Equal(t, 1, strings.Count(logs.String(), "level=WARN"), logs.String())
	require.Contains(t, logs.String(), "fair-queue mode needs a FIFO queue")
	require.Contains(t, logs.String(), "ignored")
	require.NoError(t, std.Send(t.Context(), ports.Message{ID: "m", GroupID: "tenant-1"}))
	require.Nil(t, f.reqs[0].Entries[0].MessageGroupId)
	require.Nil(t, f.reqs[0].Entries[0].MessageDeduplicationId)

	client := awssqs.New(awssqs.Options{Region: "us-east-1"})
	_, err := New(client, "http://q/1/tasks.fifo", &Options{FairQueue: FairOff})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	require.Contains(t, err.Error(), "require a message group")
	_, err = New(client, "http://q/1/tasks", &Options{FairQueue: FairMode(7)})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)

	logs.Reset()
	for _, mode := range []FairMode{FairAuto, FairOn} {
		f := &fakeSender{}
		fifo := fakeSendBroker(t, "http://q/1/tasks.fifo", &Options{FairQueue: mode, Logger: log, FlushWindow: -1}, f)
		require.NoError(t, fifo.Send(t.Context(), ports.Message{ID: "m"}, ports.Message{ID: "n", GroupID: "tenant-1"}))
		require.Equal(t, "m", *f.reqs[0].Entries[0].MessageGroupId, mode)
		require.Equal(t, "tenant-1", *f.reqs[0].Entries[1].MessageGroupId, mode)
		require.Equal(t, "n", *f.reqs[0].Entries[1].MessageDeduplicationId, mode)
		require.NoError(t, fifo.Close())
	}
	for _, mode := range []FairMode{FairAuto, FairOff} {
		f := &fakeSender{}
		b := fakeSendBroker(t, "http://q/1/tasks", &Options{FairQueue: mode, Logger: log, FlushWindow: -1}, f)
		require.NoError(t, b.Send(t.Context(), ports.Message{ID: "m", GroupID: "g"}))
		require.Nil(t, f.reqs[0].Entries[0].MessageGroupId, mode)
		require.NoError(t, b.Close())
	}
	require.Empty(t, logs.String(), "no warning but for FairOn on a standard queue")
	require.True(t, IsFIFOURL("https://sqs.us-east-1.amazonaws.com/123/q.fifo"))
	require.False(t, IsFIFOURL("https://sqs.us-east-1.amazonaws.com/123/q"))
}

// TestPublishPacking: completions that are valid SQS text share one packed
// message; one that is not travels alone (base64); a failed message fails
// only the Publishes whose completions it carried.
func TestPublishPacking(t *testing.T) { synctest.Test(t, testPublishPacking) }

func testPublishPacking(t *testing.T) {
	client := awssqs.New(awssqs.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), RetryMaxAttempts: 1})
	bus, err := NewCompletionBus(client, &CompletionOptions{FlushWindow: 300 * time.Millisecond, FixedWindow: true})
	require.NoError(t, err)
	var mu sync.Mutex
	var entries []types.SendMessageBatchRequestEntry
	bus.sendBatch = func(ctx context.Context, in *awssqs.SendMessageBatchInput) (*awssqs.SendMessageBatchOutput, error) {
		mu.Lock()
		defer mu.Unlock()
		out := &awssqs.SendMessageBatchOutput{}
		for _, e := range in.Entries {
			entries = append(entries, e)
			if _, b64 := e.MessageAttributes[attrEncoding]; b64 { // the odd one: fail it
				out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), Message: aws.String("boom")})
			} else {
				out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id})
			}
		}
		return out, nil
	}
	defer func() { require.NoError(t, bus.Close()) }()

	cs := []ports.Completion{
		{TaskID: "ok-1", State: ports.StateSucceeded},
		{TaskID: "odd", State: ports.StateFailed, Error: "bad \uFFFF char"},
		{TaskID: "ok-2", State: ports.StateSucceeded},
	}
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i := range cs {
		wg.Go(func() { errs[i] = bus.Publish(t.Context(), "http://q/1/inbox", cs[i]) })
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.ErrorIs(t, errs[1], ports.ErrUnavailable, "the odd completion's message failed")
	require.NoError(t, errs[2])

	require.Len(t, entries, 2, "one packed message and one alone")
	var got []string
	for _, e := range entries {
		dec, err := decodeCompletions(types.Message{Body: e.MessageBody, MessageAttributes: map[string]types.MessageAttributeValue{
			attrEncoding: {StringValue: func() *string {
				if v, ok := e.MessageAttributes[attrEncoding]; ok {
					return v.StringValue
				}
				return aws.String("")
			}()},
		}})
		require.NoError(t, err)
		for _, c := range dec {
			got = append(got, c.TaskID)
		}
	}
	require.ElementsMatch(t, []string{"ok-1", "ok-2", "odd"}, got)
}
