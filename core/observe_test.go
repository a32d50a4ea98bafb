package core_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// obsRecorder records the events of a WorkerObserver. Read it through its
// methods (they lock).
type obsRecorder struct {
	core.NopWorkerObserver
	mu       sync.Mutex
	n        obsCounts
	started  []string
	finishes []obsFinish // in order
}

// obsCounts counts the events of an obsRecorder.
type obsCounts struct {
	received, done, rejected                  int
	extended, extendFailed                    int
	receiveFailed, storeFailed, publishFailed int
	requeued, handedBackNacked                int // MessageHandedBack(true), (false)
	deadLettered                              int
	taskReceived                              map[string]int // by task name
}

type obsFinish struct {
	info core.TaskInfo
	res  core.TaskResult
}

func newObsRecorder() *obsRecorder {
	return &obsRecorder{n: obsCounts{taskReceived: map[string]int{}}}
}

func (r *obsRecorder) MessagesReceived(n int) { r.mu.Lock(); r.n.received += n; r.mu.Unlock() }
func (r *obsRecorder) MessageDone()           { r.mu.Lock(); r.n.done++; r.mu.Unlock() }
func (r *obsRecorder) MessageRejected()       { r.mu.Lock(); r.n.rejected++; r.mu.Unlock() }
func (r *obsRecorder) MessageHandedBack(requeued bool) {
	r.mu.Lock()
	if requeued {
		r.n.requeued++
	} else {
		r.n.handedBackNacked++
	}
	r.mu.Unlock()
}
func (r *obsRecorder) ReceiveFailed()     { r.mu.Lock(); r.n.receiveFailed++; r.mu.Unlock() }
func (r *obsRecorder) ResultStoreFailed() { r.mu.Lock(); r.n.storeFailed++; r.mu.Unlock() }
func (r *obsRecorder) DeadLettered()      { r.mu.Lock(); r.n.deadLettered++; r.mu.Unlock() }
func (r *obsRecorder) CompletionPublishFailed() {
	r.mu.Lock()
	r.n.publishFailed++
	r.mu.Unlock()
}
func (r *obsRecorder) TaskReceived(t core.TaskInfo) {
	r.mu.Lock()
	r.n.taskReceived[t.Name]++
	r.mu.Unlock()
}
func (r *obsRecorder) TaskStarted(t core.TaskInfo) {
	r.mu.Lock()
	r.started = append(r.started, t.ID)
	r.mu.Unlock()
}
func (r *obsRecorder) TaskFinished(t core.TaskInfo, res core.TaskResult) {
	r.mu.Lock()
	r.finishes = append(r.finishes, obsFinish{t, res})
	r.mu.Unlock()
}
func (r *obsRecorder) LeasesExtended(ok, failed int) {
	r.mu.Lock()
	r.n.extended += ok
	r.n.extendFailed += failed
	r.mu.Unlock()
}

// counts returns the event counts so far.
func (r *obsRecorder) counts() obsCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.n
	c.taskReceived = maps.Clone(r.n.taskReceived)
	return c
}

// startedIDs returns the IDs of the started tasks, in order.
func (r *obsRecorder) startedIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.started)
}

// results returns what became of each delivery of task id, in order.
func (r *obsRecorder) results(id string) []core.TaskResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []core.TaskResult
	for _, f := range r.finishes {
		if f.info.ID == id {
			out = append(out, f.res)
		}
	}
	return out
}

// outcomes returns the outcomes of the deliveries of task id, in order.
func (r *obsRecorder) outcomes(id string) []core.TaskOutcome {
	var out []core.TaskOutcome
	for _, res := range r.results(id) {
		out = append(out, res.Outcome)
	}
	return out
}

// last returns what became of the last delivery of task id.
func (r *obsRecorder) last(id string) core.TaskResult {
	rs := r.results(id)
	if len(rs) == 0 {
		return core.TaskResult{}
	}
	return rs[len(rs)-1]
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
		rec := newObsRecorder()
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

		c := rec.counts()
		require.Equal(t, 4, c.received)
		require.Equal(t, 4, c.done)
		require.Equal(t, 1, c.rejected)
		require.Equal(t, map[string]int{"ok": 1, "block": 1, "nope": 1}, c.taskReceived)
		require.ElementsMatch(t, []string{"t1", "t2"}, rec.startedIDs())
		require.Equal(t, core.OutcomeSucceeded, rec.last("t1").Outcome)
		require.True(t, rec.last("t1").Ran)
		require.Equal(t, []core.TaskResult{{Outcome: core.OutcomeFailed}}, rec.results("t3"), "unknown task: failed, never ran")
		require.Equal(t, core.OutcomeReleased, rec.last("t2").Outcome)
		require.True(t, rec.last("t2").Ran)
		require.GreaterOrEqual(t, rec.last("t2").Duration, 5*time.Second)
		require.GreaterOrEqual(t, c.extended, 4)
		require.Zero(t, c.extendFailed)
		require.Zero(t, c.receiveFailed+c.storeFailed+c.publishFailed, "no port failed")
		require.Equal(t, "released", core.OutcomeReleased.String())
		require.Equal(t, "unknown", core.TaskOutcome(0).String())
	})
}
