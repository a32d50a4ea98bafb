package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dagq/dagq/app/graph"
	"github.com/dagq/dagq/app/jobfile"
	"github.com/dagq/dagq/core/dag"
)

func (c *cli) graphCmd() *cobra.Command {
	var format, runID string
	cmd := &cobra.Command{
		Use:   "graph [JOBFILE] [--run RUNID]",
		Short: "Print a job's DAG as Mermaid (default) or Graphviz DOT, coloured by a run's states with --run",
		Long: `graph prints the DAG of a job file: a Mermaid flowchart by default (paste it
into a Markdown file, GitHub renders it), or Graphviz DOT with --format dot
(dagq graph job.yaml --format dot | dot -Tsvg > job.svg).

The job's structure is checked (cycles, unknown upstreams, duplicate names);
task names are not, so graph works on job files for any worker.

--run RUNID draws a launched run: every step gets its state (and its
attempts, when more than one) in its label and the state's colours: succeeded
green, failed red, skipped grey, cancelled orange, running blue; queued and
pending steps keep the default look. Mermaid output gives the steps classes
(classDef succeeded, failed, skipped, cancelled, running); DOT output a
fillcolor. The states and the edges come from the run's record in the state
store (as dagq status shows it), so no job file is needed; given one, it
must be the run's job (same name and steps) and its edges are drawn. Like
status, --run needs a shared transport: on the memory transport runs live
only inside the "dagq launch" process.

Exit status: 0 when the graph was printed; with --run 3 when the run is
unknown, 1 when the state store cannot be read; 2 for bad arguments, a job
file that is not the run's, or --run on transport memory.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("run") {
				if len(args) > 1 {
					return usageErr("graph --run takes at most one argument, the run's job file; got %d", len(args))
				}
				return nil
			}
			return exactArgs(1, "the job file")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if !contains(graph.Formats, format) {
				return usageErr("--format %q: valid values: %s", format, strings.Join(graph.Formats, ", "))
			}
			var job dag.Job
			if len(args) == 1 {
				f, err := jobfile.Load(args[0], jobfile.Options{})
				if err != nil {
					return err
				}
				if err := f.Validate(nil); err != nil {
					return err
				}
				job = f.Job
			}
			var opts graph.Options
			if cmd.Flags().Changed("run") {
				rec, err := c.graphRun(cmd, runID)
				if err != nil {
					return err
				}
				if len(args) == 1 {
					if err := sameJob(args[0], job, rec); err != nil {
						return err
					}
				} else {
					job = recordJob(rec)
				}
				opts.Run = &rec
			}
			out, err := graph.RenderWith(job, format, opts)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), out)
			return err
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "mermaid", "graph format: "+strings.Join(graph.Formats, " or "))
	cmd.Flags().StringVar(&runID, "run", "", "colour the steps by their states in this launched run of the job (needs a shared transport)")
	return cmd
}

// graphRun reads the record of run runID for graph --run.
func (c *cli) graphRun(cmd *cobra.Command, runID string) (dag.RunRecord, error) {
	rt, err := c.runSession(cmd, "graph --run")
	if err != nil {
		return dag.RunRecord{}, err
	}
	defer rt.close()
	rec, err := rt.Launcher.Status(cmd.Context(), runID)
	if err != nil {
		return dag.RunRecord{}, runErr(rt, runID, err)
	}
	return rec, nil
}

// recordJob is the job of run record rec: its steps, tasks and upstreams.
func recordJob(rec dag.RunRecord) dag.Job {
	job := dag.Job{Name: rec.Job, Steps: make([]dag.Step, len(rec.Steps))}
	for i, s := range rec.Steps {
		job.Steps[i] = dag.Step{Name: s.Name, Task: s.Task, Upstream: s.Upstream}
	}
	return job
}

// sameJob fails when the job of file path is not the job of run rec: its
// name or its steps differ.
func sameJob(path string, job dag.Job, rec dag.RunRecord) error {
	names := func(steps []string) string { return strings.Join(steps, ", ") }
	var fileSteps, runSteps []string
	for _, s := range job.Steps {
		fileSteps = append(fileSteps, s.Name)
	}
	for _, s := range rec.Steps {
		runSteps = append(runSteps, s.Name)
	}
	slices.Sort(fileSteps)
	slices.Sort(runSteps)
	switch {
	case job.Name != rec.Job:
		return usageErr("%s is job %q, but run %s is of job %q: give graph --run the run's job file", path, job.Name, rec.RunID, rec.Job)
	case !slices.Equal(fileSteps, runSteps):
		return usageErr("%s (job %s) has steps %s, but run %s has steps %s: give graph --run the job file the run was launched from",
			path, job.Name, names(fileSteps), rec.RunID, names(runSteps))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
