package dag_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/internal/testutil"
)

// benchExecutor runs job (no-op steps) once per iteration on the memory
// transport, one worker of concurrency 64, and reports the wall time per
// step: the executor's overhead plus one memory round trip per step.
func benchExecutor(b *testing.B, job dag.Job) {
	tr := memory.NewTransport()
	if err := tr.CreateQueue("bench", memory.QueueOptions{}); err != nil {
		b.Fatal(err)
	}
	reg := core.NewRegistry()
	if err := reg.HandleFunc("noop", func(context.Context, *core.Task) (json.RawMessage, error) { return nil, nil }); err != nil {
		b.Fatal(err)
	}
	w, err := core.NewWorker(core.WorkerOptions{
		Ports: core.Ports{
			Broker:      tr.Broker("bench"),
			Results:     tr.ResultBackend(),
			Cancels:     tr.CancelChannel(),
			Completions: tr.CompletionBus(),
		},
		Registry:    reg,
		Concurrency: 64,
		Logger:      testutil.QuietLogger(),
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
		Logger: testutil.QuietLogger(),
	})
	if err != nil {
		b.Fatal(err)
	}
	exec, err := dag.NewExecutor(c, dag.ExecutorOptions{Logger: testutil.QuietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := exec.Run(ctx, job, dag.RunOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if res.State != dag.RunSucceeded {
			b.Fatalf("run %s", res.State)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(job.Steps)), "µs/step")
	_ = c.Close()
	stop()
	<-done
}

// BenchmarkExecutorWide1000: 1,000 independent no-op steps.
func BenchmarkExecutorWide1000(b *testing.B) {
	job := dag.Job{Name: "wide"}
	for i := range 1000 {
		job.Steps = append(job.Steps, dag.Step{Name: fmt.Sprintf("s%04d", i), Task: "noop"})
	}
	benchExecutor(b, job)
}

// BenchmarkExecutorChain1000: a chain of 1,000 no-op steps, each waiting
// for the previous one (and receiving its output as input).
func BenchmarkExecutorChain1000(b *testing.B) {
	job := dag.Job{Name: "chain"}
	for i := range 1000 {
		s := dag.Step{Name: fmt.Sprintf("s%04d", i), Task: "noop"}
		if i > 0 {
			s.Upstream = []string{fmt.Sprintf("s%04d", i-1)}
		}
		job.Steps = append(job.Steps, s)
	}
	benchExecutor(b, job)
}
