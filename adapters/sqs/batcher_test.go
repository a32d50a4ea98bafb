package sqs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
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

// fakeDeleter records DeleteMessageBatch requests. A receipt starting with
// "stale" fails as ReceiptHandleIsInvalid, one starting with "busy" as
// InternalError; gate, when set, holds every request until it is closed.
type fakeDeleter struct {
	gate chan struct{}

	mu    sync.Mutex
	sizes []int
	seen  []ports.Receipt
}

func (f *fakeDeleter) deleteBatch(ctx context.Context, in *awssqs.DeleteMessageBatchInput) (*awssqs.DeleteMessageBatchOutput, error) {
	f.mu.Lock()
	f.sizes = append(f.sizes, len(in.Entries))
	for _, e := range in.Entries {
		f.seen = append(f.seen, ports.Receipt(*e.ReceiptHandle))
	}
	f.mu.Unlock()
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	out := &awssqs.DeleteMessageBatchOutput{}
	for _, e := range in.Entries {
		r := *e.ReceiptHandle
		switch {
		case len(r) >= 5 && r[:5] == "stale":
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("ReceiptHandleIsInvalid"), SenderFault: true})
		case len(r) >= 4 && r[:4] == "busy":
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), Message: aws.String(r)})
		default:
			out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
		}
	}
	return out, nil
}

func (f *fakeDeleter) requests() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sizes)
}

func fakeBroker(t *testing.T, o *Options, f *fakeDeleter) *Broker {
	t.Helper()
	client := awssqs.New(awssqs.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), RetryMaxAttempts: 1})
	b, err := New(client, "http://q/1/tasks", o)
	require.NoError(t, err)
	b.deleteBatch = f.deleteBatch
	return b
}

// The tests of the coalescer run on the synctest clock: "at once" is "no
// fake time passed", so a test fails if any call waits for a timer, and a
// gate (a fake request held until the test releases it) decides which
// calls arrive while a request is in flight, whatever the machine's speed.

// The tests of the coalescer run on the synctest clock: the window is a fake
// timer, so which calls share a request does not depend on how fast the
// machine starts goroutines, "at once" is "no fake time passed" and "after
// the window" is exactly the window.

// TestAckCoalesces: a burst of 25 single Acks while a request is in flight
// makes ⌈25/10⌉+1 requests — the first Ack alone at once, the others in
// full batches behind it, and the rest — sent as soon as the request before
// returns, with no fake time passing; every caller gets its own entry's
// result.
func TestAckCoalesces(t *testing.T) { synctest.Test(t, testAckCoalesces) }

func testAckCoalesces(t *testing.T) {
	f := &fakeDeleter{gate: make(chan struct{})}
	b := fakeBroker(t, nil, f)
	defer func() { require.NoError(t, b.Close()) }()

	const n = 25
	receipts := make([]ports.Receipt, n)
	for i := range receipts {
		switch i % 5 {
		case 1:
			receipts[i] = ports.Receipt("stale-" + strconv.Itoa(i))
		case 3:
			receipts[i] = ports.Receipt("busy-" + strconv.Itoa(i))
		default:
			receipts[i] = ports.Receipt("ok-" + strconv.Itoa(i))
		}
	}
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = b.Ack(t.Context(), receipts[i]) })
	}
	synctest.Wait()
	require.Equal(t, []int{1}, f.requests(), "the first Ack left alone at once; full batches wait for it")
	require.Equal(t, n-1, pendingItems(b.acks, b.url))
	close(f.gate)
	wg.Wait()
	require.Zero(t, time.Since(start), "no call waited for a timer")

	sizes := f.requests()
	require.Equal(t, 1, sizes[0])
	require.Equal(t, []int{10, 10, 4}, sizes[1:], "full batches first, in order")
	require.LessOrEqual(t, len(sizes), (n+9)/10+1)
	require.ElementsMatch(t, receipts, f.seen)
	for i, err := range errs {
		if i%5 == 3 {
			require.ErrorIs(t, err, ports.ErrUnavailable, "receipt %s", receipts[i])
			require.Contains(t, err.Error(), string(receipts[i]), "its own entry's error")
		} else {
			require.NoError(t, err, "receipt %s", receipts[i])
		}
	}
}

// TestAckAtOnce: an Ack with no request in flight leaves at once, also
// right after a shared batch (no window carried over from busier times).
func TestAckAtOnce(t *testing.T) { synctest.Test(t, testAckAtOnce) }

func testAckAtOnce(t *testing.T) {
	f := &fakeDeleter{gate: make(chan struct{})}
	b := fakeBroker(t, nil, f)
	defer func() { require.NoError(t, b.Close()) }()

	start := time.Now()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() { require.NoError(t, b.Ack(t.Context(), ports.Receipt(fmt.Sprint("ok-", i)))) })
	}
	synctest.Wait()
	close(f.gate)
	wg.Wait()
	require.Equal(t, []int{1, 3}, f.requests(), "one alone, three sharing the next request")
	for range 3 {
		require.NoError(t, b.Ack(t.Context(), "ok"))
	}
	require.Zero(t, time.Since(start), "nothing waited for a timer")
	require.Equal(t, []int{1, 3, 1, 1, 1}, f.requests())
}

// TestAckDisabled: NoCoalescing sends every Ack at once, alone.
func TestAckDisabled(t *testing.T) { synctest.Test(t, testAckDisabled) }

func testAckDisabled(t *testing.T) {
	f := &fakeDeleter{}
	b := fakeBroker(t, &Options{NoCoalescing: true}, f)
	defer func() { require.NoError(t, b.Close()) }()
	require.False(t, b.acks.enabled())
	start := time.Now()
	require.NoError(t, b.Ack(t.Context(), "ok"))
	require.ErrorIs(t, b.Ack(t.Context(), "busy"), ports.ErrUnavailable)
	require.Zero(t, time.Since(start), "no window waited")
	require.Equal(t, []int{1, 1}, f.requests())
}

// TestAckMultiReceipt: an Ack of several receipts is its own request, sent
// at once.
func TestAckMultiReceipt(t *testing.T) { synctest.Test(t, testAckMultiReceipt) }

func testAckMultiReceipt(t *testing.T) {
	f := &fakeDeleter{}
	b := fakeBroker(t, nil, f)
	defer func() { require.NoError(t, b.Close()) }()
	start := time.Now()
	err := b.Ack(t.Context(), "ok", "busy", "stale")
	require.Zero(t, time.Since(start), "no window waited")
	var be *ports.BatchError
	require.ErrorAs(t, err, &be)
	require.Len(t, be.Failed, 1)
	require.ErrorIs(t, be.Failed[1], ports.ErrUnavailable)
	require.Equal(t, []int{3}, f.requests())
}

// TestAckContext: a caller whose ctx ends while waiting — for its batch to
// leave, or for its request — stops with ctx's error; the others of its
// batch are not affected: their items are sent once, in the same request,
// as soon as the request before returns.
func TestAckContext(t *testing.T) { synctest.Test(t, testAckContext) }

func testAckContext(t *testing.T) {
	f := &fakeDeleter{gate: make(chan struct{})}
	b := fakeBroker(t, nil, f)
	defer func() { require.NoError(t, b.Close()) }()

	first := make(chan error, 1)
	go func() { first <- b.Ack(t.Context(), "ok-0") }()
	synctest.Wait()
	require.Equal(t, []int{1}, f.requests(), "in flight, held by the gate")

	ctx, cancel := context.WithCancel(t.Context())
	leaving := make(chan error, 1)
	staying := make(chan error, 2)
	go func() { staying <- b.Ack(t.Context(), "ok-1") }()
	synctest.Wait()
	go func() { leaving <- b.Ack(ctx, "ok-2") }()
	synctest.Wait()
	go func() { staying <- b.Ack(t.Context(), "ok-3") }()
	synctest.Wait()
	require.Equal(t, 3, pendingItems(b.acks, b.url), "the three wait in the next batch")
	start := time.Now()
	cancel()
	require.ErrorIs(t, <-leaving, context.Canceled, "the leaving caller returns at once")
	require.Equal(t, []int{1}, f.requests(), "its leaving sent nothing early")
	close(f.gate)
	require.NoError(t, <-first)
	require.NoError(t, <-staying)
	require.NoError(t, <-staying)
	require.Zero(t, time.Since(start), "the next batch left as soon as the first returned")
	require.Equal(t, []int{1, 3}, f.requests(), "one request; the leaving caller's item still sent, once")
	require.Equal(t, []ports.Receipt{"ok-0", "ok-1", "ok-2", "ok-3"}, f.seen)

	require.ErrorIs(t, b.Ack(ctx, "ok-4"), context.Canceled, "ctx done before joining")
	require.Equal(t, []int{1, 3}, f.requests())
}

// TestAckClose: Close sends the waiting batch at once, without waiting for
// the request in flight, and returns when both are done; later Acks fail
// with ErrClosed.
func TestAckClose(t *testing.T) { synctest.Test(t, testAckClose) }

func testAckClose(t *testing.T) {
	f := &fakeDeleter{gate: make(chan struct{})}
	b := fakeBroker(t, nil, f)

	errs := make(chan error, 4)
	for i := range 4 {
		go func() { errs <- b.Ack(t.Context(), ports.Receipt(fmt.Sprint("ok-", i))) }()
	}
	synctest.Wait()
	require.Equal(t, 3, pendingItems(b.acks, b.url), "three wait behind the one in flight")
	require.Equal(t, []int{1}, f.requests())
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	synctest.Wait()
	require.Equal(t, []int{1, 3}, f.requests(), "Close sent the waiting batch at once")
	select {
	case <-closed:
		t.Fatal("Close returned before its requests were done")
	default:
	}
	close(f.gate)
	require.NoError(t, <-closed)
	for range 4 {
		require.NoError(t, <-errs)
	}
	require.ErrorIs(t, b.Ack(t.Context(), "ok"), ports.ErrClosed)
	require.NoError(t, b.Close())
	require.Equal(t, []int{1, 3}, f.requests())
}

// TestAckWholeCallFailure: a failed request fails every caller of its batch.
func TestAckWholeCallFailure(t *testing.T) { synctest.Test(t, testAckWholeCallFailure) }

func testAckWholeCallFailure(t *testing.T) {
	boom := errors.New("boom")
	b := fakeBroker(t, nil, &fakeDeleter{})
	b.deleteBatch = func(context.Context, *awssqs.DeleteMessageBatchInput) (*awssqs.DeleteMessageBatchOutput, error) {
		return nil, boom
	}
	defer func() { require.NoError(t, b.Close()) }()
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { require.ErrorIs(t, b.Ack(t.Context(), ports.Receipt(fmt.Sprint("ok-", i))), boom) })
	}
	wg.Wait()
}

// recorder is a coalescer request function that records its batches and
// the most requests it saw in flight at once, and holds each request until
// the test lets it go (hold: one receive from release per request).
type recorder struct {
	hold    bool
	release chan struct{}

	mu       sync.Mutex
	batches  [][]int
	inflight int
	peak     int
}

func (r *recorder) request(ctx context.Context, _ string, items []int) (map[int]error, error) {
	r.mu.Lock()
	r.batches = append(r.batches, slices.Clone(items))
	r.inflight++
	r.peak = max(r.peak, r.inflight)
	hold := r.hold
	r.mu.Unlock()
	if hold {
		<-r.release
	}
	r.mu.Lock()
	r.inflight--
	r.mu.Unlock()
	return nil, nil
}

func (r *recorder) all() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

// TestGroupCommit: a lone call leaves at once; calls arriving while a
// request is in flight wait in the next batch, which leaves as soon as that
// request returns (not on a timer); a full batch waits for the request in
// flight too (one request per key at a time), and later calls start the
// batch behind it; keys do not wait for each other.
func TestGroupCommit(t *testing.T) { synctest.Test(t, testGroupCommit) }

func testGroupCommit(t *testing.T) {
	r := &recorder{release: make(chan struct{})}
	c := newTestCoalescer(r.request)
	defer c.close()
	ctx := t.Context()
	start := time.Now()

	require.NoError(t, c.do(ctx, "k", []int{1}))
	require.Equal(t, [][]int{{1}}, r.all(), "a lone call leaves at once")

	// One request in flight (held); five calls meanwhile share the next.
	r.hold = true
	held := make(chan error, 1)
	go func() { held <- c.do(ctx, "k", []int{100}) }()
	synctest.Wait()
	errs := make(chan error, 20)
	for i := range 5 {
		go func() { errs <- c.do(ctx, "k", []int{10 + i}) }()
	}
	synctest.Wait()
	require.Len(t, r.all(), 2, "only the held call was sent")
	require.Equal(t, 5, pendingItems(c, "k"), "the five wait in one batch")
	// Another key does not wait for k.
	go func() { errs <- c.do(ctx, "other", []int{7}) }()
	synctest.Wait()
	require.Len(t, r.all(), 3, "another key's call left at once")
	r.release <- struct{}{} // the other key's request returns

	r.release <- struct{}{} // the held request returns: the five leave
	require.NoError(t, <-held)
	synctest.Wait()
	b := r.all()
	require.Len(t, b, 4)
	require.ElementsMatch(t, []int{10, 11, 12, 13, 14}, b[3], "one shared request, sent when the first returned")

	// While it is held, 12 more calls: a full batch of 10 and a batch of 2,
	// both waiting for it.
	for i := range 12 {
		go func() { errs <- c.do(ctx, "k", []int{20 + i}) }()
	}
	synctest.Wait()
	require.Len(t, r.all(), 4, "the full batch waits for the request in flight")
	require.Equal(t, 12, pendingItems(c, "k"))
	r.release <- struct{}{}
	synctest.Wait()
	b = r.all()
	require.Len(t, b, 5)
	require.Len(t, b[4], 10, "the full batch left when the request before returned")
	r.release <- struct{}{}
	synctest.Wait()
	b = r.all()
	require.Len(t, b, 6)
	require.Len(t, b[5], 2, "then the rest")
	r.release <- struct{}{}
	for range 18 {
		require.NoError(t, <-errs)
	}
	require.Equal(t, 2, r.peak, "at most one request per key in flight (two keys)")

	r.hold = false
	require.NoError(t, c.do(ctx, "k", []int{2}))
	require.Len(t, r.all(), 7, "a lone call after a busy spell leaves at once")
	require.Zero(t, time.Since(start), "nothing waited for a timer")
}
