package cli_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// delayRecorder records, per task, the start and end of each attempt and the
// deliveries workers sent on because they were not due (OutcomeDelayed).
type delayRecorder struct {
	core.NopWorkerObserver
	mu      sync.Mutex
	runs    map[string][]taskSpan
	delayed map[string]int
}

type taskSpan struct {
	attempt    int
	start, end time.Time
}

func (r *delayRecorder) TaskFinished(t core.TaskInfo, res core.TaskResult) {
	if res.Outcome == core.OutcomeDelayed {
		r.mu.Lock()
		r.delayed[t.ID]++
		r.mu.Unlock()
	}
}

// handler records its runs and fails attempt 1 when fail is set.
func (r *delayRecorder) handler(fail bool) core.HandlerFunc {
	return func(_ context.Context, task *core.Task) (json.RawMessage, error) {
		start := time.Now()
		r.mu.Lock()
		r.runs[task.ID] = append(r.runs[task.ID], taskSpan{attempt: task.Attempt, start: start, end: time.Now()})
		r.mu.Unlock()
		if fail && task.Attempt == 1 {
			return nil, errors.New("boom")
		}
		return json.RawMessage(`"ok"`), nil
	}
}

func (r *delayRecorder) of(id string) ([]taskSpan, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.runs[id]), r.delayed[id]
}

// Long delays over SQS and S3 (the emulators), on a short scale: with the
// cap per message lowered to 8 s (sqs.max_delay), a task delayed by 20 s is
// a message delayed 8 s and two more sent on by the workers (8 s, then the
// whole seconds left), and starts within a second of its due time as
// attempt 1; a retry backoff of 20 s starts attempt 2 20 s (± 1 s) after
// attempt 1 ended. Signing is on and half the tasks are claim checks: the
// messages sent on keep their signature and their S3 envelope.
func TestSQS_LongDelays(t *testing.T) {
	cfg, flags := sqsEnv(t)
	r := dagq(t, append([]string{"queue", "init"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	cfg.SQS.MaxDelay = 8 * time.Second
	cfg.Payload.Threshold = 1024
	k1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	cfg.Signing.KeyID, cfg.Signing.Keys = "k1", "k1="+k1
	require.NoError(t, cfg.Validate())

	rec := &delayRecorder{runs: map[string][]taskSpan{}, delayed: map[string]int{}}
	reg := builtins(t)
	require.NoError(t, reg.HandleFunc("stamp", rec.handler(false)))
	require.NoError(t, reg.HandleFunc("flaky", rec.handler(true)))
	rt, err := app.New(cfg, reg, app.WithLogger(quiet()))
	require.NoError(t, err)
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, err := rt.StartWorkers(ctx, 2, app.WithWorkerObserver(rec))
	require.NoError(t, err)
	defer func() { require.NoError(t, pool.Stop()) }()

	const n, delay = 10, 20 * time.Second
	big := strings.Repeat("x", 2048) // above payload.threshold: a claim check
	var reqs []core.Request
	for i := range n {
		req := core.Request{ID: fmt.Sprintf("late-%d", i), Task: "stamp", Delay: delay}
		if i%2 == 1 {
			req.Args = big
		}
		reqs = append(reqs, req)
	}
	retry := core.RetryPolicy{MaxAttempts: 2, InitialBackoff: delay}
	reqs = append(reqs, core.Request{ID: "retry-0", Task: "flaky", Retry: &retry},
		core.Request{ID: "retry-1", Task: "flaky", Args: big, Retry: &retry})
	before := time.Now()
	ids, err := rt.Client.SubmitBatch(ctx, reqs...)
	require.NoError(t, err)
	after := time.Now()
	results, err := rt.Client.WaitAll(ctx, ids...)
	require.NoError(t, err)
	for _, res := range results {
		require.Equal(t, ports.StateSucceeded, res.State, "%s: %s", res.TaskID, res.Error)
	}

	var late []time.Duration
	for i := range n {
		id := fmt.Sprintf("late-%d", i)
		runs, delayed := rec.of(id)
		require.Len(t, runs, 1, id)
		require.Equal(t, 1, runs[0].attempt, id)
		// The due time is between before+delay and after+delay.
		require.False(t, runs[0].start.Before(before.Add(delay)), "%s started before its due time", id)
		require.LessOrEqual(t, runs[0].start.Sub(after.Add(delay)), time.Second, "%s started more than a second late", id)
		require.Equal(t, 2, delayed, "%s: the client's message (8 s) and two sent on (8 s, then the rest)", id)
		late = append(late, runs[0].start.Sub(before.Add(delay)))
	}
	for _, id := range []string{"retry-0", "retry-1"} {
		runs, delayed := rec.of(id)
		require.Len(t, runs, 2, id)
		require.Equal(t, []int{1, 2}, []int{runs[0].attempt, runs[1].attempt}, id)
		gap := runs[1].start.Sub(runs[0].end)
		require.GreaterOrEqual(t, gap, delay, id)
		require.LessOrEqual(t, gap, delay+time.Second, id)
		require.Equal(t, 2, delayed, "%s: sent on for 8 s, then 8 s and the rest", id)
		late = append(late, gap-delay)
	}
	slices.Sort(late)
	t.Logf("start after the due time (submit latency included, %d tasks): min %v, median %v, max %v; submit took %v",
		len(late), late[0], late[len(late)/2], late[len(late)-1], after.Sub(before))
}
