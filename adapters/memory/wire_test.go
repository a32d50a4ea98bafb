package memory_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/ports"
)

func TestProvideTransport(t *testing.T) {
	tr, err := memory.ProvideTransport(memory.Queues{
		{Name: "tasks", DeadLetterQueue: "tasks-dlq", MaxReceives: 4},
		{Name: "runs.fifo"},
	})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, tr.Broker("tasks").Send(ctx, ports.Message{ID: "a", Body: []byte("x"), Delay: 1}))
	require.ErrorIs(t, tr.Broker("runs.fifo").Send(ctx, ports.Message{ID: "a", Body: []byte("x"), Delay: 1}),
		ports.ErrInvalidArgument, "a name ending in .fifo makes a FIFO queue (no delays)")

	dl, err := tr.Broker("tasks").(ports.DeadLetterer).DeadLetters(ctx)
	require.NoError(t, err, "the redrive policy")
	require.Equal(t, 4, dl.MaxReceives)
	require.Equal(t, "tasks-dlq", dl.Name)
	require.NoError(t, dl.Close())
	_, err = tr.Broker("runs.fifo").(ports.DeadLetterer).DeadLetters(ctx)
	require.ErrorIs(t, err, ports.ErrNotFound, "no redrive policy")

	_, err = memory.ProvideTransport(memory.Queues{{Name: "bad name"}})
	require.Error(t, err)

	st, cleanup, err := memory.ProvideStateStore(tr)
	require.NoError(t, err)
	cleanup()
	_, err = st.Get(ctx, "k")
	require.ErrorIs(t, err, ports.ErrClosed, "the cleanup closes the handle")
}
