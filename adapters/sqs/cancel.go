package sqs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/dagq/dagq/ports"
)

const (
	// DefaultCancelPrefix is the default name prefix of cancel subscription
	// queues.
	DefaultCancelPrefix = "dagq-cancel-"
	// CancelRetention is the MessageRetentionPeriod of cancel subscription
	// queues: requests nobody received within it expire from the queue (the
	// durable mark in the StateStore remains).
	CancelRetention = time.Hour
	// CancelTagValue is the value of the tag InboxTagKey ("dagq:role") on
	// cancel subscription queues.
	CancelTagValue = "cancel-subscription"
	// CancelMarkPrefix starts the StateStore key of every cancellation mark:
	// "cancels/" + task ID.
	CancelMarkPrefix = "cancels/"

	// cancelFanout bounds the concurrent requests of one Cancel (sends to
	// subscriber queues) or Canceled (GETs).
	cancelFanout = 16
)

// CancelOptions configure a CancelChannel. A nil *CancelOptions means all
// defaults.
type CancelOptions struct {
	// QueuePrefix starts the name of every subscription queue; a random
	// 32-character hex ID follows. Cancel broadcasts to every queue whose
	// name starts with it, so all processes of one deployment must use the
	// same prefix and nothing else may use it. Only [A-Za-z0-9_-], at most
	// 48 characters. Empty means DefaultCancelPrefix.
	QueuePrefix string
	// WaitTime is the long-polling wait of CancelSubscription.Receive and so
	// its poll bound, rounded up to whole seconds, 0 < WaitTime ≤ 20s. Zero
	// means DefaultWaitTime.
	WaitTime time.Duration
}

// CancelChannel is a ports.CancelChannel: durable marks in a StateStore plus
// a broadcast to one SQS queue per subscription, found by name prefix.
type CancelChannel struct {
	client   *sqs.Client
	marks    ports.StateStore
	prefix   string
	waitSecs int32

	mu     sync.Mutex
	closed bool
	subs   map[*CancelSubscription]struct{} // open subscriptions
	done   chan struct{}                    // closed by Close
}

// CancelSubscription is a ports.CancelSubscription: one standard SQS queue.
type CancelSubscription struct {
	ch *CancelChannel
	privateQueue
}

var (
	_ ports.CancelChannel      = (*CancelChannel)(nil)
	_ ports.CancelSubscription = (*CancelSubscription)(nil)
)

// NewCancelChannel returns a CancelChannel keeping durable marks in marks
// and broadcasting over client. It makes no request. Close closes neither
// the client nor marks.
func NewCancelChannel(client *sqs.Client, marks ports.StateStore, opts *CancelOptions) (*CancelChannel, error) {
	const op = "new cancel channel"
	if client == nil {
		return nil, invalid(op, "nil client")
	}
	if marks == nil {
		return nil, invalid(op, "nil StateStore")
	}
	var o CancelOptions
	if opts != nil {
		o = *opts
	}
	if o.QueuePrefix == "" {
		o.QueuePrefix = DefaultCancelPrefix
	}
	if err := checkPrefix(op, o.QueuePrefix); err != nil {
		return nil, err
	}
	if o.WaitTime == 0 {
		o.WaitTime = DefaultWaitTime
	}
	if o.WaitTime < 0 || o.WaitTime > maxWaitTime {
		return nil, invalid(op, "WaitTime %v not in (0, %v]", o.WaitTime, maxWaitTime)
	}
	return &CancelChannel{
		client:   client,
		marks:    marks,
		prefix:   o.QueuePrefix,
		waitSecs: int32(ceilSeconds(o.WaitTime)),
		subs:     make(map[*CancelSubscription]struct{}),
		done:     make(chan struct{}),
	}, nil
}

func checkPrefix(op, p string) error {
	if len(p) > maxQueueName-inboxIDLen {
		return invalid(op, "QueuePrefix %q longer than %d characters", p, maxQueueName-inboxIDLen)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return invalid(op, "QueuePrefix %q: only [A-Za-z0-9_-] allowed", p)
		}
	}
	return nil
}

func (c *CancelChannel) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// markKey is the StateStore key of id's mark: CancelMarkPrefix + id, or,
// when that is not a valid StateStore key (spaces, non-ASCII, too long),
// CancelMarkPrefix + "sha256-" + the hex SHA-256 of id.
func markKey(id string) string {
	k := CancelMarkPrefix + id
	if ports.ValidateKey(k) == nil {
		return k
	}
	sum := sha256.Sum256([]byte(id))
	return CancelMarkPrefix + "sha256-" + hex.EncodeToString(sum[:])
}

// fanout runs fn(0..n-1) with at most cancelFanout at once and returns
// their errors by index.
func fanout(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	sem := make(chan struct{}, cancelFanout)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	return errs
}

// Cancel implements ports.CancelChannel. It first writes one durable mark
// per ID, a StateStore Put of {"at": <time>} under "cancels/<id>"
// (unconditional, so repeating a request is not an error). Then it
// broadcasts: ListQueues with the QueuePrefix (paginated) and one
// SendMessageBatch request per subscriber queue, one message per ID. A
// subscriber queue that vanished meanwhile (QueueDoesNotExist) is skipped.
//
// When a send fails, Cancel returns the errors (wrapped as the package
// error table says) but the requests are already durable: workers still
// see them through Canceled, only the fast interruption of a running task
// may be missed.
func (c *CancelChannel) Cancel(ctx context.Context, taskIDs ...string) error {
	const op = "cancel"
	if c.isClosed() {
		return closedErr(op)
	}
	if len(taskIDs) < 1 || len(taskIDs) > ports.MaxBatch {
		return invalid(op, "%d task IDs, want 1 to %d", len(taskIDs), ports.MaxBatch)
	}
	for i, id := range taskIDs {
		if id == "" {
			return invalid(op, "task ID %d is empty", i)
		}
	}
	mark, err := json.Marshal(struct {
		At time.Time `json:"at"`
	}{time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("sqs: %s: %w", op, err)
	}
	errs := fanout(len(taskIDs), func(i int) error {
		if _, err := c.marks.Put(ctx, markKey(taskIDs[i]), mark, ports.WriteCondition{}); err != nil {
			return fmt.Errorf("sqs: %s: marking %q: %w", op, taskIDs[i], err)
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}

	urls, err := c.subscribers(ctx)
	if err != nil {
		return fmt.Errorf("sqs: %s: requests recorded, broadcast failed: %w", op, err)
	}
	entries := make([]types.SendMessageBatchRequestEntry, len(taskIDs))
	for i, id := range taskIDs {
		e := plainEntry([]byte(id))
		e.Id = aws.String(strconv.Itoa(i))
		entries[i] = e
	}
	errs = fanout(len(urls), func(i int) error { return c.send(ctx, urls[i], entries) })
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqs: %s: requests recorded, broadcast failed: %w", op, err)
	}
	return nil
}

// subscribers lists the URLs of the queues named with the prefix.
func (c *CancelChannel) subscribers(ctx context.Context) ([]string, error) {
	var urls []string
	p := sqs.NewListQueuesPaginator(c.client, &sqs.ListQueuesInput{
		QueueNamePrefix: aws.String(c.prefix),
		MaxResults:      aws.Int32(1000),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, wrap("list subscribers", err, false)
		}
		urls = append(urls, page.QueueUrls...)
	}
	return urls, nil
}

// send sends entries to the subscriber queue url; a missing queue is not
// an error.
func (c *CancelChannel) send(ctx context.Context, url string, entries []types.SendMessageBatchRequestEntry) error {
	const op = "broadcast"
	out, err := c.client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
	if err != nil {
		if err = wrap(op, err, false); errors.Is(err, ports.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("%w (queue %s)", err, url)
	}
	var errs []error
	for _, f := range out.Failed {
		if err := entryError(op, f, false); !errors.Is(err, ports.ErrNotFound) {
			errs = append(errs, fmt.Errorf("%w (queue %s, entry %s)", err, url, deref(f.Id)))
		}
	}
	return errors.Join(errs...)
}

// Canceled implements ports.CancelChannel with one StateStore Get per ID
// (at most 16 at once): a missing mark (ports.ErrNotFound) means not
// cancelled. Core calls it once per received batch of tasks, before
// starting them, so its cost is one GET per received task.
func (c *CancelChannel) Canceled(ctx context.Context, ids ...string) ([]string, error) {
	const op = "canceled"
	if c.isClosed() {
		return nil, closedErr(op)
	}
	found := make([]bool, len(ids))
	errs := fanout(len(ids), func(i int) error {
		if ids[i] == "" {
			return nil
		}
		_, err := c.marks.Get(ctx, markKey(ids[i]))
		switch {
		case err == nil:
			found[i] = true
		case errors.Is(err, ports.ErrNotFound):
		default:
			return fmt.Errorf("sqs: %s: %q: %w", op, ids[i], err)
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var out []string
	for i, ok := range found {
		if ok {
			out = append(out, ids[i])
		}
	}
	return out, nil
}

// Subscribe implements ports.CancelChannel with one CreateQueue request: a
// standard queue named QueuePrefix + 32 random hex characters, with a
// retention of CancelRetention and the tag InboxTagKey=CancelTagValue.
func (c *CancelChannel) Subscribe(ctx context.Context) (ports.CancelSubscription, error) {
	const op = "subscribe"
	if c.isClosed() {
		return nil, closedErr(op)
	}
	url, err := createPrivateQueue(ctx, c.client, c.prefix, CancelRetention, CancelTagValue)
	if err != nil {
		return nil, wrap(op, err, false)
	}
	s := &CancelSubscription{ch: c, privateQueue: newPrivateQueue(c.client, url, c.waitSecs, c.done)}
	c.mu.Lock()
	if c.closed { // closed while creating: do not leak the queue
		c.mu.Unlock()
		_ = s.Close()
		return nil, closedErr(op)
	}
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	return s, nil
}

// Close implements ports.CancelChannel: it deletes the queues of its open
// subscriptions (their Receive fails with ports.ErrClosed) and later calls
// fail with ports.ErrClosed. It returns the errors of those deletions. The
// SQS client and the StateStore stay open.
func (c *CancelChannel) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	subs := make([]*CancelSubscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	var errs []error
	for _, s := range subs {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// QueueURL returns the URL of the subscription's queue.
func (s *CancelSubscription) QueueURL() string { return s.url }

// Receive implements ports.CancelSubscription with one ReceiveMessage
// request (up to 10 messages, long polling for WaitTime or less when ctx's
// deadline is nearer) and one DeleteMessageBatch request for what it
// received. If the delete fails the IDs are still returned and come again
// after 30 seconds (an ID may be delivered more than once).
func (s *CancelSubscription) Receive(ctx context.Context) ([]string, error) {
	const op = "cancel subscription: receive"
	msgs, err := s.receive(ctx, op)
	if len(msgs) == 0 {
		return nil, err
	}
	ids := make([]string, 0, len(msgs))
	for _, m := range msgs {
		var enc string
		if v, ok := m.MessageAttributes[attrEncoding]; ok {
			enc = deref(v.StringValue)
		}
		id, err := decodeBody(deref(m.Body), enc)
		if err != nil || len(id) == 0 {
			continue // not ours: dropped (and deleted)
		}
		ids = append(ids, string(id))
	}
	// Delete even when ctx is done: the IDs are returned either way; a
	// failed delete only means they come again.
	_, _ = s.deleteMessages(ctx, msgs)
	return ids, nil
}

// Close implements ports.CancelSubscription with one DeleteQueue request
// (bounded by 30 seconds, as Close has no context); a queue already gone is
// not an error. Later calls return nil.
func (s *CancelSubscription) Close() error {
	return s.drop("cancel subscription: close", func() {
		s.ch.mu.Lock()
		delete(s.ch.subs, s)
		s.ch.mu.Unlock()
	})
}
