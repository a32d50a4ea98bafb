package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/config"
)

func (c *cli) workerCmd() *cobra.Command {
	var (
		runs            bool
		waitOnTransport time.Duration
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Serve tasks and launched runs from the configured queues until interrupted",
		Long: `worker runs dagq workers until SIGINT or SIGTERM: a step worker that receives
tasks from the task queue (queue) and runs the registered tasks (the built-ins,
plus those of a program that embeds dagq with cli.Main), and a run worker that
receives launched runs ("dagq launch") from the run queue (launcher.queue) and
drives up to launcher.concurrency of them at once, submitting their steps to the
task queue. --runs=false serves the task queue only.

On shutdown each stops receiving, lets running tasks finish for up to
worker.shutdown_timeout, then cancels the rest and hands them back to the queue;
a launched run is handed back without cancelling its steps, and the next worker
that receives it resumes it.

While it serves, the process keeps a record in the worker registry ("dagq
workers"): written at start, rewritten every worker.registry_interval with the
tasks in flight, deleted at the graceful stop.

--metrics-addr ADDR (worker.metrics_addr; e.g. :9090) serves Prometheus metrics
on /metrics, liveness on /healthz and readiness on /readyz (503 while starting,
when the broker is unreachable, and from SIGTERM on while tasks drain); see
docs/metrics.md.

On the memory transport (the default) the queues live inside this process, so a
stand-alone "dagq worker" only serves tasks submitted from within the same
process: useful in a program that embeds dagq, not on its own. "dagq run" and
"dagq launch" start their own in-process workers. Workers on separate machines
need a shared transport (sqs).

On the sqs transport the worker first checks, with one request each, that
the task queue (sqs.queue_url), the run queue (sqs.run_queue_url; not with
--runs=false), the dead-letter queues their redrive policies name and the
bucket (s3.bucket) exist and answer with the configured endpoints and
credentials. When they do not, it exits 1 naming each problem's key, what is
wrong and the fix. --wait-for-transport DURATION keeps checking with backoff
for up to DURATION first (for orchestrators that start workers before the
queues exist); /healthz answers and /readyz stays 503 meanwhile.`,
		Args: exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := c.loadConfig(cmd)
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			metricsAddr := cfg.Worker.MetricsAddr
			var (
				counter *AWSCounter
				rtOpts  []app.Option
			)
			if metricsAddr != "" {
				counter = NewAWSCounter()
				rtOpts = append(rtOpts, WithAWSCounter(counter))
			}
			rt, err := c.runtime(stderr, cfg, rtOpts...)
			if err != nil {
				return err
			}
			defer rt.close()
			cfg = rt.Config
			if metricsAddr == "" {
				metricsAddr = cfg.Worker.MetricsAddr
			}
			var wm *workerMetrics
			if metricsAddr != "" {
				if c.rt != nil {
					counter = nil // the runtime of WithRuntime counts nothing here
				}
				wm = newWorkerMetrics(rt.Runtime, counter, runs)
				srv, err := wm.m.Start(metricsAddr)
				if err != nil {
					return err
				}
				defer func() {
					ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), 5*time.Second)
					defer cancel()
					_ = srv.Close(ctx)
				}()
				fmt.Fprintf(stderr, "dagq: metrics on http://%s/metrics (probes /healthz, /readyz)\n", srv.Addr())
			}
			if rt.localWorkers() {
				fmt.Fprintf(stderr, "dagq: note: transport %q keeps its queues in this process; this worker only serves tasks submitted from within it (see dagq worker --help)\n", config.TransportMemory)
			}
			ctx, release := interruptContext(cmd.Context(), stderr, "stopping the worker gracefully")
			defer release()
			if err := checkTransport(ctx, rt.Runtime, app.CheckOptions{SkipRunQueue: !runs}, waitOnTransport, stderr); err != nil {
				if errors.Is(err, errCheckInterrupted) {
					// Stopped before serving: nothing to drain.
					fmt.Fprintln(stderr, "dagq: worker stopped")
					return nil
				}
				return err
			}
			var pools []*app.Pool
			// The pools drain at the same time, so a stop takes at most one
			// worker.shutdown_timeout (plus the handlers' return).
			stop := func() error {
				errs := make([]error, len(pools))
				var wg sync.WaitGroup
				for i, p := range pools {
					wg.Go(func() { errs[i] = p.Stop() })
				}
				wg.Wait()
				return errors.Join(errs...)
			}
			// Through the runtime, so that the process is in the worker
			// registry (dagq workers) while its pools run.
			pool, err := rt.StartWorkers(context.WithoutCancel(ctx), 1, app.WithWorkerObserver(wm.stepObserver()))
			if err != nil {
				return err
			}
			pools = append(pools, pool)
			fmt.Fprintf(stderr, "dagq: worker %s serving queue %s (transport %s, concurrency %d, cancellation %v); tasks: %s\n",
				strings.Join(pool.IDs(), ", "), taskQueue(cfg), cfg.Transport, cfg.Worker.Concurrency,
				cfg.Cancellation.Enabled, strings.Join(c.reg.Names(), ", "))
			if runs {
				runPool, err := rt.StartRunWorkers(context.WithoutCancel(ctx), 1, app.WithWorkerObserver(wm.runObserver()))
				if err != nil {
					return errors.Join(err, stop())
				}
				pools = append(pools, runPool)
				fmt.Fprintf(stderr, "dagq: run worker %s serving run queue %s (concurrency %d)\n",
					strings.Join(runPool.IDs(), ", "), runQueue(cfg), cfg.Launcher.Concurrency)
			}
			wm.serving()
			<-ctx.Done()
			wm.shuttingDown() // /readyz: 503 while in-flight tasks drain
			if err := stop(); err != nil {
				return err
			}
			fmt.Fprintln(stderr, "dagq: worker stopped")
			return nil
		},
	}
	cmd.Flags().BoolVar(&runs, "runs", true, "also serve launched runs from the run queue (launcher.queue)")
	addWaitForTransportFlag(cmd.Flags(), &waitOnTransport)
	config.AddFlag(cmd.Flags(), "concurrency", "metrics-addr", "launcher-concurrency", "launcher-heartbeat-interval", "launcher-stale-after")
	return cmd
}

// taskQueue names the task queue of cfg's transport: the queue key on
// memory, sqs.queue_url on sqs.
func taskQueue(cfg config.Config) string {
	if cfg.Transport == config.TransportSQS {
		return cfg.SQS.QueueURL
	}
	return cfg.Queue
}

// runQueue names the run queue of cfg's transport.
func runQueue(cfg config.Config) string {
	if cfg.Transport == config.TransportSQS {
		return cfg.SQS.RunQueueURL
	}
	return cfg.Launcher.Queue
}
