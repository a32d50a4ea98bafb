package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
)

// Exit codes of the dagq command.
const (
	ExitOK        = 0
	ExitFailed    = 1   // a run failed, or the command could not do its work
	ExitUsage     = 2   // bad arguments or flags
	ExitCancelled = 130 // a run was interrupted (128 + SIGINT)
)

// Version is the dagq version; release builds set it with
// -ldflags "-X github.com/dagq/dagq/app.Version=v1.2.3".
var Version = "dev"

// ExitError carries the exit code of a failed command.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

func exitErr(code int, err error) error { return &ExitError{Code: code, Err: err} }

func usageErr(format string, args ...any) error {
	return exitErr(ExitUsage, fmt.Errorf(format, args...))
}

// Main runs the dagq command line with the tasks of reg on os.Args and
// exits. Programs that register their own tasks call it from main to reuse
// the whole CLI (see the package doc).
func Main(reg *core.Registry) {
	os.Exit(Execute(context.Background(), reg, os.Args[1:], os.Stdout, os.Stderr))
}

// Execute runs the dagq command line with args and returns the exit code:
// ExitOK, ExitFailed, ExitUsage or ExitCancelled. Errors are printed to
// stderr as one "dagq: …" line (problems listed one per indented line
// below it), never as a stack trace.
func Execute(ctx context.Context, reg *core.Registry, args []string, stdout, stderr io.Writer) int {
	cmd := NewCommand(reg)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	printError(stderr, err)
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	if isUsage(err) {
		return ExitUsage
	}
	return ExitFailed
}

// printError writes err as "dagq: first line" and its other lines indented.
func printError(w io.Writer, err error) {
	lines := strings.Split(strings.TrimRight(err.Error(), "\n"), "\n")
	// core's errors carry their own "dagq: " prefix.
	fmt.Fprintf(w, "dagq: %s\n", strings.TrimPrefix(lines[0], "dagq: "))
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); l != "" {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

// isUsage recognises cobra's own usage errors that bypass the flag error
// function (an unknown subcommand).
func isUsage(err error) bool {
	return strings.HasPrefix(err.Error(), "unknown command ")
}

// cli holds what every command shares.
type cli struct {
	reg *core.Registry
}

// NewCommand returns the dagq root command over the tasks of reg. Execute
// and Main run it; embedders may add their own subcommands to it.
func NewCommand(reg *core.Registry) *cobra.Command {
	if reg == nil {
		reg = core.NewRegistry()
	}
	c := &cli{reg: reg}
	root := &cobra.Command{
		Use:   "dagq",
		Short: "Run jobs — DAGs of steps — on dagq workers",
		Long: `dagq runs jobs — DAGs of steps described in YAML job files — on workers over a
pluggable transport. The default transport, memory, runs the workers inside the
dagq process: "dagq run JOBFILE" needs nothing else.

Configuration comes from dagq.yaml (--config, $DAGQ_CONFIG), DAGQ_* environment
variables and flags, in increasing precedence: see "dagq config show".`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// No completion command: keep the command list to what dagq does.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return exitErr(ExitUsage, err)
	})
	pf := root.PersistentFlags()
	config.AddConfigFlag(pf)
	config.AddFlag(pf, "transport", "queue", "cancellation", "log-level", "log-format")

	root.AddCommand(
		c.runCmd(),
		c.workerCmd(),
		c.graphCmd(),
		c.configCmd(),
		versionCmd(),
		// launch, terminate, status and health come with the run launcher;
		// each is one more c.xxxCmd() here, using c.loadConfig, c.runtime
		// and addOutputFlag like run.
	)
	return root
}

// exactArgs is cobra.ExactArgs with a usage exit code and a clearer message.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErr("%s takes %d argument(s) (%s), got %d; see %q", cmd.CommandPath(), n, what, len(args), cmd.CommandPath()+" --help")
		}
		return nil
	}
}

// loadConfig loads and validates the configuration for cmd, printing the
// warnings to stderr.
func (c *cli) loadConfig(cmd *cobra.Command) (config.Config, *config.Loaded, error) {
	cfg, loaded, err := config.Load(config.LoadOptions{Flags: cmd.Flags()})
	if loaded != nil {
		for _, w := range loaded.Warnings {
			fmt.Fprintf(cmd.ErrOrStderr(), "dagq: warning: %s\n", w)
		}
	}
	if err != nil {
		return cfg, loaded, fmt.Errorf("configuration:\n%w", err)
	}
	if err := cfg.ValidateSources(loaded.Sources); err != nil {
		return cfg, loaded, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, loaded, nil
}

// runtime wires the configured transport, logging to cmd's stderr.
func (c *cli) runtime(cmd *cobra.Command, cfg config.Config) (*Runtime, error) {
	return c.runtimeTo(cmd.ErrOrStderr(), cfg)
}

// runtimeTo wires the configured transport, logging to logs.
func (c *cli) runtimeTo(logs io.Writer, cfg config.Config) (*Runtime, error) {
	logger, err := NewLogger(cfg.Log, logs)
	if err != nil {
		return nil, err
	}
	return New(cfg, c.reg, WithLogger(logger))
}

// addOutputFlag defines --output with the formats allowed (the first is
// the default).
func addOutputFlag(fs *pflag.FlagSet, dst *string, formats ...string) {
	fs.StringVarP(dst, "output", "o", formats[0], "output format: "+strings.Join(formats, " or "))
}

func checkOutput(got string, formats ...string) error {
	for _, f := range formats {
		if got == f {
			return nil
		}
	}
	return usageErr("--output %q: valid values: %s", got, strings.Join(formats, ", "))
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the dagq version",
		Args:  exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, goVersion := Version, ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
				if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
					v = bi.Main.Version
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "dagq %s", v)
			if goVersion != "" {
				fmt.Fprintf(cmd.OutOrStdout(), " (%s)", goVersion)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
}
