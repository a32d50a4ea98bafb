package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dagq/dagq/app/config"
)

func (c *cli) workerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Serve tasks from the configured queue until interrupted",
		Long: `worker runs a dagq worker: it receives tasks from the configured queue and runs
the registered tasks (the built-ins, plus those of a program that embeds dagq
with app.Main) until SIGINT or SIGTERM, then shuts down gracefully: it stops
receiving, lets running tasks finish for up to worker.shutdown_timeout, then
cancels the rest and hands them back to the queue.

On the memory transport (the default) the queue lives inside this process, so a
stand-alone "dagq worker" only serves tasks submitted from within the same
process: useful in a program that embeds dagq, not on its own. "dagq run"
starts its own in-process worker. Workers on separate machines need a shared
transport (SQS, coming).`,
		Args: exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := c.loadConfig(cmd)
			if err != nil {
				return err
			}
			rt, err := c.runtime(cmd, cfg)
			if err != nil {
				return err
			}
			defer rt.Close()
			stderr := cmd.ErrOrStderr()
			if rt.Embedded() {
				fmt.Fprintf(stderr, "dagq: note: transport %q keeps its queue in this process; this worker only serves tasks submitted from within it (see dagq worker --help)\n", config.TransportMemory)
			}
			ctx, release := interruptContext(cmd.Context(), stderr, "stopping the worker gracefully")
			defer release()
			pool, err := rt.StartWorkers(context.WithoutCancel(ctx), 1)
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "dagq: worker %s serving queue %s (transport %s, concurrency %d, cancellation %v); tasks: %s\n",
				strings.Join(pool.IDs(), ", "), cfg.Queue, cfg.Transport, cfg.Worker.Concurrency,
				cfg.Cancellation.Enabled, strings.Join(c.reg.Names(), ", "))
			<-ctx.Done()
			if err := pool.Stop(); err != nil {
				return err
			}
			fmt.Fprintln(stderr, "dagq: worker stopped")
			return nil
		},
	}
	config.AddFlag(cmd.Flags(), "concurrency")
	return cmd
}
