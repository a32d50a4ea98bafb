package awsports

import (
	dagqs3 "github.com/dagq/dagq/adapters/s3"
	dagqsqs "github.com/dagq/dagq/adapters/sqs"
)

// adapters are the handles openAdapters (wire_gen.go, generated from
// wire.go: `go generate ./adapters/awsports/`) builds from the Wire sets of
// adapters/sqs and adapters/s3.
type adapters struct {
	Broker      *dagqsqs.Broker
	Results     *dagqs3.ResultBackend
	State       *dagqs3.StateStore
	Payloads    *dagqs3.PayloadStore
	Cancels     *dagqsqs.CancelChannel
	Completions *dagqsqs.CompletionBus
}

//go:generate go tool -modfile=../../tools/go.mod wire
