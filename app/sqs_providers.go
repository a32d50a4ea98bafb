package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
	"github.com/google/wire"

	dagqs3 "github.com/dagq/dagq/adapters/s3"
	dagqsqs "github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/ports"
)

// SQSSet provides the ports of the sqs transport: a Broker on the task queue
// (sqs.queue_url) and a RunBroker on the run queue (sqs.run_queue_url), and
// the ResultBackend, StateStore and claim-check PayloadStore in the bucket
// (s3.bucket, s3.prefix), the CompletionBus (a reply queue per client) and
// the CancelChannel (marks in the bucket, broadcast to a queue per worker).
var SQSSet = wire.NewSet(
	ProvideAWSConfig,
	ProvideSQSClient,
	ProvideS3Client,
	ProvideSQSBroker,
	ProvideSQSRunBroker,
	ProvideS3ResultBackend,
	ProvideS3StateStore,
	ProvideS3PayloadStore,
	ProvideSQSCancelChannel,
	ProvideSQSCompletionBus,
)

// AWS is the AWS SDK configuration of the sqs transport; its HTTP client is
// shared by the SQS and S3 clients (its idle connections are closed by the
// cleanup of ProvideAWSConfig).
type AWS struct {
	Config aws.Config
}

// ProvideAWSConfig loads the AWS configuration from the standard chain
// (environment, shared files, instance roles; AWS_ENDPOINT_URL is honoured
// by the clients) with sqs.region applied over it, else us-east-1 when the
// chain names no region. apiOptions are appended to its APIOptions, so they
// apply to every request of the SQS and S3 clients (WithAWSAPIOptions,
// WithAWSCounter). The cleanup closes the idle connections of the HTTP
// client the SQS and S3 clients share.
func ProvideAWSConfig(cfg config.Config, apiOptions ...func(*middleware.Stack) error) (AWS, func(), error) {
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.SQS.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.SQS.Region))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ac, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return AWS{}, nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	// Use the transport of the SDK's HTTP client (with what the chain
	// configured, such as AWS_CA_BUNDLE) in a client whose idle connections
	// the cleanup can close.
	closeIdle := func() {}
	if b, ok := ac.HTTPClient.(*awshttp.BuildableClient); ok {
		tr := b.GetTransport()
		ac.HTTPClient = &http.Client{Transport: tr, Timeout: b.GetTimeout()}
		closeIdle = tr.CloseIdleConnections
	}
	if ac.Region == "" {
		ac.Region = config.DefaultRegion
	}
	ac.APIOptions = append(ac.APIOptions, apiOptions...)
	// sqs.region is validated against the queue URLs; a region from the
	// AWS chain is checked here, once it is known.
	for _, k := range []struct{ key, url string }{{"sqs.queue_url", cfg.SQS.QueueURL}, {"sqs.run_queue_url", cfg.SQS.RunQueueURL}} {
		if r := config.URLRegion(k.url); r != "" && r != ac.Region {
			closeIdle()
			return AWS{}, nil, fmt.Errorf("%s: %q is in region %s but the AWS region is %s (from the AWS chain: AWS_REGION or the profile); "+
				"valid: set sqs.region (%s) to %s", k.key, k.url, r, ac.Region, config.EnvName("sqs.region"), r)
		}
	}
	return AWS{Config: ac}, closeIdle, nil
}

// ProvideSQSClient builds the SQS client, with sqs.endpoint as its base
// endpoint when set.
func ProvideSQSClient(a AWS, cfg config.Config) *awssqs.Client {
	return awssqs.NewFromConfig(a.Config, func(o *awssqs.Options) {
		if cfg.SQS.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.SQS.Endpoint)
		}
	})
}

// ProvideS3Client builds the S3 client, with s3.endpoint as its base
// endpoint when set and path-style addressing when s3.path_style is true.
func ProvideS3Client(a AWS, cfg config.Config) *awss3.Client {
	return awss3.NewFromConfig(a.Config, func(o *awss3.Options) {
		if cfg.S3.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.S3.Endpoint)
		}
		o.UsePathStyle = cfg.S3.PathStyle
	})
}

// sqsOptions are the adapter options of the queue at url. sqs.fair_queue
// "on" with a standard queue is passed as auto, which does the same (no
// message group): config.Notices words that case once, naming the key, and
// the adapter would warn about it again.
func sqsOptions(cfg config.Config, url string, log *slog.Logger) *dagqsqs.Options {
	fair := fairModes[cfg.SQS.FairQueue]
	if fair == dagqsqs.FairOn && !dagqsqs.IsFIFOURL(url) {
		fair = dagqsqs.FairAuto
	}
	return &dagqsqs.Options{WaitTime: cfg.SQS.WaitTime, FairQueue: fair, Logger: log}
}

// fairModes maps sqs.fair_queue (validated) to the adapter's modes.
var fairModes = map[string]dagqsqs.FairMode{"auto": dagqsqs.FairAuto, "on": dagqsqs.FairOn, "off": dagqsqs.FairOff}

// ProvideSQSBroker returns a Broker on the task queue (sqs.queue_url).
func ProvideSQSBroker(c *awssqs.Client, cfg config.Config, log *slog.Logger) (ports.Broker, func(), error) {
	b, err := dagqsqs.New(c, cfg.SQS.QueueURL, sqsOptions(cfg, cfg.SQS.QueueURL, log))
	if err != nil {
		return nil, nil, fmt.Errorf("sqs.queue_url: %w", err)
	}
	return sqsQueue{b, c, cfg.SQS.QueueURL}, func() { _ = b.Close() }, nil
}

// ProvideSQSRunBroker returns a Broker on the run queue (sqs.run_queue_url).
func ProvideSQSRunBroker(c *awssqs.Client, cfg config.Config, log *slog.Logger) (RunBroker, func(), error) {
	b, err := dagqsqs.New(c, cfg.SQS.RunQueueURL, sqsOptions(cfg, cfg.SQS.RunQueueURL, log))
	if err != nil {
		return nil, nil, fmt.Errorf("sqs.run_queue_url: %w", err)
	}
	return sqsQueue{b, c, cfg.SQS.RunQueueURL}, func() { _ = b.Close() }, nil
}

// ProvideS3ResultBackend returns the ResultBackend in s3.bucket under
// s3.prefix.
func ProvideS3ResultBackend(c *awss3.Client, cfg config.Config) (ports.ResultBackend, func(), error) {
	r, err := dagqs3.NewResultBackend(c, cfg.S3.Bucket, &dagqs3.Options{Prefix: cfg.S3.Prefix})
	if err != nil {
		return nil, nil, fmt.Errorf("s3.bucket: %w", err)
	}
	return r, func() { _ = r.Close() }, nil
}

// ProvideS3StateStore returns the StateStore in s3.bucket under s3.prefix.
func ProvideS3StateStore(c *awss3.Client, cfg config.Config) (ports.StateStore, func(), error) {
	s, err := dagqs3.NewStateStore(c, cfg.S3.Bucket, &dagqs3.Options{Prefix: cfg.S3.Prefix})
	if err != nil {
		return nil, nil, fmt.Errorf("s3.bucket: %w", err)
	}
	return s, func() { _ = s.Close() }, nil
}

// ProvideSQSCancelChannel returns the SQS cancellation transport: durable
// marks in the StateStore (S3) plus a broadcast to one SQS queue per
// subscribed worker (dagq-cancel-…); the cleanup deletes the channel's open
// subscription queues. cancellation.enabled false drops it in ProvidePorts.
func ProvideSQSCancelChannel(c *awssqs.Client, state ports.StateStore, cfg config.Config) (ports.CancelChannel, func(), error) {
	lag := cfg.SQS.CancelListLag
	if lag == 0 {
		lag = -1 // the adapter's "none"; its zero means the default
	}
	ch, err := dagqsqs.NewCancelChannel(c, state, &dagqsqs.CancelOptions{WaitTime: cfg.SQS.WaitTime, ListLag: lag})
	if err != nil {
		return nil, nil, fmt.Errorf("sqs.wait_time: %w", err)
	}
	return ch, func() { _ = ch.Close() }, nil
}

// ProvideS3PayloadStore returns the claim-check PayloadStore in s3.bucket
// under s3.prefix (its own key space, apart from results and state).
func ProvideS3PayloadStore(c *awss3.Client, cfg config.Config) (ports.PayloadStore, func(), error) {
	s, err := dagqs3.NewPayloadStore(c, cfg.S3.Bucket, &dagqs3.Options{Prefix: cfg.S3.Prefix})
	if err != nil {
		return nil, nil, fmt.Errorf("s3.bucket: %w", err)
	}
	return s, func() { _ = s.Close() }, nil
}

// ProvideSQSCompletionBus returns the SQS CompletionBus: each waiting Client
// opens one reply queue (dagq-reply-…) that workers push completions to, so
// waiting needs no result reads; the cleanup deletes the open inboxes.
func ProvideSQSCompletionBus(c *awssqs.Client, cfg config.Config, log *slog.Logger) (ports.CompletionBus, func(), error) {
	b, err := dagqsqs.NewCompletionBus(c, &dagqsqs.CompletionOptions{WaitTime: cfg.SQS.WaitTime, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("sqs.wait_time: %w", err)
	}
	return b, func() { _ = b.Close() }, nil
}
