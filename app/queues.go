package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/dagq/dagq/adapters/memory"
	dagqsqs "github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
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

// DeadLetters forwards to the memory broker's ports.DeadLetterer; the DLQ's
// broker is a memoryQueue too (a QueueDepther).
func (q memoryQueue) DeadLetters(ctx context.Context) (ports.DeadLetterQueue, error) {
	d, ok := q.Broker.(ports.DeadLetterer)
	if !ok {
		return ports.DeadLetterQueue{}, fmt.Errorf("dead letters of queue %q: %w: the broker has no dead-letter queue", q.name, ports.ErrUnsupported)
	}
	dl, err := d.DeadLetters(ctx)
	if err != nil {
		return dl, err
	}
	dl.Broker = memoryQueue{dl.Broker, q.tr, dl.Name}
	return dl, nil
}

// sqsQueue is an SQS Broker that reads its queue's depth with one
// GetQueueAttributes request.
type sqsQueue struct {
	*dagqsqs.Broker
	client *awssqs.Client
	url    string
}

// DeadLetters is the SQS broker's ports.DeadLetterer; the DLQ's broker is
// an sqsQueue too (a QueueDepther).
func (q sqsQueue) DeadLetters(ctx context.Context) (ports.DeadLetterQueue, error) {
	dl, err := q.Broker.DeadLetters(ctx)
	if err != nil {
		return dl, err
	}
	if b, ok := dl.Broker.(*dagqsqs.Broker); ok {
		dl.Broker = sqsQueue{b, q.client, dl.Name}
	}
	return dl, nil
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

// Queue roles: which of the app's queues a QueueStat or a dead-letter
// operation is about.
const (
	QueueTasks = "tasks" // the task queue (queue; sqs.queue_url)
	QueueRuns  = "runs"  // the run queue (launcher.queue; sqs.run_queue_url)
)

// QueueStat is the depth of one of the app's queues, or of its DLQ.
type QueueStat struct {
	// Role is QueueTasks or QueueRuns.
	Role string `json:"role"`
	// DLQ is true for the dead-letter queue of the Role's queue.
	DLQ bool `json:"dlq"`
	// Name is the queue's name (memory) or URL (SQS).
	Name     string `json:"name"`
	Visible  int64  `json:"visible"`
	InFlight int64  `json:"in_flight"`
	Delayed  int64  `json:"delayed"`
	// Error says why the depth could not be read (the counts are then 0).
	Error string `json:"error,omitempty"`
}

// broker returns the broker of the queue role and its name.
func (r *Runtime) broker(role string) (ports.Broker, string, error) {
	switch role {
	case QueueTasks:
		return r.Ports.Broker, r.queueName(r.Config.Queue, r.Config.SQS.QueueURL), nil
	case QueueRuns:
		return r.Ports.RunBroker, r.queueName(r.Config.Launcher.Queue, r.Config.SQS.RunQueueURL), nil
	}
	return nil, "", fmt.Errorf("%w: queue %q: valid: %s, %s", ports.ErrInvalidArgument, role, QueueTasks, QueueRuns)
}

func (r *Runtime) queueName(memoryName, sqsURL string) string {
	if r.Embedded() {
		return memoryName
	}
	return sqsURL
}

// QueueStats reads the depth of the task queue, the run queue and their
// dead-letter queues (SQS: one GetQueueAttributes per queue, plus
// GetQueueAttributes and GetQueueUrl per DLQ to find it). A queue whose
// depth cannot be read has its Error set; a queue without a DLQ has no DLQ
// row.
func (r *Runtime) QueueStats(ctx context.Context) []QueueStat {
	var out []QueueStat
	for _, role := range []string{QueueTasks, QueueRuns} {
		b, name, _ := r.broker(role)
		out = append(out, QueueStat{Role: role, Name: name}.Read(ctx, b))
		dl, err := r.DeadLetters(ctx, role)
		switch {
		case errors.Is(err, ports.ErrNotFound):
			continue
		case err != nil:
			out = append(out, QueueStat{Role: role, DLQ: true, Error: err.Error()})
			continue
		}
		out = append(out, QueueStat{Role: role, DLQ: true, Name: dl.Name}.Read(ctx, dl.Broker))
		_ = dl.Close()
	}
	return out
}

// Read returns st with the depth of the queue of b (a QueueDepther, as the
// app's brokers and their DLQs' are), or with Error set when it cannot be
// read.
func (st QueueStat) Read(ctx context.Context, b ports.Broker) QueueStat {
	d, ok := b.(QueueDepther)
	if !ok {
		st.Error = "the broker cannot tell its depth"
		return st
	}
	depth, err := d.QueueDepth(ctx)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.Visible, st.InFlight, st.Delayed = depth.Visible, depth.InFlight, depth.Delayed
	return st
}

// DeadLetters opens the dead-letter queue of the queue role (QueueTasks or
// QueueRuns); the caller closes it. Its Broker is a QueueDepther. A queue
// without a redrive policy fails with ports.ErrNotFound.
func (r *Runtime) DeadLetters(ctx context.Context, role string) (ports.DeadLetterQueue, error) {
	b, name, err := r.broker(role)
	if err != nil {
		return ports.DeadLetterQueue{}, err
	}
	d, ok := b.(ports.DeadLetterer)
	if !ok {
		return ports.DeadLetterQueue{}, fmt.Errorf("%s queue %s: %w: its broker has no dead-letter queue", role, name, ports.ErrUnsupported)
	}
	dl, err := d.DeadLetters(ctx)
	if err != nil {
		return dl, fmt.Errorf("%s queue %s: %w", role, name, err)
	}
	return dl, nil
}

// RedriveResult is what Runtime.RedriveDeadLetters did: either messages
// moved one by one (RedriveReport), or, for all of an SQS DLQ where the
// server has the API, a message-move task started (MoveTask, its handle).
type RedriveResult struct {
	core.RedriveReport
	// MoveTask is the handle of the SQS message-move task that moves the
	// messages back asynchronously; empty when they were moved one by one.
	MoveTask string
}

// moveBacker is a DLQ broker that can hand its whole queue back to its
// source queues in one request (the SQS adapter's MoveBack:
// StartMessageMoveTask).
type moveBacker interface {
	MoveBack(ctx context.Context) (string, error)
}

// RedriveDeadLetters moves the dead letters of the queue role back to it:
// the message of task taskID (see core.RedriveDeadLetters), or all when
// taskID is empty — on SQS with the service's message-move task
// (StartMessageMoveTask: asynchronous, at SQS's pace; each task's
// dead-lettered result is replaced when it runs), and where the server
// has no such API (ports.ErrUnsupported: fauxqs, other SQS-compatible
// servers) or on memory, one by one with core.RedriveDeadLetters.
func (r *Runtime) RedriveDeadLetters(ctx context.Context, role, taskID string) (RedriveResult, error) {
	dl, err := r.DeadLetters(ctx, role)
	if err != nil {
		return RedriveResult{}, err
	}
	defer dl.Close()
	if m, ok := dl.Broker.(moveBacker); ok && taskID == "" {
		handle, err := m.MoveBack(ctx)
		switch {
		case err == nil:
			return RedriveResult{MoveTask: handle}, nil
		case !errors.Is(err, ports.ErrUnsupported):
			return RedriveResult{}, err
		}
		r.Logger.Debug("the SQS server has no message-move task; redriving one message at a time", "dlq", dl.Name, "err", err)
	}
	src, _, _ := r.broker(role)
	var match func(core.DeadLetter) bool
	if taskID != "" {
		match = func(d core.DeadLetter) bool { return d.ID == taskID }
	}
	rep, err := core.RedriveDeadLetters(ctx, src, dl, r.Ports.Results, match, taskID != "")
	return RedriveResult{RedriveReport: rep}, err
}
