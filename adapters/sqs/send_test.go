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

// The tests of coalescing run on the synctest clock with gates (see
// batcher_test.go).

// holdFirst makes one call (the "warm-up") whose request the gate holds in
// flight, so the calls the test makes next arrive while a request is in
// flight; it returns the warm-up's result channel.
func holdFirst(t *testing.T, call func() error) chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	synctest.Wait()
	return done
}

// TestSendCoalesces: a burst of 25 single Sends makes ⌈25/10⌉+1 requests
// (the first alone at once, the others behind it, 10+10+4) with no fake
// time passing; every caller gets its own message's result.
func TestSendCoalesces(t *testing.T) { synctest.Test(t, testSendCoalesces) }

func testSendCoalesces(t *testing.T) {
	f := &fakeSender{gate: make(chan struct{})}
	b := fakeSendBroker(t, "http://q/1/tasks", nil, f)
	defer func() { require.NoError(t, b.Close()) }()

	const n = 25
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		id := "ok-" + strconv.Itoa(i)
		if i%4 == 1 {
			id = "busy-" + strconv.Itoa(i)
		}
		wg.Go(func() { errs[i] = b.Send(t.Context(), ports.Message{ID: id, Body: []byte(id)}) })
	}
	synctest.Wait()
	require.Equal(t, []int{1}, f.sizes(), "the first left alone at once; the others wait for it")
	close(f.gate)
	wg.Wait()
	require.Zero(t, time.Since(start), "no call waited for a timer")
	require.Equal(t, []int{1, 4, 10, 10}, f.sizes())
	require.LessOrEqual(t, len(f.sizes()), (n+9)/10+1)
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
	f := &fakeSender{gate: make(chan struct{})}
	b := fakeSendBroker(t, "http://q/1/tasks", nil, f)
	defer func() { require.NoError(t, b.Close()) }()
	first := holdFirst(t, func() error { return b.Send(t.Context(), ports.Message{ID: "first"}) })

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
	synctest.Wait()
	close(f.gate)
	wg.Wait()
	require.NoError(t, <-first)
	require.Equal(t, []int{1, 9}, f.sizes(), "the three callers share one request")
	for c, err := range errs {
		var be *ports.BatchError
		require.ErrorAs(t, err, &be, "caller %d", c)
		require.Len(t, be.Failed, 1, "caller %d", c)
		require.ErrorIs(t, be.Failed[c%3], ports.ErrUnavailable, "caller %d: index %d, relative to its own call", c, c%3)
		require.Contains(t, be.Failed[c%3].Error(), fmt.Sprintf("busy-%d-%d", c, c%3))
	}
}

// TestSendCallerNotSplit: a caller's messages join a batch as a unit: when
// they do not fit the waiting batch, it is closed and they start the next.
func TestSendCallerNotSplit(t *testing.T) { synctest.Test(t, testSendCallerNotSplit) }

func testSendCallerNotSplit(t *testing.T) {
	f := &fakeSender{gate: make(chan struct{})}
	b := fakeSendBroker(t, "http://q/1/tasks", nil, f)
	defer func() { require.NoError(t, b.Close()) }()
	first := holdFirst(t, func() error { return b.Send(t.Context(), ports.Message{ID: "first"}) })

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { require.NoError(t, b.Send(t.Context(), ports.Message{ID: fmt.Sprint("single-", i)})) })
	}
	synctest.Wait()
	require.Equal(t, 8, pendingItems(b.sends, b.url), "the eight wait in one batch")
	wg.Go(func() {
		require.NoError(t, b.Send(t.Context(), ports.Message{ID: "three-0"}, ports.Message{ID: "three-1"}, ports.Message{ID: "three-2"}))
	})
	synctest.Wait()
	close(f.gate)
	wg.Wait()
	require.NoError(t, <-first)
	require.Equal(t, []int{1, 3, 8}, f.sizes())
	names := f.names()
	require.Len(t, names[1], 8, "the eight left first")
	require.Equal(t, []string{"three-0", "three-1", "three-2"}, names[2])
}

// TestSendPacking: requests never exceed the 1 MiB batch limit; a caller
// whose messages cannot fit one request is split in order and keeps
// per-message results.
func TestSendPacking(t *testing.T) { synctest.Test(t, testSendPacking) }

func testSendPacking(t *testing.T) {
	f := &fakeSender{gate: make(chan struct{})}
	b := fakeSendBroker(t, "http://q/1/tasks", &Options{MaxBodyBytes: 1 << 20}, f)
	defer func() { require.NoError(t, b.Close()) }()
	big := bytes.Repeat([]byte("a"), 300<<10)
	first := holdFirst(t, func() error { return b.Send(t.Context(), ports.Message{ID: "first"}) })

	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() { require.NoError(t, b.Send(t.Context(), ports.Message{ID: fmt.Sprint("big-", i), Body: big})) })
	}
	synctest.Wait()
	close(f.gate)
	wg.Wait()
	require.NoError(t, <-first)
	require.Equal(t, []int{1, 2, 3}, f.sizes(), "3 × 300 KiB fit 1 MiB, 4 do not")

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
	b := fakeSendBroker(t, "http://q/1/tasks", &Options{NoCoalescing: true, MaxBodyBytes: 1 << 20}, f)
	defer func() { require.NoError(t, b.Close()) }()
	require.NoError(t, b.Send(t.Context(), ports.Message{ID: "text", Body: bytes.Repeat([]byte("a"), 800<<10)}))
	err := b.Send(t.Context(), ports.Message{ID: "bin", Body: bytes.Repeat([]byte{0}, 800<<10)})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	require.Contains(t, err.Error(), "base64 body")
	require.Equal(t, []int{1}, f.sizes())
}

// TestSendDisabled: NoCoalescing sends every Send at once, alone
// (still split when it does not fit one request).
func TestSendDisabled(t *testing.T) { synctest.Test(t, testSendDisabled) }

func testSendDisabled(t *testing.T) {
	f := &fakeSender{}
	b := fakeSendBroker(t, "http://q/1/tasks", &Options{NoCoalescing: true}, f)
	defer func() { require.NoError(t, b.Close()) }()
	start := time.Now()
	require.NoError(t, b.Send(t.Context(), ports.Message{ID: "a"}))
	require.ErrorIs(t, b.Send(t.Context(), ports.Message{ID: "busy"}), ports.ErrUnavailable)
	require.Zero(t, time.Since(start), "no window waited")
	require.Equal(t, []int{1, 1}, f.sizes())
}

// TestSendAtOnce: a lone Send leaves at once, also right after a shared
// batch; so does a full one.
func TestSendAtOnce(t *testing.T) { synctest.Test(t, testSendAtOnce) }

func testSendAtOnce(t *testing.T) {
	f := &fakeSender{gate: make(chan struct{})}
	b := fakeSendBroker(t, "http://q/1/tasks", nil, f)
	defer func() { require.NoError(t, b.Close()) }()
	start := time.Now()
	first := holdFirst(t, func() error { return b.Send(t.Context(), ports.Message{ID: "first"}) })
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { require.NoError(t, b.Send(t.Context(), ports.Message{ID: fmt.Sprint("s-", i)})) })
	}
	synctest.Wait()
	close(f.gate)
	wg.Wait()
	require.NoError(t, <-first)
	require.Equal(t, []int{1, 3}, f.sizes())

	require.NoError(t, b.Send(t.Context(), ports.Message{ID: "a"}))
	msgs := make([]ports.Message, 10)
	for i := range msgs {
		msgs[i] = ports.Message{ID: fmt.Sprint(i)}
	}
	require.NoError(t, b.Send(t.Context(), msgs...))
	require.Zero(t, time.Since(start), "nothing waited for a timer")
	require.Equal(t, []int{1, 1, 3, 10}, f.sizes())
}

// TestSendContextAndClose: a caller whose ctx ends while waiting stops with
// ctx's error while the others of its batch get their result; Close sends
// the waiting batch at once, waits for it, and later Sends fail with
// ErrClosed.
func TestSendContextAndClose(t *testing.T) { synctest.Test(t, testSendContextAndClose) }

func testSendContextAndClose(t *testing.T) {
	f := &fakeSender{gate: make(chan struct{})}
	b := fakeSendBroker(t, "http://q/1/tasks", nil, f)
	first := holdFirst(t, func() error { return b.Send(t.Context(), ports.Message{ID: "first"}) })

	ctx, cancel := context.WithCancel(t.Context())
	leaving, staying := make(chan error, 1), make(chan error, 1)
	go func() { leaving <- b.Send(ctx, ports.Message{ID: "a"}) }()
	go func() { staying <- b.Send(t.Context(), ports.Message{ID: "b"}) }()
	synctest.Wait()
	require.Equal(t, 2, pendingItems(b.sends, b.url), "both wait in the next batch")
	start := time.Now()
	cancel()
	require.ErrorIs(t, <-leaving, context.Canceled)
	close(f.gate)
	require.NoError(t, <-first)
	require.NoError(t, <-staying)
	require.Zero(t, time.Since(start))
	require.Equal(t, []int{1, 2}, f.sizes(), "the leaving caller's message was still sent, once")

	f2 := &fakeSender{gate: make(chan struct{})}
	b.sendBatch = f2.sendBatch
	errs := make(chan error, 4)
	for i := range 4 {
		go func() { errs <- b.Send(t.Context(), ports.Message{ID: fmt.Sprint("c-", i)}) }()
	}
	synctest.Wait()
	require.Equal(t, 3, pendingItems(b.sends, b.url), "three wait behind the one in flight")
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	synctest.Wait()
	require.Equal(t, []int{1, 3}, f2.sizes(), "Close sent the waiting batch at once")
	close(f2.gate)
	require.NoError(t, <-closed)
	for range 4 {
		require.NoError(t, <-errs)
	}
	require.ErrorIs(t, b.Send(t.Context(), ports.Message{ID: "late"}), ports.ErrClosed)
}

// TestSendWholeCallFailure: a failed request fails every caller of its
// batch with the request's error.
func TestSendWholeCallFailure(t *testing.T) { synctest.Test(t, testSendWholeCallFailure) }

func testSendWholeCallFailure(t *testing.T) {
	boom := errors.New("boom")
	b := fakeSendBroker(t, "http://q/1/tasks", nil, &fakeSender{})
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
	f := &fakeSender{gate: make(chan struct{})}
	client := awssqs.New(awssqs.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), RetryMaxAttempts: 1})
	bus, err := NewCompletionBus(client, nil)
	require.NoError(t, err)
	bus.sendBatch = f.sendBatch
	defer func() { require.NoError(t, bus.Close()) }()

	urls := []string{"http://q/1/inbox-a", "http://q/1/inbox-b"}
	const n = 12
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = bus.Publish(t.Context(), urls[i%2], ports.Completion{TaskID: fmt.Sprint("t-", i), State: ports.StateSucceeded})
		})
	}
	synctest.Wait()
	require.Equal(t, []int{1, 1}, f.sizes(), "per inbox, the first left alone at once")
	close(f.gate)
	wg.Wait()
	require.Zero(t, time.Since(start), "no call waited for a timer")
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, []int{1, 1, 1, 1}, f.sizes(), "two requests per inbox, each one message")
	f.mu.Lock()
	seen := map[string]bool{}
	perInbox := map[string][]int{}
	for _, r := range f.reqs {
		for _, e := range r.Entries {
			require.Empty(t, e.MessageAttributes, "JSON as text")
			cs, err := decodeCompletions(types.Message{Body: e.MessageBody})
			require.NoError(t, err)
			perInbox[*r.QueueUrl] = append(perInbox[*r.QueueUrl], len(cs))
			for _, c := range cs {
				require.False(t, seen[c.TaskID], "completion %s sent twice", c.TaskID)
				seen[c.TaskID] = true
			}
		}
	}
	f.mu.Unlock()
	require.Len(t, seen, n, "every completion sent exactly once")
	for _, u := range urls {
		require.Equal(t, []int{1, 5}, perInbox[u], "the first alone, the five after it packed in one message")
	}
}

// TestFairQueue: FairOn on a standard queue is logged and ignored (no
// MessageGroupId); FairOff on a FIFO queue is an error; FIFO queues always
// get groups and deduplication IDs.
func TestFairQueue(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	f := &fakeSender{}
	std := fakeSendBroker(t, "http://q/1/tasks", &Options{FairQueue: FairOn, Logger: log, NoCoalescing: true}, f)
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
		fifo := fakeSendBroker(t, "http://q/1/tasks.fifo", &Options{FairQueue: mode, Logger: log, NoCoalescing: true}, f)
		require.NoError(t, fifo.Send(t.Context(), ports.Message{ID: "m"}, ports.Message{ID: "n", GroupID: "tenant-1"}))
		require.Equal(t, "m", *f.reqs[0].Entries[0].MessageGroupId, mode)
		require.Equal(t, "tenant-1", *f.reqs[0].Entries[1].MessageGroupId, mode)
		require.Equal(t, "n", *f.reqs[0].Entries[1].MessageDeduplicationId, mode)
		require.NoError(t, fifo.Close())
	}
	for _, mode := range []FairMode{FairAuto, FairOff} {
		f := &fakeSender{}
		b := fakeSendBroker(t, "http://q/1/tasks", &Options{FairQueue: mode, Logger: log, NoCoalescing: true}, f)
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
	bus, err := NewCompletionBus(client, nil)
	require.NoError(t, err)
	var mu sync.Mutex
	var entries []types.SendMessageBatchRequestEntry
	gate := make(chan struct{})
	bus.sendBatch = func(ctx context.Context, in *awssqs.SendMessageBatchInput) (*awssqs.SendMessageBatchOutput, error) {
		<-gate
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
	first := holdFirst(t, func() error {
		return bus.Publish(t.Context(), "http://q/1/inbox", ports.Completion{TaskID: "first", State: ports.StateSucceeded})
	})
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i := range cs {
		wg.Go(func() { errs[i] = bus.Publish(t.Context(), "http://q/1/inbox", cs[i]) })
	}
	synctest.Wait()
	close(gate)
	wg.Wait()
	require.NoError(t, <-first)
	require.NoError(t, errs[0])
	require.ErrorIs(t, errs[1], ports.ErrUnavailable, "the odd completion's message failed")
	require.NoError(t, errs[2])

	require.Len(t, entries, 3, "the first alone, then one packed message and one alone")
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
	require.ElementsMatch(t, []string{"first", "ok-1", "ok-2", "odd"}, got)
}
