// Package cli is the dagq command line: the cobra commands (run, launch,
// runs list, status, health, terminate, worker, workers, queue, dlq, graph,
// ui, config, version), their progress and result output, the dashboard (dagq ui and
// dagq run --ui, package app/ui), the Prometheus metrics of dagq worker
// (package app/cli/metrics) and the OpenTelemetry exporters of
// OTEL_TRACES_EXPORTER (package app/telemetry). It builds each command's
// runtime with the composition root, package app (app.New), handing it the
// tracer and the AWS request counter as options; an embedder that needs
// only the runtime imports app, not cli.
//
// # Embedding the CLI
//
// A program that registers its own tasks reuses the whole dagq command:
//
//	func main() {
//		reg := core.NewRegistry()
//		builtin.MustRegister(reg)           // echo, sleep, fail, hash, concat, transform
//		MyTask.MustRegister(reg, handleMyTask)
//		cli.Main(reg)                       // dagq run/launch/status/health/terminate/worker/workers/queue/graph/config/version
//	}
//
// WithRuntime runs the commands against a runtime the program wired itself
// (app.New).
package cli

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

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
)

// Exit codes of the dagq command.
const (
	ExitOK     = 0
	ExitFailed = 1 // a run failed, or the command could not do its work; health: FAILED or CANCELLED; terminate: already finished
	ExitUsage  = 2 // bad arguments or flags, or a command the configured transport cannot serve
	// ExitNotFound: status, health or terminate of a run the state store
	// does not know (health NOT_FOUND).
	ExitNotFound = 3
	// ExitUnknown: health could not tell (UNKNOWN: the state store could not
	// be read).
	ExitUnknown   = 4
	ExitCancelled = 130 // a run was interrupted (128 + SIGINT)
)

// Version is the dagq version; release builds set it with
// -ldflags "-X github.com/dagq/dagq/app/cli.Version=v1.2.3".
var Version = "dev"

// ExitError carries the exit code of a failed command. With a nil Err the
// command already said everything on stdout (health FAILED, terminate of a
// finished run): Execute prints nothing and only exits with Code.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}
func (e *ExitError) Unwrap() error { return e.Err }

func exitErr(code int, err error) error { return &ExitError{Code: code, Err: err} }

// exitSilently ends a command with code and no error line.
func exitSilently(code int) error {
	if code == ExitOK {
		return nil
	}
	return &ExitError{Code: code}
}

func usageErr(format string, args ...any) error {
	return exitErr(ExitUsage, fmt.Errorf(format, args...))
}

// Main runs the dagq command line with the tasks of reg on os.Args and
// exits. Programs that register their own tasks call it from main to reuse
// the whole CLI (see the package doc).
func Main(reg *core.Registry, opts ...CommandOption) {
	os.Exit(Execute(context.Background(), reg, os.Args[1:], os.Stdout, os.Stderr, opts...))
}

// CommandOption configures NewCommand (and Execute, Main).
type CommandOption func(*cli)

// WithRuntime makes every command use rt instead of wiring a runtime of its
// own from the configuration: the commands run in-process against rt, as a
// program that embeds dagq (or a test) wants. Then
//
//   - rt's transport, queues, workers and launcher settings apply; the
//     configuration (file, environment, flags) is still loaded for what a
//     command decides itself: fail-fast, cancel wait, the retry defaults of
//     job files;
//   - the commands start no in-process workers on the memory transport
//     (run, launch): whoever owns rt serves its queues (rt.StartWorkers,
//     rt.StartRunWorkers); worker still starts its workers on rt;
//   - status, health and terminate work on the memory transport too, since
//     they share rt's state store;
//   - the commands never close rt.
func WithRuntime(rt *app.Runtime) CommandOption { return func(c *cli) { c.rt = rt } }

// WithInput makes commands that ask (dagq dlq purge) read their answers
// from r instead of standard input.
func WithInput(r io.Reader) CommandOption { return func(c *cli) { c.in = r } }

// Execute runs the dagq command line with args and returns the exit code:
// ExitOK, ExitFailed, ExitUsage, ExitNotFound, ExitUnknown or
// ExitCancelled. Errors are printed to stderr as one "dagq: …" line
// (problems listed one per indented line below it), never as a stack trace.
func Execute(ctx context.Context, reg *core.Registry, args []string, stdout, stderr io.Writer, opts ...CommandOption) int {
	cmd := NewCommand(reg, opts...)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) && ee.Err == nil {
		return ee.Code
	}
	printError(stderr, err)
	if ee != nil {
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
	// rt, set by WithRuntime, is used instead of a runtime per command.
	rt *app.Runtime
	// in, set by WithInput, replaces standard input.
	in io.Reader
}

// NewCommand returns the dagq root command over the tasks of reg. Execute
// and Main run it; embedders may add their own subcommands to it.
func NewCommand(reg *core.Registry, opts ...CommandOption) *cobra.Command {
	if reg == nil {
		reg = core.NewRegistry()
	}
	c := &cli{reg: reg}
	for _, o := range opts {
		o(c)
	}
	if c.rt != nil {
		c.reg = c.rt.Registry
	}
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
	config.AddFlag(pf, "transport", "queue", "launcher-queue", "cancellation", "log-level", "log-format",
		"sqs-queue-url", "sqs-run-queue-url", "sqs-region", "sqs-endpoint", "s3-bucket", "s3-prefix", "s3-endpoint")

	root.AddCommand(
		c.runCmd(),
		c.launchCmd(),
		c.reexecuteCmd(),
		c.statusCmd(),
		c.healthCmd(),
		c.terminateCmd(),
		c.runsCmd(),
		c.workerCmd(),
		c.workersCmd(),
		c.queueCmd(),
		c.dlqCmd(),
		c.graphCmd(),
		c.uiCmd(),
		c.configCmd(),
		versionCmd(),
	)
	if c.in != nil {
		root.SetIn(c.in)
	}
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
	if err := cfg.ValidateLoaded(loaded); err != nil {
		return cfg, loaded, fmt.Errorf("invalid configuration:\n%w", err)
	}
	for _, n := range cfg.Notices() {
		fmt.Fprintf(cmd.ErrOrStderr(), "dagq: warning: %s\n", n)
	}
	return cfg, loaded, nil
}

// session is the runtime one command works with.
type session struct {
	*app.Runtime
	// owned: the command wired it from the configuration (and closes it);
	// false for the runtime of WithRuntime, shared with its owner.
	owned bool
	// stopTracing flushes and stops the tracer provider the command set up
	// (nil without one).
	stopTracing func()
}

// close closes the runtime if the command wired it, then flushes its spans.
func (s session) close() {
	if s.owned {
		s.Runtime.Close()
	}
	if s.stopTracing != nil {
		s.stopTracing()
	}
}

// localWorkers reports whether the command must serve the queues itself:
// it wired an embedded (memory) runtime, whose queues nobody else sees.
func (s session) localWorkers() bool { return s.owned && s.Embedded() }

// runtime returns the runtime of WithRuntime, or wires the configured
// transport, logging to logs, traced as the OTEL_* environment says (see
// setupTracing). Call close on the session when done.
func (c *cli) runtime(logs io.Writer, cfg config.Config, opts ...app.Option) (session, error) {
	if c.rt != nil {
		return session{Runtime: c.rt}, nil
	}
	logger, err := app.NewLogger(cfg.Log, logs)
	if err != nil {
		return session{}, err
	}
	traced, stopTracing, err := setupTracing(logs, logger, cfg.Transport)
	if err != nil {
		return session{}, err
	}
	// loadConfig printed the notices.
	v, _ := version()
	rt, err := app.New(cfg, c.reg, append([]app.Option{app.WithLogger(logger), traced, app.WithNoticesShown(), app.WithVersion(v)}, opts...)...)
	if err != nil {
		stopTracing()
		return session{}, err
	}
	return session{Runtime: rt, owned: true, stopTracing: stopTracing}, nil
}

// needSharedTransport fails the command what when the runtime would be a
// fresh embedded one: its state store is empty and no other process can see
// into it.
func (c *cli) needSharedTransport(what string, cfg config.Config) error {
	return c.needShared(what, cfg, "keeps runs inside the process that launched them "+
		"(there \"dagq launch\" waits for its run), so no other dagq process can see them")
}

// needShared is needSharedTransport with what the embedded transport keeps
// to itself.
func (c *cli) needShared(what string, cfg config.Config, keeps string) error {
	if c.rt != nil || !config.Embedded(cfg.Transport) {
		return nil
	}
	valid := "valid values: " + strings.Join(config.SupportedTransports, ", ")
	return usageErr("%s needs a shared transport: transport %q %s. "+
		"Set transport (--transport, %s) to a shared transport; %s",
		what, cfg.Transport, keeps, config.EnvName("transport"), valid)
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
			v, goVersion := version()
			fmt.Fprintf(cmd.OutOrStdout(), "dagq %s", v)
			if goVersion != "" {
				fmt.Fprintf(cmd.OutOrStdout(), " (%s)", goVersion)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
}

// version returns the dagq version (Version, else the main module's version
// in the build info) and the Go version it was built with ("" when unknown).
func version() (v, goVersion string) {
	v = Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	return v, goVersion
}
