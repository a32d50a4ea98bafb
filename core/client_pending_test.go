package core_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// Tasks submitted through a live inbox are never read from Results because
// of cache pressure: their completions are pushed (and kept until waited
// for when they arrive first).

func TestWaitSubmittedBeyondCacheSizeCompletedFirstReadsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true, opts: core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
			CacheSize: 2,
		}})
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).Times(0)
		ids := []string{"a", "b", "c", "d", "e"}
		var cs []ports.Completion
		for _, id := range ids {
			f.submit(t, id)
			r := succeeded(id, id)
			cs = append(cs, ports.Completion{TaskID: id, State: r.State, Result: &r})
		}
		f.push <- cs
		synctest.Wait()

		start := time.Now()
		got, err := f.client.WaitAll(context.Background(), ids...)
		require.NoError(t, err)
		assert.Zero(t, time.Since(start))
		for i, id := range ids {
			assert.Equal(t, id, string(got[i].Output))
		}
		// Still remembered (CacheSize 2) for a second wait of the last ones.
		got, err = f.client.WaitAll(context.Background(), "d", "e")
		require.NoError(t, err)
		assert.Equal(t, "d", string(got[0].Output))
	})
}

func TestWaitSubmittedBeyondCacheSizeWaitsForPush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true, opts: core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
			CacheSize: 2,
		}})
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).Times(0)
		ids := []string{"a", "b", "c", "d", "e"}
		for _, id := range ids {
			f.submit(t, id)
		}
		go func() {
			time.Sleep(time.Second)
			var cs []ports.Completion
			for _, id := range ids {
				r := succeeded(id, id)
				cs = append(cs, ports.Completion{TaskID: id, State: r.State, Result: &r})
			}
			f.push <- cs
		}()
		start := time.Now()
		got, err := f.client.WaitAll(context.Background(), ids...)
		require.NoError(t, err)
		assert.Equal(t, time.Second, time.Since(start))
		for i, id := range ids {
			assert.Equal(t, id, string(got[i].Output))
		}
	})
}

func TestMemoryManyTasksSmallCacheReadNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newMemEnv(t, true, core.ClientOptions{
			Ports: core.Ports{
				NoCancel: true,
			},
			CacheSize: 10,
		})
		(&stubWorker{tr: e.tr, queue: "tasks", fn: echo}).start(t)
		ids, err := e.client.SubmitBatch(context.Background(), numberedRequests("echo", 200)...)
		require.NoError(t, err)
		time.Sleep(time.Second) // all complete before anyone waits
		synctest.Wait()
		got, err := e.client.WaitAll(context.Background(), ids...)
		require.NoError(t, err)
		for i, r := range got {
			assert.Equal(t, fmt.Sprint(i), string(r.Output))
		}
		assert.Zero(t, e.results.gets.Load())
	})
}

func TestWaitAllFailsAtOnceOnAPermanentError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		f.submit(t, "a") // waits for its push, which never comes
		f.results.EXPECT().Get(gomock.Any(), "x").Return(ports.Result{}, fmt.Errorf("s3: %w", ports.ErrClosed))
		start := time.Now()
		_, err := f.client.WaitAll(context.Background(), "a", "x")
		require.ErrorIs(t, err, ports.ErrClosed)
		assert.Zero(t, time.Since(start), "not after a's reconcile read")
	})
}

func TestWaitScheduleMixesReconcileAndPolling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		start := time.Now()
		var mu sync.Mutex
		reads := map[string][]time.Duration{}
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, id string) (ports.Result, error) {
			mu.Lock()
			defer mu.Unlock()
			reads[id] = append(reads[id], time.Since(start))
			if id == "x" && len(reads[id]) == 3 || id != "x" {
				return succeeded(id, id), nil
			}
			return ports.Result{}, notFound(id)
		}).AnyTimes()
		var wg sync.WaitGroup
		wait := func(id string) {
			wg.Go(func() {
				r, err := f.client.Wait(context.Background(), id)
				assert.NoError(t, err)
				assert.Equal(t, id, string(r.Output))
			})
		}
		f.submit(t, "a")
		wait("a") // reconcile at 30s
		time.Sleep(10 * time.Second)
		f.submit(t, "b")
		wait("b") // reconcile at 40s
		time.Sleep(10 * time.Second)
		wait("x") // unknown: 20s, 20.1s, 20.3s
		f.submit(t, "c")
		wait("c") // reconcile at 50s
		wg.Wait()
		assert.Equal(t, map[string][]time.Duration{
			"a": {30 * time.Second},
			"b": {40 * time.Second},
			"c": {50 * time.Second},
			"x": {20 * time.Second, 20*time.Second + 100*time.Millisecond, 20*time.Second + 300*time.Millisecond},
		}, reads)
	})
}

func TestWaitAllDuplicatesAndSharedEntries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		f.results.EXPECT().Get(gomock.Any(), gomock.Any()).Times(0)
		f.submit(t, "a")
		f.submit(t, "b")
		var wg sync.WaitGroup
		results := make([][]ports.Result, 3)
		for i := range results {
			wg.Go(func() {
				var err error
				results[i], err = f.client.WaitAll(context.Background(), "a", "b", "a")
				assert.NoError(t, err)
			})
		}
		// One waiter gives up: the others are unaffected.
		ctx, cancel := context.WithCancel(context.Background())
		wg.Go(func() {
			_, err := f.client.WaitAll(ctx, "b", "a", "b")
			assert.ErrorIs(t, err, context.Canceled)
		})
		synctest.Wait()
		cancel()
		synctest.Wait()
		ra, rb := succeeded("a", "A"), succeeded("b", "B")
		f.push <- []ports.Completion{{TaskID: "a", State: ra.State, Result: &ra}}
		f.push <- []ports.Completion{{TaskID: "b", State: rb.State, Result: &rb}}
		wg.Wait()
		for _, rs := range results {
			require.Len(t, rs, 3)
			assert.Equal(t, []ports.Result{ra, rb, ra}, rs)
		}
		// No aliasing between the callers' copies.
		results[0][0].Output[0] = 'X'
		assert.Equal(t, "A", string(results[1][0].Output))
		assert.Equal(t, "A", string(results[0][2].Output))
	})
}

func TestWaitUnsentTaskIsNotPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{push: true})
		// "lost" was refused (a BatchError: certainly not queued), "sent" was
		// queued and "maybe" failed ambiguously (it may be queued).
		f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).Return(&ports.BatchError{Failed: map[int]error{
			0: fmt.Errorf("sqs: %w", ports.ErrInvalidArgument),
		}})
		f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).Return(fmt.Errorf("sqs: %w", ports.ErrUnavailable))
		reqs := []core.Request{{Task: "t", ID: "lost"}}
		for i := range ports.MaxBatch - 1 {
			reqs = append(reqs, core.Request{Task: "t", ID: fmt.Sprint("sent", i)})
		}
		reqs = append(reqs, core.Request{Task: "t", ID: "maybe"})
		_, err := f.client.SubmitBatch(context.Background(), reqs...)
		require.Error(t, err)

		// The unsent task is read at once, like a task submitted elsewhere;
		// the others wait for their pushes.
		f.results.EXPECT().Get(gomock.Any(), "lost").Return(ports.Result{}, notFound("lost")).Times(1)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err = f.client.WaitAll(ctx, "lost", "sent0", "maybe")
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
}
