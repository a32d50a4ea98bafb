package awsports_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/awsports"
	"github.com/dagq/dagq/ports"
)

// checkErrors returns the *CheckErrors of Transport.Check, by field (a
// DLQ's under field+" dlq").
func checkErrors(t *testing.T, err error) map[string]*awsports.CheckError {
	t.Helper()
	out := map[string]*awsports.CheckError{}
	if err == nil {
		return out
	}
	j, ok := err.(interface{ Unwrap() []error })
	require.True(t, ok, "a joined error: %v", err)
	for _, e := range j.Unwrap() {
		var ce *awsports.CheckError
		require.True(t, errors.As(e, &ce), "%T %v", e, e)
		field := ce.Field
		if ce.DeadLetterQueue != "" {
			field += " dlq"
		}
		out[field] = ce
	}
	return out
}

// closedPort returns a local TCP port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// Transport.Check on the emulators reports every unusable resource as a
// *CheckError matching the ports sentinel of what is wrong: a missing
// queue, run queue, dead-letter queue or bucket is ErrNotFound; an
// endpoint nothing answers on is ErrUnavailable. It is nil when everything
// is there, and leaves out what CheckOptions skips.
func TestTransportCheck_Emulators(t *testing.T) {
	ctx := context.Background()
	cfg, o := emulator(t)
	sq := o.SQSClient(cfg)

	open := func(o awsports.Options) *awsports.Transport {
		tr, err := awsports.Open(ctx, cfg, o)
		require.NoError(t, err)
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	require.NoError(t, open(o).Check(ctx, awsports.CheckOptions{}), "the queue and the bucket exist")

	// A run queue whose redrive policy names a DLQ that was deleted.
	dlq, err := sq.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(queueName(o.QueueURL) + "-runs-dlq")})
	require.NoError(t, err)
	arn, err := sq.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	require.NoError(t, err)
	dlqARN := arn.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	policy, _ := json.Marshal(map[string]string{"deadLetterTargetArn": dlqARN, "maxReceiveCount": "10"})
	runs, err := sq.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(queueName(o.QueueURL) + "-runs"),
		Attributes: map[string]string{string(sqstypes.QueueAttributeNameRedrivePolicy): string(policy)}})
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = sq.DeleteQueue(context.Background(), &awssqs.DeleteQueueInput{QueueUrl: runs.QueueUrl}) })
	withRuns := o
	withRuns.RunQueueURL = *runs.QueueUrl
	require.NoError(t, open(withRuns).Check(ctx, awsports.CheckOptions{}), "the run queue's DLQ exists")
	_, err = sq.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: dlq.QueueUrl})
	require.NoError(t, err)
	got := checkErrors(t, open(withRuns).Check(ctx, awsports.CheckOptions{}))
	require.Len(t, got, 1, "%v", got)
	ce := got[awsports.FieldRunQueueURL+" dlq"]
	require.NotNil(t, ce, "%v", got)
	require.Equal(t, dlqARN, ce.DeadLetterQueue)
	require.Equal(t, *runs.QueueUrl, ce.Name)
	require.ErrorIs(t, ce, ports.ErrNotFound)
	require.NoError(t, open(withRuns).Check(ctx, awsports.CheckOptions{SkipRunQueue: true}))

	// Missing queue and bucket: both reported.
	missing := o
	missing.QueueURL = o.QueueURL + "-missing"
	missing.Bucket = o.Bucket + "-missing"
	got = checkErrors(t, open(missing).Check(ctx, awsports.CheckOptions{}))
	require.Len(t, got, 2, "%v", got)
	require.ErrorIs(t, got[awsports.FieldQueueURL], ports.ErrNotFound)
	require.Equal(t, missing.QueueURL, got[awsports.FieldQueueURL].Name)
	require.ErrorIs(t, got[awsports.FieldBucket], ports.ErrNotFound)
	require.Equal(t, missing.Bucket, got[awsports.FieldBucket].Name)
	got = checkErrors(t, open(missing).Check(ctx, awsports.CheckOptions{SkipBucket: true}))
	require.Len(t, got, 1, "%v", got)
	require.Contains(t, got, awsports.FieldQueueURL)

	// Endpoints nothing answers on.
	unreachable := o
	unreachable.SQSEndpoint = fmt.Sprintf("http://127.0.0.1:%d", closedPort(t))
	unreachable.S3Endpoint = fmt.Sprintf("http://127.0.0.1:%d", closedPort(t))
	got = checkErrors(t, open(unreachable).Check(ctx, awsports.CheckOptions{}))
	require.Len(t, got, 2, "%v", got)
	require.ErrorIs(t, got[awsports.FieldQueueURL], ports.ErrUnavailable)
	require.ErrorIs(t, got[awsports.FieldBucket], ports.ErrUnavailable)
}

func queueName(url string) string {
	for i := len(url) - 1; i >= 0; i-- {
		if url[i] == '/' {
			return url[i+1:]
		}
	}
	return url
}
