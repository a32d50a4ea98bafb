package dag_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/internal/testutil"
	"github.com/dagq/dagq/ports"
)

// Record reads the stored record and nothing else: one StateStore read, no
// result or cancel-mark read, even for a run that is not finished.
func TestLauncher_RecordIsOneRead(t *testing.T) {
	tr := memory.NewTransport()
	require.NoError(t, tr.CreateQueue("runs", memory.QueueOptions{}))
	results := &countingResults{ResultBackend: tr.ResultBackend()}
	c, err := core.NewClient(core.ClientOptions{
		Ports:  core.Ports{Broker: tr.Broker("runs"), Results: results, Cancels: tr.CancelChannel()},
		Logger: testutil.QuietLogger(),
	})
	require.NoError(t, err)
	defer c.Close()
	state := &countingState{StateStore: tr.StateStore()}
	l, err := dag.NewLauncher(dag.LauncherOptions{Client: c, State: state, Logger: testutil.QuietLogger()})
	require.NoError(t, err)
	ctx := context.Background()

	job := dag.Job{Name: "j", Steps: []dag.Step{{Name: "a", Task: "echo"}, {Name: "b", Task: "echo", Upstream: []string{"a"}}}}
	runID, err := l.Launch(ctx, job, dag.LaunchOptions{RunID: "rec-1"})
	require.NoError(t, err)

	state.gets.Store(0)
	results.gets.Store(0)
	rec, err := l.Record(ctx, runID)
	require.NoError(t, err)
	require.Equal(t, dag.RunQueued, rec.State)
	require.Equal(t, "j", rec.Job)
	require.Len(t, rec.Steps, 2)
	require.Equal(t, []string{"a"}, rec.Steps[1].Upstream)
	require.NotEmpty(t, rec.Version)
	require.EqualValues(t, 1, state.gets.Load())
	require.EqualValues(t, 0, results.gets.Load())

	_, err = l.Record(ctx, "nope")
	require.ErrorIs(t, err, dag.ErrRunNotFound)
	_, err = l.Record(ctx, "bad id")
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
}

// countingResults counts the reads of a ResultBackend.
type countingResults struct {
	ports.ResultBackend
	gets atomic.Int64
}

func (r *countingResults) Get(ctx context.Context, id string) (ports.Result, error) {
	r.gets.Add(1)
	return r.ResultBackend.Get(ctx, id)
}
