package sqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/dagq/dagq/ports"
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
	policy, err := b.redrivePolicy(ctx, op)
	if err != nil || policy.arn == "" {
		return err
	}
	account, name, ok := arnQueue(policy.arn)
	if !ok {
		return nil
	}
	if _, err := b.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{
		QueueName: aws.String(name), QueueOwnerAWSAccountId: aws.String(account),
	}); err != nil {
		return &DeadLetterQueueError{Queue: b.url, ARN: policy.arn,
			Err: wrap(op+": GetQueueUrl "+name, err, false)}
	}
	return nil
}

// redrive is a queue's redrive policy, as far as dagq reads it.
type redrive struct {
	arn         string // deadLetterTargetArn; empty: no policy dagq can follow
	maxReceives int    // maxReceiveCount; 0 when absent or unreadable
}

// redrivePolicy reads the queue's RedrivePolicy attribute (one
// GetQueueAttributes request). A queue without one, or with one that is not
// JSON naming a target (SQS validated it when it was set), has an empty
// redrive.
func (b *Broker) redrivePolicy(ctx context.Context, op string) (redrive, error) {
	out, err := b.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(b.url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameRedrivePolicy},
	})
	if err != nil {
		return redrive{}, wrap(op+": GetQueueAttributes "+b.url, err, false)
	}
	policy := out.Attributes[string(types.QueueAttributeNameRedrivePolicy)]
	if policy == "" {
		return redrive{}, nil
	}
	var p struct {
		DeadLetterTargetArn string `json:"deadLetterTargetArn"`
		// A number in SQS's answer; a string where it was set as one.
		MaxReceiveCount json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(policy), &p); err != nil {
		return redrive{}, nil
	}
	n, _ := strconv.Atoi(strings.Trim(string(p.MaxReceiveCount), `"`))
	return redrive{arn: p.DeadLetterTargetArn, maxReceives: n}, nil
}

// DeadLetters implements ports.DeadLetterer: the queue's RedrivePolicy (one
// GetQueueAttributes request) and its DLQ's URL (one GetQueueUrl request),
// and a new Broker on that URL with this one's options, except a one-second
// WaitTime (a DLQ is read in sweeps, not served). A queue without a redrive
// policy, or whose policy names a missing queue, fails with
// ports.ErrNotFound.
func (b *Broker) DeadLetters(ctx context.Context) (ports.DeadLetterQueue, error) {
	const op = "dead letters"
	if b.isClosed() {
		return ports.DeadLetterQueue{}, closedErr(op)
	}
	policy, err := b.redrivePolicy(ctx, op)
	if err != nil {
		return ports.DeadLetterQueue{}, err
	}
	account, name, ok := arnQueue(policy.arn)
	if !ok {
		return ports.DeadLetterQueue{}, fmt.Errorf("sqs: %s: queue %s: %w: no redrive policy naming a dead-letter queue",
			op, b.url, ports.ErrNotFound)
	}
	out, err := b.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{
		QueueName: aws.String(name), QueueOwnerAWSAccountId: aws.String(account),
	})
	if err != nil {
		return ports.DeadLetterQueue{}, &DeadLetterQueueError{Queue: b.url, ARN: policy.arn,
			Err: wrap(op+": GetQueueUrl "+name, err, false)}
	}
	url := aws.ToString(out.QueueUrl)
	dl, err := New(b.client, url, &Options{WaitTime: time.Second, MaxBodyBytes: b.maxBody, Logger: b.log})
	if err != nil {
		return ports.DeadLetterQueue{}, err
	}
	return ports.DeadLetterQueue{Broker: dl, Name: url, MaxReceives: policy.maxReceives}, nil
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

// MoveBack starts SQS's message-move task on this queue, a dead-letter
// queue: SQS moves every message in it back to the queue it came from
// (StartMessageMoveTask with this queue's ARN as the source and no
// destination), asynchronously, at its own pace (by default up to 500
// messages a second). It returns the task handle (for CancelMessageMoveTask
// or ListMessageMoveTasks). It costs one GetQueueAttributes (the ARN) and
// one StartMessageMoveTask. A server without the API (fauxqs, and other
// SQS-compatible servers answer InvalidAction or UnsupportedOperation)
// fails with ports.ErrUnsupported; a queue that is no DLQ of any queue
// fails as SQS answers (InvalidParameterValue).
func (b *Broker) MoveBack(ctx context.Context) (string, error) {
	const op = "move back"
	if b.isClosed() {
		return "", closedErr(op)
	}
	out, err := b.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(b.url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", wrap(op+": GetQueueAttributes "+b.url, err, false)
	}
	arn := out.Attributes[string(types.QueueAttributeNameQueueArn)]
	if arn == "" {
		return "", fmt.Errorf("sqs: %s: %w: queue %s reported no QueueArn", op, ports.ErrUnsupported, b.url)
	}
	task, err := b.client.StartMessageMoveTask(ctx, &sqs.StartMessageMoveTaskInput{SourceArn: aws.String(arn)})
	if err != nil {
		var api smithy.APIError
		if errors.As(err, &api) {
			switch api.ErrorCode() {
			case "InvalidAction", "UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", "UnknownOperationException":
				return "", fmt.Errorf("sqs: %s: StartMessageMoveTask %s: %w: %w", op, arn, ports.ErrUnsupported, err)
			}
		}
		return "", wrap(op+": StartMessageMoveTask "+arn, err, false)
	}
	return aws.ToString(task.TaskHandle), nil
}
