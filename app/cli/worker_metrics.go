package app

import (
	"context"
	"fmt"
	"strconv"

	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/dagq/dagq/adapters/memory"
	dagqsqs "github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/app/metrics"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// queueDepther is implemented by the task and run brokers of the app's
// transports (Ports.Broker, Ports.RunBroker): the depth of their queue, for
// the metrics of dagq worker.
type queueDepther interface {
	queueDepth(ctx context.Context) (metrics.QueueDepth, error)
}

// memoryQueue is a memory Broker that reads its queue's depth from the
// Transport (no request).
type memoryQueue struct {
	ports.Broker
	tr   *memory.Transport
	name string
}

func (q memoryQueue) queueDepth(context.Context) (metrics.QueueDepth, error) {
	s, err := q.tr.Stats(q.name)
	if err != nil {
		return metrics.QueueDepth{}, err
	}
	return metrics.QueueDepth{Visible: int64(s.Visible), InFlight: int64(s.InFlight), Delayed: int64(s.Delayed)}, nil
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

func (q sqsQueue) queueDepth(ctx context.Context) (metrics.QueueDepth, error) {
	out, err := q.client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl:       &q.url,
		AttributeNames: depthAttributes,
	})
	if err != nil {
		return metrics.QueueDepth{}, fmt.Errorf("sqs: GetQueueAttributes %s: %w", q.url, err)
	}
	n := func(a sqstypes.QueueAttributeName) int64 {
		v, _ := strconv.ParseInt(out.Attributes[string(a)], 10, 64)
		return v
	}
	return metrics.QueueDepth{
		Visible:  n(sqstypes.QueueAttributeNameApproximateNumberOfMessages),
		InFlight: n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		Delayed:  n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed),
	}, nil
}

// queueLabel is the queue label of a queue in the metrics: its name (on sqs
// the last element of its URL).
func queueLabel(cfg config.Config, queue string) string {
	if cfg.Transport == config.TransportSQS {
		return config.QueueName(queue)
	}
	return queue
}

// workerMetrics are the metrics of a dagq worker process (--metrics-addr).
type workerMetrics struct {
	m          *metrics.Metrics
	steps, run core.WorkerObserver
}

// newWorkerMetrics builds the metrics of rt's workers: one observer for the
// step workers and one for the run workers (when runs), the depth of the
// queues they serve (polled every 30s), the readiness check of the task
// queue's broker (one depth read, reused for metrics.DefaultReadyTTL) and,
// when counter is not nil, the AWS request counts.
func newWorkerMetrics(rt *Runtime, counter *AWSCounter, runs bool) *workerMetrics {
	cfg := rt.Config
	opts := metrics.Options{Version: Version, Logger: rt.Logger}
	if counter != nil {
		opts.AWSRequests = func() []metrics.AWSRequests {
			snap := counter.Snapshot()
			out := make([]metrics.AWSRequests, len(snap))
			for i, c := range snap {
				out[i] = metrics.AWSRequests{Service: c.Service, Operation: c.Operation, Requests: c.Requests, Errors: c.Errors}
			}
			return out
		}
	}
	stepQueue, runQueueName := queueLabel(cfg, taskQueue(cfg)), queueLabel(cfg, runQueue(cfg))
	if d, ok := rt.Ports.Broker.(queueDepther); ok {
		opts.Queues = append(opts.Queues, metrics.Queue{Name: stepQueue, Depth: d.queueDepth})
		if !rt.Embedded() { // the memory transport is reachable while the process runs
			opts.Ready = func(ctx context.Context) error {
				_, err := d.queueDepth(ctx)
				return err
			}
		}
	}
	if d, ok := rt.Ports.RunBroker.(queueDepther); ok && runs {
		opts.Queues = append(opts.Queues, metrics.Queue{Name: runQueueName, Depth: d.queueDepth})
	}
	m := metrics.New(opts)
	wm := &workerMetrics{m: m}
	so, ro := rt.Workers.Options(), rt.Workers.RunOptions()
	wm.steps = m.Observer(metrics.WorkerInfo{Queue: stepQueue, Concurrency: so.Concurrency, Tasks: so.Registry.Names()})
	if runs {
		wm.run = m.Observer(metrics.WorkerInfo{Queue: runQueueName, Concurrency: ro.Concurrency, Tasks: ro.Registry.Names()})
	}
	return wm
}

// observed returns a worker constructor for startPool: the options of base
// (WorkerFactory.Options or RunOptions) with obs as their Observer.
func observed(base core.WorkerOptions, obs core.WorkerObserver) func(id string) (*core.Worker, error) {
	return func(id string) (*core.Worker, error) {
		o := base
		o.ID = id
		if obs != nil {
			o.Observer = obs
		}
		return core.NewWorker(o)
	}
}

// stepObserver, runObserver, serving and shuttingDown are no-ops on a nil
// receiver (metrics off).
func (wm *workerMetrics) stepObserver() core.WorkerObserver {
	if wm == nil {
		return nil
	}
	return wm.steps
}

func (wm *workerMetrics) runObserver() core.WorkerObserver {
	if wm == nil {
		return nil
	}
	return wm.run
}

func (wm *workerMetrics) serving() {
	if wm != nil {
		wm.m.MarkServing()
	}
}

func (wm *workerMetrics) shuttingDown() {
	if wm != nil {
		wm.m.MarkShuttingDown()
	}
}
