package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// Fleet-wide concurrency pools (issue 15) on the emulators, with three
// "dagq worker" processes of 4 slots each configured with pools: {db: 3}
// (DAGQ_POOLS):
//
//   - a job of 30 independent steps with pool: db, run with dagq run: every
//     step succeeds at its first attempt, and the handler journals of the
//     three processes show at most 3 of them running at any moment — and 3
//     at some moment;
//   - 18 tasks of 2.5s of the pool submitted at once, and a worker process
//     killed with SIGKILL while it holds a slot it renewed (its slot records
//     in the bucket say so): each slot it held is taken by another task once the slot's
//     lease ends (worker.pool_lease: never before), within the lease and a
//     waiter's re-check after the kill; every task succeeds, and never more
//     than 3 ran at once.
func TestFault_PoolLimit(t *testing.T) {
	const (
		limit     = 3
		poolLease = 3 * time.Second
		poolPoll  = time.Second // SQS delays are whole seconds
		steps     = 30
		sleep     = "1s"
		longSleep = "2500ms"        // renewed twice (every pool_lease/3)
		lease     = 8 * time.Second // step leases that a loaded machine keeps extending
	)
	cfg, flags := sqsEnv(t)
	c := newFaultCluster(t, cfg, flags, 4, faultEnv(lease, 2*time.Second,
		fmt.Sprintf("DAGQ_POOLS=db=%d", limit),
		"DAGQ_WORKER_POOL_LEASE="+poolLease.String(),
		"DAGQ_WORKER_POOL_POLL="+poolPoll.String()))
	procs := []*e2eProc{c.start("worker1"), c.start("worker2"), c.start("worker3")}

	t.Run("job of 30 steps", func(t *testing.T) {
		var job strings.Builder
		job.WriteString("name: pooled\nsteps:\n")
		for i := range steps {
			fmt.Fprintf(&job, "  - {name: s%02d, task: sleep, args: %q, pool: db}\n", i, sleep)
		}
		r := dagq(t, append([]string{"run", writeJob(t, job.String()), "--output", "json"}, flags...)...)
		require.Equal(t, cli.ExitOK, r.code, r.stderr)
		assert.Contains(t, r.stderr, `step "s00": pool "db" is not configured here (pools); the workers must have it`,
			"this process has no pools: the remote workers' configuration decides, with a warning")
		var res dag.RunResult
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
		require.Len(t, res.Steps, steps)
		var ids []string
		for _, s := range res.Steps {
			assert.Equal(t, dag.StepSucceeded, s.State, s.Name)
			assert.Equal(t, 1, s.Attempts, "%s: waiting for a slot costs no attempt", s.Name)
			ids = append(ids, s.TaskID)
		}
		runs := handlerRuns(t, procs, ids)
		require.Len(t, runs, steps, "every step ran once")
		most, at := maxOverlap(runs)
		assert.Equal(t, limit, most, "at most %d steps of the pool ran at once, and %d did (at %v)", limit, limit, at)
		// The results tell the same: their start and end times, recorded by the workers.
		var fromResults []handlerRun
		for _, s := range res.Steps {
			fromResults = append(fromResults, handlerRun{id: s.TaskID, start: s.StartedAt, end: s.FinishedAt})
		}
		most, _ = maxOverlap(fromResults)
		assert.Equal(t, limit, most, "the results' start and end times agree")
		t.Logf("30 steps of 1s in a pool of %d over 3 workers of 4 slots: %v", limit, res.FinishedAt.Sub(res.StartedAt).Round(time.Millisecond))
	})

	t.Run("kill -9 of a holder", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		const tasks = 18
		arg, _ := json.Marshal(longSleep)
		reqs := make([]core.Request, tasks)
		ids := make([]string, tasks)
		for i := range reqs {
			ids[i] = fmt.Sprintf("pk-%02d-%x", i, time.Now().UnixNano())
			reqs[i] = core.Request{ID: ids[i], Task: builtin.Sleep, Args: json.RawMessage(arg), Pool: "db"}
		}
		_, err := c.rt.Client.SubmitBatch(ctx, reqs...)
		require.NoError(t, err)

		// Kill a process while it runs a task of the pool and holds its
		// slot, renewed at least once (the slot records say so:
		// pools/db/slots/<i>).
		var (
			victim *e2eProc
			held   map[string]poolSlot // the victim's slots, by key
		)
		waitJournal(t, procs, time.Minute, func([]journalEntry) error {
			for _, p := range procs {
				if len(inHandler(t, p)) == 0 {
					continue
				}
				held = map[string]poolSlot{}
				for key, s := range readSlots(ctx, t, c, limit) {
					if s.Worker == p.stepWorker && s.Task != "" && s.Until.Sub(s.Since) > poolLease {
						held[key] = s
					}
				}
				if len(held) > 0 {
					victim = p
					return nil
				}
			}
			return fmt.Errorf("no process runs a task of the pool")
		})
		running := inHandler(t, victim)
		victim.kill9(t)
		killed := time.Now()

		// Watch the victim's slots until another task holds each.
		taken := map[string]time.Time{}
		for len(taken) < len(held) {
			require.NoError(t, ctx.Err(), "the killed worker's slots were not all taken again: %v", taken)
			now := time.Now()
			for key, s := range readSlots(ctx, t, c, limit) {
				if _, ok := held[key]; ok && taken[key].IsZero() && s.Task != "" && s.Worker != victim.stepWorker {
					taken[key] = now
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		for key, s := range held {
			assert.False(t, taken[key].Before(s.Until), "%s was taken at %v, before the killed holder's lease ended (%v)",
				key, taken[key], s.Until)
			assert.LessOrEqual(t, taken[key].Sub(killed), poolLease+2*poolPoll+time.Second,
				"%s was taken within its lease and the next waiter's re-check", key)
			t.Logf("killed %s holding %s (until %v after the kill); taken again %v after the kill (pool lease %v, poll %v)",
				victim.name, key, s.Until.Sub(killed).Round(time.Millisecond), taken[key].Sub(killed).Round(time.Millisecond), poolLease, poolPoll)
		}

		results := getAllWhenDone(ctx, t, c, ids)
		for _, id := range ids {
			assert.Equal(t, ports.StateSucceeded, results[id].State, "%s: %s", id, results[id].Error)
		}
		// Never more than the limit at once: the victim's tasks count as
		// running until the kill.
		live := slices.DeleteFunc(slices.Clone(procs), func(p *e2eProc) bool { return p == victim })
		runs := handlerRuns(t, live, ids)
		for _, h := range running {
			runs = append(runs, handlerRun{id: h.TaskID, start: h.At, end: killed})
		}
		most, _ := maxOverlap(runs)
		assert.LessOrEqual(t, most, limit, "never more than %d at once", limit)
	})
}

// poolSlot is a slot record of a concurrency pool (core's, as stored).
type poolSlot struct {
	Worker string    `json:"worker"`
	Task   string    `json:"task"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
}

// readSlots reads the slot records of pool db (a missing one is left out).
func readSlots(ctx context.Context, t *testing.T, c *faultCluster, limit int) map[string]poolSlot {
	t.Helper()
	out := map[string]poolSlot{}
	for i := range limit {
		key := fmt.Sprintf("pools/db/slots/%d", i)
		r, err := c.rt.Ports.State.Get(ctx, key)
		if errors.Is(err, ports.ErrNotFound) {
			continue
		}
		require.NoError(t, err)
		var s poolSlot
		require.NoError(t, json.Unmarshal(r.Data, &s), key)
		out[key] = s
	}
	return out
}

// handlerRun is one handler run of a task: from its start to its end.
type handlerRun struct {
	id         string
	start, end time.Time
}

// handlerRuns returns the complete handler runs (a start and its end) of
// the tasks ids in the journals of procs.
func handlerRuns(t *testing.T, procs []*e2eProc, ids []string) []handlerRun {
	t.Helper()
	type key struct {
		id      string
		attempt int
		proc    *e2eProc
	}
	starts := map[key]time.Time{}
	var out []handlerRun
	for _, e := range journals(t, procs...) {
		if !slices.Contains(ids, e.TaskID) {
			continue
		}
		k := key{e.TaskID, e.Attempt, e.proc}
		switch e.Event {
		case journalStart:
			starts[k] = e.At
		case journalEnd:
			if s, ok := starts[k]; ok {
				out = append(out, handlerRun{id: e.TaskID, start: s, end: e.At})
			}
		}
	}
	return out
}

// maxOverlap returns the most runs that overlap at one moment (a run that
// ends at the moment another starts does not overlap it), and that moment.
func maxOverlap(runs []handlerRun) (int, time.Time) {
	type ev struct {
		at    time.Time
		delta int
	}
	var evs []ev
	for _, r := range runs {
		evs = append(evs, ev{r.start, 1}, ev{r.end, -1})
	}
	slices.SortFunc(evs, func(a, b ev) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta // ends first
	})
	cur, most := 0, 0
	var at time.Time
	for _, e := range evs {
		cur += e.delta
		if cur > most {
			most, at = cur, e.at
		}
	}
	return most, at
}

// getAllWhenDone waits for the tasks ids to finish (their completions) and
// returns their results.
func getAllWhenDone(ctx context.Context, t *testing.T, c *faultCluster, ids []string) map[string]ports.Result {
	t.Helper()
	_, err := c.rt.Client.WaitAll(ctx, ids...)
	require.NoError(t, err)
	return getAll(ctx, t, c.rt.Ports.Results, ids)
}
