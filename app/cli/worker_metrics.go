package cli

import (
	"context"
	"maps"
	"slices"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/cli/metrics"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
)

// queueDepth reads the depth of a queue for the metrics: d's, in the
// metrics' type.
func queueDepth(d app.QueueDepther) func(context.Context) (metrics.QueueDepth, error) {
	return func(ctx context.Context) (metrics.QueueDepth, error) {
		q, err := d.QueueDepth(ctx)
		return metrics.QueueDepth{Visible: q.Visible, InFlight: q.InFlight, Delayed: q.Delayed}, err
	}
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
func newWorkerMetrics(rt *app.Runtime, counter *AWSCounter, runs bool) *workerMetrics {
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
	if d, ok := rt.Ports.Broker.(app.QueueDepther); ok {
		opts.Queues = append(opts.Queues, metrics.Queue{Name: stepQueue, Depth: queueDepth(d)})
		if !rt.Embedded() { // the memory transport is reachable while the process runs
			opts.Ready = func(ctx context.Context) error {
				_, err := d.QueueDepth(ctx)
				return err
			}
		}
	}
	if d, ok := rt.Ports.RunBroker.(app.QueueDepther); ok && runs {
		opts.Queues = append(opts.Queues, metrics.Queue{Name: runQueueName, Depth: queueDepth(d)})
	}
	m := metrics.New(opts)
	wm := &workerMetrics{m: m}
	so, ro := rt.WorkerFactory.Options(), rt.WorkerFactory.RunOptions()
	wm.steps = m.Observer(metrics.WorkerInfo{Queue: stepQueue, Concurrency: so.Concurrency, Tasks: so.Registry.Names(),
		Pools: slices.Sorted(maps.Keys(so.Pools.Limits))})
	if runs {
		wm.run = m.Observer(metrics.WorkerInfo{Queue: runQueueName, Concurrency: ro.Concurrency, Tasks: ro.Registry.Names()})
	}
	return wm
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
