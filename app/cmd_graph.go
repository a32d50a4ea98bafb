package app

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dagq/dagq/app/graph"
	"github.com/dagq/dagq/app/jobfile"
)

func (c *cli) graphCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "graph JOBFILE",
		Short: "Print a job's DAG as Mermaid (default) or Graphviz DOT",
		Long: `graph prints the DAG of a job file: a Mermaid flowchart by default (paste it
into a Markdown file, GitHub renders it), or Graphviz DOT with --format dot
(dagq graph job.yaml --format dot | dot -Tsvg > job.svg).

The job's structure is checked (cycles, unknown upstreams, duplicate names);
task names are not, so graph works on job files for any worker.`,
		Args: exactArgs(1, "the job file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !contains(graph.Formats, format) {
				return usageErr("--format %q: valid values: %s", format, strings.Join(graph.Formats, ", "))
			}
			f, err := jobfile.Load(args[0], jobfile.Options{})
			if err != nil {
				return err
			}
			if err := f.Validate(nil); err != nil {
				return err
			}
			out, err := graph.Render(f.Job, format)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), out)
			return err
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "mermaid", "graph format: "+strings.Join(graph.Formats, " or "))
	return cmd
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
