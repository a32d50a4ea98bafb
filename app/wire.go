//go:build wireinject

package app

import (
	"log/slog"

	"github.com/aws/smithy-go/middleware"
	"github.com/google/wire"

	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
)

// InitMemory wires a Runtime on the in-process memory transport. The
// cleanup closes the client and every port handle. tracer (nil: none)
// traces its clients and workers.
func InitMemory(cfg config.Config, reg *core.Registry, log *slog.Logger, tracer core.Tracer) (*Runtime, func(), error) {
	wire.Build(MemorySet, CoreSet)
	return nil, nil, nil
}

// InitSQS wires a Runtime on the sqs transport: SQS queues (sqs.queue_url,
// sqs.run_queue_url) and an S3 bucket (s3.bucket). The cleanup closes the
// client, every port handle and the idle AWS connections. apiOptions are
// added to the AWS configuration of its SQS and S3 clients
// (aws.Config.APIOptions; see WithAWSAPIOptions). tracer (nil: none)
// traces its clients and workers.
func InitSQS(cfg config.Config, reg *core.Registry, log *slog.Logger, tracer core.Tracer,
	apiOptions ...func(*middleware.Stack) error) (*Runtime, func(), error) {
	wire.Build(SQSSet, CoreSet)
	return nil, nil, nil
}
