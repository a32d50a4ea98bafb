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

	"github.com/dagq/dagq/adapters/awsports"
	dagqs3 "github.com/dagq/dagq/adapters/s3"
	dagqsqs "github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/ports"
)

// SQSSet provides the ports of the sqs transport, built by
// adapters/awsports (the one wiring of the AWS transport, which embedders use
// too) from the config: a Broker on the task queue (sqs.queue_url) and a
// RunBroker on the run queue (sqs.run_queue_url), and the ResultBackend,
// StateStore and claim-check PayloadStore in the bucket (s3.bucket,
// s3.prefix), the CompletionBus (a reply queue per client) and the
// CancelChannel (marks in the bucket, broadcast to a queue per worker).
// ProvidePorts then applies the settings every transport shares
// (cancellation switch, claim-check threshold, signing) from the config.
var SQSSet = wire.NewSet(
	ProvideAWSConfig,
	ProvideAWSTransport,
	ProvideSQSBroker,
	ProvideSQSRunBroker,
	ProvideSQSChecker,
	wire.FieldsOf(new(*awsports.Transport), "Results", "State", "Payloads", "Cancels", "Completions"),
	wire.Bind(new(ports.ResultBackend), new(*dagqs3.ResultBackend)),
	wire.Bind(new(ports.StateStore), new(*dagqs3.StateStore)),
	wire.Bind(new(ports.PayloadStore), new(*dagqs3.PayloadStore)),
	wire.Bind(new(ports.CancelChannel), new(*dagqsqs.CancelChannel)),
	wire.Bind(new(ports.CompletionBus), new(*dagqsqs.CompletionBus)),
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

// awsOptions are the awsports options of the config's transport: queues,
// bucket, endpoints, long polling, fair-queue mode and the cancel channel's
// ListQueues lag. The settings every transport shares (cancellation switch,
// claim-check threshold, signing) are applied by ProvidePorts.
func awsOptions(cfg config.Config, log *slog.Logger) awsports.Options {
	q := cfg.SQS
	return awsports.Options{
		QueueURL: q.QueueURL, RunQueueURL: q.RunQueueURL,
		Bucket: cfg.S3.Bucket, Prefix: cfg.S3.Prefix,
		SQSEndpoint: q.Endpoint, S3Endpoint: cfg.S3.Endpoint, S3PathStyle: cfg.S3.PathStyle,
		WaitTime:      q.WaitTime,
		FairQueue:     fairModes[q.FairQueue],
		CancelListLag: cancelListLag(q.CancelListLag),
		Logger:        log,
	}
}

// fairModes maps sqs.fair_queue (validated) to the adapter's modes. "on"
// is passed as auto, which does the same on a FIFO queue and, on a standard
// queue, the same without the adapter's warning: config.Notices words that
// case once, naming the key.
var fairModes = map[string]dagqsqs.FairMode{"auto": dagqsqs.FairAuto, "on": dagqsqs.FairAuto, "off": dagqsqs.FairOff}

// cancelListLag maps sqs.cancel_list_lag, where 0s means none (emulators
// that list a new queue at once), to the adapter's ListLag, where none is
// dagqsqs.NoCancelListLag and zero means the 60s default.
func cancelListLag(d time.Duration) time.Duration {
	if d == 0 {
		return dagqsqs.NoCancelListLag
	}
	return d
}

// ProvideSQSClient builds the SQS client, with sqs.endpoint as its base
// endpoint when set (the client awsports builds).
func ProvideSQSClient(a AWS, cfg config.Config) *awssqs.Client {
	return awsOptions(cfg, nil).SQSClient(a.Config)
}

// ProvideS3Client builds the S3 client, with s3.endpoint as its base
// endpoint when set and path-style addressing when s3.path_style is true
// (the client awsports builds).
func ProvideS3Client(a AWS, cfg config.Config) *awss3.Client {
	return awsOptions(cfg, nil).S3Client(a.Config)
}

// ProvideAWSTransport builds the ports of the sqs transport with
// awsports.Open; the cleanup closes them (deleting the queues of open
// inboxes and cancel subscriptions).
func ProvideAWSTransport(a AWS, cfg config.Config, log *slog.Logger) (*awsports.Transport, func(), error) {
	t, err := awsports.Open(context.Background(), a.Config, awsOptions(cfg, log))
	if err != nil {
		return nil, nil, err
	}
	return t, func() { _ = t.Close() }, nil
}

// ProvideSQSBroker returns the Broker on the task queue (sqs.queue_url),
// which also reads the queue's depth (dagq worker --metrics-addr).
func ProvideSQSBroker(t *awsports.Transport, cfg config.Config) ports.Broker {
	return sqsQueue{t.Broker, t.SQS, cfg.SQS.QueueURL}
}

// ProvideSQSRunBroker returns the Broker on the run queue
// (sqs.run_queue_url), which also reads the queue's depth.
func ProvideSQSRunBroker(t *awsports.Transport, cfg config.Config) RunBroker {
	return sqsQueue{t.RunBroker, t.SQS, cfg.SQS.RunQueueURL}
}
