package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/ports"
)

func (c *cli) workersCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "workers",
		Short: "List the worker processes of the registry: live ones, then stale ones",
		Long: `workers lists the worker registry: every worker process ("dagq worker", or a
program serving queues with app.Runtime.StartWorkers) writes a small record to the
state store when it starts, rewrites it every worker.registry_interval (default
1m) and deletes it when it stops gracefully. The table shows ID (the process's
step worker), HOST, PID, VERSION, QUEUES (names), CONCURRENCY (slots: step
worker plus run worker), IN FLIGHT (tasks running at its last heartbeat),
STARTED, LAST SEEN and STATE: live, or stale when the record was not rewritten
for 3 of its intervals (the process was killed, its host is gone, or it cannot
reach the bucket). Live processes come first.

A record stale for more than 24h is deleted while listing: a process killed
without a graceful stop leaves its record behind until then.

--output json prints the list as a JSON array (app.WorkerInfo: id, host, pid,
version, queues as configured, concurrency, in_flight, started_at, seen_at,
stale).

Cost: one list request per 1,000 records (S3 ListObjectsV2) plus one GET per
record. It needs a shared transport: on the memory transport the registry
lives inside one dagq process.

Exit status: 0 when the registry could be read (even empty), 1 when not.`,
		Args: exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			cfg, _, err := c.loadConfig(cmd)
			if err != nil {
				return err
			}
			if err := c.needShared("workers", cfg, "keeps the worker registry inside one dagq process, "+
				"so no other dagq process can see its workers"); err != nil {
				return err
			}
			rt, err := c.runtime(cmd.ErrOrStderr(), cfg)
			if err != nil {
				return err
			}
			defer rt.close()
			workers, err := rt.Workers(cmd.Context())
			if errors.Is(err, ports.ErrUnsupported) {
				return fmt.Errorf("%w; the worker registry needs a state store that lists its keys (the sqs transport's S3 bucket does)", err)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				return writeJSON(out, workers)
			}
			return writeWorkers(out, workers, time.Now())
		},
	}
	addOutputFlag(cmd.Flags(), &output, "text", "json")
	return cmd
}

// writeWorkers prints the table of dagq workers and a count line.
func writeWorkers(w io.Writer, workers []app.WorkerInfo, now time.Time) error {
	if len(workers) == 0 {
		_, err := fmt.Fprintln(w, "no worker processes in the registry (a worker writes its record while it runs, every worker.registry_interval)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHOST\tPID\tVERSION\tQUEUES\tCONCURRENCY\tIN FLIGHT\tSTARTED\tLAST SEEN\tSTATE")
	stale := 0
	for _, wi := range workers {
		queues := make([]string, len(wi.Queues))
		for i, q := range wi.Queues {
			// An SQS URL's last element; a name stays.
			if queues[i] = config.QueueName(q); queues[i] == "" {
				queues[i] = q
			}
		}
		state := "live"
		if wi.Stale {
			state = "stale"
			stale++
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", wi.ID, dash(wi.Host), wi.PID, dash(wi.Version),
			dash(strings.Join(queues, ",")), wi.Concurrency, wi.InFlight,
			wi.StartedAt.Local().Format(time.RFC3339), seenAgo(now, wi.SeenAt), state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d worker process(es): %d live, %d stale\n", len(workers), len(workers)-stale, stale)
	return err
}

// seenAgo writes how long ago t was, to the second.
func seenAgo(now, t time.Time) string {
	d := now.Sub(t)
	if d < 0 {
		d = 0 // the writer's clock is ahead of this one
	}
	return d.Round(time.Second).String() + " ago"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
