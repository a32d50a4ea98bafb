package core_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// obsRecorder records the events of a WorkerObserver.
type obsRecorder struct {
	core.NopWorkerObserver
	mu                       sync.Mutex
	received, done, rejected int
	extended, extendFailed   int
	started                  []string
	finished                 map[string]core.TaskResult
	taskReceived             map[string]int
}

func (r *obsRecorder) MessagesReceived(n int) { r.mu.Lock(); r.received += n; r.mu.Unlock() }
func (r *obsRecorder) MessageDone()           { r.mu.Lock(); r.done++; r.mu.Unlock() }
func (r *obsRecorder) MessageRejected()       { r.mu.Lock(); r.rejected++; r.mu.Unlock() }
func (r *obsRecorder) TaskReceived(t core.TaskInfo) {
	r.mu.Lock()
	r.taskReceived[t.Name]++
	r.mu.Unlock()
}
func (r *obsRecorder) TaskStarted(t core.TaskInfo) {
	r.mu.Lock()
	r.started = append(r.started, t.ID)
	r.mu.Unlock()
}
func (r *obsRecorder) TaskFinished(t core.TaskInfo, res core.TaskResult) {
	r.mu.Lock()
	r.finished[t.ID] = res
	r.mu.Unlock()
}
func (r *obsRecorder) LeasesExtended(ok, failed int) {
	r.mu.Lock()
	r.extended += ok
	r.extendFailed += failed
	r.mu.Unlock()
}

// The observer sees every delivery, the outcome of every task (released at
// shutdown included) and the lease extensions of a long task.
func TestWorkerObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("ok", wkOK(`"hi"`)))
		require.NoError(t, reg.HandleFunc("block", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
			<-ctx.Done()
			return nil, context.Cause(ctx)
		}))
		rec := &obsRecorder{finished: map[string]core.TaskResult{}, taskReceived: map[string]int{}}
		w := m.startWorker(reg, func(o *core.WorkerOptions) {
			o.Observer = rec
			o.Lease = 3 * time.Second
			o.ShutdownTimeout = 100 * time.Millisecond
		})
		m.submit(wkEnv("t1", "ok"), wkEnv("t2", "block"), wkEnv("t3", "nope"))
		require.NoError(t, m.producer.Send(context.Background(), ports.Message{ID: "m1", Body: []byte("not an envelope")}))
		require.Equal(t, ports.StateSucceeded, m.result("t1").State)
		require.Equal(t, ports.StateFailed, m.result("t3").State)
		require.Equal(t, ports.StateFailed, m.result("m1").State)
		time.Sleep(5 * time.Second) // t2 runs: its lease is extended every second
		require.NoError(t, w.stop())

		rec.mu.Lock()
		defer rec.mu.Unlock()
		require.Equal(t, 4, rec.received)
		require.Equal(t, 4, rec.done)
		require.Equal(t, 1, rec.rejected)
		require.Equal(t, map[string]int{"ok": 1, "block": 1, "nope": 1}, rec.taskReceived)
		require.ElementsMatch(t, []string{"t1", "t2"}, rec.started)
		require.Equal(t, core.OutcomeSucceeded, rec.finished["t1"].Outcome)
		require.True(t, rec.finished["t1"].Ran)
		require.Equal(t, core.TaskResult{Outcome: core.OutcomeFailed}, rec.finished["t3"], "unknown task: failed, never ran")
		require.Equal(t, core.OutcomeReleased, rec.finished["t2"].Outcome)
		require.True(t, rec.finished["t2"].Ran)
		require.GreaterOrEqual(t, rec.finished["t2"].Duration, 5*time.Second)
		require.GreaterOrEqual(t, rec.extended, 4)
		require.Zero(t, rec.extendFailed)
		require.Equal(t, "released", core.OutcomeReleased.String())
		require.Equal(t, "unknown", core.TaskOutcome(0).String())
	})
}
