package sqs

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// DeadLetterQueueError reports that the dead-letter queue named by a
// queue's redrive policy cannot be used (Broker.Check). Err matches the
// sentinels of package ports like any error of this package
// (ports.ErrNotFound: the redrive policy names a queue that does not exist).
type DeadLetterQueueError struct {
	// Queue is the URL of the queue whose redrive policy names the DLQ.
	Queue string
	// ARN is the dead-letter queue's ARN, as the redrive policy has it.
	ARN string
	Err error
}

func (e *DeadLetterQueueError) Error() string {
	return fmt.Sprintf("sqs: dead-letter queue %s (the redrive policy of %s): %v", e.ARN, e.Queue, e.Err)
}

func (e *DeadLetterQueueError) Unwrap() error { return e.Err }

// Check reports whether the Broker's queue can be used, with one
// GetQueueAttributes request (which also proves that the endpoint answers
// and takes the credentials) and, when the queue's redrive policy names a
// dead-letter queue, one GetQueueUrl request for it. A failure of the
// queue's request is wrapped like any other of this package (errors.Is
// with ports.ErrNotFound, ports.ErrUnavailable, ports.ErrPermissionDenied,
// ports.ErrUnauthenticated); a failure of the DLQ's is a
// *DeadLetterQueueError around one. Check is for start-up: it sends no
// message and receives none.
func (b *Broker) Check(ctx context.Context) error {
	const op = "check"
	if b.isClosed() {
		return closedErr(op)
	}
	out, err := b.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(b.url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameRedrivePolicy},
	})
	if err != nil {
		return wrap(op+": GetQueueAttributes "+b.url, err, false)
	}
	policy := out.Attributes[string(types.QueueAttributeNameRedrivePolicy)]
	if policy == "" {
		return nil
	}
	var redrive struct {
		DeadLetterTargetArn string `json:"deadLetterTargetArn"`
	}
	if err := json.Unmarshal([]byte(policy), &redrive); err != nil || redrive.DeadLetterTargetArn == "" {
		return nil // not a policy this check can follow; SQS validated it when it was set
	}
	account, name, ok := arnQueue(redrive.DeadLetterTargetArn)
	if !ok {
		return nil
	}
	if _, err := b.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{
		QueueName: aws.String(name), QueueOwnerAWSAccountId: aws.String(account),
	}); err != nil {
		return &DeadLetterQueueError{Queue: b.url, ARN: redrive.DeadLetterTargetArn,
			Err: wrap(op+": GetQueueUrl "+name, err, false)}
	}
	return nil
}

// arnQueue returns the account and name of an SQS queue ARN
// (arn:<partition>:sqs:<region>:<account>:<name>).
func arnQueue(arn string) (account, name string, ok bool) {
	parts := strings.Split(arn, ":")
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "sqs" || parts[4] == "" || parts[5] == "" {
		return "", "", false
	}
	return parts[4], parts[5], true
}
