package core_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// requireClientIdle asserts that c waits for nothing and has openWatches
// Watches open.
func requireClientIdle(t *testing.T, c *core.Client, openWatches int) {
	t.Helper()
	st := c.Stats()
	entries, scheduled, watches := st.Tracked, st.ScheduledReads, st.Watches
	assert.Zero(t, entries, "wait entries")
	assert.Zero(t, scheduled, "scheduled reads")
	assert.Equal(t, openWatches, watches, "open watches")
}

func TestWatch_PushProgressAndFinal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).Times(0)
		f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).Return(nil)
		w, err := f.client.Watch(context.Background())
		require.NoError(t, err)
		defer w.Close()
		ids, err := w.SubmitBatch(context.Background(), core.Request{Task: "t", ID: "a"}, core.Request{Task: "t", ID: "b"})
		require.NoError(t, err)
		require.Equal(t, []string{"a", "b"}, ids)
		require.Equal(t, 2, w.Len())

		running := ports.Completion{TaskID: "a", State: ports.StateRunning, Attempt: 1}
		f.push <- []ports.Completion{running}
		evs, err := w.Next(context.Background())
		require.NoError(t, err)
		require.Equal(t, []core.WatchEvent{{TaskID: "a", Progress: running}}, evs)

		ra, rb := succeeded("a", "1"), ports.Result{TaskID: "b", State: ports.StateFailed, Error: "boom", Attempts: 3}
		retrying := ports.Completion{TaskID: "b", State: ports.StateRetrying, Attempt: 2, Error: "boom"}
		f.push <- []ports.Completion{retrying, {TaskID: "a", State: ra.State, Result: &ra}, {TaskID: "b", State: rb.State, Result: &rb}}
		synctest.Wait()
		select {
		case <-w.Ready():
		default:
			t.Fatal("Ready not signalled")
		}
		evs = w.Take()
		require.Len(t, evs, 3)
		assert.Equal(t, core.WatchEvent{TaskID: "b", Progress: retrying}, evs[0])
		assert.Equal(t, core.WatchEvent{TaskID: "a", Final: true, Result: ra}, evs[1])
		assert.Equal(t, core.WatchEvent{TaskID: "b", Final: true, Result: rb}, evs[2], "a failed task is a result, not an Err")
		assert.Zero(t, w.Len())
		assert.Empty(t, w.Take())

		// Late or duplicate notifications of finished tasks are dropped.
		f.push <- []ports.Completion{running, {TaskID: "a", State: ra.State, Result: &ra}}
		synctest.Wait()
		assert.Empty(t, w.Take())
		requireClientIdle(t, f.client, 1)
	})
}

func TestWatch_ProgressDoesNotFinishWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).Times(0)
		f.submit(t, "a")
		var got atomic.Pointer[ports.Result]
		go func() {
			r, err := f.client.Wait(context.Background(), "a")
			assert.NoError(t, err)
			got.Store(&r)
		}()
		f.push <- []ports.Completion{{TaskID: "a", State: ports.StateRunning, Attempt: 1}}
		f.push <- []ports.Completion{{TaskID: "a", State: ports.StateRetrying, Attempt: 2, Error: "x"}}
		f.push <- []ports.Completion{{TaskID: "a", State: "some-future-state"}}
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Nil(t, got.Load(), "progress is not an outcome")
		r := succeeded("a", "1")
		f.push <- []ports.Completion{{TaskID: "a", State: r.State, Result: &r}}
		synctest.Wait()
		require.NotNil(t, got.Load())
		assert.Equal(t, r, *got.Load())
	})
}

func TestWatch_ProgressBeforeWaitIsNotRemembered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		f.submit(t, "a")
		f.push <- []ports.Completion{{TaskID: "a", State: ports.StateRunning, Attempt: 1}}
		synctest.Wait()
		// Were it remembered as finished, Wait would read Results at once.
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).Times(0)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := f.client.Wait(ctx, "a")
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestWatch_ManyTasksPolledByOneGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		const n = 300
		var ready atomic.Bool
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, id string) (ports.Result, error) {
			if ready.Load() {
				return succeeded(id, "1"), nil
			}
			return ports.Result{}, notFound(id)
		}).AnyTimes()
		w, err := f.client.Watch(context.Background())
		require.NoError(t, err)
		defer w.Close()
		for i := range n {
			require.NoError(t, w.Add(fmt.Sprintf("t%03d", i)))
		}
		require.NoError(t, w.Add("t000"), "adding a watched task again is a no-op")
		assert.Equal(t, n, w.Len())
		time.Sleep(5 * time.Second)
		synctest.Wait()
		assert.Equal(t, 1, clientGoroutines(), "one checker, no goroutine per task")
		ready.Store(true)
		seen := map[string]bool{}
		for len(seen) < n {
			evs, err := w.Next(context.Background())
			require.NoError(t, err)
			for _, ev := range evs {
				require.True(t, ev.Final)
				require.NoError(t, ev.Err)
				require.False(t, seen[ev.TaskID], "one final event per task")
				seen[ev.TaskID] = true
			}
		}
		requireClientIdle(t, f.client, 1)
		synctest.Wait()
		assert.Zero(t, clientGoroutines(), "the checker stopped")
	})
}

func TestWatch_EndingRemovesWaiters(t *testing.T) {
	for _, how := range []string{"Close", "context"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, fixtureOpts{})
				var reads atomic.Int32
				f.results.EXPECT().Get(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, id string) (ports.Result, error) {
					reads.Add(1)
					return ports.Result{}, notFound(id)
				}).AnyTimes()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				w, err := f.client.Watch(ctx)
				require.NoError(t, err)
				require.NoError(t, w.Add("a", "b", "c"))
				time.Sleep(time.Second)
				synctest.Wait()
				require.Equal(t, 1, clientGoroutines())

				if how == "Close" {
					w.Close()
					w.Close() // idempotent
					_, err = w.Next(context.Background())
					require.ErrorIs(t, err, ports.ErrClosed)
				} else {
					cancel()
					_, err = w.Next(context.Background())
					require.ErrorIs(t, err, context.Canceled)
					w.Close()
				}
				require.Error(t, w.Add("d"), "an ended watch adds nothing")
				synctest.Wait()
				requireClientIdle(t, f.client, 0)
				assert.Zero(t, clientGoroutines())
				n := reads.Load()
				time.Sleep(time.Hour)
				assert.Equal(t, n, reads.Load(), "nothing reads for an ended watch")
			})
		})
	}
}

func TestWatch_ClientCloseReportsAndEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		f.submit(t, "a")
		w, err := f.client.Watch(context.Background())
		require.NoError(t, err)
		defer w.Close()
		require.NoError(t, w.Add("a"))
		require.NoError(t, f.client.Close())
		evs, err := w.Next(context.Background())
		require.NoError(t, err, "queued events come first")
		require.Len(t, evs, 1)
		assert.True(t, evs[0].Final)
		assert.ErrorIs(t, evs[0].Err, ports.ErrClosed)
		_, err = w.Next(context.Background())
		assert.ErrorIs(t, err, ports.ErrClosed)
		assert.ErrorIs(t, w.Add("b"), ports.ErrClosed)
		_, err = f.client.Watch(context.Background())
		assert.ErrorIs(t, err, ports.ErrClosed)
	})
}

func TestWatch_RememberedResultReportedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		want := succeeded("a", "1")
		f.results.EXPECT().Get(gomock.Any(), "a").Return(want, nil).Times(1)
		_, err := f.client.Wait(context.Background(), "a")
		require.NoError(t, err)
		w, err := f.client.Watch(context.Background())
		require.NoError(t, err)
		defer w.Close()
		require.NoError(t, w.Add("a"))
		assert.Equal(t, []core.WatchEvent{{TaskID: "a", Final: true, Result: want}}, w.Take())
		assert.Zero(t, w.Len())
	})
}

func TestWatch_RemoveAndErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		gomock.InOrder(
			f.results.EXPECT().Get(gomock.Any(), "a").Return(ports.Result{}, notFound("a")),
			f.results.EXPECT().Get(gomock.Any(), "b").Return(ports.Result{}, fmt.Errorf("s3: %w", ports.ErrInvalidArgument)),
		)
		w, err := f.client.Watch(context.Background())
		require.NoError(t, err)
		defer w.Close()
		require.ErrorIs(t, w.Add("ok", "not ok"), ports.ErrInvalidArgument)
		assert.Zero(t, w.Len(), "an invalid ID adds nothing")

		require.NoError(t, w.Add("a"))
		synctest.Wait()
		w.Remove("a", "never-added")
		assert.Zero(t, w.Len())
		requireClientIdle(t, f.client, 1)

		require.NoError(t, w.Add("b"))
		evs, err := w.Next(context.Background())
		require.NoError(t, err)
		require.Len(t, evs, 1)
		assert.True(t, evs[0].Final)
		assert.ErrorIs(t, evs[0].Err, ports.ErrInvalidArgument, "a permanent Results error is final")

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = w.Next(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestWatch_SubmitBatchOnEndedWatchSendsNothing(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).Times(0)
	w, err := f.client.Watch(context.Background())
	require.NoError(t, err)
	w.Close()
	_, err = w.SubmitBatch(context.Background(), core.Request{Task: "t"})
	require.ErrorIs(t, err, ports.ErrClosed)
	assert.Contains(t, err.Error(), "nothing sent")
}
