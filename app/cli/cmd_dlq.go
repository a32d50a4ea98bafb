package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// queueRole reads --runs: the run queue instead of the task queue.
func queueRole(runs bool) string {
	if runs {
		return app.QueueRuns
	}
	return app.QueueTasks
}

// dlqErr gives a missing DLQ its exit code and fix.
func dlqErr(err error) error {
	if errors.Is(err, ports.ErrNotFound) {
		return exitErr(ExitNotFound, fmt.Errorf("%w; create the queues with their dead-letter queues and redrive policies: dagq queue init", err))
	}
	return err
}

// dlqSession wires the runtime for command what and opens the DLQ of the
// task queue (of the run queue with runs); done closes both.
func (c *cli) dlqSession(cmd *cobra.Command, what string, runs bool) (session, ports.DeadLetterQueue, func(), error) {
	rt, err := c.runSession(cmd, what)
	if err != nil {
		return session{}, ports.DeadLetterQueue{}, nil, err
	}
	dl, err := rt.DeadLetters(cmd.Context(), queueRole(runs))
	if err != nil {
		rt.close()
		return session{}, ports.DeadLetterQueue{}, nil, dlqErr(err)
	}
	return rt, dl, func() { _ = dl.Close(); rt.close() }, nil
}

func (c *cli) queueStatsCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show the depth of the task queue, the run queue and their dead-letter queues",
		Long: `stats prints, for the task queue, the run queue and the dead-letter queue of
each, how many messages are visible (waiting), in flight (received, not yet
deleted) and delayed. On SQS the counts are SQS's approximate ones
(ApproximateNumberOfMessages, ...NotVisible, ...Delayed); each queue costs one
GetQueueAttributes request, each DLQ two more to find it.

It needs a shared transport: on the memory transport the queues live inside
one dagq process.`,
		Args: exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			rt, err := c.runSession(cmd, "queue stats")
			if err != nil {
				return err
			}
			defer rt.close()
			stats := rt.QueueStats(cmd.Context())
			out := cmd.OutOrStdout()
			if output == "json" {
				return writeJSON(out, stats)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "QUEUE\tVISIBLE\tIN FLIGHT\tDELAYED\tNAME")
			failed := 0
			for _, s := range stats {
				role := s.Role
				if s.DLQ {
					role += " DLQ"
				}
				if s.Error != "" {
					failed++
					fmt.Fprintf(tw, "%s\t-\t-\t-\t%s (%s)\n", role, s.Name, s.Error)
					continue
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", role, s.Visible, s.InFlight, s.Delayed, s.Name)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if failed > 0 {
				return exitSilently(ExitFailed)
			}
			return nil
		},
	}
	addOutputFlag(cmd.Flags(), &output, "text", "json")
	return cmd
}

func (c *cli) dlqCmd() *cobra.Command {
	dlq := &cobra.Command{
		Use:   "dlq",
		Short: "Look into, redrive or purge the dead-letter queues",
		Long: `dlq works on the dead-letter queue (DLQ) of the task queue, or with --runs of
the run queue: the queue's redrive policy moves a message there after
maxReceiveCount receives without a delete, and workers record such a task as
failed, "dead-lettered after N receives" (docs/semantics.md, Dead letters).`,
		Args: exactArgs(0, "none; see the subcommands"),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	dlq.AddCommand(c.dlqListCmd(), c.dlqRedriveCmd(), c.dlqPurgeCmd())
	return dlq
}

func (c *cli) dlqListCmd() *cobra.Command {
	var (
		output string
		runs   bool
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the messages of a dead-letter queue",
		Long: `list prints the messages of the DLQ: ID (the task ID), TASK, RUN and STEP (from
the envelope), SENT, SIZE and REASON: the error of the task's stored result,
when it has one ("dead-lettered after N receives: ..." once a worker's sweep
recorded it, or the worker's own failure).

Peeking costs: the DLQ is read with ReceiveMessage (one per ten messages); the
messages read are hidden while the list is made and then handed back, visible
again within a second (one ChangeMessageVisibilityBatch per ten), plus one
result GET per message. Every read raises the message's receive count in the
DLQ. A message that a worker's dead-letter sweep or another reader holds at
that moment (for the seconds a sweep takes) is not listed.`,
		Args: exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			if limit < 0 {
				return usageErr("--limit %d: valid: 0 (all) or more", limit)
			}
			rt, dl, done, err := c.dlqSession(cmd, "dlq list", runs)
			if err != nil {
				return err
			}
			defer done()
			ctx := cmd.Context()
			dls, err := core.ListDeadLetters(ctx, dl, rt.Ports.Results, limit)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				if dls == nil {
					dls = []core.DeadLetter{}
				}
				return writeJSON(out, dls)
			}
			if len(dls) == 0 {
				fmt.Fprintf(out, "no messages in %s\n", dl.Name)
				return nil
			}
			return writeDeadLetters(out, dls, termWidth(out))
		},
	}
	addOutputFlag(cmd.Flags(), &output, "text", "json")
	cmd.Flags().BoolVar(&runs, "runs", false, "the run queue's DLQ instead of the task queue's")
	cmd.Flags().IntVar(&limit, "limit", 100, "most messages to list; 0: all")
	return cmd
}

// writeDeadLetters prints dls as a table, the reason cut to width (0: whole).
func writeDeadLetters(w io.Writer, dls []core.DeadLetter, width int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTASK\tRUN\tSTEP\tSENT\tSIZE\tREASON")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, d := range dls {
		sent := "-"
		if !d.SentAt.IsZero() {
			sent = d.SentAt.UTC().Format(time.RFC3339)
		}
		reason := dash(d.Reason)
		if width > 0 && len(reason) > width/2 {
			reason = reason[:width/2] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", tableID(d.ID), dash(d.Task), dash(d.RunID), dash(d.StepID),
			sent, d.Bytes, strings.ReplaceAll(reason, "\n", " "))
	}
	return tw.Flush()
}

// tableID prints a message ID in a table: as it is when it is a plain
// word, quoted (and shortened beyond 32 bytes) otherwise.
func tableID(id string) string {
	if id != "" && len(id) <= core.MaxTaskIDLen && !strings.ContainsFunc(id, func(r rune) bool {
		return r <= ' ' || r == '"' || r == 0x7f || !unicode.IsPrint(r)
	}) {
		return id
	}
	return wire.ShortID(id)
}

func (c *cli) dlqRedriveCmd() *cobra.Command {
	var (
		runs, all bool
		task      string
	)
	cmd := &cobra.Command{
		Use:   "redrive (--task ID | --all)",
		Short: "Move dead letters back to their queue, to run again",
		Long: `redrive moves the message of one task (--task ID) or every message (--all) of
the DLQ back to its queue: it deletes the task's result when a worker recorded
it as dead-lettered (so that waiters wait for the new outcome), sends a copy to
the queue (its receive count starts again at 1) and then deletes the message
from the DLQ. The copy is sent before the delete, so nothing is lost; a
failure in between leaves a duplicate. Fix the cause first: a task that fails
the same way comes back to the DLQ.

--task uses ReceiveMessage, SendMessage and DeleteMessage. --all starts SQS's
message-move task (StartMessageMoveTask), which moves the messages back
asynchronously at SQS's pace, and prints its handle; where the server has no
such API (fauxqs and other SQS-compatible servers) it moves them one by one as
--task does. On a FIFO queue a message moved back within five minutes of its
original send is dropped by deduplication.

Exit status: 0 when something was moved (or --all found nothing), 3 when
--task names no message in the DLQ.`,
		Args: exactArgs(0, "none; use --task ID or --all"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (task == "") == !all {
				return usageErr("dlq redrive needs exactly one of --task ID or --all")
			}
			rt, err := c.runSession(cmd, "dlq redrive")
			if err != nil {
				return err
			}
			defer rt.close()
			rep, err := rt.RedriveDeadLetters(cmd.Context(), queueRole(runs), task)
			out := cmd.OutOrStdout()
			for _, id := range rep.Moved {
				fmt.Fprintf(out, "redriven %s\n", id)
			}
			if err != nil {
				return dlqErr(err)
			}
			switch {
			case rep.MoveTask != "":
				fmt.Fprintf(out, "started SQS message-move task %s: SQS moves the messages back to the %s queue asynchronously\n",
					rep.MoveTask, queueRole(runs))
			case task != "" && len(rep.Moved) == 0:
				return exitErr(ExitNotFound, fmt.Errorf("no message of task %s in the %s DLQ (a worker's dead-letter sweep or another reader may hold it for a few seconds: try again)",
					task, queueRole(runs)))
			case task == "":
				fmt.Fprintf(out, "%d message(s) moved back to the %s queue\n", len(rep.Moved), queueRole(runs))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&runs, "runs", false, "the run queue's DLQ instead of the task queue's")
	cmd.Flags().StringVar(&task, "task", "", "the task ID (message ID) to move back")
	cmd.Flags().BoolVar(&all, "all", false, "move back every message")
	return cmd
}

func (c *cli) dlqPurgeCmd() *cobra.Command {
	var runs, yes bool
	cmd := &cobra.Command{
		Use:   "purge",
		Short: "Delete every message of a dead-letter queue (asks first)",
		Long: `purge deletes every message of the DLQ. It asks for confirmation on its input
(answer y); --yes skips the question. Tasks whose messages are purged keep the
result a worker recorded for them ("dead-lettered after N receives"), or none
if no sweep ran yet. Cost: one ReceiveMessage and one DeleteMessageBatch per
ten messages.`,
		Args: exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, dl, done, err := c.dlqSession(cmd, "dlq purge", runs)
			if err != nil {
				return err
			}
			defer done()
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			if !yes {
				fmt.Fprintf(out, "Delete every message of %s? This cannot be undone. [y/N] ", dl.Name)
				answer, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					fmt.Fprintln(out)
					return usageErr("dlq purge: not confirmed (answer y, or pass --yes); nothing deleted")
				}
			}
			n, err := core.PurgeDeadLetters(ctx, dl)
			fmt.Fprintf(out, "%d message(s) deleted from %s\n", n, dl.Name)
			return err
		},
	}
	cmd.Flags().BoolVar(&runs, "runs", false, "the run queue's DLQ instead of the task queue's")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}
