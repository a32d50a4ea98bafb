package ui

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// Tuning of the queue sampler.
const (
	// idleSampleEvery is how often Serve samples the queue depths with
	// nobody looking, so that a queues page opened later has a history.
	idleSampleEvery = time.Minute
	// sampleHistory is how far back the chart goes.
	sampleHistory = 15 * time.Minute
	// dlqRetry is how long a missing dead-letter queue is not looked for
	// again.
	dlqRetry = 5 * time.Minute
	// maxDeadLetters bounds the dead letters listed per queue.
	maxDeadLetters = 50
)

// queueRoles are the app's queues, in display order.
var queueRoles = []string{app.QueueTasks, app.QueueRuns}

// depth is one queue's depth in a sample.
type depth struct {
	// Key names the queue: "tasks", "tasks-dlq", "runs", "runs-dlq".
	Key string `json:"key"`
	app.QueueStat
}

// Total is every message of the queue.
func (d depth) Total() int64 { return d.Visible + d.InFlight + d.Delayed }

// sample is the depth of every queue at one time.
type sample struct {
	At     time.Time `json:"-"`
	Unix   int64     `json:"t"` // milliseconds
	Queues []depth   `json:"queues"`
}

// queueSampler samples queue depths, sharing each sample among viewers,
// and keeps the dead-letter queues it found open.
type queueSampler struct {
	s *Server

	mu      sync.Mutex // held while sampling
	samples []sample
	dlqs    map[string]*dlqHandle
}

// dlqHandle is an opened dead-letter queue, or why there is none.
type dlqHandle struct {
	q        ports.DeadLetterQueue
	open     bool
	err      error
	failedAt time.Time
}

func newQueueSampler(s *Server) *queueSampler {
	return &queueSampler{s: s, dlqs: map[string]*dlqHandle{}}
}

// background samples every idleSampleEvery until ctx is done.
func (q *queueSampler) background(ctx context.Context) {
	t := time.NewTicker(idleSampleEvery)
	defer t.Stop()
	q.latest(ctx, 0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			q.latest(ctx, idleSampleEvery/2)
		}
	}
}

// watchedEvery is how often the queues page asks for the depths.
func (q *queueSampler) watchedEvery() time.Duration { return 5 * q.s.refresh }

// watchedAge is how old a sample a viewer of the queues page accepts: less
// than watchedEvery, so that each of its polls gets a new one.
func (q *queueSampler) watchedAge() time.Duration { return q.watchedEvery() * 3 / 4 }

// latest returns the samples, taking a new one when the last is older than
// maxAge.
func (q *queueSampler) latest(ctx context.Context, maxAge time.Duration) []sample {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.s.now()
	if n := len(q.samples); n == 0 || now.Sub(q.samples[n-1].At) >= maxAge {
		q.samples = append(q.samples, q.take(ctx, now))
		cut := 0
		for cut < len(q.samples) && now.Sub(q.samples[cut].At) > sampleHistory {
			cut++
		}
		q.samples = q.samples[cut:]
	}
	return append([]sample(nil), q.samples...)
}

// take reads every queue's depth; q.mu is held.
func (q *queueSampler) take(ctx context.Context, now time.Time) sample {
	rt := q.s.rt
	smp := sample{At: now, Unix: now.UnixMilli()}
	for _, role := range queueRoles {
		b := rt.Ports.Broker
		if role == app.QueueRuns {
			b = rt.Ports.RunBroker
		}
		smp.Queues = append(smp.Queues, depth{Key: role, QueueStat: app.QueueStat{Role: role, Name: q.s.queueName(role)}.Read(ctx, b)})
		h := q.dlq(ctx, role, now)
		if !h.open {
			if h.err != nil && !errors.Is(h.err, ports.ErrNotFound) && !errors.Is(h.err, ports.ErrUnsupported) {
				smp.Queues = append(smp.Queues, depth{Key: role + "-dlq", QueueStat: app.QueueStat{Role: role, DLQ: true, Error: h.err.Error()}})
			}
			continue
		}
		d := depth{Key: role + "-dlq", QueueStat: app.QueueStat{Role: role, DLQ: true, Name: h.q.Name}.Read(ctx, h.q.Broker)}
		if d.Error != "" {
			h.open = false // open it again next time
			_ = h.q.Close()
		}
		smp.Queues = append(smp.Queues, d)
	}
	return smp
}

// dlq returns the dead-letter queue of role, opening it when it is not
// open (at most every dlqRetry after a failure); q.mu is held.
func (q *queueSampler) dlq(ctx context.Context, role string, now time.Time) *dlqHandle {
	h := q.dlqs[role]
	if h == nil {
		h = &dlqHandle{}
		q.dlqs[role] = h
	}
	if h.open || (!h.failedAt.IsZero() && now.Sub(h.failedAt) < dlqRetry) {
		return h
	}
	dl, err := q.s.rt.DeadLetters(ctx, role)
	if err != nil {
		h.err, h.failedAt = err, now
		return h
	}
	h.q, h.open, h.err, h.failedAt = dl, true, nil, time.Time{}
	return h
}

// deadLetters lists the dead letters of role's DLQ (up to maxDeadLetters),
// and whether the queue has a DLQ.
func (q *queueSampler) deadLetters(ctx context.Context, role string) ([]core.DeadLetter, bool, error) {
	q.mu.Lock()
	h := q.dlq(ctx, role, q.s.now())
	q.mu.Unlock()
	if !h.open {
		if h.err == nil || errors.Is(h.err, ports.ErrNotFound) || errors.Is(h.err, ports.ErrUnsupported) {
			return nil, false, nil
		}
		return nil, true, h.err
	}
	list, err := core.ListDeadLetters(ctx, h.q, q.s.rt.Ports.Results, maxDeadLetters)
	return list, true, err
}

func (q *queueSampler) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, h := range q.dlqs {
		if h.open {
			_ = h.q.Close()
			h.open = false
		}
	}
}

// queueName is the display name of a queue role: its name (memory) or the
// name in its URL (SQS).
func (s *Server) queueName(role string) string {
	c := s.rt.Config
	switch {
	case role == app.QueueRuns && s.rt.Embedded():
		return c.Launcher.Queue
	case role == app.QueueRuns:
		return config.QueueName(c.SQS.RunQueueURL)
	case s.rt.Embedded():
		return c.Queue
	}
	return config.QueueName(c.SQS.QueueURL)
}
