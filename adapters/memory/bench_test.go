package memory_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/ports"
)

// BenchmarkBrokerSendReceiveAck measures one message's trip through a
// standard queue in batches of ports.MaxBatch: Send, Receive, Ack. The queue
// holds a backlog and a set of leased messages ahead of the ones received, as
// a busy worker's queue does.
func BenchmarkBrokerSendReceiveAck(b *testing.B) {
	for _, leased := range []int{0, 1000} {
		b.Run("leased="+strconv.Itoa(leased), func(b *testing.B) {
			ctx := context.Background()
			tr := memory.NewTransport()
			if err := tr.CreateQueue("bench", memory.QueueOptions{}); err != nil {
				b.Fatal(err)
			}
			br := tr.Broker("bench")
			defer br.Close()
			batch := make([]ports.Message, ports.MaxBatch)
			body := []byte(`{"task":"noop","id":"0123456789abcdef0123456789abcdef"}`)
			send := func(n int) {
				for i := range batch {
					batch[i] = ports.Message{ID: strconv.Itoa(n + i), Body: body}
				}
				if err := br.Send(ctx, batch...); err != nil {
					b.Fatal(err)
				}
			}
			// Leased messages stay at the head of the queue for the whole run.
			for i := 0; i < leased; i += ports.MaxBatch {
				send(i)
				if _, err := br.Receive(ctx, ports.MaxBatch, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
			// A backlog behind them.
			for i := 0; i < 1000; i += ports.MaxBatch {
				send(leased + i)
			}
			receipts := make([]ports.Receipt, 0, ports.MaxBatch)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += ports.MaxBatch {
				send(i)
				ds, err := br.Receive(ctx, ports.MaxBatch, time.Minute)
				if err != nil || len(ds) != ports.MaxBatch {
					b.Fatalf("receive: %d, %v", len(ds), err)
				}
				receipts = receipts[:0]
				for _, d := range ds {
					receipts = append(receipts, d.Receipt)
				}
				if err := br.Ack(ctx, receipts...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompletionPublishReceive measures one completion with an inlined
// result, published in batches of ports.MaxBatch and received from its inbox.
func BenchmarkCompletionPublishReceive(b *testing.B) {
	ctx := context.Background()
	bus := memory.NewTransport().CompletionBus()
	defer bus.Close()
	ib, err := bus.Open(ctx)
	if err != nil {
		b.Fatal(err)
	}
	cs := make([]ports.Completion, ports.MaxBatch)
	for i := range cs {
		cs[i] = ports.Completion{TaskID: "task-" + strconv.Itoa(i), State: ports.StateSucceeded, Result: &ports.Result{
			TaskID: "task-" + strconv.Itoa(i), State: ports.StateSucceeded, Output: []byte("null"), Attempts: 1,
		}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += ports.MaxBatch {
		if err := bus.Publish(ctx, ib.Address(), cs...); err != nil {
			b.Fatal(err)
		}
		got, err := ib.Receive(ctx)
		if err != nil || len(got) != len(cs) {
			b.Fatalf("receive: %d, %v", len(got), err)
		}
	}
}

// BenchmarkResultPutGet measures storing one result and reading it back.
func BenchmarkResultPutGet(b *testing.B) {
	ctx := context.Background()
	rb := memory.NewTransport().ResultBackend()
	defer rb.Close()
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = "task-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r := ports.Result{TaskID: ids[i], State: ports.StateSucceeded, Output: []byte("null"), Attempts: 1}
		if err := rb.Put(ctx, r); err != nil {
			b.Fatal(err)
		}
		if _, err := rb.Get(ctx, ids[i]); err != nil {
			b.Fatal(err)
		}
	}
}
