package memory_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/ports"
)

func newQueue(t *testing.T, tr *memory.Transport, name string, opts memory.QueueOptions) ports.Broker {
	t.Helper()
	require.NoError(t, tr.CreateQueue(name, opts))
	b := tr.Broker(name)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func receive1(t *testing.T, b ports.Broker, lease time.Duration) ports.Delivery {
	t.Helper()
	ds, err := b.Receive(t.Context(), 1, lease)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	return ds[0]
}

func TestRedriveToDeadLetterQueue(t *testing.T) {
	for _, fifo := range []bool{false, true} {
		name := map[bool]string{false: "standard", true: "fifo"}[fifo]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := t.Context()
				tr := memory.NewTransport()
				suffix := map[bool]string{false: "", true: ".fifo"}[fifo]
				dlq := newQueue(t, tr, "dead"+suffix, memory.QueueOptions{FIFO: fifo})
				src := newQueue(t, tr, "tasks"+suffix, memory.QueueOptions{FIFO: fifo, MaxReceives: 2, DeadLetterQueue: "dead" + suffix})

				sent := time.Now()
				require.NoError(t, src.Send(ctx,
					ports.Message{ID: "poison", GroupID: "g", Body: []byte{0, 1, 2}, Attributes: map[string]string{"k": "v"}},
					ports.Message{ID: "next", GroupID: "g"}))
				for attempt := 1; attempt <= 2; attempt++ {
					d := receive1(t, src, time.Minute)
					require.Equal(t, "poison", d.ID)
					require.Equal(t, attempt, d.Attempt)
					require.NoError(t, src.Nack(ctx, d.Receipt, 0))
				}
				// The third receive moves it instead of delivering it; on a
				// FIFO queue that releases the rest of the group.
				d := receive1(t, src, time.Minute)
				require.Equal(t, "next", d.ID)
				require.NoError(t, src.Ack(ctx, d.Receipt))

				d = receive1(t, dlq, time.Minute)
				require.Equal(t, "poison", d.ID)
				require.Equal(t, 1, d.Attempt, "Attempt restarts in the dead-letter queue")
				require.Equal(t, []byte{0, 1, 2}, d.Body)
				require.Equal(t, map[string]string{"k": "v"}, d.Attributes)
				require.True(t, d.SentAt.Equal(sent), "SentAt is kept")

				st, err := tr.Stats("tasks" + suffix)
				require.NoError(t, err)
				require.Equal(t, memory.QueueStats{}, st)
			})
		})
	}
}

func TestRedriveSkippedWithoutDeadLetterQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		tr := memory.NewTransport()
		require.NoError(t, tr.CreateQueue("dead", memory.QueueOptions{}))
		src := newQueue(t, tr, "tasks", memory.QueueOptions{MaxReceives: 1, DeadLetterQueue: "dead"})
		require.NoError(t, tr.DeleteQueue("dead"))
		require.NoError(t, src.Send(ctx, ports.Message{ID: "m"}))
		for attempt := 1; attempt <= 3; attempt++ {
			d := receive1(t, src, time.Minute)
			require.Equal(t, attempt, d.Attempt)
			require.NoError(t, src.Nack(ctx, d.Receipt, 0))
		}
	})
}

func TestStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		tr := memory.NewTransport()
		b := newQueue(t, tr, "tasks", memory.QueueOptions{})
		stats := func() memory.QueueStats {
			st, err := tr.Stats("tasks")
			require.NoError(t, err)
			return st
		}
		require.Equal(t, memory.QueueStats{}, stats())

		require.NoError(t, b.Send(ctx,
			ports.Message{ID: "a"}, ports.Message{ID: "b"}, ports.Message{ID: "c"},
			ports.Message{ID: "late", Delay: time.Minute}))
		require.Equal(t, memory.QueueStats{Visible: 3, Delayed: 1}, stats())

		ds, err := b.Receive(ctx, 2, 10*time.Second)
		require.NoError(t, err)
		require.Len(t, ds, 2)
		require.Equal(t, memory.QueueStats{Visible: 1, InFlight: 2, Delayed: 1}, stats())

		require.NoError(t, b.Nack(ctx, ds[0].Receipt, 30*time.Second))
		require.NoError(t, b.Ack(ctx, ds[1].Receipt))
		require.Equal(t, memory.QueueStats{Visible: 1, Delayed: 2}, stats())

		time.Sleep(time.Minute)
		require.Equal(t, memory.QueueStats{Visible: 3}, stats())

		_, err = tr.Stats("missing")
		require.ErrorIs(t, err, ports.ErrNotFound)
	})
}

func TestDeleteQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		tr := memory.NewTransport()
		b := newQueue(t, tr, "tasks", memory.QueueOptions{})
		require.NoError(t, b.Send(ctx, ports.Message{ID: "m"}))
		d := receive1(t, b, time.Minute)

		// A receiver blocked on the queue is woken by the deletion.
		var (
			wg      sync.WaitGroup
			recvErr error
		)
		wg.Go(func() {
			_, recvErr = b.Receive(ctx, 1, time.Minute)
		})
		synctest.Wait()
		require.NoError(t, tr.DeleteQueue("tasks"))
		wg.Wait()
		require.ErrorIs(t, recvErr, ports.ErrNotFound)

		require.ErrorIs(t, b.Send(ctx, ports.Message{ID: "m2"}), ports.ErrNotFound)
		_, err := b.Receive(ctx, 1, time.Minute)
		require.ErrorIs(t, err, ports.ErrNotFound)
		require.ErrorIs(t, b.Ack(ctx, d.Receipt), ports.ErrNotFound)
		require.ErrorIs(t, b.Nack(ctx, d.Receipt, 0), ports.ErrNotFound)
		require.ErrorIs(t, b.Extend(ctx, time.Minute, d.Receipt), ports.ErrNotFound)
		require.ErrorIs(t, tr.DeleteQueue("tasks"), ports.ErrNotFound)

		// Created again, the queue is empty and old receipts are stale.
		require.NoError(t, tr.CreateQueue("tasks", memory.QueueOptions{}))
		require.ErrorIs(t, b.Extend(ctx, time.Minute, d.Receipt), ports.ErrLeaseLost)
		ds, err := b.Receive(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Empty(t, ds)
	})
}

func TestCreateQueue(t *testing.T) {
	tr := memory.NewTransport()
	require.NoError(t, tr.CreateQueue("dlq", memory.QueueOptions{}))
	require.NoError(t, tr.CreateQueue("dlq.fifo", memory.QueueOptions{FIFO: true}))
	require.NoError(t, tr.CreateQueue("tasks", memory.QueueOptions{}))
	require.NoError(t, tr.CreateQueue("tasks", memory.QueueOptions{PollWait: memory.DefaultPollWait}), "same options after defaults")
	require.ErrorIs(t, tr.CreateQueue("tasks", memory.QueueOptions{MaxBodyBytes: 1024}), ports.ErrAlreadyExists)

	invalid := []struct {
		name string
		opts memory.QueueOptions
	}{
		{"", memory.QueueOptions{}},
		{"has space", memory.QueueOptions{}},
		{strings.Repeat("q", 81), memory.QueueOptions{}},
		{"x.fifo-cancels", memory.QueueOptions{FIFO: true}},
		{"plain", memory.QueueOptions{FIFO: true}},
		{"std.fifo", memory.QueueOptions{}},
		{".fifo", memory.QueueOptions{FIFO: true}},
		{"neg", memory.QueueOptions{PollWait: -time.Second}},
		{"neg", memory.QueueOptions{MaxBodyBytes: -1}},
		{"half-redrive", memory.QueueOptions{MaxReceives: 3}},
		{"half-redrive", memory.QueueOptions{DeadLetterQueue: "dlq"}},
		{"self", memory.QueueOptions{MaxReceives: 3, DeadLetterQueue: "self"}},
		{"mixed", memory.QueueOptions{MaxReceives: 3, DeadLetterQueue: "dlq.fifo"}},
	}
	for _, c := range invalid {
		require.ErrorIs(t, tr.CreateQueue(c.name, c.opts), ports.ErrInvalidArgument, "%q %+v", c.name, c.opts)
	}
	require.ErrorIs(t, tr.CreateQueue("orphan", memory.QueueOptions{MaxReceives: 3, DeadLetterQueue: "nope"}), ports.ErrNotFound)
	require.NoError(t, tr.CreateQueue(strings.Repeat("q", 75)+".fifo", memory.QueueOptions{FIFO: true}))
}

func TestMaxBodyBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		tr := memory.NewTransport()
		small := newQueue(t, tr, "small", memory.QueueOptions{MaxBodyBytes: 16})
		require.NoError(t, small.Send(ctx, ports.Message{ID: "m", Body: make([]byte, 12), Attributes: map[string]string{"ab": "cd"}}))
		require.ErrorIs(t, small.Send(ctx, ports.Message{ID: "m", Body: make([]byte, 13), Attributes: map[string]string{"ab": "cd"}}),
			ports.ErrInvalidArgument, "attributes count towards the limit")

		def := newQueue(t, tr, "default", memory.QueueOptions{})
		require.NoError(t, def.Send(ctx, ports.Message{ID: "m", Body: make([]byte, memory.DefaultMaxBodyBytes)}))
		require.ErrorIs(t, def.Send(ctx, ports.Message{ID: "m", Body: make([]byte, memory.DefaultMaxBodyBytes+1)}), ports.ErrInvalidArgument)
	})
}

func TestFIFODedupWindowExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		tr := memory.NewTransport()
		b := newQueue(t, tr, "tasks.fifo", memory.QueueOptions{FIFO: true, DedupWindow: time.Minute})
		require.NoError(t, b.Send(ctx, ports.Message{ID: "m", Body: []byte("1")}))
		d := receive1(t, b, time.Minute)
		require.NoError(t, b.Ack(ctx, d.Receipt))

		time.Sleep(59 * time.Second)
		require.NoError(t, b.Send(ctx, ports.Message{ID: "m", Body: []byte("2")}))
		st, err := tr.Stats("tasks.fifo")
		require.NoError(t, err)
		require.Equal(t, memory.QueueStats{}, st, "dropped within the window")

		time.Sleep(time.Second)
		require.NoError(t, b.Send(ctx, ports.Message{ID: "m", Body: []byte("3")}))
		d = receive1(t, b, time.Minute)
		require.Equal(t, []byte("3"), d.Body, "accepted after the window")
	})
}

func TestPollWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		tr := memory.NewTransport(memory.WithPollWait(5 * time.Second))
		slow := newQueue(t, tr, "slow", memory.QueueOptions{PollWait: 20 * time.Second})
		fast := newQueue(t, tr, "fast", memory.QueueOptions{})

		for _, c := range []struct {
			b    ports.Broker
			want time.Duration
		}{{slow, 20 * time.Second}, {fast, 5 * time.Second}} {
			start := time.Now()
			ds, err := c.b.Receive(ctx, 1, time.Minute)
			require.NoError(t, err)
			require.Empty(t, ds)
			require.Equal(t, c.want, time.Since(start))
		}

		sub, err := tr.CancelChannel().Subscribe(ctx)
		require.NoError(t, err)
		start := time.Now()
		_, err = sub.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, 5*time.Second, time.Since(start))
		require.NoError(t, sub.Close())
	})
}

// TestCloseWakesReceivers checks that closing a handle ends Receives blocked
// on it with ErrClosed, instead of after the poll bound.
func TestCloseWakesReceivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		tr := memory.NewTransport(memory.WithPollWait(time.Hour))
		require.NoError(t, tr.CreateQueue("tasks", memory.QueueOptions{}))
		b := tr.Broker("tasks")
		ch := tr.CancelChannel()
		sub, err := ch.Subscribe(ctx)
		require.NoError(t, err)
		sub2, err := ch.Subscribe(ctx)
		require.NoError(t, err)
		bus := tr.CompletionBus()
		ib, err := bus.Open(ctx)
		require.NoError(t, err)
		ib2, err := bus.Open(ctx)
		require.NoError(t, err)

		receivers := []struct {
			name    string
			receive func(context.Context) error
			close   func() error
		}{
			{"broker", func(ctx context.Context) error { _, err := b.Receive(ctx, 1, time.Minute); return err }, b.Close},
			{"subscription", func(ctx context.Context) error { _, err := sub.Receive(ctx); return err }, sub.Close},
			{"subscription of a closed channel", func(ctx context.Context) error { _, err := sub2.Receive(ctx); return err }, ch.Close},
			{"inbox", func(ctx context.Context) error { _, err := ib.Receive(ctx); return err }, ib.Close},
			{"inbox of a closed bus", func(ctx context.Context) error { _, err := ib2.Receive(ctx); return err }, bus.Close},
		}
		for _, r := range receivers {
			var (
				wg  sync.WaitGroup
				err error
			)
			start := time.Now()
			wg.Go(func() { err = r.receive(ctx) })
			synctest.Wait()
			require.NoError(t, r.close())
			wg.Wait()
			require.ErrorIs(t, err, ports.ErrClosed, r.name)
			require.Zero(t, time.Since(start), r.name)
		}
	})
}

// TestManyReceivers hammers one queue from many goroutines (run with -race).
func TestManyReceivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		tr := memory.NewTransport()
		require.NoError(t, tr.CreateQueue("tasks", memory.QueueOptions{}))
		const total = 500
		var (
			mu   sync.Mutex
			seen = make(map[string]int)
			wg   sync.WaitGroup
		)
		recvCtx, stop := context.WithCancel(ctx)
		defer stop()
		safety := time.AfterFunc(time.Hour, stop)
		defer safety.Stop()
		for range 16 {
			b := tr.Broker("tasks")
			wg.Go(func() {
				defer b.Close()
				for {
					ds, err := b.Receive(recvCtx, 4, time.Second)
					if err != nil {
						return
					}
					for i, d := range ds {
						if d.Attempt == 1 && i%3 == 0 {
							_ = b.Nack(ctx, d.Receipt, time.Duration(i)*time.Millisecond)
							continue
						}
						if err := b.Ack(ctx, d.Receipt); err != nil {
							t.Errorf("Ack: %v", err)
						}
						mu.Lock()
						seen[d.ID]++
						if len(seen) == total {
							stop()
						}
						mu.Unlock()
					}
				}
			})
		}
		b := tr.Broker("tasks")
		for i := range total / 10 {
			msgs := make([]ports.Message, 10)
			for j := range msgs {
				msgs[j] = ports.Message{ID: fmt.Sprintf("m-%d-%d", i, j)}
			}
			require.NoError(t, b.Send(ctx, msgs...))
		}
		wg.Wait()
		require.Len(t, seen, total)
		for id, n := range seen {
			require.Equal(t, 1, n, id)
		}
	})
}
