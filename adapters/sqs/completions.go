package sqs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/dagq/dagq/ports"
)

const (
	// DefaultInboxPrefix is the default name prefix of reply inbox queues.
	DefaultInboxPrefix = "dagq-reply-"
	// InboxRetention is the MessageRetentionPeriod of reply inbox queues:
	// completions nobody received within it expire.
	InboxRetention = time.Hour
	// InboxTagKey is the tag set, with value InboxTagValue, on every reply
	// inbox queue, so that inboxes can be told apart from work queues.
	InboxTagKey = "dagq:role"
	// InboxTagValue is the value of InboxTagKey on reply inbox queues.
	InboxTagValue = "reply-inbox"

	// inboxIDLen is the length of the random hex suffix of inbox names.
	inboxIDLen = 32
	// maxQueueName is the SQS limit on queue names.
	maxQueueName = 80
	// inboxVisibility is the lease of received completions until they are
	// deleted, a few moments later.
	inboxVisibility = 30
	// deleteTimeout bounds DeleteQueue in Close, which has no context.
	deleteTimeout = 30 * time.Second
)

// CompletionOptions configure a CompletionBus. A nil *CompletionOptions
// means all defaults.
type CompletionOptions struct {
	// QueuePrefix starts the name of every inbox queue Open creates; a
	// random 32-character hex ID follows. Only [A-Za-z0-9_-], at most 48
	// characters. Empty means DefaultInboxPrefix.
	QueuePrefix string
	// WaitTime is the long-polling wait of Inbox.Receive and so its poll
	// bound, rounded up to whole seconds, 0 < WaitTime ≤ 20s. Zero means
	// DefaultWaitTime.
	WaitTime time.Duration
	// Logger receives warnings (undecodable messages). Nil discards.
	Logger *slog.Logger
	// NoCoalescing makes every Publish make its own request. By default
	// concurrent Publishes to the same inbox share SendMessageBatch requests
	// by group commit, as Sends do (see Options.NoCoalescing).
	NoCoalescing bool
}

// CompletionBus is a ports.CompletionBus over SQS: each inbox is a standard
// queue of its own, and its address is the queue URL.
type CompletionBus struct {
	client   *sqs.Client
	prefix   string
	waitSecs int32
	log      *slog.Logger

	sendBatch sendBatchFunc
	publishes *coalescer[[]byte] // completions (JSON) keyed by inbox URL

	mu      sync.Mutex
	closed  bool
	inboxes map[*Inbox]struct{} // open inboxes opened from this bus
	done    chan struct{}       // closed by Close
}

// Inbox is a ports.Inbox: one SQS queue.
type Inbox struct {
	bus *CompletionBus
	privateQueue
}

var (
	_ ports.CompletionBus = (*CompletionBus)(nil)
	_ ports.Inbox         = (*Inbox)(nil)
)

// NewCompletionBus returns a CompletionBus using client. It makes no
// request. The client is not closed by Close.
func NewCompletionBus(client *sqs.Client, opts *CompletionOptions) (*CompletionBus, error) {
	const op = "new completion bus"
	if client == nil {
		return nil, invalid(op, "nil client")
	}
	var o CompletionOptions
	if opts != nil {
		o = *opts
	}
	if o.QueuePrefix == "" {
		o.QueuePrefix = DefaultInboxPrefix
	}
	if len(o.QueuePrefix) > maxQueueName-inboxIDLen {
		return nil, invalid(op, "QueuePrefix %q longer than %d characters", o.QueuePrefix, maxQueueName-inboxIDLen)
	}
	for i := 0; i < len(o.QueuePrefix); i++ {
		c := o.QueuePrefix[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return nil, invalid(op, "QueuePrefix %q: only [A-Za-z0-9_-] allowed", o.QueuePrefix)
		}
	}
	if o.WaitTime == 0 {
		o.WaitTime = DefaultWaitTime
	}
	if o.WaitTime < 0 || o.WaitTime > maxWaitTime {
		return nil, invalid(op, "WaitTime %v not in (0, %v]", o.WaitTime, maxWaitTime)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	b := &CompletionBus{
		client:   client,
		prefix:   o.QueuePrefix,
		waitSecs: int32(ceilSeconds(o.WaitTime)),
		log:      o.Logger,
		inboxes:  make(map[*Inbox]struct{}),
		done:     make(chan struct{}),
		sendBatch: func(ctx context.Context, in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
			return client.SendMessageBatch(ctx, in)
		},
	}
	// A coalesced batch of completions travels packed: one SQS message (a
	// JSON array) carries as many as fit, so a busy inbox costs one send,
	// one receive and one delete per batch, not per completion.
	b.publishes = newCoalescer("publish", o.NoCoalescing, maxPackedBytes, packedSize,
		func(ctx context.Context, url string, cs [][]byte) (map[int]error, error) {
			return b.sendPacked(ctx, url, cs)
		}).withMaxItems(maxPackedCompletions)
	return b, nil
}

func (b *CompletionBus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Publish implements ports.CompletionBus with one SendMessageBatch request
// to the queue URL to, one message (JSON) per completion, which it shares
// with concurrent Publishes to the same queue (see
// CompletionOptions.NoCoalescing). A caller whose ctx ends while waiting gets
// ctx's error, but its completions may still be sent.
func (b *CompletionBus) Publish(ctx context.Context, to string, cs ...ports.Completion) error {
	const op = "publish"
	if b.isClosed() {
		return closedErr(op)
	}
	if len(cs) < 1 || len(cs) > ports.MaxBatch {
		return invalid(op, "%d completions, want 1 to %d", len(cs), ports.MaxBatch)
	}
	if to == "" {
		return invalid(op, "empty inbox address")
	}
	items := make([][]byte, len(cs))
	for i, c := range cs {
		if c.TaskID == "" {
			return invalid(op, "completion %d has an empty task ID", i)
		}
		js, err := json.Marshal(c)
		if err != nil {
			return invalid(op, "completion %d: %v", i, err)
		}
		if n := entrySize(plainEntry(js)); n > maxSQSMessageBytes {
			return invalid(op, "completion %d: message of %d bytes over the SQS limit of %d bytes", i, n, maxSQSMessageBytes)
		}
		items[i] = js
	}
	return b.publishes.do(ctx, to, items)
}

const (
	// maxPackedBytes bounds the completions (JSON) one publish request
	// carries: the SQS batch limit less room for the array's brackets and
	// commas and the encoding attribute.
	maxPackedBytes = maxSQSBatchBytes - 4<<10
	// maxPackedCompletions bounds the completions one publish request
	// carries.
	maxPackedCompletions = 1000
)

// packedSize is what a completion counts against maxPackedBytes: its JSON
// and a comma, at its base64 size when it is not valid SQS text.
func packedSize(js []byte) int {
	if validSQSText(js) {
		return len(js) + 1
	}
	return base64Len(len(js)) + 1
}

func base64Len(n int) int { return (n + 2) / 3 * 4 }

// sendPacked sends cs (each a completion's JSON) to url in one
// SendMessageBatch request: one message holding them all as a JSON array
// when it fits an SQS message, else a message per group that fits. A lone
// completion travels as a plain object, as older inboxes expect.
func (b *CompletionBus) sendPacked(ctx context.Context, url string, cs [][]byte) (map[int]error, error) {
	var groups [][]int // item indexes per message
	var cur []int
	size := 2
	for i, js := range cs {
		if !validSQSText(js) { // travels base64-encoded, alone
			groups = append(groups, []int{i})
			continue
		}
		n := len(js) + 1
		if len(cur) > 0 && size+n > maxSQSMessageBytes-1<<10 {
			groups = append(groups, cur)
			cur, size = nil, 2
		}
		cur = append(cur, i)
		size += n
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	entries := make([]types.SendMessageBatchRequestEntry, len(groups))
	for g, idx := range groups {
		if len(idx) == 1 {
			entries[g] = plainEntry(cs[idx[0]])
			continue
		}
		var buf bytes.Buffer
		buf.WriteByte('[')
		for k, i := range idx {
			if k > 0 {
				buf.WriteByte(',')
			}
			buf.Write(cs[i])
		}
		buf.WriteByte(']')
		entries[g] = plainEntry(buf.Bytes())
	}
	out := make(map[int]error)
	var first error
	for from := 0; from < len(entries); from += ports.MaxBatch {
		to := min(from+ports.MaxBatch, len(entries))
		failed, err := sendEntries(ctx, b.sendBatch, "publish", url, entries[from:to])
		for g := from; g < to; g++ {
			e := err
			if e == nil {
				e = failed[g-from]
			}
			if e != nil {
				for _, i := range groups[g] {
					out[i] = e
				}
			}
		}
		if err != nil && first == nil {
			first = err
		}
	}
	if first != nil && len(out) == len(cs) {
		return nil, first // nothing was sent: the request's error
	}
	return out, nil
}

// Open implements ports.CompletionBus with one CreateQueue request: a
// standard queue named QueuePrefix + 32 random hex characters, with a
// retention of InboxRetention and the tag InboxTagKey=InboxTagValue.
func (b *CompletionBus) Open(ctx context.Context) (ports.Inbox, error) {
	const op = "open inbox"
	if b.isClosed() {
		return nil, closedErr(op)
	}
	url, err := createPrivateQueue(ctx, b.client, b.prefix, InboxRetention, InboxTagValue)
	if err != nil {
		return nil, wrap(op, err, false)
	}
	ib := &Inbox{bus: b, privateQueue: newPrivateQueue(b.client, url, b.waitSecs, b.done)}
	b.mu.Lock()
	if b.closed { // closed while creating: do not leak the queue
		b.mu.Unlock()
		_ = ib.Close()
		return nil, closedErr(op)
	}
	b.inboxes[ib] = struct{}{}
	b.mu.Unlock()
	return ib, nil
}

// Close implements ports.CompletionBus: it sends the Publishes waiting for
// their batch at once and waits for every coalesced request, deletes the
// queues of the inboxes opened from b that are still open (their Receive
// fails with ports.ErrClosed), and later calls fail with ports.ErrClosed. It returns
// the errors of those deletions. The SQS client stays open.
func (b *CompletionBus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done)
	ibs := make([]*Inbox, 0, len(b.inboxes))
	for ib := range b.inboxes {
		ibs = append(ibs, ib)
	}
	b.mu.Unlock()
	b.publishes.close()
	var errs []error
	for _, ib := range ibs {
		errs = append(errs, ib.Close())
	}
	return errors.Join(errs...)
}

// Address implements ports.Inbox: the queue URL.
func (ib *Inbox) Address() string { return ib.url }

// Receive implements ports.Inbox with one ReceiveMessage request (up to 10
// messages, long polling for WaitTime or less when ctx's deadline is
// nearer) and one DeleteMessageBatch request for what it received.
// Undecodable messages are logged and deleted.
func (ib *Inbox) Receive(ctx context.Context) ([]ports.Completion, error) {
	const op = "inbox: receive"
	msgs, err := ib.receive(ctx, op)
	if len(msgs) == 0 {
		return nil, err
	}
	cs := make([]ports.Completion, 0, len(msgs))
	for _, m := range msgs {
		got, err := decodeCompletions(m)
		if err != nil {
			ib.bus.log.Warn("sqs: dropping undecodable completion", "inbox", ib.url, "message_id", deref(m.MessageId), "err", err)
			continue
		}
		cs = append(cs, got...)
	}
	// Delete even when ctx is done: the completions are returned either way.
	dout, err := ib.deleteMessages(ctx, msgs)
	switch {
	case err != nil:
		// At-least-once: the completions come again after the visibility
		// timeout, and are returned now.
		ib.bus.log.Warn("sqs: deleting received completions", "inbox", ib.url, "err", wrap("inbox: delete", err, true))
	case len(dout.Failed) > 0:
		ib.bus.log.Warn("sqs: deleting received completions", "inbox", ib.url, "failed", len(dout.Failed),
			"err", entryError("inbox: delete", dout.Failed[0], true))
	}
	return cs, nil
}

// decodeCompletions decodes a completion message: one completion (a JSON
// object) or a packed batch (a JSON array of them).
func decodeCompletions(m types.Message) ([]ports.Completion, error) {
	var enc string
	if v, ok := m.MessageAttributes[attrEncoding]; ok {
		enc = deref(v.StringValue)
	}
	js, err := decodeBody(deref(m.Body), enc)
	if err != nil {
		return nil, err
	}
	var cs []ports.Completion
	if t := bytes.TrimLeft(js, " \t\r\n"); len(t) > 0 && t[0] == '[' {
		if err := json.Unmarshal(js, &cs); err != nil {
			return nil, fmt.Errorf("decode packed completions JSON: %w", err)
		}
	} else {
		var c ports.Completion
		if err := json.Unmarshal(js, &c); err != nil {
			return nil, fmt.Errorf("decode completion JSON: %w", err)
		}
		cs = []ports.Completion{c}
	}
	for _, c := range cs {
		if c.TaskID == "" {
			return nil, errors.New("completion without task ID")
		}
	}
	return cs, nil
}

// Close implements ports.Inbox with one DeleteQueue request (bounded by 30
// seconds, as Close has no context); a queue already gone is not an error.
// Later calls return nil.
func (ib *Inbox) Close() error {
	return ib.drop("inbox: close", func() {
		ib.bus.mu.Lock()
		delete(ib.bus.inboxes, ib)
		ib.bus.mu.Unlock()
	})
}
