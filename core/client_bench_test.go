package core_test

import (
	"context"
	"testing"
	"time"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// BenchmarkClientSubmitWait100k isolates the client side of
// BenchmarkMemoryThroughput100k: 100,000 tasks submitted with one
// SubmitBatch and awaited with one WaitAll on the memory transport, but
// "run" by a stub that only stores a result, publishes an inline completion
// and acks, per message (no decoding, no handler), so that the CPU measured
// is mostly the client's and the memory adapter's.
func BenchmarkClientSubmitWait100k(b *testing.B) {
	benchThroughput100k(b, func(ctx context.Context, tr *memory.Transport) {
		broker, bus, results := tr.Broker("bench"), tr.CompletionBus(), tr.ResultBackend()
		replyTo := ""
		for {
			ds, err := broker.Receive(ctx, ports.MaxBatch, time.Hour)
			if err != nil {
				return
			}
			if replyTo == "" && len(ds) > 0 {
				env, err := wire.Decode(ds[0].Body)
				if err != nil {
					b.Error(err)
					return
				}
				replyTo = env.ReplyTo
			}
			cs := make([]ports.Completion, len(ds))
			receipts := make([]ports.Receipt, len(ds))
			for i, d := range ds {
				r := &ports.Result{TaskID: d.ID, State: ports.StateSucceeded, Output: []byte("null"), Attempts: 1}
				cs[i] = ports.Completion{TaskID: d.ID, State: r.State, Result: r}
				receipts[i] = d.Receipt
				if err := results.Put(ctx, *r); err != nil {
					return
				}
			}
			_ = bus.Publish(ctx, replyTo, cs...)
			_ = broker.Ack(ctx, receipts...)
		}
	})
}
