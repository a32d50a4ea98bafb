package core_test

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// dagq dlq list, redrive and purge (issue 14, item 3) on the memory
// transport: list leaves the messages in the DLQ and visible at once; a
// redrive moves only what it selects, deletes a dead-lettered result so the
// task's next outcome is stored, and keeps the rest; purge empties the DLQ.
func TestDeadLetterOps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		tr := newDLTransport(t, 3)
		results := tr.ResultBackend()
		dlqBroker := tr.Broker(dlDLQ)
		for _, env := range []wire.Envelope{
			{TaskID: "a", Task: "t", RunID: "r1", StepID: "s1"},
			{TaskID: "b", Task: "t"},
			{TaskID: "c", Task: "u"},
		} {
			body, err := env.Encode()
			require.NoError(t, err)
			require.NoError(t, dlqBroker.Send(ctx, ports.Message{ID: env.TaskID, Body: body, Attributes: map[string]string{"k": env.TaskID}}))
		}
		require.NoError(t, results.Put(ctx, ports.Result{TaskID: "b", State: ports.StateFailed, Error: "dead-lettered after 3 receives", DeadLettered: true}))
		q, err := tr.Broker(dlQueue).(ports.DeadLetterer).DeadLetters(ctx)
		require.NoError(t, err)
		defer q.Close()

		list := func() map[string]core.DeadLetter {
			t.Helper()
			dls, err := core.ListDeadLetters(ctx, q, results, 0)
			require.NoError(t, err)
			m := map[string]core.DeadLetter{}
			for _, d := range dls {
				m[d.ID] = d
			}
			return m
		}
		got := list()
		require.Len(t, got, 3)
		require.Equal(t, core.DeadLetter{ID: "a", Task: "t", RunID: "r1", StepID: "s1", Receives: 3, SentAt: got["a"].SentAt,
			Bytes: got["a"].Bytes}, got["a"])
		require.Equal(t, ports.StateFailed, got["b"].State)
		require.Equal(t, "dead-lettered after 3 receives", got["b"].Reason)
		require.Len(t, list(), 3, "listing left them in the DLQ, visible at once")
		limited, err := core.ListDeadLetters(ctx, q, nil, 2)
		require.NoError(t, err)
		require.Len(t, limited, 2)

		rep, err := core.RedriveDeadLetters(ctx, tr.Broker(dlQueue), q, results, func(d core.DeadLetter) bool { return d.ID == "b" }, true)
		require.NoError(t, err)
		require.Equal(t, []string{"b"}, rep.Moved)
		_, err = results.Get(ctx, "b")
		require.ErrorIs(t, err, ports.ErrNotFound, "the dead-lettered result is gone: the next outcome is stored")
		src := tr.Broker(dlQueue)
		ds, err := src.Receive(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Len(t, ds, 1)
		require.Equal(t, "b", ds[0].ID)
		require.Equal(t, 1, ds[0].Attempt, "a fresh receive count")
		require.Equal(t, map[string]string{"k": "b"}, ds[0].Attributes)
		env, err := wire.Decode(ds[0].Body)
		require.NoError(t, err)
		require.Equal(t, "b", env.TaskID)
		require.NoError(t, src.Ack(ctx, ds[0].Receipt))
		require.Len(t, list(), 2, "the others stay")

		rep, err = core.RedriveDeadLetters(ctx, src, q, results, nil, false)
		require.NoError(t, err)
		slices.Sort(rep.Moved)
		require.Equal(t, []string{"a", "c"}, rep.Moved)
		require.Empty(t, list())

		n, err := core.PurgeDeadLetters(ctx, q)
		require.NoError(t, err)
		require.Zero(t, n)
		for _, id := range []string{"x", "y"} {
			require.NoError(t, dlqBroker.Send(ctx, ports.Message{ID: id, Body: []byte("junk")}))
		}
		n, err = core.PurgeDeadLetters(ctx, q)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.Empty(t, list())
	})
}
