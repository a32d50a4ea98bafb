package porttest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/ports"
)

// The optional ports.DeadLetterer (Features.DeadLetters).

// DeadLetterHarness is implemented by a BrokerHarness whose adapter
// declares Features.DeadLetters.
type DeadLetterHarness interface {
	// NewDeadLetteredQueue creates a fresh, empty standard queue whose
	// redrive policy moves a message received maxReceives times to a fresh,
	// empty DLQ, and returns a broker bound to the queue.
	NewDeadLetteredQueue(t *testing.T, maxReceives int) ports.Broker
}

// deadLetterer returns b's ports.DeadLetterer, failing when an adapter
// declares Features.DeadLetters without implementing it.
func deadLetterer(t *testing.T, b ports.Broker) ports.DeadLetterer {
	t.Helper()
	d, ok := b.(ports.DeadLetterer)
	require.Truef(t, ok, "Features.DeadLetters is declared but %T does not implement ports.DeadLetterer", b)
	return d
}

func deadLetterHarness(t *testing.T, h BrokerHarness) DeadLetterHarness {
	t.Helper()
	d, ok := h.(DeadLetterHarness)
	require.Truef(t, ok, "Features.DeadLetters is declared but the harness %T does not implement porttest.DeadLetterHarness", h)
	return d
}

// A message received MaxReceives times moves to the DLQ with its ID, body
// and attributes; DeadLetters opens that DLQ and tells MaxReceives.
func testDeadLetters(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	const maxReceives = 2
	b := deadLetterHarness(t, h).NewDeadLetteredQueue(t, maxReceives)
	body := allBytes()
	attrs := map[string]string{"kind": "poison"}
	require.NoError(t, b.Send(ctx, ports.Message{ID: "m-1", Body: body, Attributes: attrs}))
	for i := range maxReceives {
		d := e.receive1(t, ctx, b, e.longLease())
		require.Equal(t, i+1, d.Attempt)
		require.NoError(t, b.Nack(ctx, d.Receipt, 0))
	}
	e.requireEmpty(t, ctx, b) // moved to the DLQ on this receive

	dl, err := deadLetterer(t, b).DeadLetters(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, dl.Close()) })
	require.NotEmpty(t, dl.Name, "DeadLetterQueue.Name")
	require.Equal(t, maxReceives, dl.MaxReceives, "DeadLetterQueue.MaxReceives: the redrive policy's")
	d := e.receive1(t, ctx, dl.Broker, e.longLease())
	require.Equal(t, "m-1", d.ID)
	requireBytes(t, body, d.Body, "body in the DLQ")
	require.Equal(t, attrs, d.Attributes, "attributes in the DLQ")
	require.NoError(t, dl.Ack(ctx, d.Receipt))
	e.requireEmpty(t, ctx, dl.Broker)
}

// A queue without a redrive policy has no DLQ: ErrNotFound.
func testDeadLettersNone(t *testing.T, e env, h BrokerHarness) {
	ctx := e.ctx(t)
	b := h.NewQueue(t, false, 1)[0]
	_, err := deadLetterer(t, b).DeadLetters(ctx)
	require.ErrorIs(t, err, ports.ErrNotFound)
}
