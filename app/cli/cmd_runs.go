package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// The commands about launched runs: status, health, terminate. Each loads
// the configuration, refuses a fresh embedded transport (its state store
// would be empty), and works on a session's Launcher.

// runSession loads the configuration for a command about run RUNID and
// returns its runtime.
func (c *cli) runSession(cmd *cobra.Command, what string) (session, error) {
	cfg, _, err := c.loadConfig(cmd)
	if err != nil {
		return session{}, err
	}
	if err := c.needSharedTransport(what, cfg); err != nil {
		return session{}, err
	}
	return c.runtime(cmd.ErrOrStderr(), cfg)
}

// runErr turns a Launcher error about run runID into a command error with
// its exit code: ExitNotFound for an unknown run, ExitUsage for an invalid
// run ID.
func runErr(rt session, runID string, err error) error {
	switch {
	case errors.Is(err, dag.ErrRunNotFound):
		return exitErr(ExitNotFound, fmt.Errorf("no run %s: the state store of transport %s has no record of it", runID, rt.Config.Transport))
	case errors.Is(err, ports.ErrInvalidArgument):
		return exitErr(ExitUsage, err)
	}
	return err
}

func (c *cli) statusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status RUNID",
		Short: "Show a launched run: its state, worker and every step",
		Long: `status prints the record of a launched run: its state (queued, running,
succeeded, failed, cancelled), the worker that runs it and how many executions it
had (attempt), its times and error, then a table of its steps: STEP, TASK, STATE,
ATTEMPTS, DURATION (so far, for a running step), WORKER (the worker that recorded
the step's result, read from the result backend for every finished step; "-"
while unknown) and ERROR (cut to fit on a terminal, whole otherwise). While the
run runs, the step states are written at most once per
launcher.heartbeat_interval, so they lag by up to that much.

--output json prints the record as JSON (see docs/launcher.md), every step with
its "worker" when known.

It needs a shared transport: on the memory transport runs live only inside the
"dagq launch" process.

Exit status: 0 when the run is known (whatever its state), 3 when it is not,
1 when the state store cannot be read, 2 for bad arguments or transport memory.`,
		Args: exactArgs(1, "the run ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			rt, err := c.runSession(cmd, "status")
			if err != nil {
				return err
			}
			defer rt.close()
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			rec, err := rt.Launcher.Status(ctx, args[0])
			if err != nil {
				return runErr(rt, args[0], err)
			}
			workers := stepWorkers(ctx, rt.Ports.Results, rec)
			if output == "json" {
				return writeJSON(out, newStatusJSON(rec, workers))
			}
			return writeStatus(out, rec, time.Now(), stepTable{workers: workers, width: termWidth(out)})
		},
	}
	addOutputFlag(cmd.Flags(), &output, "text", "json")
	return cmd
}

// healthExit maps a health status to the exit code of dagq health.
func healthExit(s dag.HealthStatus) int {
	switch s {
	case dag.HealthRunning, dag.HealthSuccess, dag.HealthQueued:
		return ExitOK
	case dag.HealthFailed, dag.HealthCancelled:
		return ExitFailed
	case dag.HealthNotFound:
		return ExitNotFound
	}
	return ExitUnknown
}

// healthJSON is what dagq health --output json prints.
type healthJSON struct {
	RunID         string    `json:"run_id"`
	Status        string    `json:"status"`
	Message       string    `json:"message,omitempty"`
	Worker        string    `json:"worker,omitempty"`
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"`
}

func (c *cli) healthCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "health RUNID",
		Short: "Tell whether a launched run is alive, from its worker's heartbeats",
		Long: `health prints the health of a launched run and a sentence explaining it, from
its record and its worker's heartbeat (written every launcher.heartbeat_interval):

  QUEUED     waiting for a run worker
  RUNNING    its worker's heartbeat is fresh (not older than launcher.stale_after)
  SUCCESS    finished: succeeded
  FAILED     finished: failed; or its worker stopped heartbeating (died): the
             run task is redelivered to another worker after its lease expires,
             which resumes the run
  CANCELLED  finished: cancelled (terminated)
  NOT_FOUND  no such run
  UNKNOWN    the state store could not be read

--output json prints {"run_id", "status", "message", "worker", "last_heartbeat"}.
Use the workers' launcher.heartbeat_interval and launcher.stale_after here too.

It needs a shared transport: on the memory transport runs live only inside the
"dagq launch" process.

Exit status: 0 for RUNNING, SUCCESS and QUEUED; 1 for FAILED and CANCELLED;
3 for NOT_FOUND; 4 for UNKNOWN; 2 for bad arguments or transport memory.`,
		Args: exactArgs(1, "the run ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			rt, err := c.runSession(cmd, "health")
			if err != nil {
				return err
			}
			defer rt.close()
			h, err := rt.Launcher.Health(cmd.Context(), args[0])
			if errors.Is(err, ports.ErrInvalidArgument) {
				return exitErr(ExitUsage, err) // a malformed run ID, not a store failure
			}
			if output == "json" {
				if err := writeJSON(cmd.OutOrStdout(), healthJSON{RunID: args[0], Status: string(h.Status),
					Message: h.Message, Worker: h.Worker, LastHeartbeat: h.LastHeartbeat}); err != nil {
					return err
				}
			} else if h.Message != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", h.Status, h.Message)
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), h.Status)
			}
			return exitSilently(healthExit(h.Status))
		},
	}
	addOutputFlag(cmd.Flags(), &output, "text", "json")
	config.AddFlag(cmd.Flags(), "launcher-heartbeat-interval", "launcher-stale-after")
	return cmd
}

// terminateJSON is what dagq terminate --output json prints.
type terminateJSON struct {
	RunID      string `json:"run_id"`
	Terminated bool   `json:"terminated"`
	State      string `json:"state"`
}

func (c *cli) terminateCmd() *cobra.Command {
	var (
		output string
		wait   bool
	)
	cmd := &cobra.Command{
		Use:   "terminate RUNID",
		Short: "Cancel a queued or running launched run and all its steps",
		Long: `terminate cancels a launched run. A queued run is cancelled before it starts. A
running run gets a cancel request, and so does every step not finished: the
worker running it cancels the steps in flight, waits for them (up to the run's
executor.cancel_wait) and records the run cancelled. terminate does not wait
for that unless --wait.

It prints whether the run was terminated, and needs cancellation.enabled (the
cancel channel) for a running run, and a shared transport: on the memory
transport runs live only inside the "dagq launch" process.

Exit status: 0 when the run was terminated, 1 when it had already finished
(nothing to do) or the cancellation could not be sent, 3 when the run is
unknown, 2 for bad arguments or transport memory.`,
		Args: exactArgs(1, "the run ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			runID := args[0]
			rt, err := c.runSession(cmd, "terminate")
			if err != nil {
				return err
			}
			defer rt.close()
			ctx := cmd.Context()
			ok, err := rt.Launcher.Terminate(ctx, runID)
			switch {
			case errors.Is(err, ports.ErrUnsupported) && rt.Ports.Cancels == nil:
				return fmt.Errorf("terminate run %s: a running run needs the cancel channel, and cancellation.enabled is false; "+
					"set it to true (--cancellation, %s) here and on the workers", runID, config.EnvName("cancellation.enabled"))
			case err != nil:
				return runErr(rt, runID, err)
			}
			var rec dag.RunRecord
			if ok && wait {
				rec, err = rt.Launcher.Wait(ctx, runID)
			} else {
				rec, err = rt.Launcher.Status(ctx, runID)
			}
			if err != nil {
				return runErr(rt, runID, err)
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				if err := writeJSON(out, terminateJSON{RunID: runID, Terminated: ok, State: string(rec.State)}); err != nil {
					return err
				}
			} else {
				switch {
				case !ok:
					fmt.Fprintf(out, "run %s not terminated: it had already finished (%s)\n", runID, rec.State)
				case rec.State.Final():
					fmt.Fprintf(out, "run %s terminated: %s\n", runID, rec.State)
				default:
					fmt.Fprintf(out, "run %s terminated: cancel requested; it ends cancelled once its steps stopped (dagq status %s)\n", runID, runID)
				}
			}
			if !ok {
				return exitSilently(ExitFailed)
			}
			return nil
		},
	}
	addOutputFlag(cmd.Flags(), &output, "text", "json")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "wait until the run ended and print its final state")
	return cmd
}
