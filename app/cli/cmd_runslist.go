package cli

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// dagq runs: the run index (dag.Launcher.ListRuns).

func (c *cli) runsCmd() *cobra.Command {
	runs := &cobra.Command{
		Use:   "runs",
		Short: "List launched runs",
		Long: `runs works on the index of launched runs that the launcher keeps in the state
store (docs/launcher.md, The run index).`,
		Args: exactArgs(0, "none; see the subcommands"),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	runs.AddCommand(c.runsListCmd())
	return runs
}

// runsListJSON is what dagq runs list --output json prints.
type runsListJSON struct {
	Runs []dag.RunSummary `json:"runs"`
	// Next is the cursor of the next page ("" when there is none).
	Next string `json:"next"`
}

func (c *cli) runsListCmd() *cobra.Command {
	var (
		output, state, job, since, cursor string
		limit                             int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List launched runs, newest first, filtered by state, job and time",
		Long: `list prints launched runs from the run index, newest first: RUN, JOB, STATE,
CREATED (when it was launched, and how long ago) and DURATION (from launch to
finish; "-" while it is not finished).

  --state S      only runs in state S: queued, running, succeeded, failed, cancelled
  --job J        only runs of job J (its name, exactly)
  --since T      only runs launched at or after T: a duration back from now (90m,
                 24h, 7d) or a time (RFC 3339, 2025-01-02T15:04:05Z, or a date,
                 2025-01-02, UTC)
  --limit N      at most N runs (1 to 1000; default 50)
  --cursor C     the page after the one that printed C

When there are more runs, the last line says how to list the next page
(--cursor). A state or job filter scans the index for at most 10 LIST requests
of 1000 keys per page, so a page may hold fewer runs than --limit, even none,
and still have a next one. A run's state is its record's as of its last state
change: "dagq status RUNID" tells more (e.g. a run whose run task was
dead-lettered stays queued or running here).

--output json prints {"runs": [{"run_id", "job", "state", "created_at",
"finished_at"}, …], "next": CURSOR} ("next" is "" on the last page).

It needs a shared transport: on the memory transport runs live only inside the
"dagq launch" process.`,
		Args: exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			now := time.Now()
			opts, err := listRunsOptions(state, job, since, cursor, limit, now)
			if err != nil {
				return err
			}
			rt, err := c.runSession(cmd, "runs list")
			if err != nil {
				return err
			}
			defer rt.close()
			runs, next, err := rt.Launcher.ListRuns(cmd.Context(), opts)
			switch {
			case errors.Is(err, ports.ErrInvalidArgument):
				return exitErr(ExitUsage, err)
			case err != nil:
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				if runs == nil {
					runs = []dag.RunSummary{}
				}
				return writeJSON(out, runsListJSON{Runs: runs, Next: next})
			}
			return writeRunsList(out, runs, next, opts, now)
		},
	}
	addOutputFlag(cmd.Flags(), &output, "text", "json")
	fs := cmd.Flags()
	fs.StringVar(&state, "state", "", "only runs in this state: queued, running, succeeded, failed, cancelled")
	fs.StringVar(&job, "job", "", "only runs of this job")
	fs.StringVar(&since, "since", "", "only runs launched since: a duration back from now (24h, 7d) or an RFC 3339 time or date")
	fs.IntVar(&limit, "limit", dag.DefaultListRunsLimit, fmt.Sprintf("most runs to list (1 to %d)", dag.MaxListRunsLimit))
	fs.StringVar(&cursor, "cursor", "", "list the page after the one that printed this cursor")
	return cmd
}

// listRunsOptions reads the flags of dagq runs list.
func listRunsOptions(state, job, since, cursor string, limit int, now time.Time) (dag.ListRunsOptions, error) {
	opts := dag.ListRunsOptions{Job: job, Cursor: cursor, Limit: limit}
	switch dag.RunState(state) {
	case "", dag.RunQueued, dag.RunRunning, dag.RunSucceeded, dag.RunFailed, dag.RunCancelled:
		opts.State = dag.RunState(state)
	default:
		return opts, usageErr("--state %q: valid values: queued, running, succeeded, failed, cancelled", state)
	}
	if limit < 1 || limit > dag.MaxListRunsLimit {
		return opts, usageErr("--limit %d: valid: 1 to %d", limit, dag.MaxListRunsLimit)
	}
	if since != "" {
		t, err := parseSince(since, now)
		if err != nil {
			return opts, usageErr("--since %q: %v", since, err)
		}
		opts.Since = t
	}
	return opts, nil
}

var daysRE = regexp.MustCompile(`^(\d+)d$`)

// parseSince reads --since: a duration back from now (Go syntax, or whole
// days: 7d), an RFC 3339 time, or a date (UTC).
func parseSince(s string, now time.Time) (time.Time, error) {
	if m := daysRE.FindStringSubmatch(s); m != nil {
		days, err := strconv.Atoi(m[1])
		if err == nil && days <= 100_000 {
			return now.AddDate(0, 0, -days), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, errors.New("a negative duration; give how far back, e.g. 24h")
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("valid: a duration back from now (90m, 24h, 7d), an RFC 3339 time (2025-01-02T15:04:05Z) or a date (2025-01-02)")
}

// writeRunsList prints runs as a table and, when there is a next page, the
// command that lists it.
//
//	RUN  JOB      STATE      CREATED                          DURATION
//	r2   nightly  running    2025-01-02T15:04:05Z (1m5s ago)  -
//	r1   nightly  succeeded  2025-01-02T14:04:05Z (1h1m ago)  2m10s
func writeRunsList(w io.Writer, runs []dag.RunSummary, next string, opts dag.ListRunsOptions, now time.Time) error {
	if len(runs) == 0 {
		if next == "" {
			_, err := fmt.Fprintln(w, "no runs")
			return err
		}
		_, err := fmt.Fprintf(w, "no runs in this part of the index; more: %s\n", nextCommand(opts, next))
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tJOB\tSTATE\tCREATED\tDURATION")
	for _, r := range runs {
		created := r.CreatedAt.Local().Format(time.RFC3339)
		if d := now.Sub(r.CreatedAt); d >= 0 {
			created += " (" + formatAge(d) + " ago)"
		}
		took := "-"
		if !r.FinishedAt.IsZero() {
			took = formatDuration(max(r.FinishedAt.Sub(r.CreatedAt), 0))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.RunID, truncate(oneLine(r.Job), 40), r.State, created, took)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" {
		_, err := fmt.Fprintf(w, "\nmore: %s\n", nextCommand(opts, next))
		return err
	}
	return nil
}

// formatAge rounds an age for people: 850ms, 42s, 5m10s, 3h20m, 2d4h.
func formatAge(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 24*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	days := int(d / (24 * time.Hour))
	return fmt.Sprintf("%dd%dh", days, int((d-time.Duration(days)*24*time.Hour)/time.Hour))
}

// nextCommand is the dagq runs list command of the page after next: the
// same filters (--since as a time), --cursor next.
func nextCommand(opts dag.ListRunsOptions, next string) string {
	args := []string{"dagq runs list"}
	if opts.State != "" {
		args = append(args, "--state", string(opts.State))
	}
	if opts.Job != "" {
		args = append(args, "--job", shellQuote(opts.Job))
	}
	if !opts.Since.IsZero() {
		args = append(args, "--since", opts.Since.UTC().Format(time.RFC3339Nano))
	}
	if opts.Limit != dag.DefaultListRunsLimit {
		args = append(args, "--limit", strconv.Itoa(opts.Limit))
	}
	return strings.Join(append(args, "--cursor", shellQuote(next)), " ")
}

var shellPlain = regexp.MustCompile(`^[A-Za-z0-9_./:=@%+,-]+$`)

// shellQuote quotes s for a POSIX shell unless it needs none.
func shellQuote(s string) string {
	if shellPlain.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
