package memory_test

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/ports"
)

// ids returns the message IDs of ds.
func ids(ds []ports.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

// TestDeliveryOrder: available messages are delivered in queue order, also
// when some come back from a lease or a Nack while others were never
// delivered.
func TestDeliveryOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		tr := memory.NewTransport()
		b := newQueue(t, tr, "tasks", memory.QueueOptions{})
		for _, id := range []string{"a", "b", "c", "d", "e"} {
			require.NoError(t, b.Send(ctx, ports.Message{ID: id}))
		}
		ds, err := b.Receive(ctx, 3, time.Second)
		require.NoError(t, err)
		require.Equal(t, []string{"a", "b", "c"}, ids(ds))
		require.NoError(t, b.Nack(ctx, ds[2].Receipt, 0))
		require.NoError(t, b.Extend(ctx, time.Hour, ds[0].Receipt))
		time.Sleep(2 * time.Second) // b's lease ends

		got, err := b.Receive(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []string{"b", "c", "d", "e"}, ids(got))
		require.Equal(t, []int{2, 2, 1, 1}, []int{got[0].Attempt, got[1].Attempt, got[2].Attempt, got[3].Attempt})
	})
}

// TestAckAfterLeaseEnd: Ack with the receipt of an expired lease deletes the
// message as long as no one received it again, wherever the queue keeps it.
func TestAckAfterLeaseEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		tr := memory.NewTransport()
		b := newQueue(t, tr, "tasks", memory.QueueOptions{})
		require.NoError(t, b.Send(ctx, ports.Message{ID: "c"}, ports.Message{ID: "a"}))
		ds, err := b.Receive(ctx, 2, time.Second)
		require.NoError(t, err)
		require.Equal(t, []string{"c", "a"}, ids(ds))
		time.Sleep(2 * time.Second)

		// Both leases ended; this Receive takes c only, a stays available.
		c := receive1(t, b, time.Hour)
		require.Equal(t, "c", c.ID)
		require.NoError(t, b.Ack(ctx, ds[1].Receipt))
		st, err := tr.Stats("tasks")
		require.NoError(t, err)
		require.Equal(t, memory.QueueStats{InFlight: 1}, st)

		// The first receipt of c is stale: it deletes nothing.
		require.NoError(t, b.Ack(ctx, ds[0].Receipt))
		require.ErrorIs(t, b.Nack(ctx, ds[0].Receipt, 0), ports.ErrLeaseLost)
		require.NoError(t, b.Ack(ctx, c.Receipt))
		st, err = tr.Stats("tasks")
		require.NoError(t, err)
		require.Equal(t, memory.QueueStats{}, st)
	})
}

// TestFIFOHeldBackThenAcked: a FIFO message held back by an earlier leased
// message of its group can still be acked with the receipt of its expired
// lease; the group then continues with its next message.
func TestFIFOHeldBackThenAcked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		tr := memory.NewTransport()
		b := newQueue(t, tr, "tasks.fifo", memory.QueueOptions{FIFO: true})
		require.NoError(t, b.Send(ctx,
			ports.Message{ID: "g1", GroupID: "g"}, ports.Message{ID: "g2", GroupID: "g"},
			ports.Message{ID: "g3", GroupID: "g"}, ports.Message{ID: "h1", GroupID: "h"}))
		ds, err := b.Receive(ctx, 2, time.Second)
		require.NoError(t, err)
		require.Equal(t, []string{"g1", "g2"}, ids(ds), "one Receive takes several messages of a group")
		require.NoError(t, b.Extend(ctx, time.Hour, ds[0].Receipt))
		time.Sleep(2 * time.Second) // g2's lease ends, g1's runs on

		got, err := b.Receive(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []string{"h1"}, ids(got), "g2 and g3 are held back by g1")
		require.NoError(t, b.Ack(ctx, ds[1].Receipt, got[0].Receipt))
		require.NoError(t, b.Ack(ctx, ds[0].Receipt))

		got, err = b.Receive(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []string{"g3"}, ids(got))
		require.Equal(t, 1, got[0].Attempt)
	})
}

// TestFIFONackedBeforeLeased: a message nacked while a later message of its
// group is leased is delivered again at once (it precedes the leased one).
func TestFIFONackedBeforeLeased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		tr := memory.NewTransport()
		b := newQueue(t, tr, "tasks.fifo", memory.QueueOptions{FIFO: true})
		require.NoError(t, b.Send(ctx, ports.Message{ID: "g1", GroupID: "g"}, ports.Message{ID: "g2", GroupID: "g"}))
		ds, err := b.Receive(ctx, 2, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []string{"g1", "g2"}, ids(ds))
		require.NoError(t, b.Nack(ctx, ds[0].Receipt, 0))
		d := receive1(t, b, time.Minute)
		require.Equal(t, "g1", d.ID)
		require.Equal(t, 2, d.Attempt)
	})
}

// TestManyLeases: with many leases, extended, acked and expiring ones mixed
// (the queue drops stale bookkeeping as it goes), every message comes back
// exactly when its own lease ends.
func TestManyLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		tr := memory.NewTransport()
		b := newQueue(t, tr, "tasks", memory.QueueOptions{})
		const n = 300
		for i := 0; i < n; i += ports.MaxBatch {
			var batch []ports.Message
			for j := i; j < i+ports.MaxBatch; j++ {
				batch = append(batch, ports.Message{ID: fmt.Sprint(j)})
			}
			require.NoError(t, b.Send(ctx, batch...))
		}
		var ds []ports.Delivery
		for len(ds) < n {
			got, err := b.Receive(ctx, ports.MaxBatch, 10*time.Second)
			require.NoError(t, err)
			ds = append(ds, got...)
		}
		want := map[bool][]string{} // extended -> IDs left in flight
		for i, d := range ds {
			switch {
			case i%3 == 0:
				require.NoError(t, b.Ack(ctx, d.Receipt))
			case i%2 == 1:
				require.NoError(t, b.Extend(ctx, time.Hour, d.Receipt))
				want[true] = append(want[true], d.ID)
			default:
				want[false] = append(want[false], d.ID)
			}
		}
		st, err := tr.Stats("tasks")
		require.NoError(t, err)
		require.Equal(t, memory.QueueStats{InFlight: len(want[true]) + len(want[false])}, st)

		// receiveAll receives (for long) until nothing is available.
		receiveAll := func() []string {
			var back []string
			for {
				got, err := b.Receive(ctx, ports.MaxBatch, 2*time.Hour)
				require.NoError(t, err)
				if len(got) == 0 {
					return back
				}
				back = append(back, ids(got)...)
			}
		}
		time.Sleep(11 * time.Second)
		require.Equal(t, want[false], receiveAll())
		time.Sleep(time.Hour)
		require.Equal(t, want[true], receiveAll())
	})
}
