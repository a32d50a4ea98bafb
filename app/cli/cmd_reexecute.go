package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

func (c *cli) reexecuteCmd() *cobra.Command {
	var (
		output, progress, runID, jobPath, steps string
		params                                  []string
		fromFailure, all, wait                  bool
		maxConc                                 int
		waitT                                   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "reexecute RUNID (--from-failure | --steps STEPS | --all)",
		Short: "Launch a new run of a finished run's job that reuses the outputs of the steps it does not run again",
		Long: `reexecute launches a new run of the job that the finished run RUNID ran (the job
stored with that run, not the job file as it is now), which runs again the steps
selected and reuses the stored outputs of the others: no handler runs for a
reused step, and its output reaches the steps that run again as the original
run passed it. Select exactly one of:

  --from-failure   the steps that did not succeed (failed, cancelled, skipped)
                   and every step downstream of them
  --steps a,b+     the steps named; a trailing + adds every step downstream
                   of that step
  --all            every step (nothing is reused)

The new run records its lineage: "dagq status" shows "re-execution of RUNID
(root ROOT), from failure" and marks each reused step "reused from RUN" (the
run whose step produced the output). -p NAME=VALUE replaces the value of one
of the run's parameters (the others keep RUNID's values): a step that failed
because of a parameter, or a job file's "fail" step with when: "${param}", can
so be fixed for the new run.

--job FILE checks that FILE is the job RUNID ran, and fails naming each
difference when it is not; for a run launched before dagq stored the job with
each run, it is the job to use.

Every step that is not selected must have succeeded in RUNID, and its stored
result must still exist (results expire). A step selected whose upstream step
is neither selected nor succeeded is refused, naming the step to add; a step
neither selected nor needed that did not succeed is skipped ("not selected for
re-execution").

Output and --wait are those of "dagq launch": the new run ID on stdout (with
--output json an object with run_id, job, state, parent_run, root_run, and the
steps run again and reused), and with --wait the run followed to its end.

It needs a shared transport: on the memory transport runs live only inside the
"dagq launch" process.

Exit status: 0 when launched (with --wait: when the run succeeded), 1 when the
run failed, or could not be launched (RUNID not finished yet, a result gone,
the job differs), 2 for bad arguments (a selection that cannot be run), 3 when
RUNID is unknown, 130 when the run was cancelled or the wait interrupted.`,
		Args: exactArgs(1, "the run ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			parent := args[0]
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			if !contains(launchProgressModes, progress) {
				return usageErr("--progress %q: valid values: %s", progress, strings.Join(launchProgressModes, ", "))
			}
			if err := checkMaxConcurrent(maxConc); err != nil {
				return err
			}
			sel, err := reexecSelection(cmd, fromFailure, all, steps)
			if err != nil {
				return err
			}
			extra, err := parseParams(params)
			if err != nil {
				return err
			}
			cfg, _, err := c.loadConfig(cmd)
			if err != nil {
				return err
			}
			if err := c.needSharedTransport("reexecute", cfg); err != nil {
				return err
			}
			return c.reexecute(cmd, cfg, parent, sel, reexecOpts{
				launchOpts: launchOpts{output: output, progress: progress, runID: runID, params: extra, wait: wait,
					waitTransport: waitT, maxConcurrent: maxConc},
				job: jobPath,
			})
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&fromFailure, "from-failure", false, "run again the steps that did not succeed and everything downstream of them")
	fs.StringVar(&steps, "steps", "", "run again these steps (comma-separated; a trailing + adds a step's downstream, e.g. b+,d)")
	fs.BoolVar(&all, "all", false, "run again every step")
	addOutputFlag(fs, &output, "text", "json")
	fs.StringVar(&progress, "progress", ProgressPlain, "with --wait, the run's progress: "+strings.Join(launchProgressModes, " or "))
	fs.StringVar(&runID, "run-id", "", "the new run's ID (default: random); it must be new")
	fs.StringArrayVarP(&params, "param", "p", nil, "run parameter NAME=VALUE (repeatable), replacing the value RUNID had")
	fs.StringVar(&jobPath, "job", "", "the job file RUNID ran: checked against the job stored with RUNID (or used, for a run that has none)")
	fs.BoolVarP(&wait, "wait", "w", false, "follow the new run to its end and exit with its outcome")
	addWaitForTransportFlag(fs, &waitT)
	addMaxConcurrentFlag(fs, &maxConc)
	config.AddFlag(fs, "fail-fast", "launcher-heartbeat-interval", "launcher-stale-after")
	return cmd
}

// reexecSelection reads the selection flags: exactly one of --from-failure,
// --steps and --all.
func reexecSelection(cmd *cobra.Command, fromFailure, all bool, steps string) (dag.ReexecuteOptions, error) {
	n := 0
	for _, set := range []bool{fromFailure, all, cmd.Flags().Changed("steps")} {
		if set {
			n++
		}
	}
	if n != 1 {
		return dag.ReexecuteOptions{}, usageErr("reexecute takes exactly one of --from-failure, --steps STEPS and --all (got %d)", n)
	}
	switch {
	case fromFailure:
		return dag.ReexecuteOptions{From: dag.ReexecuteFromFailure}, nil
	case all:
		return dag.ReexecuteOptions{From: dag.ReexecuteAll}, nil
	}
	var names []string
	for _, s := range strings.Split(steps, ",") {
		if s = strings.TrimSpace(s); s != "" {
			names = append(names, s)
		}
	}
	if len(names) == 0 {
		return dag.ReexecuteOptions{}, usageErr("--steps %q names no step: give step names separated by commas, e.g. --steps b+,d", steps)
	}
	return dag.ReexecuteOptions{From: dag.ReexecuteSteps, Steps: names}, nil
}

type reexecOpts struct {
	launchOpts
	job string // --job
}

// reexecutedJSON is what reexecute --output json prints without --wait.
type reexecutedJSON struct {
	RunID       string           `json:"run_id"`
	Job         string           `json:"job"`
	State       string           `json:"state"`
	ParentRun   string           `json:"parent_run"`
	RootRun     string           `json:"root_run"`
	Reexecution *dag.Reexecution `json:"reexecution,omitempty"`
	// Run and Reused name the steps run again and those reused.
	Run    []string `json:"run"`
	Reused []string `json:"reused"`
}

// reexecute launches the re-execution of run parent and, with --wait,
// follows it; its error carries the exit code.
func (c *cli) reexecute(cmd *cobra.Command, cfg config.Config, parent string, sel dag.ReexecuteOptions, o reexecOpts) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	rt, err := c.runtime(stderr, cfg)
	if err != nil {
		return err
	}
	defer rt.close()
	if err := checkTransportAtStart(cmd.Context(), rt.Runtime, app.CheckOptions{SkipTaskQueue: true}, o.waitTransport, stderr); err != nil {
		return err
	}
	ctx := cmd.Context()
	if o.job != "" {
		f, _, err := loadJob(o.job, cfg, nil, nil)
		if err != nil {
			return err
		}
		if err := f.Validate(nil); err != nil {
			return err
		}
		if _, err := f.RunParams(o.params); err != nil {
			return exitErr(ExitUsage, err)
		}
		sel.Job = &f.Job
	} else if len(o.params) > 0 {
		// Only the run's parameters can be given new values: a typo would
		// otherwise add a parameter no step reads, without a word.
		rec, err := rt.Launcher.Record(ctx, parent)
		if err != nil {
			return runErr(rt, parent, err)
		}
		if err := checkReexecParams(rec, o.params); err != nil {
			return err
		}
	}
	sel.RunID, sel.Params = o.runID, o.params
	sel.FailFast, sel.CancelWait, sel.MaxConcurrent = cfg.Executor.FailFast, cfg.Executor.CancelWait, o.maxConcurrent
	runID, err := rt.Launcher.Reexecute(ctx, parent, sel)
	switch {
	case err == nil:
	case errors.Is(err, dag.ErrRunNotFinished):
		return fmt.Errorf("%w; follow it with: dagq status %s, or stop it with: dagq terminate %s", err, parent, parent)
	case errors.Is(err, ports.ErrAlreadyExists) && o.runID != "":
		return fmt.Errorf("%w; choose another --run-id or omit it", err)
	case errors.Is(err, dag.ErrRunNotFound), errors.Is(err, ports.ErrInvalidArgument):
		return runErr(rt, parent, err)
	default:
		return err
	}
	rec, err := rt.Launcher.Record(context.WithoutCancel(ctx), runID)
	if err != nil {
		return fmt.Errorf("re-execution %s launched, but reading its record failed: %w", runID, err)
	}
	var ran, reused []string
	for _, s := range rec.Steps {
		if s.ReusedFrom != "" {
			reused = append(reused, s.Name)
		} else if s.State != dag.StepSkipped {
			ran = append(ran, s.Name)
		}
	}
	if !o.wait {
		if o.output == "json" {
			return writeJSON(stdout, reexecutedJSON{RunID: runID, Job: rec.Job, State: string(rec.State), ParentRun: rec.ParentRun,
				RootRun: rec.RootRun, Reexecution: rec.Reexecution, Run: nonNil(ran), Reused: nonNil(reused)})
		}
		fmt.Fprintln(stdout, runID)
		fmt.Fprintf(stderr, "dagq: launched run %s of job %s, a %s; running %s; reusing %s; follow it with: dagq status %s\n",
			runID, rec.Job, lineage(rec), listOrNone(ran), listOrNone(reused), runID)
		return nil
	}
	job := dag.Job{Name: rec.Job}
	for _, s := range rec.Steps {
		job.Steps = append(job.Steps, dag.Step{Name: s.Name, Task: s.Task, Upstream: s.Upstream})
	}
	return c.followLaunched(cmd, rt, cfg, job, runID, o.launchOpts, false)
}

// checkReexecParams refuses -p for a parameter run rec does not have.
func checkReexecParams(rec dag.RunRecord, params map[string]string) error {
	var unknown []string
	for _, k := range slices.Sorted(maps.Keys(params)) {
		if _, ok := rec.Params[k]; !ok {
			unknown = append(unknown, fmt.Sprintf("%q", k))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	has := "it has none"
	if len(rec.Params) > 0 {
		has = "its parameters: " + strings.Join(slices.Sorted(maps.Keys(rec.Params)), ", ")
	}
	return usageErr("-p: run %s has no parameter %s (%s); -p gives one of the run's parameters a new value",
		rec.RunID, strings.Join(unknown, ", "), has)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
