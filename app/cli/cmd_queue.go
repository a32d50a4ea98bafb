package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/spf13/cobra"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core/dag"
)

// Settings of the queues "dagq queue init" creates.
const (
	// QueueMaxMessageSize is the MaximumMessageSize of created queues: the
	// SQS maximum, 1 MiB.
	QueueMaxMessageSize = 1 << 20
	// DLQRetention is the MessageRetentionPeriod of created DLQs, in
	// seconds: the SQS maximum, 14 days.
	DLQRetention = 14 * 24 * 3600
)

func (c *cli) queueCmd() *cobra.Command {
	queue := &cobra.Command{
		Use:   "queue",
		Short: "Manage the transport's queues and bucket",
		Args:  exactArgs(0, "none; see the subcommands"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create the queues, their dead-letter queues and the bucket (idempotent; for development)",
		Long: `init creates what the configured transport needs, and leaves what exists in
place (it updates the settings of existing queues):

  - on sqs: the task queue (sqs.queue_url) and the run queue (sqs.run_queue_url),
    each with a dead-letter queue named <name>-dlq (FIFO: <base>-dlq.fifo) and a
    redrive policy moving a message there after more receives than the
    retries allow (task queue: max(10, retry.max_attempts+2); run queue:
    the run task's 20 attempts + 2); MaximumMessageSize
    1 MiB and VisibilityTimeout worker.lease; and the bucket (s3.bucket).
    Queues are created by the name in their URL, with the configured
    credentials, region and endpoint;
  - on memory: nothing (the queues and stores live in the dagq process).

Production setups usually manage these with infrastructure as code instead.`,
		Args: exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := c.loadConfig(cmd)
			if err != nil {
				return err
			}
			if c.rt != nil {
				cfg = c.rt.Config
			}
			out := cmd.OutOrStdout()
			switch cfg.Transport {
			case config.TransportSQS:
				return initSQS(cmd.Context(), cfg, out)
			default:
				fmt.Fprintf(out, "transport %s: nothing to create (its queues and stores live in the dagq process)\n", cfg.Transport)
				return nil
			}
		},
	}
	queue.AddCommand(initCmd, c.queueStatsCmd())
	return queue
}

// initSQS creates the queues, DLQs and bucket of an sqs configuration.
func initSQS(ctx context.Context, cfg config.Config, out io.Writer) error {
	a, closeAWS, err := app.ProvideAWSConfig(cfg)
	if err != nil {
		return err
	}
	defer closeAWS()
	sq := app.ProvideSQSClient(a, cfg)
	s3c := app.ProvideS3Client(a, cfg)
	lease := int(math.Ceil(cfg.Worker.Lease.Seconds()))
	for _, k := range []struct {
		key, url    string
		maxReceives int
	}{
		{"sqs.queue_url", cfg.SQS.QueueURL, app.MaxReceiveCount(cfg.Retry.MaxAttempts)},
		{"sqs.run_queue_url", cfg.SQS.RunQueueURL, app.MaxReceiveCount(dag.DefaultRunTaskRetry.MaxAttempts)},
	} {
		name := config.QueueName(k.url)
		dlqURL, err := ensureQueue(ctx, sq, out, app.DLQName(name), map[string]string{
			string(sqstypes.QueueAttributeNameMaximumMessageSize):     strconv.Itoa(QueueMaxMessageSize),
			string(sqstypes.QueueAttributeNameMessageRetentionPeriod): strconv.Itoa(DLQRetention),
		})
		if err != nil {
			return fmt.Errorf("%s: dead-letter queue %s: %w", k.key, app.DLQName(name), err)
		}
		arn, err := sq.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
			QueueUrl: aws.String(dlqURL), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
		})
		if err != nil {
			return fmt.Errorf("%s: dead-letter queue %s: get its ARN: %w", k.key, app.DLQName(name), err)
		}
		redrive, _ := json.Marshal(map[string]string{
			"deadLetterTargetArn": arn.Attributes[string(sqstypes.QueueAttributeNameQueueArn)],
			"maxReceiveCount":     strconv.Itoa(k.maxReceives),
		})
		if _, err := ensureQueue(ctx, sq, out, name, map[string]string{
			string(sqstypes.QueueAttributeNameMaximumMessageSize): strconv.Itoa(QueueMaxMessageSize),
			string(sqstypes.QueueAttributeNameVisibilityTimeout):  strconv.Itoa(lease),
			string(sqstypes.QueueAttributeNameRedrivePolicy):      string(redrive),
		}); err != nil {
			return fmt.Errorf("%s: queue %s: %w", k.key, name, err)
		}
	}
	return ensureBucket(ctx, s3c, a.Config.Region, cfg.S3.Bucket, out)
}

// ensureQueue creates queue name with attrs, or sets attrs on it when it
// exists, and returns its URL.
func ensureQueue(ctx context.Context, c *awssqs.Client, out io.Writer, name string, attrs map[string]string) (string, error) {
	got, err := c.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(name)})
	var missing *sqstypes.QueueDoesNotExist
	switch {
	case err == nil:
		if _, err := c.SetQueueAttributes(ctx, &awssqs.SetQueueAttributesInput{QueueUrl: got.QueueUrl, Attributes: attrs}); err != nil {
			return "", fmt.Errorf("update its settings: %w", err)
		}
		fmt.Fprintf(out, "queue %s exists (%s); settings updated\n", name, aws.ToString(got.QueueUrl))
		return aws.ToString(got.QueueUrl), nil
	case !errors.As(err, &missing) && !strings.Contains(err.Error(), "NonExistentQueue"):
		return "", fmt.Errorf("look it up: %w", err)
	}
	create := map[string]string{}
	for k, v := range attrs {
		create[k] = v
	}
	if config.IsFIFO(name) {
		create[string(sqstypes.QueueAttributeNameFifoQueue)] = "true"
	}
	made, err := c.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(name), Attributes: create})
	if err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	fmt.Fprintf(out, "created queue %s (%s)\n", name, aws.ToString(made.QueueUrl))
	return aws.ToString(made.QueueUrl), nil
}

// ensureBucket creates bucket in region unless it exists.
func ensureBucket(ctx context.Context, c *awss3.Client, region, bucket string, out io.Writer) error {
	in := &awss3.CreateBucketInput{Bucket: aws.String(bucket)}
	if region != "" && region != "us-east-1" {
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(region)}
	}
	_, err := c.CreateBucket(ctx, in)
	var mine *s3types.BucketAlreadyOwnedByYou
	var taken *s3types.BucketAlreadyExists
	switch {
	case err == nil:
		fmt.Fprintf(out, "created bucket %s\n", bucket)
	case errors.As(err, &mine):
		fmt.Fprintf(out, "bucket %s exists\n", bucket)
	case errors.As(err, &taken):
		return fmt.Errorf("s3.bucket: bucket %s belongs to another account; valid: a bucket name of your own (names are global)", bucket)
	default:
		return fmt.Errorf("s3.bucket: create bucket %s: %w", bucket, err)
	}
	return nil
}
