package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/core/dag"
)

// Fault 7: the process driving a launched run of 200 steps is stopped in
// the middle of it — SIGKILL (nothing runs down) or SIGTERM (it releases the
// run). Another worker process takes the run over within
// launcher.stale_after + 5s; no step runs twice except one that was running
// on the killed process; every status read in between tells no lies (a step
// shown succeeded had finished, and stays succeeded); the run succeeds.
func TestFault_RunTakeover(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(signalName(sig), func(t *testing.T) { testRunTakeover(t, sig) })
	}
}

func testRunTakeover(t *testing.T, sig syscall.Signal) {
	const (
		layers, width = 20, 10 // 200 steps, each after the same column's step of the layer before
		stepSleep     = "300ms"
		lease         = 8 * time.Second // step leases that a loaded machine keeps extending
	)
	cfg, flags := sqsEnv(t) // launcher: heartbeat 200ms, stale_after 5s
	c := newFaultCluster(t, cfg, flags, 4, faultEnv(lease, 2*time.Second))
	// Run workers too (newFaultCluster's processes serve steps only).
	c.args = append([]string{"worker", "--concurrency", "4",
		"--launcher-heartbeat-interval", cfg.Launcher.HeartbeatInterval.String(),
		"--launcher-stale-after", cfg.Launcher.StaleAfter.String()}, flags...)
	procs := []*e2eProc{c.start("worker1"), c.start("worker2"), c.start("worker3")}
	byRunWorker := map[string]*e2eProc{}
	for _, p := range procs {
		byRunWorker[p.runWorker] = p
	}

	job := dag.Job{Name: "takeover"}
	arg, _ := json.Marshal(stepSleep)
	for l := range layers {
		for w := range width {
			s := dag.Step{Name: fmt.Sprintf("s%02d-%d", l, w), Task: builtin.Sleep, Args: arg}
			if l > 0 {
				s.Upstream = []string{fmt.Sprintf("s%02d-%d", l-1, w)}
			}
			job.Steps = append(job.Steps, s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	runID, err := c.rt.Launcher.Launch(ctx, job, dag.LaunchOptions{})
	require.NoError(t, err)

	// Let a third of the steps finish, then stop the process driving the run.
	var rec dag.RunRecord
	require.Eventually(t, func() bool {
		rec, err = c.rt.Launcher.Status(ctx, runID)
		require.NoError(t, err)
		return countSteps(rec, dag.StepSucceeded) >= layers*width/3
	}, 2*time.Minute, 100*time.Millisecond, "a third of the steps never finished")
	require.Equal(t, dag.RunRunning, rec.State)
	victim := byRunWorker[rec.Worker]
	require.NotNil(t, victim, "the run's worker %q is one of the processes", rec.Worker)
	stopped := time.Now()
	if sig == syscall.SIGKILL {
		victim.kill9(t)
	} else {
		require.NoError(t, victim.cmd.Process.Signal(syscall.SIGTERM))
	}

	// Read the status until the run ends; note the takeover.
	type read struct {
		at  time.Time
		rec dag.RunRecord
	}
	var reads []read
	var takenOver time.Duration
	for {
		rec, err = c.rt.Launcher.Status(ctx, runID)
		require.NoError(t, err)
		reads = append(reads, read{time.Now(), rec})
		if takenOver == 0 && rec.Attempt >= 2 {
			takenOver = time.Since(stopped)
		}
		if rec.State.Final() {
			break
		}
		require.NoError(t, ctx.Err(), "the run did not end")
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, dag.RunSucceeded, rec.State, rec.Error)
	require.NotZero(t, takenOver, "another execution took the run over")
	assert.NotEqual(t, victim.runWorker, rec.Worker)
	assert.LessOrEqual(t, takenOver, cfg.Launcher.StaleAfter+5*time.Second, "takeover within stale_after + 5s")

	// Every step ran once, except one the killed process was running.
	starts := c.starts()
	ends := map[string]time.Time{} // the first end of each task
	for _, e := range journals(t, c.procs...) {
		if e.Event == journalEnd && e.Err == "" {
			if at, ok := ends[e.TaskID]; !ok || e.At.Before(at) {
				ends[e.TaskID] = e.At
			}
		}
	}
	again := 0
	for _, s := range job.Steps {
		id := dag.StepTaskID(runID, s.Name)
		ss := starts[id]
		require.NotEmpty(t, ss, "%s never ran", s.Name)
		if len(ss) == 1 {
			continue
		}
		again++
		for _, e := range ss[:len(ss)-1] {
			assert.True(t, sig == syscall.SIGKILL && e.proc == victim && e.At.Before(stopped),
				"%s ran again, and its earlier run was not on the killed process (%s at %v)", s.Name, e.proc.name, e.At)
		}
	}
	// No lies: a step shown succeeded had finished by then, and stays succeeded.
	shown := map[string]bool{}
	for _, rd := range reads {
		for _, s := range rd.rec.Steps {
			if s.State == dag.StepSucceeded {
				end, ok := ends[s.TaskID]
				assert.True(t, ok && !end.After(rd.at), "%s shown succeeded at %v before its handler ended (%v)", s.Name, rd.at, end)
				shown[s.Name] = true
			} else if shown[s.Name] {
				assert.Failf(t, "a finished step went back", "%s shown %s at %v after it was shown succeeded", s.Name, s.State, rd.at)
			}
		}
	}
	t.Logf("%s to the run's process after %d of %d steps: taken over after %v (stale_after %v); %d status reads meanwhile, none wrong; %d steps ran again",
		signalName(sig), countSteps(reads[0].rec, dag.StepSucceeded), layers*width, takenOver.Round(time.Millisecond),
		cfg.Launcher.StaleAfter, len(reads), again)
}

// countSteps counts the steps of rec in state st.
func countSteps(rec dag.RunRecord, st dag.StepState) int {
	n := 0
	for _, s := range rec.Steps {
		if s.State == st {
			n++
		}
	}
	return n
}

func signalName(sig syscall.Signal) string {
	if sig == syscall.SIGKILL {
		return "SIGKILL"
	}
	return "SIGTERM"
}
