package cli

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/spf13/cobra"

	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/app/ui"
)

func (c *cli) uiCmd() *cobra.Command {
	var insecure bool
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve the dashboard: runs and their DAGs, queues, dead letters, workers",
		Long: `ui serves the operator console, a web dashboard, on --addr (ui.addr, default
127.0.0.1:8080) until SIGINT or SIGTERM: the runs with filters and live refresh;
a run's DAG coloured by step state, its steps (state, attempts, worker,
duration, error, output) and timeline, updated every ui.refresh while it runs,
with Terminate, and once finished Re-execute (from failure, or all); the depth of the queues and their dead-letter queues over the
last minutes, with the dead letters and redrive; the workers. Everything is
served by this binary (no CDN, nothing to install); see docs/dashboard.md.

It is safe by default: it listens on loopback only. Another address needs a
token (DAGQ_UI_TOKEN) or basic auth (DAGQ_UI_BASIC_AUTH=user:password) from the
environment, and ui refuses to start without one unless --insecure. Actions are
POSTs carrying a CSRF token; --read-only (ui.read_only) refuses them all.

It needs a shared transport (sqs): on the memory transport runs live inside the
process that drives them; "dagq run --ui ADDR" serves the dashboard of such a
run.`,
		Args: exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := c.loadConfig(cmd)
			if err != nil {
				return err
			}
			if err := c.needSharedTransport("ui", cfg); err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			rt, err := c.runtime(stderr, cfg)
			if err != nil {
				return err
			}
			defer rt.close()
			opts := ui.FromConfig(rt.Runtime, cfg.UI)
			opts.Insecure = insecure
			srv, ln, err := startUI(opts, stderr)
			if err != nil {
				return err
			}
			ctx, release := interruptContext(cmd.Context(), stderr, "stopping the dashboard")
			defer release()
			fmt.Fprintf(cmd.OutOrStdout(), "dagq ui: serving %s (Ctrl-C to stop)\n", ui.URL(ln))
			return srv.Serve(ctx, ln)
		},
	}
	fs := cmd.Flags()
	config.AddFlag(fs, "addr", "read-only")
	fs.BoolVar(&insecure, "insecure", false, "serve a non-loopback --addr without ui.token or ui.basic_auth: anyone who can reach it sees the runs and can terminate them")
	return cmd
}

// startUI builds the dashboard of opts and opens its listener. A refused
// configuration (a non-loopback address without authentication) is a usage
// error; an unprotected non-loopback one (--insecure) is warned about.
func startUI(opts ui.Options, stderr io.Writer) (*ui.Server, net.Listener, error) {
	if opts.Logger == nil && opts.Runtime != nil {
		opts.Logger = opts.Runtime.Logger
	}
	srv, err := ui.New(opts)
	if errors.Is(err, ui.ErrInsecureBind) {
		return nil, nil, exitErr(ExitUsage, err)
	}
	if err != nil {
		return nil, nil, err
	}
	if !config.LoopbackAddr(opts.Addr) && opts.Token == "" && opts.BasicAuth == "" {
		fmt.Fprintf(stderr, "dagq: warning: the dashboard on %s has no authentication (--insecure): anyone who can reach it sees the runs and can terminate them\n", opts.Addr)
	}
	ln, err := ui.Listen(opts.Addr)
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return srv, ln, nil
}
