package core_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
)

type AddArgs struct{ X, Y int }

// The README's embedding snippet, compiled and run as a test.
func Example() {
	ctx, stop := context.WithCancel(context.Background())
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var Add = core.NewTaskType[AddArgs, int]("add")

	tr := memory.NewTransport()
	_ = tr.CreateQueue("tasks", memory.QueueOptions{})

	reg := core.NewRegistry()
	Add.MustRegister(reg, func(ctx context.Context, a AddArgs) (int, error) { return a.X + a.Y, nil })

	worker, _ := core.NewWorker(core.WorkerOptions{
		Ports: core.Ports{
			Broker:      tr.Broker("tasks"),
			Results:     tr.ResultBackend(),
			Cancels:     tr.CancelChannel(),
			Completions: tr.CompletionBus(),
		},
		Registry:    reg,
		Concurrency: 8,
		Logger:      quiet,
	})
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx) }()

	client, _ := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:      tr.Broker("tasks"),
			Results:     tr.ResultBackend(),
			Cancels:     tr.CancelChannel(),
			Completions: tr.CompletionBus(),
		},
		Logger: quiet,
	})
	id, _ := Add.Submit(ctx, client, AddArgs{X: 2, Y: 3})
	sum, err := Add.Wait(ctx, client, id)
	fmt.Println(sum, err)

	_ = client.Close()
	stop()
	fmt.Println(<-done)
	// Output:
	// 5 <nil>
	// <nil>
}
