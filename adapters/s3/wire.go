package s3

import (
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/wire"

	"github.com/dagq/dagq/ports"
)

// Bucket is the name of the bucket the stores of Set keep their objects
// in. It is a type of its own so that Wire tells it from other strings.
type Bucket string

// Set is the Wire provider set of the S3 adapter: the *ResultBackend, the
// *StateStore and the claim-check *PayloadStore in one Bucket (separate key
// spaces under Options.Prefix), each bound to its port and each with a
// cleanup that closes it. The injector provides the *s3.Client (region,
// credentials, endpoint, path-style addressing), the Bucket and the
// nil-safe *Options.
var Set = wire.NewSet(
	ProvideResultBackend,
	ProvideStateStore,
	ProvidePayloadStore,
	wire.Bind(new(ports.ResultBackend), new(*ResultBackend)),
	wire.Bind(new(ports.StateStore), new(*StateStore)),
	wire.Bind(new(ports.PayloadStore), new(*PayloadStore)),
)

// ProvideResultBackend returns NewResultBackend(client, bucket, opts) and a
// cleanup that closes it.
func ProvideResultBackend(client *s3.Client, bucket Bucket, opts *Options) (*ResultBackend, func(), error) {
	return closing(NewResultBackend(client, string(bucket), opts))
}

// ProvideStateStore returns NewStateStore(client, bucket, opts) and a
// cleanup that closes it.
func ProvideStateStore(client *s3.Client, bucket Bucket, opts *Options) (*StateStore, func(), error) {
	return closing(NewStateStore(client, string(bucket), opts))
}

// ProvidePayloadStore returns NewPayloadStore(client, bucket, opts) and a
// cleanup that closes it.
func ProvidePayloadStore(client *s3.Client, bucket Bucket, opts *Options) (*PayloadStore, func(), error) {
	return closing(NewPayloadStore(client, string(bucket), opts))
}

func closing[T interface{ Close() error }](h T, err error) (T, func(), error) {
	if err != nil {
		var zero T
		return zero, nil, err
	}
	return h, func() { _ = h.Close() }, nil
}
