package sqs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
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

	// DefaultCancelListLag is the default CancelOptions.ListLag: how long
	// SQS may take to list a just-created queue (ListQueues is eventually
	// consistent; AWS documents up to 60 seconds).
	DefaultCancelListLag = 60 * time.Second
	// NoCancelListLag is the CancelOptions.ListLag of an SQS that lists a
	// queue as soon as it exists (fauxqs): none. Any negative value means
	// the same; zero means DefaultCancelListLag.
	NoCancelListLag time.Duration = -1
	// DefaultCancelRelist is the default CancelOptions.Relist.
	DefaultCancelRelist = 10 * time.Minute

	// liveGrace: a settled subscription answers Canceled from memory while a
	// Receive is in flight or one returned less than liveGrace ago.
	liveGrace = 2 * time.Second
	// maxReceiveGap: a subscription not received for longer than this may
	// have let requests expire (CancelRetention) and never settles again.
	maxReceiveGap = CancelRetention / 2
	// unsureAfterError: after a Receive that failed or was aborted (its
	// messages, if SQS leased any, come back when the inboxVisibility
	// lease ends), the subscription does not answer from memory for this
	// long.
	unsureAfterError = (inboxVisibility + 2) * time.Second

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
	// ListLag is how long after a subscription queue is created ListQueues
	// may still omit it, so that a Cancel may not broadcast to it. Zero means
	// DefaultCancelListLag (60s, right for real SQS); NoCancelListLag (any
	// negative value) means none, for emulators that list a queue as soon
	// as it exists (fauxqs). Note that zero is the safe default here, not
	// "none" (dagq's config key sqs.cancel_list_lag spells none "0s"). A
	// subscription settles ListLag + ListLag/10 after its queue was created
	// (see Canceled).
	ListLag time.Duration
	// Relist is how often a settled channel lists the marks again, to drop
	// marks deleted from the StateStore (an S3 lifecycle rule) from memory.
	// Zero means DefaultCancelRelist (10 minutes); a negative value never
	// lists again (memory then grows with every request seen).
	Relist time.Duration
}

// MarkLister is the optional method of a StateStore that lets a
// CancelChannel answer Canceled from memory: the keys starting with prefix
// (adapters/s3's StateStore has it). Without it, Canceled always reads the
// StateStore.
type MarkLister interface {
	List(ctx context.Context, prefix string) ([]string, error)
}

// CancelChannel is a ports.CancelChannel: durable marks in a StateStore plus
// a broadcast to one SQS queue per subscription, found by name prefix.
type CancelChannel struct {
	client      *sqs.Client
	marks       ports.StateStore
	lister      MarkLister // nil: Canceled always reads marks
	prefix      string
	waitSecs    int32
	settleAfter time.Duration
	relist      time.Duration // < 0: never
	epoch       time.Time     // known's times are durations since epoch

	mu     sync.Mutex
	closed bool
	subs   map[*CancelSubscription]struct{} // open subscriptions
	done   chan struct{}                    // closed by Close
	// known holds the mark keys (without CancelMarkPrefix) of requests seen
	// while a subscription is open: listed, delivered or made here; the
	// value is when it was learned. Cleared when the last subscription
	// closes.
	known map[string]time.Duration
}

// CancelSubscription is a ports.CancelSubscription: one standard SQS queue.
type CancelSubscription struct {
	ch *CancelChannel
	privateQueue
	created    time.Time     // when CreateQueue returned
	settleDone chan struct{} // closed when its settle goroutine ends; nil if none

	// guarded by ch.mu
	settled     bool      // its settling LIST completed
	broken      bool      // it may have lost requests: never settles again
	receiving   int       // Receive calls in flight
	lastRecv    time.Time // when the last Receive returned
	unsureUntil time.Time // no answers from memory before
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
	if o.ListLag == 0 {
		o.ListLag = DefaultCancelListLag
	}
	if o.Relist == 0 {
		o.Relist = DefaultCancelRelist
	}
	lister, _ := marks.(MarkLister)
	return &CancelChannel{
		client:      client,
		marks:       marks,
		lister:      lister,
		prefix:      o.QueuePrefix,
		waitSecs:    int32(ceilSeconds(o.WaitTime)),
		settleAfter: max(0, o.ListLag+o.ListLag/10),
		relist:      o.Relist,
		epoch:       time.Now(),
		subs:        make(map[*CancelSubscription]struct{}),
		done:        make(chan struct{}),
		known:       make(map[string]time.Duration),
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
	c.learn(taskIDs)

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

// Canceled implements ports.CancelChannel. While the channel has a
// settled subscription (see Settled) it answers from memory, with no
// request: an ID is cancelled when its mark was listed when the
// subscription settled (or at the last re-LIST), or its request was
// delivered to one of the channel's subscriptions, or made by this
// channel's Cancel. Otherwise it makes one StateStore Get per ID (at most
// 16 at once): a missing mark (ports.ErrNotFound) means not cancelled.
// Core calls it once per received batch of tasks, before starting them.
func (c *CancelChannel) Canceled(ctx context.Context, ids ...string) ([]string, error) {
	const op = "canceled"
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, closedErr(op)
	}
	if c.settledLocked(time.Now()) {
		var out []string
		for _, id := range ids {
			if _, ok := c.known[knownKey(id)]; ok && id != "" {
				out = append(out, id)
			}
		}
		c.mu.Unlock()
		return out, nil
	}
	c.mu.Unlock()
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
	s := &CancelSubscription{ch: c, privateQueue: newPrivateQueue(c.client, url, c.waitSecs, c.done), created: time.Now()}
	c.mu.Lock()
	if c.closed { // closed while creating: do not leak the queue
		c.mu.Unlock()
		_ = s.Close()
		return nil, closedErr(op)
	}
	c.subs[s] = struct{}{}
	if c.lister != nil {
		s.settleDone = make(chan struct{})
		go c.settle(s)
	}
	c.mu.Unlock()
	return s, nil
}

// Settled reports whether Canceled now answers from memory: some open
// subscription of the channel has settled (its LIST of the marks, made
// ListLag + ListLag/10 after its queue was created, completed), is being
// received (a Receive is in flight or returned within the last 2 seconds)
// and has lost nothing (no failed or aborted Receive in the last 32
// seconds, its queue not found missing, no gap of 30 minutes between
// Receives).
func (c *CancelChannel) Settled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed && c.settledLocked(time.Now())
}

func (c *CancelChannel) settledLocked(now time.Time) bool {
	for s := range c.subs {
		if s.settled && !s.broken && now.After(s.unsureUntil) &&
			(s.receiving > 0 || now.Sub(s.lastRecv) < liveGrace) {
			return true
		}
	}
	return false
}

// knownKey is the key of id in CancelChannel.known: its mark key without
// CancelMarkPrefix.
func knownKey(id string) string { return markKey(id)[len(CancelMarkPrefix):] }

// learn records requests for ids, when some subscription is open.
func (c *CancelChannel) learn(ids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.subs) == 0 {
		return
	}
	now := time.Since(c.epoch)
	for _, id := range ids {
		c.known[knownKey(id)] = now
	}
}

// settle runs for each subscription when the StateStore can list: at
// s.created + settleAfter it lists the marks, records them in known and
// marks s settled; then it lists again every relist, keeping from the
// previous state only what was learned since the new LIST began (anything
// older is in that LIST unless its mark was deleted). A failed LIST is
// retried after 1s, doubling up to a minute; a failed re-LIST leaves the
// state as it was. It ends when s closes, breaks or the channel closes.
func (c *CancelChannel) settle(s *CancelSubscription) {
	defer close(s.settleDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.closed:
		case <-c.done:
		case <-ctx.Done():
		}
		cancel()
	}()
	timer := time.NewTimer(time.Until(s.created.Add(c.settleAfter)))
	defer timer.Stop()
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Since(c.epoch)
		keys, err := c.lister.List(ctx, CancelMarkPrefix)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.mu.Lock()
			settled := s.settled
			c.mu.Unlock()
			if !settled {
				timer.Reset(backoff)
				backoff = min(2*backoff, time.Minute)
				continue
			}
		} else {
			backoff = time.Second
			c.mu.Lock()
			if _, open := c.subs[s]; !open || s.broken {
				c.mu.Unlock()
				return
			}
			listed := make(map[string]struct{}, len(keys))
			for _, k := range keys {
				k, ok := strings.CutPrefix(k, CancelMarkPrefix)
				if !ok {
					continue
				}
				listed[k] = struct{}{}
				if _, ok := c.known[k]; !ok {
					c.known[k] = start
				}
			}
			for k, at := range c.known {
				if _, ok := listed[k]; !ok && at < start {
					delete(c.known, k)
				}
			}
			s.settled = true
			c.mu.Unlock()
		}
		if c.relist < 0 {
			return
		}
		timer.Reset(c.relist)
	}
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
	c := s.ch
	c.mu.Lock()
	last := s.lastRecv
	if last.IsZero() {
		last = s.created
	}
	if time.Since(last) > maxReceiveGap {
		s.broken = true // requests may have expired from the queue meanwhile
	}
	s.receiving++
	c.mu.Unlock()
	msgs, err := s.receive(ctx, op)
	var ids []string
	defer func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		now := time.Now()
		s.receiving--
		s.lastRecv = now
		switch {
		case errors.Is(err, ports.ErrNotFound): // queue deleted
			s.broken = true
		case err != nil: // leased messages, if any, come back after the lease
			s.unsureUntil = now.Add(unsureAfterError)
		}
		if len(ids) > 0 {
			if _, open := c.subs[s]; open {
				at := time.Since(c.epoch)
				for _, id := range ids {
					c.known[knownKey(id)] = at
				}
			}
		}
	}()
	if len(msgs) == 0 {
		return nil, err
	}
	ids = make([]string, 0, len(msgs))
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
	err := s.drop("cancel subscription: close", func() {
		c := s.ch
		c.mu.Lock()
		delete(c.subs, s)
		if len(c.subs) == 0 {
			c.known = make(map[string]time.Duration) // relearned by the next settle
		}
		c.mu.Unlock()
	})
	if s.settleDone != nil {
		<-s.settleDone
	}
	return err
}
