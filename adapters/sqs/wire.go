package sqs

import (
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/wire"

	"github.com/dagq/dagq/ports"
)

// QueueURL is the URL of the queue the Broker of Set is bound to. It is a
// type of its own so that Wire tells it from other strings.
type QueueURL string

// Set is the Wire provider set of the SQS adapter: a *Broker on QueueURL, a
// *CancelChannel (marks in the injector's ports.StateStore, e.g.
// adapters/s3's) and a *CompletionBus, each bound to its port and each with
// a cleanup that closes it. The injector provides the *sqs.Client (region,
// credentials, endpoint), the QueueURL and the nil-safe *Options,
// *CancelOptions and *CompletionOptions. A second queue (a run queue) is
// the application's to bind: call ProvideBroker with its URL, under a type
// of its own.
var Set = wire.NewSet(
	ProvideBroker,
	ProvideCancelChannel,
	ProvideCompletionBus,
	wire.Bind(new(ports.Broker), new(*Broker)),
	wire.Bind(new(ports.CancelChannel), new(*CancelChannel)),
	wire.Bind(new(ports.CompletionBus), new(*CompletionBus)),
)

// ProvideBroker returns New(client, url, opts) and a cleanup that closes it.
func ProvideBroker(client *sqs.Client, url QueueURL, opts *Options) (*Broker, func(), error) {
	return closing(New(client, string(url), opts))
}

// ProvideCancelChannel returns NewCancelChannel(client, marks, opts) and a
// cleanup that closes it (deleting its open subscription queues).
func ProvideCancelChannel(client *sqs.Client, marks ports.StateStore, opts *CancelOptions) (*CancelChannel, func(), error) {
	return closing(NewCancelChannel(client, marks, opts))
}

// ProvideCompletionBus returns NewCompletionBus(client, opts) and a cleanup
// that closes it (deleting its open inbox queues).
func ProvideCompletionBus(client *sqs.Client, opts *CompletionOptions) (*CompletionBus, func(), error) {
	return closing(NewCompletionBus(client, opts))
}

func closing[T interface{ Close() error }](h T, err error) (T, func(), error) {
	if err != nil {
		var zero T
		return zero, nil, err
	}
	return h, func() { _ = h.Close() }, nil
}
