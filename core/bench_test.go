package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

func BenchmarkRegistryDispatch(b *testing.B) {
	reg := core.NewRegistry()
	addTask.MustRegister(reg, func(_ context.Context, a addArgs) (int, error) { return a.A + a.B, nil })
	task := &core.Task{ID: "t", Name: "add", Attempt: 1, Args: json.RawMessage(`{"A":1,"B":2}`)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		h, ok := reg.Lookup("add")
		if !ok {
			b.Fatal("not registered")
		}
		if _, err := h.ProcessTask(ctx, task); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundTripMemory measures submit → worker → result → wait on the
// memory transport: batches of 10 submitted with SubmitBatch, awaited with
// WaitAll (results pushed over the CompletionBus), one worker.
func BenchmarkRoundTripMemory(b *testing.B) {
	for _, conc := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			tr := memory.NewTransport()
			if err := tr.CreateQueue("bench", memory.QueueOptions{}); err != nil {
				b.Fatal(err)
			}
			reg := core.NewRegistry()
			addTask.MustRegister(reg, func(_ context.Context, a addArgs) (int, error) { return a.A + a.B, nil })
			w, err := core.NewWorker(core.WorkerOptions{
				Ports: core.Ports{
					Broker:      tr.Broker("bench"),
					Results:     tr.ResultBackend(),
					Cancels:     tr.CancelChannel(),
					Completions: tr.CompletionBus(),
				},
				Registry:    reg,
				Concurrency: conc,
				Logger:      quietLog,
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			c, err := core.NewClient(core.ClientOptions{
				Ports: core.Ports{
					Broker:      tr.Broker("bench"),
					Results:     tr.ResultBackend(),
					Cancels:     tr.CancelChannel(),
					Completions: tr.CompletionBus(),
				},
				Logger: quietLog,
			})
			if err != nil {
				b.Fatal(err)
			}
			reqs := make([]core.Request, 10)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			n := 0
			for n < b.N {
				k := min(10, b.N-n)
				for i := range k {
					reqs[i] = addTask.Request(addArgs{A: n + i, B: 1})
				}
				ids, err := c.SubmitBatch(ctx, reqs[:k]...)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.WaitAll(ctx, ids...); err != nil {
					b.Fatal(err)
				}
				n += k
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
			b.StopTimer()
			_ = c.Close()
			stop()
			<-done
		})
	}
}

// BenchmarkMemoryThroughput100k mirrors the memory throughput scenario of
// app/bench: 100,000 no-op tasks submitted in one SubmitBatch and awaited
// with one WaitAll (completions pushed), one worker of concurrency 64,
// logging at error level. It reports tasks/s.
func BenchmarkMemoryThroughput100k(b *testing.B) {
	reg := core.NewRegistry()
	if err := reg.HandleFunc("noop", func(context.Context, *core.Task) (json.RawMessage, error) {
		return json.RawMessage("null"), nil
	}); err != nil {
		b.Fatal(err)
	}
	benchThroughput100k(b, func(ctx context.Context, tr *memory.Transport) {
		w, err := core.NewWorker(core.WorkerOptions{
			Ports: core.Ports{
				Broker:      tr.Broker("bench"),
				Results:     tr.ResultBackend(),
				Cancels:     tr.CancelChannel(),
				Completions: tr.CompletionBus(),
			},
			Registry:    reg,
			Concurrency: 64,
			Logger:      quietLog,
		})
		if err != nil {
			b.Error(err)
			return
		}
		if err := w.Run(ctx); err != nil {
			b.Error(err)
		}
	})
}

// quietLog is the benchmarks' logger: error level, discarded.
var quietLog = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))

// benchThroughput100k submits 100,000 "noop" tasks with one SubmitBatch and
// waits for them with one WaitAll (completions pushed) on a fresh memory
// transport per iteration, where runWorker (until its ctx is done) runs
// them. It reports tasks/s, CPU µs per task and the client's Results reads
// per task.
func benchThroughput100k(b *testing.B, runWorker func(ctx context.Context, tr *memory.Transport)) {
	const n = 100_000
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
		go func() {
			defer close(done)
			runWorker(ctx, tr)
		}()
		cr := &countingResults{ResultBackend: tr.ResultBackend()}
		c, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:      tr.Broker("bench"),
				Results:     cr,
				Cancels:     tr.CancelChannel(),
				Completions: tr.CompletionBus(),
			},
			Logger: quietLog,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		u0 := usage()
		start := time.Now()
		ids, err := c.SubmitBatch(ctx, reqs...)
		if err != nil {
			b.Fatal(err)
		}
		sub := time.Since(start)
		rs, err := c.WaitAll(ctx, ids...)
		if err != nil {
			b.Fatal(err)
		}
		took, u, reads := time.Since(start), usage(), cr.gets.Load()
		b.StopTimer()
		user, sys := u.user-u0.user, u.sys-u0.sys
		total, cpu, gets = total+took, cpu+user+sys, gets+int64(reads)
		b.Logf("submit %v, total %v, CPU %v (user %v, system %v), %d page faults, client result reads %d",
			sub, took, user+sys, user, sys, u.faults-u0.faults, reads)
		for _, r := range rs {
			if r.State != ports.StateSucceeded {
				b.Fatalf("task %s: %s", r.TaskID, r.State)
			}
		}
		_ = c.Close()
		stop()
		<-done
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "tasks/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/task")
	b.ReportMetric(float64(gets)/float64(n*b.N), "client-reads/task")
}
