package s3_test

import (
	"context"
	"testing"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	dagqs3 "github.com/dagq/dagq/adapters/s3"
	"github.com/dagq/dagq/ports"
)

// The providers of Set return the constructors' errors without a cleanup,
// and a cleanup that closes the store otherwise.
func TestSetProviders(t *testing.T) {
	c := awss3.New(awss3.Options{Region: "us-east-1"})
	_, cleanup, err := dagqs3.ProvideResultBackend(c, "", nil)
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	require.Nil(t, cleanup)

	ctx := context.Background()
	r, cleanup, err := dagqs3.ProvideResultBackend(c, "b", nil)
	require.NoError(t, err)
	cleanup()
	_, err = r.Get(ctx, "t")
	require.ErrorIs(t, err, ports.ErrClosed)

	s, cleanup, err := dagqs3.ProvideStateStore(c, "b", nil)
	require.NoError(t, err)
	cleanup()
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, ports.ErrClosed)

	p, cleanup, err := dagqs3.ProvidePayloadStore(c, "b", nil)
	require.NoError(t, err)
	cleanup()
	_, err = p.Get(ctx, "k")
	require.ErrorIs(t, err, ports.ErrClosed)
}
