package porttest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/ports"
)

// The optional ports.Requeuer (Features.Requeue, Features.RequeueFIFO).

// requeuer returns b's ports.Requeuer, failing when an adapter declares
// Features.Requeue without implementing it.
func requeuer(t *testing.T, b ports.Broker) ports.Requeuer {
	t.Helper()
	r, ok := b.(ports.Requeuer)
	require.Truef(t, ok, "Features.Requeue is declared but %T does not implement ports.Requeuer", b)
	return r
}

// A requeued message comes back at once as a new message: same ID, body and
// attributes (with the given ones merged over them), Attempt 1 however
// often it was received before, a new SentAt; the original is gone.
func testRequeue(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	r := requeuer(t, b)
	body := allBytes()
	require.NoError(t, b.Send(ctx, ports.Message{
		ID:         "m-1",
		Body:       body,
		Attributes: map[string]string{"kind": "original", "keep": "kept"},
	}))
	d := e.receive1(t, ctx, b, e.longLease())
	require.NoError(t, b.Nack(ctx, d.Receipt, 0))
	d = e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, 2, d.Attempt, "the second delivery, after a Nack")
	first := d.SentAt

	start := time.Now()
	if e.f.Synctest {
		time.Sleep(e.gran) // a later clock reading for SentAt
		start = time.Now()
	}
	require.NoError(t, r.Requeue(ctx, d, map[string]string{"kind": "requeued", "added": "new"}))
	c := e.receive1(t, ctx, b, e.longLease())
	e.requireQuick(t, start, e.gran, "delivery of the requeued copy")
	require.Equal(t, "m-1", c.ID)
	requireBytes(t, body, c.Body, "body of the copy")
	require.Equal(t, map[string]string{"kind": "requeued", "keep": "kept", "added": "new"}, c.Attributes,
		"the delivery's attributes with the given ones merged over them")
	require.Equal(t, 1, c.Attempt, "the copy's first delivery")
	require.NotEqual(t, d.Receipt, c.Receipt)
	require.Falsef(t, c.SentAt.Before(start.Add(-e.slack-e.early)),
		"SentAt of the copy %v is before the Requeue call at %v (the original was sent at %v)", c.SentAt, start, first)
	e.requireEmpty(t, ctx, b) // the original is gone

	// Requeued again, with no attributes to add: the copy of the copy.
	require.NoError(t, r.Requeue(ctx, c, nil))
	c2 := e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, 1, c2.Attempt)
	require.Equal(t, c.Attributes, c2.Attributes)
	requireBytes(t, body, c2.Body)
	require.NoError(t, b.Ack(ctx, c2.Receipt))
	e.requireEmpty(t, ctx, b)
}

// A requeue with d.Delay set hands the copy back after that delay, as a
// new message (Attempt 1): how a worker postpones a task without counting
// a receive.
func testRequeueDelayed(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	r := requeuer(t, b)
	require.NoError(t, b.Send(ctx, ports.Message{ID: "m-1", Body: []byte("x")}))
	d := e.receive1(t, ctx, b, e.longLease())
	require.NoError(t, b.Nack(ctx, d.Receipt, 0))
	d = e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, 2, d.Attempt)

	delay := 2 * e.gran
	start := time.Now()
	d.Delay = delay
	require.NoError(t, r.Requeue(ctx, d, map[string]string{"kind": "postponed"}))
	c := e.receiveN(t, ctx, b, 1, e.longLease(), delay+e.within())[0]
	e.requireNotBefore(t, start, delay, "delayed copy")
	require.Equal(t, "m-1", c.ID)
	require.Equal(t, 1, c.Attempt, "the copy's first delivery")
	require.Equal(t, "postponed", c.Attributes["kind"])
	require.NoError(t, b.Ack(ctx, c.Receipt))
	e.requireEmpty(t, ctx, b)
}

// Requeue with a receipt that went stale never loses the message: either
// the adapter tells (ErrLeaseLost, nothing sent, the current lease intact)
// or the copy it sent is a duplicate, which at-least-once delivery allows.
func testRequeueStaleReceipt(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	r := requeuer(t, b)
	require.NoError(t, b.Send(ctx, ports.Message{ID: "m-1", Body: []byte("x")}))
	d1 := e.receive1(t, ctx, b, e.gran)
	d2 := e.receiveN(t, ctx, b, 1, e.longLease(), e.gran+e.within())[0]
	require.Equal(t, 2, d2.Attempt)

	err := r.Requeue(ctx, d1, nil)
	if err != nil {
		require.ErrorIs(t, err, ports.ErrLeaseLost, "Requeue with a stale receipt")
		e.requireEmpty(t, ctx, b) // nothing was sent
		require.NoError(t, b.Extend(ctx, e.longLease(), d2.Receipt), "the current lease is intact")
		require.NoError(t, b.Ack(ctx, d2.Receipt))
		e.requireEmpty(t, ctx, b)
		return
	}
	t.Log("the adapter cannot tell a stale receipt before sending: the copy is a duplicate (allowed)")
	c := e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, "m-1", c.ID)
	require.Equal(t, 1, c.Attempt)
	require.NoError(t, b.Ack(ctx, c.Receipt, d2.Receipt))
}

// A copy the queue would refuse fails with ErrInvalidArgument before
// anything is sent, and the lease is left alone.
func testRequeueValidation(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	r := requeuer(t, b)
	full := make(map[string]string, ports.MaxAttributes)
	for i := range ports.MaxAttributes {
		full[fmt.Sprintf("a%d", i)] = "v"
	}
	require.NoError(t, b.Send(ctx, ports.Message{ID: "m-1", Body: []byte("x"), Attributes: full}))
	d := e.receive1(t, ctx, b, e.longLease())

	cases := []struct {
		name  string
		d     ports.Delivery
		attrs map[string]string
	}{
		{"one attribute more than MaxAttributes", d, map[string]string{"extra": "v"}},
		{"an attribute name starting with aws.", d, map[string]string{"aws.x": "v"}},
		{"an attribute name with a space", d, map[string]string{"a b": "v"}},
		{"an empty receipt", ports.Delivery{Message: d.Message}, nil},
		{"an empty ID", ports.Delivery{Receipt: d.Receipt}, nil},
		{"a delay over MaxDelay", ports.Delivery{Message: withDelay(d.Message, ports.MaxDelay+time.Second), Receipt: d.Receipt}, nil},
		{"a negative delay", ports.Delivery{Message: withDelay(d.Message, -time.Second), Receipt: d.Receipt}, nil},
	}
	for _, c := range cases {
		require.ErrorIs(t, r.Requeue(ctx, c.d, c.attrs), ports.ErrInvalidArgument, "Requeue with %s", c.name)
	}
	e.requireEmpty(t, ctx, b) // nothing was sent
	require.NoError(t, b.Extend(ctx, e.longLease(), d.Receipt), "the lease survives rejected calls")
	// Overriding an existing attribute keeps the count: allowed.
	require.NoError(t, r.Requeue(ctx, d, map[string]string{"a0": "www"}))
	c := e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, "www", c.Attributes["a0"])
	require.Len(t, c.Attributes, ports.MaxAttributes)
	require.NoError(t, b.Ack(ctx, c.Receipt))
}

func testRequeueClosedAndMissing(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	bs := h.NewQueue(t, false, 2)
	require.NoError(t, bs[0].Send(ctx, ports.Message{ID: "m-1"}))
	d := e.receive1(t, ctx, bs[0], e.longLease())
	require.NoError(t, bs[0].Close())
	require.ErrorIs(t, requeuer(t, bs[0]).Requeue(ctx, d, nil), ports.ErrClosed, "Requeue after Close")
	// The lease is intact: another broker of the queue can still use it.
	require.NoError(t, bs[1].Ack(ctx, d.Receipt))
	e.requireEmpty(t, ctx, bs[1])

	missing := h.MissingQueue(t)
	err := requeuer(t, missing).Requeue(ctx, ports.Delivery{Message: ports.Message{ID: "m-1"}, Receipt: d.Receipt}, nil)
	require.ErrorIs(t, err, ports.ErrNotFound, "Requeue on a missing queue")
}

// On a FIFO queue Requeue either works (Features.RequeueFIFO) or fails, as
// declared, with ErrUnsupported before sending anything, leaving the lease
// to a Nack (the caller's fallback).
func testFIFORequeue(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, true, 1)[0]
	r := requeuer(t, b)
	require.NoError(t, b.Send(ctx, ports.Message{ID: "A1", GroupID: "A"}, ports.Message{ID: "A2", GroupID: "A"}))
	d := e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, "A1", d.ID)

	err := r.Requeue(ctx, d, map[string]string{"k": "v"})
	if e.f.RequeueFIFO {
		require.NoError(t, err)
		c := e.receive1(t, ctx, b, e.longLease())
		require.Equal(t, 1, c.Attempt)
		require.Equal(t, "v", c.Attributes["k"])
		require.NoError(t, b.Ack(ctx, c.Receipt))
		c = e.receive1(t, ctx, b, e.longLease())
		require.NoError(t, b.Ack(ctx, c.Receipt))
		e.requireEmpty(t, ctx, b)
		return
	}
	t.Log("feature RequeueFIFO not declared: Requeue on a FIFO queue must fail with ErrUnsupported")
	require.ErrorIs(t, err, ports.ErrUnsupported, "Requeue on a FIFO queue")
	e.requireEmpty(t, ctx, b) // nothing sent; A2 is held behind the leased A1
	require.NoError(t, b.Nack(ctx, d.Receipt, 0), "the lease is intact: the fallback Nack works")
	d = e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, "A1", d.ID)
	require.Equal(t, 2, d.Attempt, "released by Nack: the receive count grows")
	require.NoError(t, b.Ack(ctx, d.Receipt))
	d = e.receive1(t, ctx, b, e.longLease())
	require.Equal(t, "A2", d.ID)
	require.NoError(t, b.Ack(ctx, d.Receipt))
}

// withDelay returns m with Delay d.
func withDelay(m ports.Message, d time.Duration) ports.Message {
	m.Delay = d
	return m
}
