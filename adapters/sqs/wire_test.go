package sqs_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	dagqsqs "github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/ports"
)

// The providers of Set return the constructors' errors without a cleanup,
// and a cleanup that closes the handle otherwise.
func TestSetProviders(t *testing.T) {
	c := sqs.New(sqs.Options{Region: "us-east-1"})
	_, cleanup, err := dagqsqs.ProvideBroker(c, "", nil)
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	require.Nil(t, cleanup)

	b, cleanup, err := dagqsqs.ProvideBroker(c, "https://sqs.us-east-1.amazonaws.com/1/q", nil)
	require.NoError(t, err)
	cleanup()
	require.ErrorIs(t, b.Send(context.Background(), ports.Message{ID: "a", Body: []byte("x")}), ports.ErrClosed)

	bus, cleanup, err := dagqsqs.ProvideCompletionBus(c, nil)
	require.NoError(t, err)
	cleanup()
	_, err = bus.Open(context.Background())
	require.ErrorIs(t, err, ports.ErrClosed)

	_, cleanup, err = dagqsqs.ProvideCancelChannel(c, nil, nil)
	require.ErrorIs(t, err, ports.ErrInvalidArgument, "a CancelChannel needs a StateStore")
	require.Nil(t, cleanup)
}
