// Command embedded runs dagq inside one process on the in-memory transport:
// no AWS, no other service. It registers two tasks, runs a worker, submits
// tasks, waits for their results and cancels a long-running one.
//
//	go run ./examples/embedded
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// Greet is a quick task: a name in, a greeting out.
var Greet = core.NewTaskType[GreetArgs, string]("greet")

// GreetArgs is Greet's argument.
type GreetArgs struct {
	Name string `json:"name"`
}

// Crunch is a long task that honours cancellation: it works in small slices
// and stops as soon as its context is done.
var Crunch = core.NewTaskType[CrunchArgs, int]("crunch")

// CrunchArgs is Crunch's argument.
type CrunchArgs struct {
	Slices int `json:"slices"`
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "embedded:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// One in-memory namespace plays SQS + S3.
	tr := memory.NewTransport()
	if err := tr.CreateQueue("tasks", memory.QueueOptions{}); err != nil {
		return err
	}

	reg := core.NewRegistry()
	Greet.MustRegister(reg, func(_ context.Context, a GreetArgs) (string, error) {
		return "hello, " + a.Name, nil
	})
	Crunch.MustRegister(reg, func(ctx context.Context, a CrunchArgs) (int, error) {
		done := 0
		for range a.Slices {
			select {
			case <-ctx.Done():
				return done, context.Cause(ctx)
			case <-time.After(50 * time.Millisecond):
				done++
			}
		}
		return done, nil
	})

	worker, err := core.NewWorker(core.WorkerOptions{
		Ports: core.Ports{
			Broker:      tr.Broker("tasks"),
			Results:     tr.ResultBackend(),
			Cancels:     tr.CancelChannel(),
			Completions: tr.CompletionBus(),
		},
		Registry:    reg,
		Concurrency: 4,
		Logger:      logger,
	})
	if err != nil {
		return err
	}
	workerCtx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan error, 1)
	go func() { workerDone <- worker.Run(workerCtx) }()
	defer func() {
		stopWorker()
		<-workerDone
	}()

	client, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:      tr.Broker("tasks"),
			Results:     tr.ResultBackend(),
			Cancels:     tr.CancelChannel(),
			Completions: tr.CompletionBus(),
		},
		Logger: logger,
	})
	if err != nil {
		return err
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	// A long task we will cancel while it runs. WithProgress asks the worker
	// to push a notification when the task starts; the Watch delivers it.
	watch, err := client.Watch(ctx)
	if err != nil {
		return err
	}
	defer watch.Close()
	// Submitted through the Watch, which watches it before it is sent: a
	// notification cannot come before the Watch knows the task.
	longIDs, err := watch.SubmitBatch(ctx, Crunch.Request(CrunchArgs{Slices: 1000}, core.WithProgress()))
	if err != nil {
		return err
	}
	longID := longIDs[0]
	// Quick tasks, submitted as one batch.
	names := []string{"Ada", "Grace", "Linus"}
	reqs := make([]core.Request, len(names))
	for i, n := range names {
		reqs[i] = Greet.Request(GreetArgs{Name: n})
	}
	ids, err := client.SubmitBatch(ctx, reqs...)
	if err != nil {
		return err
	}
	for _, id := range ids {
		greeting, err := Greet.Wait(ctx, client, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "task %s completed: %q\n", id[:8], greeting)
	}

	// Once the long task runs on the worker, cancel it.
	if err := waitRunning(ctx, watch, longID); err != nil {
		return err
	}
	if err := client.Cancel(ctx, longID); err != nil {
		return err
	}
	res, err := client.Wait(ctx, longID)
	if err != nil {
		return err
	}
	_, err = Crunch.Decode(res)
	if !errors.Is(err, core.ErrTaskCanceled) || res.Attempts == 0 {
		return fmt.Errorf("long task %s: expected it to be cancelled while running, got state %s after %d attempts (%v)",
			longID, res.State, res.Attempts, err)
	}
	fmt.Fprintf(out, "task %s cancelled while running (attempt %d): %s\n", longID[:8], res.Attempts, res.Error)
	return nil
}

// waitRunning reads w until the worker reports task id running.
func waitRunning(ctx context.Context, w *core.Watch, id string) error {
	for {
		evs, err := w.Next(ctx)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			switch {
			case ev.TaskID != id:
			case ev.Final:
				return fmt.Errorf("task %s finished before it could be cancelled: %s", id, ev.Result.State)
			case ev.Progress.State == ports.StateRunning:
				return nil
			}
		}
	}
}
