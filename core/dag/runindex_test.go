package dag_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/internal/testutil"
	"github.com/dagq/dagq/ports"
	"github.com/dagq/dagq/ports/portsmock"
)

// The run index (Launcher.ListRuns) over the memory adapters, on
// synctest's fake clock.

// list is ListRuns on x's launcher, failing the test on an error.
func (x *lnWorld) list(opts dag.ListRunsOptions) ([]dag.RunSummary, string) {
	x.t.Helper()
	runs, next, err := x.launcher.ListRuns(context.Background(), opts)
	require.NoError(x.t, err)
	return runs, next
}

// listIDs is list's run IDs.
func (x *lnWorld) listIDs(opts dag.ListRunsOptions) ([]string, string) {
	x.t.Helper()
	runs, next := x.list(opts)
	return runIDs(runs), next
}

func runIDs(runs []dag.RunSummary) []string {
	ids := []string{}
	for _, r := range runs {
		ids = append(ids, r.RunID)
	}
	return ids
}

// listStates lists every run and returns their states by run ID.
func (x *lnWorld) listStates() map[string]dag.RunState {
	x.t.Helper()
	runs, next := x.list(dag.ListRunsOptions{Limit: dag.MaxListRunsLimit})
	require.Empty(x.t, next)
	m := map[string]dag.RunState{}
	for _, r := range runs {
		_, dup := m[r.RunID]
		require.False(x.t, dup, "run %s listed twice", r.RunID)
		m[r.RunID] = r.State
	}
	return m
}

// indexKeys returns the keys of the run index.
func indexKeys(t *testing.T, state ports.StateStore) []string {
	t.Helper()
	keys, more, err := state.(ports.KeyLister).ListKeys(context.Background(), "runindex/", "", ports.MaxListKeys)
	require.NoError(t, err)
	require.False(t, more)
	return keys
}

// summaryOf is what the index should say about a run, from its record.
func (x *lnWorld) summaryOf(runID string) dag.RunSummary {
	x.t.Helper()
	rec := x.status(runID)
	return dag.RunSummary{RunID: rec.RunID, Job: rec.Job, State: rec.State, CreatedAt: rec.CreatedAt, FinishedAt: rec.FinishedAt}
}

// countingState counts the Gets and ListKeys calls of a memory state store.
type countingState struct {
	ports.StateStore
	gets, lists atomic.Int64
}

func (s *countingState) Get(ctx context.Context, key string) (ports.Record, error) {
	s.gets.Add(1)
	return s.StateStore.Get(ctx, key)
}

func (s *countingState) ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, bool, error) {
	s.lists.Add(1)
	return s.StateStore.(ports.KeyLister).ListKeys(ctx, prefix, after, limit)
}

// counted returns a Launcher on x's client and store whose store calls
// are counted.
func (x *lnWorld) counted() (*dag.Launcher, *countingState) {
	x.t.Helper()
	cs := &countingState{StateStore: x.state}
	l, err := dag.NewLauncher(dag.LauncherOptions{Client: x.client, State: cs, Logger: testutil.QuietLogger()})
	require.NoError(x.t, err)
	return l, cs
}

// The index follows every run from launch (queued) through its start
// (running) to its end (succeeded, failed, cancelled by Terminate while
// queued or running), newest first, with one key per run; filters by
// state, job and creation time read no record.
func TestListRuns_NewestFirstStateMovesAndFilters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		failing := dag.Job{Name: "failing", Steps: []dag.Step{lnStep("bad", lnArgs{Sleep: 20 * time.Second, Fail: "disk full"})}}
		blocker := dag.Job{Name: "blocker", Steps: []dag.Step{lnStep("wait", lnArgs{Block: true})}}
		for _, l := range []struct {
			id  string
			job dag.Job
		}{{"r1", lnChain}, {"r2", failing}, {"r3", blocker}, {"r4", lnChain}} {
			_, err := x.launcher.Launch(ctx, l.job, dag.LaunchOptions{RunID: l.id})
			require.NoError(t, err)
			time.Sleep(time.Second)
		}

		// Queued, newest first, as their records say.
		runs, next := x.list(dag.ListRunsOptions{})
		assert.Empty(t, next)
		require.Equal(t, []string{"r4", "r3", "r2", "r1"}, runIDs(runs))
		for _, r := range runs {
			assert.Equal(t, x.summaryOf(r.RunID), r)
			assert.Equal(t, dag.RunQueued, r.State)
			assert.True(t, r.FinishedAt.IsZero())
		}
		assert.Len(t, indexKeys(t, x.state), 4)

		// Terminated while queued: cancelled, with its finish time.
		ok, err := x.launcher.Terminate(ctx, "r4")
		require.NoError(t, err)
		require.True(t, ok)
		runs, _ = x.list(dag.ListRunsOptions{Limit: 1})
		require.Len(t, runs, 1)
		assert.Equal(t, x.summaryOf("r4"), runs[0])
		assert.Equal(t, dag.RunCancelled, runs[0].State)
		assert.Equal(t, time.Now().UTC(), runs[0].FinishedAt)

		// Started: running.
		x.startWorker("w1", nil)
		require.Equal(t, "wait", <-x.calls.started)
		time.Sleep(5 * time.Second)
		assert.Equal(t, map[string]dag.RunState{"r1": "running", "r2": "running", "r3": "running", "r4": "cancelled"}, x.listStates())
		ids, _ := x.listIDs(dag.ListRunsOptions{State: dag.RunRunning})
		assert.Equal(t, []string{"r3", "r2", "r1"}, ids)
		assert.Len(t, indexKeys(t, x.state), 4, "the queued keys went")

		// Finished: succeeded and failed, with their finish times.
		time.Sleep(30 * time.Second)
		assert.Equal(t, map[string]dag.RunState{"r1": "succeeded", "r2": "failed", "r3": "running", "r4": "cancelled"}, x.listStates())
		runs, _ = x.list(dag.ListRunsOptions{})
		for _, r := range runs {
			assert.Equal(t, x.summaryOf(r.RunID), r, r.RunID)
		}
		assert.Len(t, indexKeys(t, x.state), 4, "the running keys went")

		// Terminated while running: the run task records it cancelled.
		ok, err = x.launcher.Terminate(ctx, "r3")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, dag.RunCancelled, x.wait("r3").State)
		assert.Equal(t, map[string]dag.RunState{"r1": "succeeded", "r2": "failed", "r3": "cancelled", "r4": "cancelled"}, x.listStates())
		assert.Len(t, indexKeys(t, x.state), 4)

		// Filters, from the keys alone.
		l, counts := x.counted()
		for _, c := range []struct {
			opts dag.ListRunsOptions
			want []string
		}{
			{dag.ListRunsOptions{}, []string{"r4", "r3", "r2", "r1"}},
			{dag.ListRunsOptions{State: dag.RunCancelled}, []string{"r4", "r3"}},
			{dag.ListRunsOptions{State: dag.RunFailed}, []string{"r2"}},
			{dag.ListRunsOptions{State: dag.RunQueued}, []string{}},
			{dag.ListRunsOptions{Job: "chain"}, []string{"r4", "r1"}},
			{dag.ListRunsOptions{Job: "chain", State: dag.RunSucceeded}, []string{"r1"}},
			{dag.ListRunsOptions{Job: "chai"}, []string{}},
			{dag.ListRunsOptions{Since: x.summaryOf("r2").CreatedAt}, []string{"r4", "r3", "r2"}},
			{dag.ListRunsOptions{Since: x.summaryOf("r2").CreatedAt.Add(time.Nanosecond)}, []string{"r4", "r3"}},
			{dag.ListRunsOptions{Since: time.Now()}, []string{}},
			{dag.ListRunsOptions{Since: x.summaryOf("r1").CreatedAt, State: dag.RunCancelled, Job: "blocker"}, []string{"r3"}},
		} {
			counts.lists.Store(0)
			runs, next, err := l.ListRuns(ctx, c.opts)
			require.NoError(t, err)
			assert.Equal(t, c.want, runIDs(runs), "%+v", c.opts)
			assert.Empty(t, next, "%+v", c.opts)
			assert.Equal(t, int64(1), counts.lists.Load(), "one LIST: %+v", c.opts)
		}
		assert.Zero(t, counts.gets.Load(), "no run record was read")
	})
}

// Pages of Limit runs, newest first, with a cursor until nothing is left;
// filtered pages too; an unfiltered page is one LIST of Limit+1 keys.
func TestListRuns_Paging(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		for i := 1; i <= 7; i++ {
			_, err := x.launcher.Launch(ctx, lnChain, dag.LaunchOptions{RunID: fmt.Sprintf("r%d", i)})
			require.NoError(t, err)
			time.Sleep(time.Second)
		}
		// all pages the options give, and the number of LISTs of each.
		l, counts := x.counted()
		all := func(opts dag.ListRunsOptions) ([][]string, []int64) {
			t.Helper()
			var pages [][]string
			var lists []int64
			for {
				counts.lists.Store(0)
				runs, next, err := l.ListRuns(ctx, opts)
				require.NoError(t, err)
				pages = append(pages, runIDs(runs))
				lists = append(lists, counts.lists.Load())
				if next == "" {
					return pages, lists
				}
				require.Less(t, len(pages), 20, "paging does not end")
				opts.Cursor = next
			}
		}
		pages, lists := all(dag.ListRunsOptions{Limit: 3})
		assert.Equal(t, [][]string{{"r7", "r6", "r5"}, {"r4", "r3", "r2"}, {"r1"}}, pages)
		assert.Equal(t, []int64{1, 1, 1}, lists)
		pages, _ = all(dag.ListRunsOptions{Limit: 1})
		assert.Equal(t, [][]string{{"r7"}, {"r6"}, {"r5"}, {"r4"}, {"r3"}, {"r2"}, {"r1"}}, pages)
		pages, _ = all(dag.ListRunsOptions{Limit: 7})
		assert.Equal(t, [][]string{{"r7", "r6", "r5", "r4", "r3", "r2", "r1"}}, pages, "no cursor when the page holds the rest")
		pages, _ = all(dag.ListRunsOptions{})
		assert.Equal(t, [][]string{{"r7", "r6", "r5", "r4", "r3", "r2", "r1"}}, pages, "50 by default")
		pages, _ = all(dag.ListRunsOptions{Limit: 4, Since: x.summaryOf("r4").CreatedAt})
		assert.Equal(t, [][]string{{"r7", "r6", "r5", "r4"}}, pages, "nothing more since then")

		for _, id := range []string{"r2", "r4", "r6"} {
			_, err := x.launcher.Terminate(ctx, id)
			require.NoError(t, err)
		}
		pages, _ = all(dag.ListRunsOptions{Limit: 2, State: dag.RunCancelled})
		assert.Equal(t, [][]string{{"r6", "r4"}, {"r2"}}, pages)
		pages, _ = all(dag.ListRunsOptions{Limit: 2, State: dag.RunQueued})
		assert.Equal(t, [][]string{{"r7", "r5"}, {"r3", "r1"}}, pages, "no cursor: no queued run is left after r1")
		pages, _ = all(dag.ListRunsOptions{Limit: 2, State: dag.RunQueued, Since: x.summaryOf("r5").CreatedAt})
		assert.Equal(t, [][]string{{"r7", "r5"}}, pages)
		assert.Zero(t, counts.gets.Load())

		// A run whose state changes after its page was listed (its new key
		// sorts after its old one) is not listed again.
		runs, next := x.list(dag.ListRunsOptions{Limit: 3})
		require.Equal(t, []string{"r7", "r6", "r5"}, runIDs(runs))
		rec := x.status("r5")
		rec.State = dag.RunRunning
		_, err := x.state.Put(ctx, dag.RunIndexKey(rec), nil, ports.WriteCondition{})
		require.NoError(t, err)
		ids, _ := x.listIDs(dag.ListRunsOptions{Limit: 2, Cursor: next})
		assert.Equal(t, []string{"r4", "r3"}, ids)
	})
}

// A key left behind by a crash between a state change's write and its
// delete: the run is listed once, in its later state, also when its keys
// straddle a page boundary, and a state filter does not see the old one.
func TestListRuns_DedupesALeftoverKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		x.startWorker("w1", nil)
		quick := dag.Job{Name: "quick", Steps: []dag.Step{lnStep("a", lnArgs{Sleep: time.Second})}}
		for _, id := range []string{"a", "b", "c"} {
			_, err := x.launcher.Launch(ctx, quick, dag.LaunchOptions{RunID: id})
			require.NoError(t, err)
			time.Sleep(time.Second)
		}
		for _, id := range []string{"a", "b", "c"} {
			require.Equal(t, dag.RunSucceeded, x.wait(id).State)
		}
		require.Len(t, indexKeys(t, x.state), 3)
		// b's running and queued keys, as a crash would have left them.
		for _, st := range []dag.RunState{dag.RunRunning, dag.RunQueued} {
			rec := x.status("b")
			rec.State, rec.FinishedAt = st, time.Time{}
			_, err := x.state.Put(ctx, dag.RunIndexKey(rec), nil, ports.WriteCondition{})
			require.NoError(t, err)
		}
		require.Len(t, indexKeys(t, x.state), 5)

		runs, next := x.list(dag.ListRunsOptions{})
		assert.Empty(t, next)
		require.Equal(t, []string{"c", "b", "a"}, runIDs(runs))
		assert.Equal(t, x.summaryOf("b"), runs[1])
		for _, limit := range []int{1, 2} {
			var ids []string
			opts := dag.ListRunsOptions{Limit: limit}
			for {
				runs, next := x.list(opts)
				ids = append(ids, runIDs(runs)...)
				if next == "" {
					break
				}
				require.Less(t, len(ids), 10, "paging does not end")
				opts.Cursor = next
			}
			assert.Equal(t, []string{"c", "b", "a"}, ids, "Limit %d", limit)
		}
		for _, st := range []dag.RunState{dag.RunRunning, dag.RunQueued} {
			ids, _ := x.listIDs(dag.ListRunsOptions{State: st})
			assert.Empty(t, ids, st)
		}
	})
}

// A run whose worker died, ended by Terminate (endOrphan), is listed
// cancelled.
func TestListRuns_TerminatedOrphan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		w1 := x.startWorker("w1", nil)
		job := dag.Job{Name: "orphan", Steps: []dag.Step{lnStep("a", lnArgs{BlockOn: "w1"})}}
		_, err := x.launcher.Launch(ctx, job, dag.LaunchOptions{RunID: "o1"})
		require.NoError(t, err)
		require.Equal(t, "a", <-x.calls.started)
		assert.Equal(t, map[string]dag.RunState{"o1": "running"}, x.listStates())
		w1.dead.Store(true)
		time.Sleep(16 * time.Second) // stale
		ok, err := x.launcher.Terminate(ctx, "o1")
		require.NoError(t, err)
		require.True(t, ok)
		runs, _ := x.list(dag.ListRunsOptions{})
		require.Len(t, runs, 1)
		assert.Equal(t, dag.RunCancelled, runs[0].State)
		assert.Equal(t, x.summaryOf("o1"), runs[0])
		assert.Len(t, indexKeys(t, x.state), 1)
	})
}

// A run whose submission failed is listed failed.
func TestListRuns_FailedLaunch(t *testing.T) {
	ctrl := gomock.NewController(t)
	broker := portsmock.NewMockBroker(ctrl)
	tr := memory.NewTransport()
	c, err := core.NewClient(core.ClientOptions{
		Ports:  core.Ports{Broker: broker, Results: tr.ResultBackend(), NoCancel: true},
		Logger: testutil.QuietLogger(),
	})
	require.NoError(t, err)
	defer c.Close()
	state := tr.StateStore()
	l, err := dag.NewLauncher(dag.LauncherOptions{Client: c, State: state, Logger: testutil.QuietLogger()})
	require.NoError(t, err)
	broker.EXPECT().Send(gomock.Any(), gomock.Any()).Return(fmt.Errorf("sqs: %w", ports.ErrUnavailable))
	_, err = l.Launch(context.Background(), lnChain, dag.LaunchOptions{RunID: "nosend"})
	require.ErrorIs(t, err, ports.ErrUnavailable)
	runs, next, err := l.ListRuns(context.Background(), dag.ListRunsOptions{})
	require.NoError(t, err)
	assert.Empty(t, next)
	require.Len(t, runs, 1)
	assert.Equal(t, "nosend", runs[0].RunID)
	assert.Equal(t, dag.RunFailed, runs[0].State)
	assert.False(t, runs[0].FinishedAt.IsZero())
	assert.Len(t, indexKeys(t, state), 1)
}

// Runs launched before the index existed (a record without a key) are not
// listed until their state changes.
func TestListRuns_RunWithoutAKeyAppearsAtItsNextStateChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		x.putRecord(dag.RunRecord{RunID: "old", Job: "j", State: dag.RunQueued, TaskID: dag.RunTaskID("old"),
			CreatedAt: time.Now().Add(-time.Hour).UTC()}, nil)
		ids, next := x.listIDs(dag.ListRunsOptions{})
		assert.Empty(t, ids)
		assert.Empty(t, next)
		ok, err := x.launcher.Terminate(context.Background(), "old")
		require.NoError(t, err)
		require.True(t, ok)
		runs, _ := x.list(dag.ListRunsOptions{})
		require.Len(t, runs, 1)
		assert.Equal(t, x.summaryOf("old"), runs[0])
	})
}

// Any job name and run ID fit in a key: escaped, and a job name too long
// for the key cut and hashed — then the run's record gives the whole name,
// and a job filter still tells names apart that share the beginning.
func TestListRuns_AnyJobNameAndRunID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newLnWorld(t, false)
		ctx := context.Background()
		long := strings.Repeat("ünïcödé/", 60) // 600 bytes, 1,020 escaped
		jobs := map[string]string{
			"plain":                  "nightly",
			"odd.run%id~/x":          "etl v2.1 / ✓ 100%",
			strings.Repeat("%", 124): long + "A",
			"long-b":                 long + "B",
		}
		for id, job := range jobs {
			_, err := x.launcher.Launch(ctx, dag.Job{Name: job, Steps: []dag.Step{lnStep("a", lnArgs{})}}, dag.LaunchOptions{RunID: id})
			require.NoError(t, err, id)
			time.Sleep(time.Second)
		}
		keys := indexKeys(t, x.state)
		require.Len(t, keys, len(jobs))
		for _, k := range keys {
			assert.NoError(t, ports.ValidateKey(k))
			assert.LessOrEqual(t, len(k), ports.MaxKeyLen)
		}
		l, counts := x.counted()
		runs, _, err := l.ListRuns(ctx, dag.ListRunsOptions{})
		require.NoError(t, err)
		require.Len(t, runs, len(jobs))
		for _, r := range runs {
			assert.Equal(t, jobs[r.RunID], r.Job, r.RunID)
			assert.Equal(t, x.summaryOf(r.RunID), r)
		}
		assert.Equal(t, int64(2), counts.gets.Load(), "the records of the two runs whose job name was cut")
		for id, job := range jobs {
			ids, _ := x.listIDs(dag.ListRunsOptions{Job: job})
			assert.Equal(t, []string{id}, ids, job)
		}
		ids, _ := x.listIDs(dag.ListRunsOptions{Job: long + "C"})
		assert.Empty(t, ids)
		ids, _ = x.listIDs(dag.ListRunsOptions{Job: long})
		assert.Empty(t, ids)
	})
}

// A filter that matches rarely scans at most 10 LISTs per call (of Limit+1
// keys, then 8 times as many each time, up to 1,000), then returns what it
// found with a cursor to go on from. (Keys planted without records: the
// listing reads none.)
func TestListRuns_ScanBudget(t *testing.T) {
	tr := memory.NewTransport()
	state := tr.StateStore()
	ctx := context.Background()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 12_000
	for i := range n {
		rec := dag.RunRecord{RunID: fmt.Sprintf("p%05d", i), Job: "j", State: dag.RunSucceeded,
			CreatedAt: t0.Add(time.Duration(i) * time.Second), FinishedAt: t0.Add(time.Duration(i+1) * time.Second)}
		if i == 0 || i == n-1 {
			rec.State = dag.RunFailed
		}
		_, err := state.Put(ctx, dag.RunIndexKey(rec), nil, ports.WriteCondition{})
		require.NoError(t, err)
	}
	c, err := core.NewClient(core.ClientOptions{Ports: core.Ports{Broker: tr.Broker("q"), Results: tr.ResultBackend(), NoCancel: true},
		Logger: testutil.QuietLogger()})
	require.NoError(t, err)
	defer c.Close()
	cs := &countingState{StateStore: state}
	l, err := dag.NewLauncher(dag.LauncherOptions{Client: c, State: cs, Logger: testutil.QuietLogger()})
	require.NoError(t, err)

	runs, next, err := l.ListRuns(ctx, dag.ListRunsOptions{State: dag.RunFailed, Limit: 1})
	require.NoError(t, err)
	assert.Equal(t, []string{"p11999"}, runIDs(runs))
	assert.NotEmpty(t, next, "the scan stopped at the page's end, before knowing")
	assert.Equal(t, int64(1), cs.lists.Load())

	cs.lists.Store(0)
	runs, next, err = l.ListRuns(ctx, dag.ListRunsOptions{State: dag.RunFailed, Limit: 1, Cursor: next})
	require.NoError(t, err)
	assert.Empty(t, runs, "2+16+128+7×1,000 keys scanned without a match")
	assert.NotEmpty(t, next)
	assert.Equal(t, int64(10), cs.lists.Load())

	cs.lists.Store(0)
	runs, next, err = l.ListRuns(ctx, dag.ListRunsOptions{State: dag.RunFailed, Limit: 1, Cursor: next})
	require.NoError(t, err)
	assert.Equal(t, []string{"p00000"}, runIDs(runs))
	assert.Empty(t, next)
	assert.Equal(t, int64(8), cs.lists.Load(), "the 4,853 keys left: 2+16+128+5×1,000")
	assert.Equal(t, t0, runs[0].CreatedAt)
	assert.Equal(t, t0.Add(time.Second), runs[0].FinishedAt)
	assert.Zero(t, cs.gets.Load())

	// Unfiltered: one LIST of Limit+1 keys per page.
	cs.lists.Store(0)
	runs, next, err = l.ListRuns(ctx, dag.ListRunsOptions{Limit: 1000})
	require.NoError(t, err)
	assert.Len(t, runs, 1000)
	assert.NotEmpty(t, next)
	assert.Equal(t, int64(2), cs.lists.Load(), "1,001 keys: two LISTs of at most 1,000")
}

// Without ports.KeyLister ListRuns is unsupported; bad options are
// invalid arguments.
func TestListRuns_UnsupportedAndInvalid(t *testing.T) {
	tr := memory.NewTransport()
	c, err := core.NewClient(core.ClientOptions{Ports: core.Ports{Broker: tr.Broker("q"), Results: tr.ResultBackend(), NoCancel: true},
		Logger: testutil.QuietLogger()})
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()

	plain := struct{ ports.StateStore }{tr.StateStore()} // hides ListKeys
	l, err := dag.NewLauncher(dag.LauncherOptions{Client: c, State: plain, Logger: testutil.QuietLogger()})
	require.NoError(t, err)
	_, _, err = l.ListRuns(ctx, dag.ListRunsOptions{})
	require.ErrorIs(t, err, ports.ErrUnsupported)
	assert.ErrorContains(t, err, "ports.KeyLister")

	l, err = dag.NewLauncher(dag.LauncherOptions{Client: c, State: tr.StateStore(), Logger: testutil.QuietLogger()})
	require.NoError(t, err)
	for _, opts := range []dag.ListRunsOptions{
		{Limit: -1},
		{Limit: dag.MaxListRunsLimit + 1},
		{State: "done"},
		{Cursor: "r1"},
		{Cursor: "123.r1"},
		{Cursor: "9223372036854775807.r%zz"},
		{Cursor: "9223372036854775807."},
	} {
		_, _, err := l.ListRuns(ctx, opts)
		assert.ErrorIs(t, err, ports.ErrInvalidArgument, "%+v", opts)
	}
	runs, next, err := l.ListRuns(ctx, dag.ListRunsOptions{Limit: dag.MaxListRunsLimit, Cursor: "9223372036854775807.r1"})
	require.NoError(t, err)
	assert.Empty(t, runs)
	assert.Empty(t, next)
}
