package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dagq/dagq/app/config"
)

func (c *cli) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show or validate the effective configuration",
		Long: `The configuration comes from, in increasing precedence: defaults, the config
file (--config, else $DAGQ_CONFIG, else ./dagq.yaml if present), DAGQ_*
environment variables (worker.concurrency is DAGQ_WORKER_CONCURRENCY) and flags.
See docs/configuration.md for every key.`,
	}
	cmd.AddCommand(c.configShowCmd(), c.configValidateCmd())
	return cmd
}

func (c *cli) configShowCmd() *cobra.Command {
	var output string
	var sources bool
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration (secrets redacted)",
		Long: `show prints the configuration dagq would use, after the file, the environment
and the flags, as YAML (or JSON with --output json). Secret values are redacted.
With --sources it prints each key with its value and where the value came from.
The configuration is validated: invalid values are reported, and show fails.`,
		Args: exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "yaml", "json"); err != nil {
				return err
			}
			cfg, loaded, err := c.loadConfig(cmd)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if sources {
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE")
				values := config.Values(cfg)
				for _, k := range config.Keys() {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", k.Path, values[k.Path], loaded.Sources[k.Path])
				}
				return tw.Flush()
			}
			var b []byte
			if output == "json" {
				b, err = config.RenderJSON(cfg)
			} else {
				b, err = config.Render(cfg)
			}
			if err != nil {
				return err
			}
			_, err = out.Write(b)
			return err
		},
	}
	addOutputFlag(cmd.Flags(), &output, "yaml", "json")
	cmd.Flags().BoolVar(&sources, "sources", false, "print each key's value and source (default, file, env, flag)")
	return cmd
}

func (c *cli) configValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate",
		Short: "Check the configuration; exit 1 with every problem found",
		Args:  exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, loaded, err := c.loadConfig(cmd)
			if err != nil {
				return err
			}
			from := "defaults, environment and flags only (no config file)"
			if loaded.File != "" {
				from = loaded.File
			}
			fmt.Fprintf(cmd.OutOrStdout(), "configuration is valid (%s)\n", from)
			return nil
		},
	}
}
