package porttest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/ports"
)

// TestResultBackend runs the ResultBackend conformance suite against the
// backends of h.
func TestResultBackend(t *testing.T, h ResultHarness) {
	e := newEnv(h.Features())
	tests := []struct {
		name string
		fn   func(*testing.T, env, ResultHarness)
		need need
	}{
		{"PutGet", testResultPutGet, needNothing},
		{"ResultIsCopied", testResultIsCopied, needNothing},
		{"GetMissing", testResultGetMissing, needNothing},
		{"SecondPutFails", testResultSecondPutFails, needNothing},
		{"RacingPuts", testResultRacingPuts, needNothing},
		{"InvalidResult", testResultInvalid, needNothing},
		{"VisibleAcrossBackends", testResultVisibleAcrossBackends, needNothing},
		{"Closed", testResultClosed, needNothing},
		{"Delete", testResultDelete, needResultDelete},
	}
	for _, tc := range tests {
		e.run(t, tc.name, tc.need, func(t *testing.T) { tc.fn(t, e, h) })
	}
}

// fullResult returns a result with every field set.
func fullResult(taskID string) ports.Result {
	started := time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("UTC+2", 2*3600))
	return ports.Result{
		TaskID:     taskID,
		State:      ports.StateSucceeded,
		Output:     []byte(`{"answer":42,"text":"ünïcødé ✓"}`),
		Error:      "",
		Attempts:   3,
		Worker:     "worker-a/pid-17",
		StartedAt:  started,
		FinishedAt: started.Add(1500 * time.Millisecond).UTC(),
	}
}

func testResultPutGet(t *testing.T, e env, h ResultHarness) {
	ctx := e.ctx(t)
	b := h.NewBackend(t, 1)[0]
	want := fullResult("task-1")
	require.NoError(t, b.Put(ctx, want))
	got, err := b.Get(ctx, "task-1")
	require.NoError(t, err)
	requireResultEqual(t, want, got)

	failed := ports.Result{TaskID: "task-2", State: ports.StateFailed, Error: "boom: exit status 1", Attempts: 5}
	require.NoError(t, b.Put(ctx, failed))
	got, err = b.Get(ctx, "task-2")
	require.NoError(t, err)
	requireResultEqual(t, failed, got)
	require.True(t, got.StartedAt.IsZero(), "a zero StartedAt stays zero")
	require.True(t, got.FinishedAt.IsZero(), "a zero FinishedAt stays zero")
	require.Empty(t, got.Output)

	cancelled := ports.Result{TaskID: "task-3", State: ports.StateCancelled}
	require.NoError(t, b.Put(ctx, cancelled))
	got, err = b.Get(ctx, "task-3")
	require.NoError(t, err)
	requireResultEqual(t, cancelled, got)
}

func testResultIsCopied(t *testing.T, e env, h ResultHarness) {
	ctx := e.ctx(t)
	b := h.NewBackend(t, 1)[0]
	r := fullResult("task-1")
	want := append([]byte(nil), r.Output...)
	require.NoError(t, b.Put(ctx, r))
	r.Output[0] = 'X'

	got, err := b.Get(ctx, "task-1")
	require.NoError(t, err)
	requireBytes(t, want, got.Output, "Output after mutating the stored slice")
	got.Output[0] = 'Y'

	got, err = b.Get(ctx, "task-1")
	require.NoError(t, err)
	requireBytes(t, want, got.Output, "Output after mutating a returned slice")
}

func testResultGetMissing(t *testing.T, e env, h ResultHarness) {
	ctx := e.ctx(t)
	b := h.NewBackend(t, 1)[0]
	_, err := b.Get(ctx, "no-such-task")
	require.ErrorIs(t, err, ports.ErrNotFound)
}

func testResultSecondPutFails(t *testing.T, e env, h ResultHarness) {
	ctx := e.ctx(t)
	bs := h.NewBackend(t, 2)
	first := fullResult("task-1")
	require.NoError(t, bs[0].Put(ctx, first))

	second := ports.Result{TaskID: "task-1", State: ports.StateFailed, Error: "late", Worker: "worker-b"}
	require.ErrorIs(t, bs[0].Put(ctx, second), ports.ErrAlreadyExists, "second Put on the same backend")
	require.ErrorIs(t, bs[1].Put(ctx, second), ports.ErrAlreadyExists, "second Put on another backend")
	require.ErrorIs(t, bs[1].Put(ctx, first), ports.ErrAlreadyExists, "identical second Put")

	for i, b := range bs {
		got, err := b.Get(ctx, "task-1")
		require.NoError(t, err)
		require.Equal(t, "worker-a/pid-17", got.Worker, "backend %d keeps the first result", i)
		requireResultEqual(t, first, got)
	}
}

// Delete (the optional ports.ResultDeleter) removes a result, on any
// backend of the store; the next Put succeeds; a missing result is no
// error. DeadLettered round-trips.
func testResultDelete(t *testing.T, e env, h ResultHarness) {
	ctx := e.ctx(t)
	bs := h.NewBackend(t, 2)
	dl, ok := bs[1].(ports.ResultDeleter)
	require.Truef(t, ok, "Features.ResultDelete is declared but %T does not implement ports.ResultDeleter", bs[1])
	marked := ports.Result{TaskID: "task-1", State: ports.StateFailed, Error: "dead-lettered after 3 receives", DeadLettered: true}
	require.NoError(t, bs[0].Put(ctx, marked))
	got, err := bs[1].Get(ctx, "task-1")
	require.NoError(t, err)
	require.True(t, got.DeadLettered, "DeadLettered round-trips")

	require.NoError(t, dl.Delete(ctx, "task-1"))
	_, err = bs[0].Get(ctx, "task-1")
	require.ErrorIs(t, err, ports.ErrNotFound, "deleted")
	real := fullResult("task-1")
	require.NoError(t, bs[0].Put(ctx, real), "a Put after the Delete")
	got, err = bs[1].Get(ctx, "task-1")
	require.NoError(t, err)
	requireResultEqual(t, real, got)
	require.ErrorIs(t, bs[1].Put(ctx, marked), ports.ErrAlreadyExists, "write-once again")
	require.NoError(t, dl.Delete(ctx, "never-stored"), "a missing result is no error")
}

func testResultRacingPuts(t *testing.T, e env, h ResultHarness) {
	const (
		racers = 4
		tasks  = 5
	)
	ctx := e.ctx(t)
	bs := h.NewBackend(t, racers)
	for k := range tasks {
		taskID := fmt.Sprintf("task-%d", k)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i, b := range bs {
			wg.Go(func() {
				errs[i] = b.Put(ctx, ports.Result{TaskID: taskID, State: ports.StateSucceeded, Worker: fmt.Sprintf("w%d", i)})
			})
		}
		wg.Wait()

		winner := -1
		for i, err := range errs {
			if err == nil {
				require.Equalf(t, -1, winner, "%s: Puts %d and %d both won", taskID, winner, i)
				winner = i
				continue
			}
			require.ErrorIs(t, err, ports.ErrAlreadyExists, "%s: losing Put %d", taskID, i)
		}
		require.NotEqual(t, -1, winner, "%s: no Put won", taskID)
		for i, b := range bs {
			got, err := b.Get(ctx, taskID)
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("w%d", winner), got.Worker, "%s: backend %d sees the winner", taskID, i)
		}
	}
}

func testResultInvalid(t *testing.T, e env, h ResultHarness) {
	ctx := e.ctx(t)
	b := h.NewBackend(t, 1)[0]
	cases := []struct {
		name string
		r    ports.Result
	}{
		{"empty task ID", ports.Result{State: ports.StateSucceeded}},
		{"empty state", ports.Result{TaskID: "task-1"}},
		{"non-final state", ports.Result{TaskID: "task-1", State: "running"}},
	}
	for _, c := range cases {
		require.ErrorIs(t, b.Put(ctx, c.r), ports.ErrInvalidArgument, c.name)
	}
	_, err := b.Get(ctx, "task-1")
	require.ErrorIs(t, err, ports.ErrNotFound, "an invalid result is not stored")
}

func testResultVisibleAcrossBackends(t *testing.T, e env, h ResultHarness) {
	ctx := e.ctx(t)
	bs := h.NewBackend(t, 3)
	want := fullResult("task-1")
	require.NoError(t, bs[0].Put(ctx, want))
	for i, b := range bs {
		got, err := b.Get(ctx, "task-1")
		require.NoError(t, err, "backend %d", i)
		requireResultEqual(t, want, got)
	}
}

func testResultClosed(t *testing.T, e env, h ResultHarness) {
	ctx := e.ctx(t)
	bs := h.NewBackend(t, 2)
	require.NoError(t, bs[0].Put(ctx, fullResult("task-1")))
	require.NoError(t, bs[0].Close())

	require.ErrorIs(t, bs[0].Put(ctx, fullResult("task-2")), ports.ErrClosed, "Put")
	_, err := bs[0].Get(ctx, "task-1")
	require.ErrorIs(t, err, ports.ErrClosed, "Get")
	require.NoError(t, bs[0].Close(), "second Close")

	_, err = bs[1].Get(ctx, "task-1")
	require.NoError(t, err, "another backend is unaffected")
	require.NoError(t, bs[1].Put(ctx, fullResult("task-2")))
}
