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

// pendingItems is the number of items in key's pending batch of c.
func pendingItems[T any](c *coalescer[T], key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if bt := c.pending[key]; bt != nil {
		return len(bt.items)
	}
	return 0
}

func fakeBroker(t *testing.T, window time.Duration, f *fakeDeleter) *Broker {
	t.Helper()
	client := awssqs.New(awssqs.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), RetryMaxAttempts: 1})
	b, err := New(client, "http://q/1/tasks", &Options{FlushWindow: window, FixedWindow: true})
	require.NoError(t, err)
	b.deleteBatch = f.deleteBatch
	return b
}

// The tests of the coalescer run on the synctest clock: the window is a fake
// timer, so which calls share a request does not depend on how fast the
// machine starts goroutines, "at once" is "no fake time passed" and "after
// the window" is exactly the window.

// TestAckCoalesces: 25 concurrent single Acks make 3 requests (10+10+5) and
// every caller gets its own entry's result.
func TestAckCoalesces(t *testing.T) { synctest.Test(t, testAckCoalesces) }

func testAckCoalesces(t *testing.T) {
	f := &fakeDeleter{}
	b := fakeBroker(t, 500*time.Millisecond, f)
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
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = b.Ack(t.Context(), receipts[i]) })
	}
	wg.Wait()

	sizes := f.requests()
	slices.Sort(sizes)
	require.Equal(t, []int{5, 10, 10}, sizes)
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

// TestAckWindow: a lone Ack is sent when the window ends, not before or later.
func TestAckWindow(t *testing.T) { synctest.Test(t, testAckWindow) }

func testAckWindow(t *testing.T) {
	const window = 50 * time.Millisecond
	f := &fakeDeleter{}
	b := fakeBroker(t, window, f)
	defer func() { require.NoError(t, b.Close()) }()

	start := time.Now()
	require.NoError(t, b.Ack(t.Context(), "ok"))
	require.Equal(t, window, time.Since(start))
	require.Equal(t, []int{1}, f.requests())
}

// TestAckDisabled: a negative FlushWindow sends every Ack at once, alone.
func TestAckDisabled(t *testing.T) { synctest.Test(t, testAckDisabled) }

func testAckDisabled(t *testing.T) {
	f := &fakeDeleter{}
	b := fakeBroker(t, -1, f)
	defer func() { require.NoError(t, b.Close()) }()
	require.False(t, b.acks.enabled())
	start := time.Now()
	require.NoError(t, b.Ack(t.Context(), "ok"))
	require.ErrorIs(t, b.Ack(t.Context(), "busy"), ports.ErrUnavailable)
	require.Zero(t, time.Since(start), "no window waited")
	require.Equal(t, []int{1, 1}, f.requests())

	_, err := New(awssqs.New(awssqs.Options{Region: "us-east-1"}), "http://q", &Options{FlushWindow: 2 * time.Second, FixedWindow: true})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
}

// TestAckMultiReceipt: an Ack of several receipts is its own request, sent
// at once.
func TestAckMultiReceipt(t *testing.T) { synctest.Test(t, testAckMultiReceipt) }

func testAckMultiReceipt(t *testing.T) {
	f := &fakeDeleter{}
	b := fakeBroker(t, time.Second, f)
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

// TestAckContext: a caller whose ctx ends stops waiting with ctx's error;
// the others of its batch still get their result.
func TestAckContext(t *testing.T) { synctest.Test(t, testAckContext) }

func testAckContext(t *testing.T) {
	const window = 10 * time.Millisecond
	f := &fakeDeleter{gate: make(chan struct{})}
	b := fakeBroker(t, window, f)
	defer func() { require.NoError(t, b.Close()) }()

	ctx, cancel := context.WithCancel(t.Context())
	leaving := make(chan error, 1)
	staying := make(chan error, 1)
	go func() { leaving <- b.Ack(ctx, "ok-1") }()
	go func() { staying <- b.Ack(t.Context(), "ok-2") }()
	synctest.Wait()
	require.Empty(t, f.requests(), "both wait in the pending batch")
	time.Sleep(window)
	synctest.Wait()
	require.Equal(t, []int{2}, f.requests(), "their request is in flight (held by the gate)")
	cancel()
	err := <-leaving
	require.ErrorIs(t, err, context.Canceled)
	close(f.gate)
	require.NoError(t, <-staying)
	require.Equal(t, []int{2}, f.requests())

	require.ErrorIs(t, b.Ack(ctx, "ok-3"), context.Canceled, "ctx done before joining")
	require.Equal(t, []int{2}, f.requests())
}

// TestAckClose: Close sends the pending batch at once and waits for it;
// later Acks fail with ErrClosed.
func TestAckClose(t *testing.T) { synctest.Test(t, testAckClose) }

func testAckClose(t *testing.T) {
	f := &fakeDeleter{}
	b := fakeBroker(t, time.Second, f)

	errs := make(chan error, 3)
	for i := range 3 {
		go func() { errs <- b.Ack(t.Context(), ports.Receipt(fmt.Sprint("ok-", i))) }()
	}
	synctest.Wait()
	require.Equal(t, 3, pendingItems(b.acks, b.url), "the three wait in one pending batch")
	require.Empty(t, f.requests())
	start := time.Now()
	require.NoError(t, b.Close())
	require.Zero(t, time.Since(start), "Close does not wait for the window")
	require.Equal(t, []int{3}, f.requests(), "flushed by Close, before it returned")
	for range 3 {
		require.NoError(t, <-errs)
	}
	require.ErrorIs(t, b.Ack(t.Context(), "ok"), ports.ErrClosed)
	require.NoError(t, b.Close())
	require.Equal(t, []int{3}, f.requests())
}

// TestAckWholeCallFailure: a failed request fails every caller of its batch.
func TestAckWholeCallFailure(t *testing.T) { synctest.Test(t, testAckWholeCallFailure) }

func testAckWholeCallFailure(t *testing.T) {
	boom := errors.New("boom")
	b := fakeBroker(t, 10*time.Millisecond, &fakeDeleter{})
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
// holds those containing a gated item until gate is closed.
type recorder struct {
	gateItem int
	gate     chan struct{}

	mu      sync.Mutex
	batches [][]int
}

func (r *recorder) request(ctx context.Context, _ string, items []int) (map[int]error, error) {
	r.mu.Lock()
	r.batches = append(r.batches, slices.Clone(items))
	r.mu.Unlock()
	if r.gate != nil && slices.Contains(items, r.gateItem) {
		<-r.gate
	}
	return nil, nil
}

func (r *recorder) all() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

// TestAdaptiveWindow: with an adaptive window a lone call is sent at once;
// calls arriving while a request is in flight wait the window and share the
// next request; shared batches keep and double the window (capped), lone
// items halve it until it is gone.
func TestAdaptiveWindow(t *testing.T) { synctest.Test(t, testAdaptiveWindow) }

func testAdaptiveWindow(t *testing.T) {
	const window = 100 * time.Millisecond
	r := &recorder{gateItem: 100, gate: make(chan struct{})}
	c := newCoalescer[int]("test", window, 0, nil, r.request).withAdaptive(true)
	defer c.close()
	var once sync.Once
	release := func() { once.Do(func() { close(r.gate) }) }
	defer release() // before c.close: a failed assertion must not leave a request held
	ctx := t.Context()
	window0 := func() time.Duration {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.cur["k"]
	}

	start := time.Now()
	require.NoError(t, c.do(ctx, "k", []int{1}))
	require.Zero(t, time.Since(start), "a lone call is sent at once")

	// One request in flight (held); five calls meanwhile share the next.
	held := make(chan error, 1)
	go func() { held <- c.do(ctx, "k", []int{100}) }()
	synctest.Wait()
	require.Len(t, r.all(), 2, "the held call was sent at once")
	errs := make(chan error, 5)
	start = time.Now()
	for i := range 5 {
		go func() { errs <- c.do(ctx, "k", []int{10 + i}) }()
	}
	synctest.Wait()
	require.Equal(t, 5, pendingItems(c, "k"), "the five wait in one pending batch")
	for range 5 {
		require.NoError(t, <-errs)
	}
	require.Equal(t, window, time.Since(start), "the five waited the configured window")
	release()
	require.NoError(t, <-held)
	b := r.all()
	require.Len(t, b, 3)
	require.ElementsMatch(t, []int{10, 11, 12, 13, 14}, b[2], "one shared request")
	require.Equal(t, window, window0(), "a shared batch keeps (at least) the configured window")

	// Lone calls wait it, halve it until it is gone, then go at once again.
	start = time.Now()
	require.NoError(t, c.do(ctx, "k", []int{2}))
	require.Equal(t, window, time.Since(start), "waited the adapted window")
	require.Zero(t, window0(), "halved below the configured window: no window")
	start = time.Now()
	require.NoError(t, c.do(ctx, "k", []int{4}))
	require.Zero(t, time.Since(start), "at once again")

	// Shared batches double it, up to the cap.
	c.mu.Lock()
	c.adapt("k", 2)
	first := c.cur["k"]
	c.adapt("k", 2)
	second := c.cur["k"]
	for range 10 {
		c.adapt("k", 2)
	}
	capped := c.cur["k"]
	c.mu.Unlock()
	require.Equal(t, window, first)
	require.Equal(t, 2*window, second)
	require.Equal(t, maxWindowFactor*window, capped)
}
