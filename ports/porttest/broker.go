package porttest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/ports"
)

// TestBroker runs the Broker conformance suite against the brokers of h.
func TestBroker(t *testing.T, h BrokerHarness) {
	e := newEnv(h.Features())
	tests := []struct {
		name string
		need need
		fn   func(*testing.T, env, BrokerHarness)
	}{
		{"SendReceiveAck", needNothing, testSendReceiveAck},
		{"SendReceiveAckBatch", needNothing, testSendReceiveAckBatch},
		{"BinaryBodyAndAttributes", needNothing, testBinaryBodyAndAttributes},
		{"BodyIsCopied", needNothing, testBodyIsCopied},
		{"ReceiveEmptyWithinPollBound", needNothing, testReceiveEmptyWithinPollBound},
		{"ReceiveHonoursContext", needNothing, testReceiveHonoursContext},
		{"ReceiveWakesOnSend", needNothing, testReceiveWakesOnSend},
		{"ReceiveWakesOnNack", needNothing, testReceiveWakesOnNack},
		{"NackRedelivers", needNothing, testNackRedelivers},
		{"NackWithDelay", needNothing, testNackWithDelay},
		{"LeaseExpiryRedelivers", needNothing, testLeaseExpiryRedelivers},
		{"ExtendHoldsLease", needNothing, testExtendHoldsLease},
		{"ExtendAfterLeaseExpiry", needNothing, testExtendAfterLeaseExpiry},
		{"StaleReceipt", needNothing, testStaleReceipt},
		{"AckIsWeak", needNothing, testAckIsWeak},
		{"ConcurrentReceivers", needNothing, testConcurrentReceivers},
		{"SendDelay", needNothing, testSendDelay},
		{"Validation", needNothing, testBrokerValidation},
		{"Closed", needNothing, testBrokerClosed},
		{"CloseKeepsLeases", needNothing, testCloseKeepsLeases},
		{"MissingQueue", needNothing, testMissingQueue},
		{"FIFOOrderPerGroup", needFIFO, testFIFOOrderPerGroup},
		{"FIFOGroupHeldWhileLeased", needFIFO, testFIFOGroupHeldWhileLeased},
		{"FIFONackKeepsOrder", needFIFO, testFIFONackKeepsOrder},
		{"FIFOReceiveWakesOnAck", needFIFO, testFIFOReceiveWakesOnAck},
		{"FIFOEmptyGroupID", needFIFO, testFIFOEmptyGroupID},
		{"FIFODeduplication", needFIFO, testFIFODeduplication},
		{"FIFORejectsDelay", needFIFO, testFIFORejectsDelay},
		{"Requeue", needRequeue, testRequeue},
		{"RequeueDelayed", needRequeue, testRequeueDelayed},
		{"RequeueStaleReceipt", needRequeue, testRequeueStaleReceipt},
		{"RequeueValidation", needRequeue, testRequeueValidation},
		{"RequeueClosedAndMissing", needRequeue, testRequeueClosedAndMissing},
		{"FIFORequeue", needFIFORequeue, testFIFORequeue},
		{"DeadLetters", needDeadLetters, testDeadLetters},
		{"DeadLettersNone", needDeadLetters, testDeadLettersNone},
	}
	for _, tc := range tests {
		e.run(t, tc.name, tc.need, func(t *testing.T) { tc.fn(t, e, h) })
	}
}

// receiveN receives from b until it holds n deliveries, failing when they do
// not arrive within d. It never asks for more than it still needs.
func (e env) receiveN(t *testing.T, ctx context.Context, b ports.Broker, n int, lease, d time.Duration) []ports.Delivery {
	t.Helper()
	deadline := time.Now().Add(d)
	var got []ports.Delivery
	for len(got) < n && time.Now().Before(deadline) {
		ds, err := b.Receive(ctx, min(ports.MaxBatch, n-len(got)), lease)
		require.NoError(t, err, "Receive")
		require.LessOrEqual(t, len(ds), n-len(got), "Receive returned more than max")
		got = append(got, ds...)
	}
	require.Lenf(t, got, n, "deliveries within %v", d)
	return got
}

// receive1 receives exactly one delivery within e.within().
func (e env) receive1(t *testing.T, ctx context.Context, b ports.Broker, lease time.Duration) ports.Delivery {
	t.Helper()
	return e.receiveN(t, ctx, b, 1, lease, e.within())[0]
}

// requireEmpty asserts that one Receive of up to MaxBatch returns nothing.
func (e env) requireEmpty(t *testing.T, ctx context.Context, b ports.Broker) {
	t.Helper()
	ds, err := b.Receive(ctx, ports.MaxBatch, e.longLease())
	require.NoError(t, err, "Receive")
	require.Emptyf(t, ds, "Receive returned %v, want nothing", ids(ds))
}

func ids(ds []ports.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func receipts(ds []ports.Delivery) []ports.Receipt {
	out := make([]ports.Receipt, len(ds))
	for i, d := range ds {
		out[i] = d.Receipt
	}
	return out
}

func testSendReceiveAck(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	before := time.Now()
	require.NoError(t, b.Send(ctx, ports.Message{
		ID:         "m-1",
		Body:       []byte("hello"),
		Attributes: map[string]string{"kind": "greeting"},
	}))
	after := time.Now()

	d := e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, "m-1", d.ID)
	requireBytes(t, []byte("hello"), d.Body)
	require.Equal(t, map[string]string{"kind": "greeting"}, d.Attributes)
	require.Equal(t, 1, d.Attempt, "Attempt of the first delivery")
	require.NotEmpty(t, d.Receipt)
	// Real time allows for the service's clock and timestamp resolution.
	tol := e.slack + e.early
	require.Falsef(t, d.SentAt.Before(before.Add(-tol)) || d.SentAt.After(after.Add(tol)),
		"SentAt %v not within [%v, %v] (±%v)", d.SentAt, before, after, tol)

	require.NoError(t, b.Ack(ctx, d.Receipt))
	e.requireEmpty(t, ctx, b)
}

func testSendReceiveAckBatch(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	msgs := make([]ports.Message, ports.MaxBatch)
	for i := range msgs {
		msgs[i] = ports.Message{ID: fmt.Sprintf("m-%d", i), Body: fmt.Appendf(nil, "body %d", i)}
	}
	require.NoError(t, b.Send(ctx, msgs...))

	ds := e.receiveN(t, ctx, b, len(msgs), e.longLease(), e.within())
	byID := make(map[string]ports.Delivery)
	seen := make(map[ports.Receipt]bool)
	for _, d := range ds {
		byID[d.ID] = d
		require.Falsef(t, seen[d.Receipt], "receipt %q handed out twice", d.Receipt)
		seen[d.Receipt] = true
		require.Equal(t, 1, d.Attempt, "Attempt of %s", d.ID)
	}
	for _, m := range msgs {
		d, ok := byID[m.ID]
		require.Truef(t, ok, "message %s not delivered; got %v", m.ID, ids(ds))
		requireBytes(t, m.Body, d.Body, "body of %s", m.ID)
	}

	require.NoError(t, b.Ack(ctx, receipts(ds)...))
	e.requireEmpty(t, ctx, b)
}

func testBinaryBodyAndAttributes(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	attrs := map[string]string{
		"a":                      "v",
		"Mixed.Case_name-1":      "ünïcødé ✓",
		"with.dots.and_under":    "with space and = ; , symbols",
		"json":                   `{"k":[1,2,"three"]}`,
		"digits0123456789":       "0123456789",
		"long-value":             strings.Repeat("x", 512),
		"trace.parent":           "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		strings.Repeat("n", 128): "name of the longest length",
	}
	require.Len(t, attrs, ports.MaxAttributes)
	msgs := []ports.Message{
		{ID: "all-bytes", Body: allBytes(), Attributes: attrs},
		{ID: "invalid-utf8", Body: []byte{0xff, 0xfe, 0xc3, 0x28, 0x80, 0xed, 0xa0, 0x80}},
		{ID: "nul", Body: []byte{0, 0, 0, 'x', 0}},
		{ID: "empty", Body: nil},
		{ID: "text", Body: []byte("plain text, ünïcødé ✓\r\n\t<xml>&amp;</xml>")},
	}
	require.NoError(t, b.Send(ctx, msgs...))

	ds := e.receiveN(t, ctx, b, len(msgs), e.longLease(), e.within())
	byID := make(map[string]ports.Delivery)
	for _, d := range ds {
		byID[d.ID] = d
	}
	for _, m := range msgs {
		d, ok := byID[m.ID]
		require.Truef(t, ok, "message %s not delivered; got %v", m.ID, ids(ds))
		requireBytes(t, m.Body, d.Body, "body of %s", m.ID)
		if len(m.Attributes) == 0 {
			require.Empty(t, d.Attributes, "attributes of %s", m.ID)
		} else {
			require.Equal(t, m.Attributes, d.Attributes, "attributes of %s", m.ID)
		}
	}
	require.NoError(t, b.Ack(ctx, receipts(ds)...))
}

func testBodyIsCopied(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	body := []byte("original")
	attrs := map[string]string{"k": "v"}
	require.NoError(t, b.Send(ctx, ports.Message{ID: "m-1", Body: body, Attributes: attrs}))
	body[0] = 'X'
	attrs["k"] = "changed"
	attrs["added"] = "x"

	d := e.receive1(t, ctx, b, e.longLease())
	requireBytes(t, []byte("original"), d.Body, "body after mutating the sent slice")
	require.Equal(t, map[string]string{"k": "v"}, d.Attributes, "attributes after mutating the sent map")
	d.Body[0] = 'Y'
	d.Attributes["k"] = "mutated"

	require.NoError(t, b.Nack(ctx, d.Receipt, 0))
	d = e.receive1(t, ctx, b, e.longLease())
	requireBytes(t, []byte("original"), d.Body, "body after mutating a received slice")
	require.Equal(t, map[string]string{"k": "v"}, d.Attributes, "attributes after mutating a received map")
	require.NoError(t, b.Ack(ctx, d.Receipt))
}

func testReceiveEmptyWithinPollBound(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	for _, max := range []int{1, ports.MaxBatch} {
		start := time.Now()
		ds, err := b.Receive(ctx, max, e.longLease())
		require.NoError(t, err)
		require.Empty(t, ds)
		e.requireQuick(t, start, e.poll, "Receive on an empty queue")
	}
}

func testReceiveHonoursContext(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]

	done, cancel := context.WithCancel(ctx)
	cancel()
	_, err := b.Receive(done, 1, e.longLease())
	require.ErrorIs(t, err, context.Canceled, "Receive with a done ctx")

	blocking, cancel := context.WithCancel(ctx)
	defer cancel()
	after := e.poll / 4
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(after)
		cancel()
	})
	start := time.Now()
	ds, err := b.Receive(blocking, 1, e.longLease())
	wg.Wait()
	require.ErrorIs(t, err, context.Canceled, "Receive whose ctx is cancelled while it blocks")
	require.Empty(t, ds)
	e.requireQuick(t, start, after, "Receive after its ctx was cancelled")
}

// requireWakes starts a Receive on b that blocks, runs action from another
// goroutine a quarter poll bound later, and requires the Receive to return
// one delivery promptly after action, well before the poll bound.
func (e env) requireWakes(t *testing.T, ctx context.Context, b ports.Broker, action func() error) ports.Delivery {
	t.Helper()
	after := e.poll / 4
	var (
		wg        sync.WaitGroup
		actionErr error
	)
	wg.Go(func() {
		time.Sleep(after)
		actionErr = action()
	})
	start := time.Now()
	ds, err := b.Receive(ctx, 1, e.longLease())
	elapsed := time.Since(start)
	wg.Wait()
	require.NoError(t, actionErr, "action")
	require.NoError(t, err, "Receive")
	require.Len(t, ds, 1, "the blocked Receive returns the message")
	require.LessOrEqualf(t, elapsed, after+e.slack, "Receive returned %v after it started, want it at most %v (+%v slack) after the action",
		elapsed, after, e.slack)
	return ds[0]
}

func testReceiveWakesOnSend(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	bs := h.NewQueue(t, false, 2)
	d := e.requireWakes(t, ctx, bs[0], func() error {
		return bs[1].Send(ctx, ports.Message{ID: "m-1"})
	})
	require.Equal(t, "m-1", d.ID)
	require.NoError(t, bs[0].Ack(ctx, d.Receipt))
}

func testReceiveWakesOnNack(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	bs := h.NewQueue(t, false, 2)
	require.NoError(t, bs[0].Send(ctx, ports.Message{ID: "m-1"}))
	d1 := e.receive1(t, ctx, bs[0], e.longLease())
	d2 := e.requireWakes(t, ctx, bs[1], func() error {
		return bs[0].Nack(ctx, d1.Receipt, 0)
	})
	require.Equal(t, "m-1", d2.ID)
	require.Equal(t, d1.Attempt+1, d2.Attempt)
	require.NoError(t, bs[1].Ack(ctx, d2.Receipt))
}

func testNackRedelivers(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	require.NoError(t, b.Send(ctx, ports.Message{ID: "m-1", Body: []byte("x")}))
	d1 := e.receive1(t, ctx, b, e.longLease())
	require.NoError(t, b.Nack(ctx, d1.Receipt, 0))

	d2 := e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, d1.ID, d2.ID)
	require.Equal(t, d1.Attempt+1, d2.Attempt, "Attempt after a Nack")
	require.NotEqual(t, d1.Receipt, d2.Receipt, "a new delivery has a new receipt")
	requireBytes(t, d1.Body, d2.Body)
	require.NoError(t, b.Ack(ctx, d2.Receipt))
	e.requireEmpty(t, ctx, b)
}

func testNackWithDelay(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	require.NoError(t, b.Send(ctx, ports.Message{ID: "m-1"}))
	d1 := e.receive1(t, ctx, b, e.longLease())

	delay := 2 * e.gran
	start := time.Now()
	require.NoError(t, b.Nack(ctx, d1.Receipt, delay))
	d2 := e.receiveN(t, ctx, b, 1, e.longLease(), delay+e.within())[0]
	e.requireNotBefore(t, start, delay, "redelivery after Nack with delay")
	require.Equal(t, d1.ID, d2.ID)
	require.Equal(t, d1.Attempt+1, d2.Attempt)
	require.NoError(t, b.Ack(ctx, d2.Receipt))
}

func testLeaseExpiryRedelivers(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	require.NoError(t, b.Send(ctx, ports.Message{ID: "m-1", Body: []byte("x")}))
	lease := e.gran
	start := time.Now()
	d1 := e.receive1(t, ctx, b, lease)

	d2 := e.receiveN(t, ctx, b, 1, e.longLease(), lease+e.within())[0]
	e.requireNotBefore(t, start, lease, "redelivery after lease expiry")
	require.Equal(t, d1.ID, d2.ID)
	require.Equal(t, d1.Attempt+1, d2.Attempt, "Attempt after lease expiry")
	require.NotEqual(t, d1.Receipt, d2.Receipt)

	require.ErrorIs(t, b.Extend(ctx, e.gran, d1.Receipt), ports.ErrLeaseLost, "Extend with the expired receipt")
	require.ErrorIs(t, b.Nack(ctx, d1.Receipt, 0), ports.ErrLeaseLost, "Nack with the expired receipt")
	require.NoError(t, b.Extend(ctx, e.longLease(), d2.Receipt), "Extend with the current receipt")
	require.NoError(t, b.Ack(ctx, d2.Receipt))
}

func testExtendHoldsLease(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	bs := h.NewQueue(t, false, 2)
	require.NoError(t, bs[0].Send(ctx, ports.Message{ID: "m-1"}))
	lease := 2 * e.gran
	start := time.Now()
	d := e.receive1(t, ctx, bs[0], lease)

	time.Sleep(e.gran)
	// The new lease ends well after the checks below.
	require.NoError(t, bs[0].Extend(ctx, 3*e.gran+e.poll, d.Receipt))
	for time.Since(start) < lease+e.gran {
		e.requireEmpty(t, ctx, bs[1]) // past the original lease end, nobody gets it
	}
	require.NoError(t, bs[0].Extend(ctx, e.gran, d.Receipt), "the extended lease still holds")
	require.NoError(t, bs[0].Ack(ctx, d.Receipt))
}

func testExtendAfterLeaseExpiry(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	require.NoError(t, b.Send(ctx, ports.Message{ID: "m-1"}))
	d1 := e.receive1(t, ctx, b, e.gran)
	time.Sleep(2 * e.gran)
	// The lease ended though nobody received the message again.
	err := b.Extend(ctx, e.longLease(), d1.Receipt)
	if err == nil && e.f.ExtendsExpiredLease {
		t.Skip("Features.ExtendsExpiredLease declared: Extend after the lease ended succeeded instead of failing with ErrLeaseLost")
	}
	require.ErrorIs(t, err, ports.ErrLeaseLost, "Extend after the lease ended")
	require.ErrorIs(t, b.Nack(ctx, d1.Receipt, 0), ports.ErrLeaseLost, "Nack after the lease ended")
	d2 := e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, d1.ID, d2.ID)
	require.Equal(t, d1.Attempt+1, d2.Attempt)
	require.NoError(t, b.Ack(ctx, d2.Receipt))
}

func testStaleReceipt(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	require.NoError(t, b.Send(ctx, ports.Message{ID: "m-0"}, ports.Message{ID: "m-1"}, ports.Message{ID: "m-2"}))
	ds := e.receiveN(t, ctx, b, 3, e.longLease(), e.within())

	// Acked: the receipt is stale.
	require.NoError(t, b.Ack(ctx, ds[1].Receipt))
	err := b.Extend(ctx, e.longLease(), ds[0].Receipt, ds[1].Receipt, ds[2].Receipt)
	require.ErrorIs(t, err, ports.ErrLeaseLost, "Extend with one stale receipt of three")
	var be *ports.BatchError
	require.ErrorAs(t, err, &be)
	require.Len(t, be.Failed, 1, "only the stale item fails: %v", be)
	require.ErrorIs(t, be.Failed[1], ports.ErrLeaseLost, "item 1")
	require.ErrorIs(t, b.Extend(ctx, e.longLease(), ds[1].Receipt), ports.ErrLeaseLost, "Extend with an acked receipt")
	require.ErrorIs(t, b.Nack(ctx, ds[1].Receipt, 0), ports.ErrLeaseLost, "Nack with an acked receipt")

	// Nacked: the receipt is stale too.
	require.NoError(t, b.Nack(ctx, ds[2].Receipt, 0))
	require.ErrorIs(t, b.Extend(ctx, e.longLease(), ds[2].Receipt), ports.ErrLeaseLost, "Extend with a nacked receipt")
	require.ErrorIs(t, b.Nack(ctx, ds[2].Receipt, 0), ports.ErrLeaseLost, "Nack with a nacked receipt")

	// The others' leases still hold.
	require.NoError(t, b.Extend(ctx, e.longLease(), ds[0].Receipt))
	require.NoError(t, b.Ack(ctx, ds[0].Receipt))
	d := e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, "m-2", d.ID)
	require.NoError(t, b.Ack(ctx, d.Receipt))
}

func testAckIsWeak(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	require.NoError(t, b.Send(ctx, ports.Message{ID: "m-1"}))
	d1 := e.receive1(t, ctx, b, e.gran)
	d2 := e.receiveN(t, ctx, b, 1, e.longLease(), e.gran+e.within())[0]
	require.Equal(t, d1.ID, d2.ID)

	require.NoError(t, b.Ack(ctx, d1.Receipt), "Ack with a stale receipt")
	require.NoError(t, b.Ack(ctx, d2.Receipt), "Ack with the current receipt")
	require.NoError(t, b.Ack(ctx, d2.Receipt), "second Ack")
	require.NoError(t, b.Ack(ctx, d1.Receipt, d2.Receipt), "Ack of acked receipts")
	e.requireEmpty(t, ctx, b)
}

func testConcurrentReceivers(t *testing.T, e env, h BrokerHarness) {
	const (
		brokers    = 3
		perBroker  = 2 // goroutines per broker
		batches    = 3
		total      = batches * ports.MaxBatch
		receiveMax = 3
	)
	ctx := e.ctx(t)
	bs := h.NewQueue(t, false, brokers)
	recvCtx, stop := context.WithCancel(ctx)
	defer stop()

	var (
		mu       sync.Mutex
		held     = make(map[string]bool) // IDs between Receive and Ack
		seen     = make(map[string]int)
		problems []string
		wg       sync.WaitGroup
	)
	problem := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	for i := range brokers * perBroker {
		b := bs[i%brokers]
		wg.Go(func() {
			for recvCtx.Err() == nil {
				ds, err := b.Receive(recvCtx, receiveMax, e.longLease())
				if err != nil {
					if recvCtx.Err() == nil {
						problem("receiver %d: Receive: %v", i, err)
					}
					return
				}
				if len(ds) == 0 {
					continue
				}
				mu.Lock()
				for _, d := range ds {
					if held[d.ID] {
						problems = append(problems, fmt.Sprintf("receiver %d got %s while another receiver held its lease", i, d.ID))
					}
					held[d.ID] = true
					seen[d.ID]++
				}
				mu.Unlock()
				if err := b.Ack(ctx, receipts(ds)...); err != nil {
					problem("receiver %d: Ack: %v", i, err)
				}
				mu.Lock()
				for _, d := range ds {
					delete(held, d.ID)
				}
				if len(seen) == total {
					stop()
				}
				mu.Unlock()
			}
		})
	}

	for i := range batches {
		msgs := make([]ports.Message, ports.MaxBatch)
		for j := range msgs {
			msgs[j] = ports.Message{ID: fmt.Sprintf("m-%d-%d", i, j)}
		}
		require.NoError(t, bs[i%brokers].Send(ctx, msgs...))
	}
	timer := time.AfterFunc(e.within()+5*e.poll, stop)
	defer timer.Stop()
	wg.Wait()

	require.Empty(t, problems)
	require.Lenf(t, seen, total, "distinct messages delivered within %v", e.within()+5*e.poll)
	for id, n := range seen {
		if n > 1 {
			t.Logf("%s delivered %d times (allowed by at-least-once delivery)", id, n)
		}
	}
	e.requireEmpty(t, ctx, bs[0])
}

func testSendDelay(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	delay := 2 * e.gran
	start := time.Now()
	require.NoError(t, b.Send(ctx, ports.Message{ID: "late", Delay: delay}, ports.Message{ID: "now"}))

	d := e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, "now", d.ID, "the undelayed message comes first")
	require.Less(t, time.Since(start), delay, "the undelayed message came too late to tell")
	require.NoError(t, b.Ack(ctx, d.Receipt))

	d = e.receiveN(t, ctx, b, 1, e.longLease(), delay+e.within())[0]
	e.requireNotBefore(t, start, delay, "delayed message")
	require.Equal(t, "late", d.ID)
	require.Equal(t, 1, d.Attempt)
	require.NoError(t, b.Ack(ctx, d.Receipt))
}

func testBrokerValidation(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	require.NoError(t, b.Send(ctx, ports.Message{ID: "leased"}))
	r := e.receive1(t, ctx, b, e.longLease()).Receipt

	valid := ports.Message{ID: "valid", Body: []byte("x")}
	with := func(m ports.Message) []ports.Message { return []ports.Message{m} }
	attrs := func(kv ...string) map[string]string {
		m := make(map[string]string)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tooMany := make(map[string]string)
	for i := range ports.MaxAttributes + 1 {
		tooMany[fmt.Sprintf("a%d", i)] = "v"
	}
	eleven := make([]ports.Message, ports.MaxBatch+1)
	for i := range eleven {
		eleven[i] = ports.Message{ID: fmt.Sprintf("m-%d", i)}
	}
	sends := []struct {
		name string
		msgs []ports.Message
	}{
		{"no messages", nil},
		{"more than MaxBatch messages", eleven},
		{"empty ID", with(ports.Message{Body: []byte("x")})},
		{"more than MaxAttributes attributes", with(ports.Message{ID: "m", Attributes: tooMany})},
		{"empty attribute name", with(ports.Message{ID: "m", Attributes: attrs("", "v")})},
		{"attribute name with a space", with(ports.Message{ID: "m", Attributes: attrs("a b", "v")})},
		{"attribute name with a slash", with(ports.Message{ID: "m", Attributes: attrs("a/b", "v")})},
		{"attribute name over 128 bytes", with(ports.Message{ID: "m", Attributes: attrs(strings.Repeat("n", 129), "v")})},
		{"non-ASCII attribute name", with(ports.Message{ID: "m", Attributes: attrs("naïve", "v")})},
		{"attribute name starting with aws.", with(ports.Message{ID: "m", Attributes: attrs("aws.trace", "v")})},
		{"attribute name starting with AMAZON.", with(ports.Message{ID: "m", Attributes: attrs("AMAZON.x", "v")})},
		{"negative delay", with(ports.Message{ID: "m", Delay: -e.gran})},
		{"delay over MaxDelay", with(ports.Message{ID: "m", Delay: ports.MaxDelay + e.gran})},
		{"valid message then an invalid one", []ports.Message{valid, {Body: []byte("no ID")}}},
	}
	for _, c := range sends {
		require.ErrorIs(t, b.Send(ctx, c.msgs...), ports.ErrInvalidArgument, "Send: %s", c.name)
	}

	receives := []struct {
		name  string
		max   int
		lease time.Duration
	}{
		{"max 0", 0, e.gran},
		{"max over MaxBatch", ports.MaxBatch + 1, e.gran},
		{"lease 0", 1, 0},
		{"negative lease", 1, -e.gran},
		{"lease over MaxLease", 1, ports.MaxLease + e.gran},
	}
	for _, c := range receives {
		ds, err := b.Receive(ctx, c.max, c.lease)
		require.ErrorIs(t, err, ports.ErrInvalidArgument, "Receive: %s", c.name)
		require.Empty(t, ds, "Receive: %s", c.name)
	}

	elevenReceipts := make([]ports.Receipt, ports.MaxBatch+1)
	for i := range elevenReceipts {
		elevenReceipts[i] = r
	}
	require.ErrorIs(t, b.Ack(ctx), ports.ErrInvalidArgument, "Ack of no receipts")
	require.ErrorIs(t, b.Ack(ctx, elevenReceipts...), ports.ErrInvalidArgument, "Ack of more than MaxBatch receipts")
	require.ErrorIs(t, b.Nack(ctx, r, -e.gran), ports.ErrInvalidArgument, "Nack with a negative delay")
	require.ErrorIs(t, b.Nack(ctx, r, ports.MaxLease+e.gran), ports.ErrInvalidArgument, "Nack with a delay over MaxLease")
	require.ErrorIs(t, b.Extend(ctx, 0, r), ports.ErrInvalidArgument, "Extend with lease 0")
	require.ErrorIs(t, b.Extend(ctx, -e.gran, r), ports.ErrInvalidArgument, "Extend with a negative lease")
	require.ErrorIs(t, b.Extend(ctx, ports.MaxLease+e.gran, r), ports.ErrInvalidArgument, "Extend with a lease over MaxLease")
	require.ErrorIs(t, b.Extend(ctx, e.gran), ports.ErrInvalidArgument, "Extend of no receipts")
	require.ErrorIs(t, b.Extend(ctx, e.gran, elevenReceipts...), ports.ErrInvalidArgument, "Extend of more than MaxBatch receipts")

	// Nothing was sent, and the rejected calls left the lease alone.
	e.requireEmpty(t, ctx, b)
	require.NoError(t, b.Extend(ctx, e.longLease(), r), "the lease survives rejected calls")
	require.NoError(t, b.Ack(ctx, r))
}

func testBrokerClosed(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	bs := h.NewQueue(t, false, 2)
	b := bs[0]
	require.NoError(t, b.Send(ctx, ports.Message{ID: "m-1"}))
	d := e.receive1(t, ctx, b, e.longLease())
	require.NoError(t, b.Close())

	require.ErrorIs(t, b.Send(ctx, ports.Message{ID: "m-2"}), ports.ErrClosed, "Send")
	_, err := b.Receive(ctx, 1, e.longLease())
	require.ErrorIs(t, err, ports.ErrClosed, "Receive")
	require.ErrorIs(t, b.Ack(ctx, d.Receipt), ports.ErrClosed, "Ack")
	require.ErrorIs(t, b.Nack(ctx, d.Receipt, 0), ports.ErrClosed, "Nack")
	require.ErrorIs(t, b.Extend(ctx, e.longLease(), d.Receipt), ports.ErrClosed, "Extend")
	require.NoError(t, b.Close(), "second Close")

	// Another broker of the queue is unaffected (and m-1 stays leased).
	require.NoError(t, bs[1].Send(ctx, ports.Message{ID: "m-3"}))
	d = e.receive1(t, ctx, bs[1], e.longLease())
	require.Equal(t, "m-3", d.ID)
	require.NoError(t, bs[1].Ack(ctx, d.Receipt))
	e.requireEmpty(t, ctx, bs[1])
}

func testCloseKeepsLeases(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	bs := h.NewQueue(t, false, 2)
	require.NoError(t, bs[0].Send(ctx, ports.Message{ID: "m-1"}))
	start := time.Now()
	d1 := e.receive1(t, ctx, bs[0], e.gran)
	require.NoError(t, bs[0].Close())

	d2 := e.receiveN(t, ctx, bs[1], 1, e.longLease(), e.gran+e.within())[0]
	e.requireNotBefore(t, start, e.gran, "redelivery of a message leased by a closed broker")
	require.Equal(t, d1.ID, d2.ID)
	require.Equal(t, d1.Attempt+1, d2.Attempt)
	require.NoError(t, bs[1].Ack(ctx, d2.Receipt))
}

func testMissingQueue(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.MissingQueue(t)
	require.ErrorIs(t, b.Send(ctx, ports.Message{ID: "m-1"}), ports.ErrNotFound, "Send")
	_, err := b.Receive(ctx, 1, e.longLease())
	require.ErrorIs(t, err, ports.ErrNotFound, "Receive")
}

func testFIFOOrderPerGroup(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, true, 1)[0]
	groups := []string{"A", "B", "C"}
	var first, second []ports.Message
	for n := 1; n <= 3; n++ {
		for _, g := range groups {
			first = append(first, ports.Message{ID: fmt.Sprintf("%s%d", g, n), GroupID: g})
		}
	}
	for _, g := range groups {
		second = append(second, ports.Message{ID: g + "4", GroupID: g})
	}
	require.NoError(t, b.Send(ctx, first...))
	require.NoError(t, b.Send(ctx, second...))

	total := len(first) + len(second)
	order := make(map[string][]string)
	got := 0
	deadline := time.Now().Add(e.within() + 5*e.poll)
	for got < total && time.Now().Before(deadline) {
		ds, err := b.Receive(ctx, ports.MaxBatch, e.longLease())
		require.NoError(t, err)
		for _, d := range ds {
			require.Equal(t, d.ID[:1], d.GroupID, "GroupID of %s", d.ID)
			require.Equal(t, 1, d.Attempt, "Attempt of %s", d.ID)
			order[d.GroupID] = append(order[d.GroupID], d.ID)
		}
		got += len(ds)
		if len(ds) > 0 {
			require.NoError(t, b.Ack(ctx, receipts(ds)...))
		}
	}
	for _, g := range groups {
		require.Equal(t, []string{g + "1", g + "2", g + "3", g + "4"}, order[g], "order of group %s", g)
	}
	require.Equal(t, total, got)
}

func testFIFOGroupHeldWhileLeased(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	bs := h.NewQueue(t, true, 2)
	require.NoError(t, bs[0].Send(ctx, ports.Message{ID: "A1", GroupID: "A"}, ports.Message{ID: "A2", GroupID: "A"}))
	a1 := e.receive1(t, ctx, bs[0], e.longLease())
	require.Equal(t, "A1", a1.ID)

	require.NoError(t, bs[0].Send(ctx, ports.Message{ID: "B1", GroupID: "B"}))
	b1 := e.receive1(t, ctx, bs[1], e.longLease())
	require.Equal(t, "B1", b1.ID, "another group is served while group A is held")
	e.requireEmpty(t, ctx, bs[1]) // A2 waits for A1

	require.NoError(t, bs[0].Ack(ctx, a1.Receipt))
	a2 := e.receive1(t, ctx, bs[1], e.longLease())
	require.Equal(t, "A2", a2.ID)
	require.Equal(t, 1, a2.Attempt)
	require.NoError(t, bs[1].Ack(ctx, b1.Receipt, a2.Receipt))
}

func testFIFONackKeepsOrder(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, true, 1)[0]
	require.NoError(t, b.Send(ctx, ports.Message{ID: "A1", GroupID: "A"}, ports.Message{ID: "A2", GroupID: "A"}))
	d := e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, "A1", d.ID)
	require.NoError(t, b.Nack(ctx, d.Receipt, 0))

	d = e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, "A1", d.ID, "a nacked message is redelivered before the rest of its group")
	require.Equal(t, 2, d.Attempt)

	delay := 2 * e.gran
	start := time.Now()
	require.NoError(t, b.Nack(ctx, d.Receipt, delay))
	d = e.receiveN(t, ctx, b, 1, e.longLease(), delay+e.within())[0]
	require.Equal(t, "A1", d.ID, "the group waits out a Nack delay")
	e.requireNotBefore(t, start, delay, "redelivery after Nack with delay")
	require.Equal(t, 3, d.Attempt)

	require.NoError(t, b.Ack(ctx, d.Receipt))
	d = e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, "A2", d.ID)
	require.NoError(t, b.Ack(ctx, d.Receipt))
}

func testFIFOReceiveWakesOnAck(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	bs := h.NewQueue(t, true, 2)
	require.NoError(t, bs[0].Send(ctx, ports.Message{ID: "A1", GroupID: "A"}, ports.Message{ID: "A2", GroupID: "A"}))
	a1 := e.receive1(t, ctx, bs[0], e.longLease())
	require.Equal(t, "A1", a1.ID)
	a2 := e.requireWakes(t, ctx, bs[1], func() error {
		return bs[0].Ack(ctx, a1.Receipt)
	})
	require.Equal(t, "A2", a2.ID, "acking the head of a group releases the next message")
	require.NoError(t, bs[1].Ack(ctx, a2.Receipt))
}

func testFIFOEmptyGroupID(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, true, 1)[0]
	require.NoError(t, b.Send(ctx, ports.Message{ID: "X"}, ports.Message{ID: "Y"}))
	// Each message is a group of its own: leasing one holds back nothing.
	d1 := e.receive1(t, ctx, b, e.longLease())
	d2 := e.receive1(t, ctx, b, e.longLease())
	require.ElementsMatch(t, []string{"X", "Y"}, []string{d1.ID, d2.ID})
	require.NoError(t, b.Ack(ctx, d1.Receipt, d2.Receipt))
}

func testFIFODeduplication(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, true, 1)[0]
	require.NoError(t, b.Send(ctx, ports.Message{ID: "d1", GroupID: "g", Body: []byte("first")}))
	require.NoError(t, b.Send(ctx, ports.Message{ID: "d1", GroupID: "g", Body: []byte("second")}), "a duplicate Send is accepted")
	d := e.receive1(t, ctx, b, e.longLease())
	requireBytes(t, []byte("first"), d.Body)
	require.NoError(t, b.Ack(ctx, d.Receipt))
	e.requireEmpty(t, ctx, b) // the duplicate was dropped

	require.NoError(t, b.Send(ctx, ports.Message{ID: "d1", GroupID: "g", Body: []byte("third")}), "a duplicate Send after Ack is accepted")
	e.requireEmpty(t, ctx, b) // and dropped within the dedup window

	require.NoError(t, b.Send(ctx,
		ports.Message{ID: "d2", GroupID: "g", Body: []byte("a")},
		ports.Message{ID: "d2", GroupID: "g", Body: []byte("b")}))
	d = e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, "d2", d.ID)
	requireBytes(t, []byte("a"), d.Body, "the first of a duplicate within one batch wins")
	require.NoError(t, b.Ack(ctx, d.Receipt))
	e.requireEmpty(t, ctx, b)
}

func testFIFORejectsDelay(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, true, 1)[0]
	require.ErrorIs(t, b.Send(ctx, ports.Message{ID: "m-1", GroupID: "g", Delay: e.gran}), ports.ErrInvalidArgument)
	e.requireEmpty(t, ctx, b)
}
