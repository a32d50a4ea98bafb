// Package awsports builds dagq's complete port set on AWS — SQS for tasks,
// S3 for results and large payloads — from an aws.Config, in one call:
//
//	cfg, err := config.LoadDefaultConfig(ctx) // github.com/aws/aws-sdk-go-v2/config
//	p, closePorts, err := awsports.New(ctx, cfg, awsports.Options{
//		QueueURL: "https://sqs.eu-west-1.amazonaws.com/123456789012/dagq-tasks",
//		Bucket:   "my-dagq-bucket",
//		Prefix:   "dagq/",
//	})
//	defer closePorts()
//	worker, err := core.NewWorker(core.WorkerOptions{Ports: p, Registry: reg})
//	client, err := core.NewClient(core.ClientOptions{Ports: p})
//
// It applies everything the dagq command applies to its sqs transport
// (package app delegates to it): a Broker on the task queue (FIFO queues and
// fair-queue mode handled by adapters/sqs) and, with Options.RunQueueURL, one
// on the run queue for the DAG layer's Launcher; the ResultBackend,
// StateStore and claim-check PayloadStore in one bucket under one prefix
// (adapters/s3), with the claim-check threshold; the CompletionBus, so a
// waiting client is pushed its completions on a reply queue instead of
// polling S3; the CancelChannel, durable marks in the bucket broadcast to a
// queue per process, whose subscriptions the process's workers share
// (core.ShareSubscriptions); and the Signer and Verifier of the signing
// keys. Open does the same and returns the Transport, with the SDK clients
// and each adapter's handle.
//
// The adapters are built by a Wire injector (wire.go) from the provider
// sets adapters/sqs.Set and adapters/s3.Set, which an application with its
// own injectors can use directly.
//
// This package is what services embed: it imports no configuration
// library, CLI, metrics or RPC framework.
//
// # Configuration
//
// Region and credentials come from the aws.Config, whose Region must be
// set and must be the region of AWS queue URLs (checked). Endpoints of
// emulators or VPC endpoints come from the aws.Config (AWS_ENDPOINT_URL,
// AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_S3) or Options.SQSEndpoint and
// Options.S3Endpoint. The queues and the bucket must exist (the dagq command
// creates them: dagq queue init). See [Options] for every field; its zero
// values are the defaults, and Options.CancelListLag has the meaning of
// adapters/sqs CancelOptions.ListLag (0: 60s; negative: none).
//
// # Errors
//
// New makes no request. Invalid options make it fail with one error that
// matches ports.ErrInvalidArgument and names every bad option
// ("Options.Bucket: ...") and what would be valid.
//
// Transport.Check makes one cheap request per queue, dead-letter queue and
// the bucket, for a process to find at start that they are missing or
// unreachable: it returns every problem as a *CheckError naming the
// Options field, matching ports.ErrNotFound, ports.ErrUnavailable,
// ports.ErrPermissionDenied or ports.ErrUnauthenticated.
package awsports
