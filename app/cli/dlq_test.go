package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// dagqIn runs the CLI on rt with stdin.
func dagqIn(t *testing.T, ctx context.Context, rt *app.Runtime, stdin string, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	code := cli.Execute(ctx, nil, args, &out, &errb, cli.WithRuntime(rt), cli.WithInput(strings.NewReader(stdin)))
	r := result{code: code, stdout: out.String(), stderr: errb.String()}
	t.Logf("dagq %s → %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, r.stdout, r.stderr)
	assert.NotContains(t, r.stderr, "panic")
	return r
}

// queue stats, dlq list, redrive and purge on the emulators (issue 14,
// item 3): two dead letters, one recorded as dead-lettered by a sweep; list
// shows both with the reason; redrive --task moves one back (its
// dead-lettered result deleted) and a worker runs it; purge asks first.
func TestSQS_DLQCommands(t *testing.T) {
	cfg, flags := sqsEnv(t)
	r := dagq(t, append([]string{"queue", "init"}, flags...)...)
	require.Equal(t, cli.ExitOK, r.code)
	cfg.Worker.DeadLetterSweep = 0 // no sweep holding the messages while the commands read them
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	r = inCtx(t, ctx, rt, "dlq", "list")
	require.Equal(t, cli.ExitOK, r.code)
	require.Contains(t, r.stdout, "no messages in ")

	dl, err := rt.DeadLetters(ctx, app.QueueTasks)
	require.NoError(t, err)
	defer dl.Close()
	for _, env := range []wire.Envelope{
		{TaskID: "dl-echo", Task: "echo", Args: json.RawMessage(`"back again"`), RunID: "r1", StepID: "a"},
		{TaskID: "dl-other", Task: "echo", Args: json.RawMessage(`1`)},
	} {
		body, err := env.Encode()
		require.NoError(t, err)
		require.NoError(t, dl.Send(ctx, ports.Message{ID: env.TaskID, Body: body}))
	}
	require.NoError(t, rt.Ports.Results.Put(ctx, ports.Result{TaskID: "dl-echo", State: ports.StateFailed,
		Error: "dead-lettered after 10 receives: test", DeadLettered: true}))

	var stats []app.QueueStat
	require.Eventually(t, func() bool {
		r = inCtx(t, ctx, rt, "queue", "stats", "-o", "json")
		require.Equal(t, cli.ExitOK, r.code)
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &stats))
		return len(stats) == 4 && stats[1].DLQ && stats[1].Visible == 2
	}, 30*time.Second, time.Second, "the task DLQ holds 2 (SQS counts are approximate)")
	require.Equal(t, app.QueueTasks, stats[0].Role)
	require.Equal(t, app.QueueRuns, stats[2].Role)
	r = inCtx(t, ctx, rt, "queue", "stats")
	require.Regexp(t, `(?m)^tasks DLQ\s+2\s+0\s+0\s+\S+-dlq$`, r.stdout)

	r = inCtx(t, ctx, rt, "dlq", "list", "-o", "json")
	require.Equal(t, cli.ExitOK, r.code)
	var dls []core.DeadLetter
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &dls))
	require.Len(t, dls, 2)
	byID := map[string]core.DeadLetter{}
	for _, d := range dls {
		byID[d.ID] = d
	}
	require.Equal(t, "r1", byID["dl-echo"].RunID)
	require.Equal(t, "dead-lettered after 10 receives: test", byID["dl-echo"].Reason)
	require.Equal(t, app.MaxReceiveCount(cfg.Retry.MaxAttempts), byID["dl-other"].Receives)
	r = inCtx(t, ctx, rt, "dlq", "list")
	require.Regexp(t, `(?m)^dl-echo\s+echo\s+r1\s+a\s+\S+\s+\d+\s+dead-lettered after 10 receives: test$`, r.stdout,
		"listed again at once: the list handed the messages back")

	r = inCtx(t, ctx, rt, "dlq", "redrive", "--task", "nope")
	require.Equal(t, cli.ExitNotFound, r.code)
	r = inCtx(t, ctx, rt, "dlq", "redrive")
	require.Equal(t, cli.ExitUsage, r.code)
	r = inCtx(t, ctx, rt, "dlq", "redrive", "--task", "dl-echo")
	require.Equal(t, cli.ExitOK, r.code)
	require.Contains(t, r.stdout, "redriven dl-echo\n")

	pool, err := rt.StartWorkers(ctx, 1)
	require.NoError(t, err)
	defer func() { require.NoError(t, pool.Stop()) }()
	res, err := rt.Client.Wait(ctx, "dl-echo")
	require.NoError(t, err)
	require.Equal(t, ports.StateSucceeded, res.State, "the redriven task ran; its dead-lettered result was deleted")
	require.JSONEq(t, `"back again"`, string(res.Output))

	// --all on fauxqs, which has no message-move task: one by one.
	require.NoError(t, dl.Send(ctx, ports.Message{ID: "dl-all", Body: []byte("foreign")}))
	r = inCtx(t, ctx, rt, "dlq", "redrive", "--all")
	require.Equal(t, cli.ExitOK, r.code)
	require.Contains(t, r.stdout, "redriven dl-all\n")
	require.Contains(t, r.stdout, " message(s) moved back to the tasks queue\n")
	require.NoError(t, dl.Send(ctx, ports.Message{ID: "dl-last", Body: []byte("foreign")}))

	r = dagqIn(t, ctx, rt, "n\n", "dlq", "purge")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, "not confirmed")
	r = dagqIn(t, ctx, rt, "y\n", "dlq", "purge")
	require.Equal(t, cli.ExitOK, r.code)
	require.Contains(t, r.stdout, "1 message(s) deleted from ")
	r = inCtx(t, ctx, rt, "dlq", "list", "--runs")
	require.Equal(t, cli.ExitOK, r.code)
	require.Contains(t, r.stdout, "no messages in ")
}

// On the memory transport the queues live inside one process: the
// commands refuse, naming the fix.
func TestDLQCommands_MemoryRefused(t *testing.T) {
	for _, args := range [][]string{{"queue", "stats"}, {"dlq", "list"}, {"dlq", "redrive", "--all"}, {"dlq", "purge", "--yes"}} {
		r := dagq(t, args...)
		require.Equal(t, cli.ExitUsage, r.code, args)
		require.Contains(t, r.stderr, "needs a shared transport", args)
	}
}
