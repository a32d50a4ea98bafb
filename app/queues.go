package app

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/dagq/dagq/adapters/memory"
	dagqsqs "github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/ports"
)

// QueueDepth is the number of messages in a queue, by state (approximate on
// SQS).
type QueueDepth struct {
	Visible, InFlight, Delayed int64
}

// QueueDepther is implemented by the task and run brokers of the app's
// transports (Ports.Broker, Ports.RunBroker): the depth of their queue, for
// the metrics and readiness probe of dagq worker.
type QueueDepther interface {
	QueueDepth(ctx context.Context) (QueueDepth, error)
}

var (
	_ QueueDepther = memoryQueue{}
	_ QueueDepther = sqsQueue{}
	// The wrappers keep the brokers' optional capability visible to core's
	// worker, which finds it by type assertion.
	_ ports.Requeuer     = memoryQueue{}
	_ ports.Requeuer     = sqsQueue{}
	_ ports.DeadLetterer = memoryQueue{}
	_ ports.DeadLetterer = sqsQueue{}
)

// memoryQueue is a memory Broker that reads its queue's depth from the
// Transport (no request).
type memoryQueue struct {
	ports.Broker
	tr   *memory.Transport
	name string
}

// QueueDepth implements QueueDepther.
func (q memoryQueue) QueueDepth(context.Context) (QueueDepth, error) {
	s, err := q.tr.Stats(q.name)
	if err != nil {
		return QueueDepth{}, err
	}
	return QueueDepth{Visible: int64(s.Visible), InFlight: int64(s.InFlight), Delayed: int64(s.Delayed)}, nil
}

// Requeue forwards to the memory broker's ports.Requeuer (an embedded
// interface would hide it).
func (q memoryQueue) Requeue(ctx context.Context, d ports.Delivery, attrs map[string]string) error {
	r, ok := q.Broker.(ports.Requeuer)
	if !ok {
		return fmt.Errorf("requeue on queue %q: %w: the broker cannot requeue", q.name, ports.ErrUnsupported)
	}
	return r.Requeue(ctx, d, attrs)
}

// DeadLetters forwards to the memory broker's ports.DeadLetterer.
func (q memoryQueue) DeadLetters(ctx context.Context) (ports.DeadLetterQueue, error) {
	d, ok := q.Broker.(ports.DeadLetterer)
	if !ok {
		return ports.DeadLetterQueue{}, fmt.Errorf("dead letters of queue %q: %w: the broker has no dead-letter queue", q.name, ports.ErrUnsupported)
	}
	return d.DeadLetters(ctx)
}

// sqsQueue is an SQS Broker that reads its queue's depth with one
// GetQueueAttributes request.
type sqsQueue struct {
	*dagqsqs.Broker
	client *awssqs.Client
	url    string
}

// depthAttributes are the SQS attributes of a queue's depth.
var depthAttributes = []sqstypes.QueueAttributeName{
	sqstypes.QueueAttributeNameApproximateNumberOfMessages,
	sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
	sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
}

// QueueDepth implements QueueDepther.
func (q sqsQueue) QueueDepth(ctx context.Context) (QueueDepth, error) {
	out, err := q.client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl:       &q.url,
		AttributeNames: depthAttributes,
	})
	if err != nil {
		return QueueDepth{}, fmt.Errorf("sqs: GetQueueAttributes %s: %w", q.url, err)
	}
	n := func(a sqstypes.QueueAttributeName) int64 {
		v, _ := strconv.ParseInt(out.Attributes[string(a)], 10, 64)
		return v
	}
	return QueueDepth{
		Visible:  n(sqstypes.QueueAttributeNameApproximateNumberOfMessages),
		InFlight: n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		Delayed:  n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed),
	}, nil
}

// MinMaxReceiveCount is the smallest maxReceiveCount of a redrive policy
// dagq sets (dagq queue init; the memory transport's queues): a message
// received this often without being deleted moves to the DLQ. The DLQ is
// the safety net behind the workers' own attempt limit, so it must not cut
// retries short (see MaxReceiveCount).
const MinMaxReceiveCount = 10

// DLQName returns the name of the dead-letter queue "dagq queue init"
// (and the memory transport) creates for queue name: <name>-dlq, or <base>-dlq.fifo for a FIFO queue.
func DLQName(name string) string {
	if config.IsFIFO(name) {
		return strings.TrimSuffix(name, ".fifo") + "-dlq.fifo"
	}
	return name + "-dlq"
}

// MaxReceiveCount is the redrive maxReceiveCount for a queue whose tasks are
// tried up to maxAttempts times: every attempt is one receive, so the DLQ must
// allow a couple more (a release at shutdown also counts as a receive), and
// never fewer than MinMaxReceiveCount.
func MaxReceiveCount(maxAttempts int) int {
	return max(MinMaxReceiveCount, maxAttempts+2)
}
