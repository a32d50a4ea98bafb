package sqs

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/dagq/dagq/ports"
)

// flushTimeout bounds one coalesced request, which runs on no caller's
// context (a caller leaving must not fail the others), and so also bounds
// Close.
const flushTimeout = 30 * time.Second

// deleteBatchFunc is the DeleteMessageBatch request (the SDK client's, or a
// fake in tests).
type deleteBatchFunc func(ctx context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error)

// sendBatchFunc is the SendMessageBatch request (the SDK client's, or a fake
// in tests).
type sendBatchFunc func(ctx context.Context, in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error)

// requestFunc makes one batch request of items (at most maxItems) to
// the queue key. It returns the errors of the failed items by their index in
// items, or an error failing the whole request.
type requestFunc[T any] func(ctx context.Context, key string, items []T) (map[int]error, error)

// coalescer merges the batch calls of concurrent callers into shared batch
// requests by group commit, per key (a queue URL; one coalescer per kind of
// request). A batch leaves at once when no request of its key is in flight;
// items arriving while one is in flight join the next batch, which leaves
// when the in-flight request returns. A batch also closes to new items when
// it holds maxItems items (ports.MaxBatch unless set) or when the next
// caller's items would not fit it (maxItems items, or maxBytes bytes by
// size); later items start another batch behind it. There is no timer:
// an idle key adds no latency, a busy one sends full batches.
//
// A caller's items join a batch as a unit. Every caller waits for its own
// batch's request and gets the results of its own items, indexed as in its
// call. Items that cannot fit one request together are split into chunks
// that can, sent one after the other (so their order is kept).
//
// Deletes (Ack) and sends (Send, Publish) use it.
type coalescer[T any] struct {
	op       string
	off      bool        // no coalescing: every call makes its own requests
	maxBytes int         // 0: no byte limit
	maxItems int         // items per request: ports.MaxBatch unless withMaxItems
	size     func(T) int // bytes an item counts against maxBytes; nil with maxBytes 0
	request  requestFunc[T]
	// maxInFlight is how many requests of one key may be in flight at once:
	// a closed (full) batch leaves while fewer are; an open one only when
	// none is. 1 (the default) is plain group commit.
	maxInFlight int

	mu      sync.Mutex
	lanes   map[string]*lane[T] // keys with a request in flight or a batch waiting
	closed  bool
	flushes sync.WaitGroup // requests in flight
}

// lane is the state of one key: its requests in flight and the batches
// waiting to leave, oldest first. Only the last may still take items.
type lane[T any] struct {
	inflight int
	waiting  []*batch[T]
}

// batch is one waiting or in-flight coalesced request.
type batch[T any] struct {
	key    string
	ctx    context.Context // the first caller's values, no cancellation
	items  []T
	bytes  int
	closed bool // takes no more items: full, or a caller's items did not fit

	done   chan struct{} // closed when failed and err are set
	failed map[int]error
	err    error
}

// newCoalescer returns a coalescer making requests with request; off
// disables coalescing (every call makes its own requests on its own
// context).
func newCoalescer[T any](op string, off bool, maxBytes int, size func(T) int, request requestFunc[T]) *coalescer[T] {
	return &coalescer[T]{op: op, off: off, maxBytes: maxBytes, maxItems: ports.MaxBatch, size: size, request: request,
		maxInFlight: 1, lanes: make(map[string]*lane[T])}
}

// withMaxItems lets one request carry up to n items (requests that pack
// several items into one message, such as completion publishes).
func (c *coalescer[T]) withMaxItems(n int) *coalescer[T] {
	c.maxItems = n
	return c
}

func (c *coalescer[T]) enabled() bool { return !c.off }

// do sends items (1 to ports.MaxBatch, each fitting maxBytes alone) to key,
// sharing requests with concurrent callers, and returns their result: nil,
// the whole request's error, the item's error for one item, or a
// *ports.BatchError indexed as items. It returns ports.ErrClosed once close
// has begun, and ctx's error if ctx ends first: items already in a batch
// stay there and may still be sent (at-least-once).
func (c *coalescer[T]) do(ctx context.Context, key string, items []T) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqs: %s: %w", c.op, err)
	}
	chunks := c.split(items)
	failed := make(map[int]error)
	var first error // the first whole-request failure
	wholeFailures, start := 0, 0
	for k, chunk := range chunks {
		var f map[int]error
		var err error
		if c.enabled() {
			var leave error
			f, err, leave = c.join(ctx, key, chunk, k == len(chunks)-1)
			if leave != nil {
				return leave
			}
		} else {
			f, err = c.request(ctx, key, chunk)
		}
		if err != nil {
			if first == nil {
				first = err
			}
			wholeFailures++
			for i := range chunk {
				failed[start+i] = err
			}
		}
		for i, e := range f {
			failed[start+i] = e
		}
		start += len(chunk)
	}
	if wholeFailures == len(chunks) {
		return first // nothing was sent: the request's error, as for one request
	}
	return batchResult(failed, len(items))
}

// split cuts items into the chunks that each fit one request, in order.
func (c *coalescer[T]) split(items []T) [][]T {
	if c.maxBytes == 0 && len(items) <= c.maxItems {
		return [][]T{items}
	}
	var chunks [][]T
	from, bytes := 0, 0
	for i, it := range items {
		n := 0
		if c.maxBytes > 0 {
			n = c.size(it)
		}
		if i > from && (i-from == c.maxItems || c.maxBytes > 0 && bytes+n > c.maxBytes) {
			chunks = append(chunks, items[from:i])
			from, bytes = i, 0
		}
		bytes += n
	}
	return append(chunks, items[from:])
}

// join adds chunk to the open batch of key (closing that batch and starting
// another if chunk does not fit it), lets every batch that may leave now
// leave, and waits for the request of chunk's batch. last is false when the
// caller has more chunks, which cannot fit this batch: it is then closed to
// other items. It returns the chunk's failed items by their index in chunk
// and the request's error, or leave, the error the caller returns at once
// (closed, or ctx ended while waiting).
func (c *coalescer[T]) join(ctx context.Context, key string, chunk []T, last bool) (failed map[int]error, err, leave error) {
	bytes := 0
	if c.maxBytes > 0 {
		for _, it := range chunk {
			bytes += c.size(it)
		}
	}
	if err := ctx.Err(); err != nil { // before a later chunk joins
		return nil, nil, fmt.Errorf("sqs: %s: %w", c.op, err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, nil, closedErr(c.op)
	}
	l := c.lanes[key]
	if l == nil {
		l = &lane[T]{}
		c.lanes[key] = l
	}
	var bt *batch[T]
	if n := len(l.waiting); n > 0 && !l.waiting[n-1].closed {
		bt = l.waiting[n-1]
		if len(bt.items)+len(chunk) > c.maxItems || c.maxBytes > 0 && bt.bytes+bytes > c.maxBytes {
			bt.closed = true
			bt = nil
		}
	}
	if bt == nil {
		bt = &batch[T]{key: key, ctx: context.WithoutCancel(ctx), done: make(chan struct{})}
		l.waiting = append(l.waiting, bt)
	}
	off := len(bt.items)
	bt.items = append(bt.items, chunk...)
	bt.bytes += bytes
	if len(bt.items) == c.maxItems || !last {
		bt.closed = true
	}
	c.dispatch(l)
	c.mu.Unlock()

	select {
	case <-bt.done:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("sqs: %s: %w", c.op, ctx.Err())
	}
	if bt.err != nil {
		return nil, bt.err, nil
	}
	for i := range chunk {
		if e, ok := bt.failed[off+i]; ok {
			if failed == nil {
				failed = make(map[int]error)
			}
			failed[i] = e
		}
	}
	return failed, nil, nil
}

// dispatch sends the waiting batches of l that may leave now, oldest first:
// any batch when nothing of l is in flight, a closed one while fewer than
// maxInFlight are (and every one once close has begun). c.mu must be held.
func (c *coalescer[T]) dispatch(l *lane[T]) {
	for len(l.waiting) > 0 {
		bt := l.waiting[0]
		if !c.closed && l.inflight > 0 && (!bt.closed || l.inflight >= c.maxInFlight) {
			return
		}
		l.waiting[0] = nil
		l.waiting = l.waiting[1:]
		c.start(l, bt)
	}
}

// start sends bt. c.mu must be held.
func (c *coalescer[T]) start(l *lane[T], bt *batch[T]) {
	l.inflight++
	c.flushes.Add(1)
	go func() {
		defer c.flushes.Done()
		c.flush(bt)
		// The next batch leaves, and the lane is idle if none waits, before
		// the callers return: a call they make next must see the key idle.
		c.mu.Lock()
		l.inflight--
		c.dispatch(l)
		if l.inflight == 0 && len(l.waiting) == 0 && c.lanes[bt.key] == l {
			delete(c.lanes, bt.key)
		}
		c.mu.Unlock()
		close(bt.done)
	}()
}

// close refuses later calls, sends the waiting batches at once and waits
// for every request in flight.
func (c *coalescer[T]) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		for _, l := range c.lanes {
			c.dispatch(l)
		}
	}
	c.mu.Unlock()
	c.flushes.Wait()
}

// flush makes bt's request and records its result in bt (start's goroutine
// then closes bt.done).
func (c *coalescer[T]) flush(bt *batch[T]) {
	ctx, cancel := context.WithTimeout(bt.ctx, flushTimeout)
	defer cancel()
	bt.failed, bt.err = c.request(ctx, bt.key, bt.items)
}

// deleteReceipts makes one DeleteMessageBatch request for receipts. It
// returns the errors of the failed entries by index, or an error failing the
// whole call. Stale receipts are not failures (the weak Ack contract).
func deleteReceipts(ctx context.Context, del deleteBatchFunc, url string, receipts []ports.Receipt) (map[int]error, error) {
	const op = "ack"
	entries := make([]types.DeleteMessageBatchRequestEntry, len(receipts))
	for i, r := range receipts {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(string(r))}
	}
	out, err := del(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: entries})
	if err != nil {
		err = wrap(op, err, true)
		if ignoredOnAck(err) {
			return nil, nil
		}
		return nil, err
	}
	failed := make(map[int]error)
	for _, f := range out.Failed {
		i, ok := entryIndex(f.Id, len(receipts))
		if !ok {
			return nil, fmt.Errorf("sqs: %s: unexpected batch entry id %q", op, deref(f.Id))
		}
		if err := entryError(op, f, true); !ignoredOnAck(err) {
			failed[i] = err
		}
	}
	return failed, nil
}

// sendEntries makes one SendMessageBatch request of entries to url, with
// each entry's Id set to its index (unique in the request). It returns the
// errors of the failed entries by index, or an error failing the whole call.
func sendEntries(ctx context.Context, send sendBatchFunc, op, url string, entries []types.SendMessageBatchRequestEntry) (map[int]error, error) {
	for i := range entries {
		entries[i].Id = aws.String(strconv.Itoa(i))
	}
	out, err := send(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
	if err != nil {
		return nil, wrap(op, err, false)
	}
	failed := make(map[int]error)
	for _, f := range out.Failed {
		i, ok := entryIndex(f.Id, len(entries))
		if !ok {
			return nil, fmt.Errorf("sqs: %s: unexpected batch entry id %q", op, deref(f.Id))
		}
		failed[i] = entryError(op, f, false)
	}
	return failed, nil
}

// entrySize is what an entry counts against the SQS limits on a message and
// on a batch request: its body plus the name, data type and value of every
// message attribute, in bytes (UTF-8).
func entrySize(e types.SendMessageBatchRequestEntry) int {
	n := len(deref(e.MessageBody))
	for name, v := range e.MessageAttributes {
		n += len(name) + len(deref(v.DataType)) + len(deref(v.StringValue)) + len(v.BinaryValue)
		for _, s := range v.StringListValues {
			n += len(s)
		}
		for _, b := range v.BinaryListValues {
			n += len(b)
		}
	}
	return n
}
