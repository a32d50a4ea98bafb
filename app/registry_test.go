package app_test

import (
	"context"
	"encoding/json"
	"os"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// blockingRegistry has the built-ins plus "block", which runs until release
// is closed (or its context is done).
func blockingRegistry(t *testing.T, release <-chan struct{}) *core.Registry {
	t.Helper()
	reg := builtins(t)
	require.NoError(t, reg.HandleFunc("block", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
		select {
		case <-release:
			return json.RawMessage(`"done"`), nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}))
	return reg
}

// The embedded runtime's process is in its own registry while its pools
// run: one record for the step and the run worker together, written at
// start, rewritten every interval with the tasks in flight, deleted when
// the pools stopped.
func TestWorkers_ListsThisProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := config.Default()
		cfg.Worker.Concurrency = 3
		cfg.Launcher.Concurrency = 2
		release := make(chan struct{})
		rt, err := app.New(cfg, blockingRegistry(t, release), app.WithLogger(quiet()), app.WithVersion("v1.2.3-test"))
		require.NoError(t, err)
		defer rt.Close()
		ctx := context.Background()

		list, err := rt.Workers(ctx)
		require.NoError(t, err)
		require.Empty(t, list, "no pool, no record")

		t0 := time.Now()
		steps, err := rt.StartWorkers(ctx, 1)
		require.NoError(t, err)
		runs, err := rt.StartRunWorkers(ctx, 1)
		require.NoError(t, err)

		list, err = rt.Workers(ctx)
		require.NoError(t, err)
		require.Len(t, list, 1, "one record per process: %+v", list)
		w := list[0]
		host, _ := os.Hostname()
		require.Equal(t, steps.IDs()[0], w.ID, "named after the process's first worker")
		require.Equal(t, host, w.Host)
		require.Equal(t, os.Getpid(), w.PID)
		require.Equal(t, "v1.2.3-test", w.Version)
		require.Equal(t, []string{cfg.Queue, cfg.Launcher.Queue}, w.Queues)
		require.Equal(t, 5, w.Concurrency, "step slots plus run slots")
		require.Equal(t, 0, w.InFlight)
		require.WithinDuration(t, t0, w.StartedAt, 0)
		require.WithinDuration(t, t0, w.SeenAt, 0, "written at start")
		require.False(t, w.Stale)

		// Two tasks block: the next heartbeat says so.
		for range 2 {
			_, err := rt.Client.Submit(ctx, core.Request{Task: "block"})
			require.NoError(t, err)
		}
		time.Sleep(cfg.Worker.RegistryInterval)
		synctest.Wait()
		list, err = rt.Workers(ctx)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, 2, list[0].InFlight, "two tasks run")
		require.WithinDuration(t, t0.Add(cfg.Worker.RegistryInterval), list[0].SeenAt, 0, "rewritten every interval")
		require.WithinDuration(t, t0, list[0].StartedAt, 0)

		close(release)
		time.Sleep(cfg.Worker.RegistryInterval)
		synctest.Wait()
		list, err = rt.Workers(ctx)
		require.NoError(t, err)
		require.Equal(t, 0, list[0].InFlight, "the tasks finished")

		// A pool that stops first leaves the record; the last one deletes it.
		require.NoError(t, runs.Stop())
		list, err = rt.Workers(ctx)
		require.NoError(t, err)
		require.Len(t, list, 1, "the step worker still runs")
		require.NoError(t, steps.Stop())
		list, err = rt.Workers(ctx)
		require.NoError(t, err)
		require.Empty(t, list, "a graceful stop deletes the record")
	})
}

// putRecord writes a worker record as a process would have, last seen at
// seen.
func putRecord(t *testing.T, state ports.StateStore, id string, seen time.Time, interval time.Duration) {
	t.Helper()
	data, err := json.Marshal(map[string]any{
		"id": id, "host": "h-" + id, "pid": 42, "version": "v0", "queues": []string{"dagq-tasks"},
		"concurrency": 10, "in_flight": 1, "started_at": seen.Add(-time.Hour), "seen_at": seen,
		"interval": interval.String(),
	})
	require.NoError(t, err)
	_, err = state.Put(context.Background(), app.WorkerRecordPrefix+id, data, ports.WriteCondition{})
	require.NoError(t, err)
}

// A record not rewritten for 3 of its writer's intervals is stale, listed
// after the live ones; one stale for more than a day is deleted while
// listing.
func TestWorkers_StaleAndExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := config.Default()
		rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
		require.NoError(t, err)
		defer rt.Close()
		ctx := context.Background()
		steps, err := rt.StartWorkers(ctx, 1)
		require.NoError(t, err)
		defer func() { require.NoError(t, steps.Stop()) }()

		now := time.Now()
		st := rt.Ports.State
		putRecord(t, st, "a-late", now.Add(-150*time.Second), time.Minute)  // 2.5 intervals: live
		putRecord(t, st, "b-dead", now.Add(-181*time.Second), time.Minute)  // past 3 intervals: stale
		putRecord(t, st, "c-slow", now.Add(-5*time.Minute), 10*time.Minute) // its own interval is long: live
		putRecord(t, st, "0-gone", now.Add(-25*time.Hour), time.Minute)     // stale for over 24h: expired
		_, err = st.Put(ctx, app.WorkerRecordPrefix+"junk", []byte("not json"), ports.WriteCondition{})
		require.NoError(t, err)

		list, err := rt.Workers(ctx)
		require.NoError(t, err)
		var ids []string
		for _, w := range list {
			ids = append(ids, w.ID)
			require.Equal(t, w.ID == "b-dead", w.Stale, w.ID)
		}
		require.Equal(t, []string{"a-late", "c-slow", steps.IDs()[0], "b-dead"}, ids, "live by ID, then stale")
		require.Equal(t, "h-b-dead", list[3].Host)
		require.Equal(t, 1, list[3].InFlight)

		_, err = st.Get(ctx, app.WorkerRecordPrefix+"0-gone")
		require.ErrorIs(t, err, ports.ErrNotFound, "the expired record was deleted")
		_, err = st.Get(ctx, app.WorkerRecordPrefix+"b-dead")
		require.NoError(t, err, "a stale record stays until it expires")

		// b-dead's record expires a day after it went stale.
		time.Sleep(app.WorkerRecordExpiry)
		list, err = rt.Workers(ctx)
		require.NoError(t, err)
		for _, w := range list {
			require.NotEqual(t, "b-dead", w.ID)
		}
	})
}

// stateWithoutLister hides the memory StateStore's ports.KeyLister, and
// counts the writes.
type stateWithoutLister struct {
	ports.StateStore
	puts atomic.Int64
}

func (s *stateWithoutLister) Put(ctx context.Context, key string, data []byte, cond ports.WriteCondition) (string, error) {
	s.puts.Add(1)
	return s.StateStore.Put(ctx, key, data, cond)
}

// Without a state store that lists its keys there is no registry: Workers
// fails with ports.ErrUnsupported and workers write no record.
func TestWorkers_UnsupportedWithoutKeyLister(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt, err := app.New(config.Default(), builtins(t), app.WithLogger(quiet()))
		require.NoError(t, err)
		defer rt.Close()
		st := &stateWithoutLister{StateStore: rt.Ports.State}
		rt.Ports.State = st

		_, err = rt.Workers(context.Background())
		require.ErrorIs(t, err, ports.ErrUnsupported)

		pool, err := rt.StartWorkers(context.Background(), 1)
		require.NoError(t, err)
		require.NoError(t, pool.Stop())
		require.Zero(t, st.puts.Load(), "the registry is off")
	})
}

// worker.registry_interval 0s switches the registry off.
func TestWorkers_RegistryOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := config.Default()
		cfg.Worker.RegistryInterval = 0
		rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
		require.NoError(t, err)
		defer rt.Close()
		pool, err := rt.StartWorkers(context.Background(), 1)
		require.NoError(t, err)
		defer func() { require.NoError(t, pool.Stop()) }()
		list, err := rt.Workers(context.Background())
		require.NoError(t, err, "others' records can still be listed")
		require.Empty(t, list)
	})
}

// Close deletes the record of pools still running (they should have been
// stopped first), and later pools are not entered.
func TestWorkers_CloseDeletesTheRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt, err := app.New(config.Default(), builtins(t), app.WithLogger(quiet()))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		pool, err := rt.StartWorkers(ctx, 1)
		require.NoError(t, err)
		st := rt.Ports.State
		_, err = st.Get(ctx, app.WorkerRecordPrefix+pool.IDs()[0])
		require.NoError(t, err)
		cancel()
		_ = pool.Stop() // the workers return; the record goes with them
		_, err = st.Get(context.Background(), app.WorkerRecordPrefix+pool.IDs()[0])
		require.ErrorIs(t, err, ports.ErrNotFound)
		rt.Close()
	})
}
