package core_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// BenchmarkClientSubmitWait100k isolates the client side of
// BenchmarkMemoryThroughput100k: 100,000 tasks submitted with one
// SubmitBatch and awaited with one WaitAll on the memory transport, but
// "run" by a stub that only stores a result, publishes an inline completion
// and acks, per message (no decoding, no handler), so that the CPU measured
// is mostly the client's and the memory adapter's.
func BenchmarkClientSubmitWait100k(b *testing.B) {
	const n = 100_000
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	reqs := make([]core.Request, n)
	for i := range reqs {
		reqs[i] = core.Request{Task: "noop"}
	}
	b.ReportAllocs()
	var total, cpu time.Duration
	var gets int64
	for b.Loop() {
		b.StopTimer()
		tr := memory.NewTransport()
		if err := tr.CreateQueue("bench", memory.QueueOptions{}); err != nil {
			b.Fatal(err)
		}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { // the stub worker
			defer close(done)
			broker, bus, results := tr.Broker("bench"), tr.CompletionBus(), tr.ResultBackend()
			replyTo := ""
			for {
				ds, err := broker.Receive(ctx, ports.MaxBatch, time.Hour)
				if err != nil {
					return
				}
				if replyTo == "" && len(ds) > 0 {
					env, err := core.DecodeEnvelope(ds[0].Body)
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
					if err := results.Put(ctx, *r); err != nil { // the old client reads some
						return
					}
				}
				_ = bus.Publish(ctx, replyTo, cs...)
				_ = broker.Ack(ctx, receipts...)
			}
		}()
		cr := &countingResults{ResultBackend: tr.ResultBackend()}
		c, err := core.NewClient(core.ClientOptions{
			Broker: tr.Broker("bench"), Results: cr, Completions: tr.CompletionBus(), Logger: quiet,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cpu0 := cpuTime()
		start := time.Now()
		ids, err := c.SubmitBatch(ctx, reqs...)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.WaitAll(ctx, ids...); err != nil {
			b.Fatal(err)
		}
		took, used := time.Since(start), cpuTime()-cpu0
		b.StopTimer()
		total, cpu, gets = total+took, cpu+used, gets+int64(cr.gets.Load())
		_ = c.Close()
		stop()
		<-done
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "tasks/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/task")
	b.ReportMetric(float64(gets)/float64(n*b.N), "client-reads/task")
}
