package sqs

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
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
	// DefaultWaitTime is the default long-polling wait (the SQS maximum).
	DefaultWaitTime = 20 * time.Second
	// DefaultMaxBodyBytes is the default limit on the raw Message.Body (its
	// bytes as given to Send, before any encoding): the SQS message limit.
	// Send also refuses a message whose encoded body plus attributes exceeds
	// that limit (a text body travels as is; a binary one grows by 4/3).
	DefaultMaxBodyBytes = maxSQSMessageBytes
	// maxWaitTime is the SQS limit on WaitTimeSeconds.
	maxWaitTime = 20 * time.Second
	// maxSQSMessageBytes is the SQS limit on one message, body as sent plus
	// attributes (1 MiB), and so the largest MaxBodyBytes.
	maxSQSMessageBytes = 1 << 20
	// maxSQSBatchBytes is the SQS limit on all the messages of one batch
	// request together (1 MiB).
	maxSQSBatchBytes = 1 << 20
)

// FairMode says whether Send puts messages in message groups
// (MessageGroupId): fair-queue mode. See Options.FairQueue.
type FairMode int

const (
	// FairAuto (the zero value) follows the queue type: on for a FIFO queue,
	// off for a standard one.
	FairAuto FairMode = iota
	// FairOn asks for message groups. Only FIFO queues get them: on a
	// standard queue New logs a warning and the mode is ignored.
	FairOn
	// FairOff asks for no message groups. Only standard queues allow it:
	// on a FIFO queue New fails with ports.ErrInvalidArgument.
	FairOff
)

func (m FairMode) String() string {
	switch m {
	case FairAuto:
		return "auto"
	case FairOn:
		return "on"
	case FairOff:
		return "off"
	default:
		return "FairMode(" + strconv.Itoa(int(m)) + ")"
	}
}

// IsFIFOURL reports whether queueURL names a FIFO queue: SQS requires FIFO
// queue names, and so their URLs, to end in ".fifo".
func IsFIFOURL(queueURL string) bool {
	return strings.HasSuffix(queueURL, ".fifo")
}

// Options configure a Broker. A nil *Options means all defaults.
type Options struct {
	// WaitTime is the long-polling wait of Receive and so its poll bound,
	// rounded up to whole seconds, 0 < WaitTime ≤ 20s. Zero means
	// DefaultWaitTime.
	WaitTime time.Duration
	// MaxBodyBytes is the largest raw Message.Body Send accepts, in bytes as
	// given (before any encoding); a larger body fails with
	// ports.ErrInvalidArgument. Zero means DefaultMaxBodyBytes; at most
	// 1 MiB. Independently, Send refuses (ports.ErrInvalidArgument) a message
	// whose SQS form, body as sent plus attributes, exceeds the 1 MiB SQS
	// message limit: a text body travels at its own size, any other body at
	// 4/3 of it (base64), so binary bodies above about 767 KiB never fit. The
	// queue's MaximumMessageSize must allow what is sent (create queues with
	// 1 MiB, 1048576).
	MaxBodyBytes int
	// Logger receives warnings (undecodable foreign messages). Nil discards.
	Logger *slog.Logger
	// NoCoalescing makes every single-receipt Ack and every Send make its
	// own requests on its own context. By default concurrent ones share
	// DeleteMessageBatch and SendMessageBatch requests by group commit: a
	// request leaves at once when none of its kind is in flight to the
	// queue, and calls arriving meanwhile share the next one, which leaves
	// when the first returns (see the package doc, Coalescing). No call
	// waits for a timer.
	NoCoalescing bool
	// FairQueue says whether Send sets MessageGroupId (fair-queue mode).
	// FairAuto, the zero value, follows the queue type. FIFO queues require
	// a group on every message, so FairOff on one is an error; FairOn on a
	// standard queue is logged as a warning and ignored.
	FairQueue FairMode
}

// Broker is a ports.Broker bound to one SQS queue.
type Broker struct {
	client   *sqs.Client
	url      string
	fifo     bool // FIFO queue: MessageGroupId and MessageDeduplicationId on every message
	waitSecs int32
	maxBody  int
	log      *slog.Logger

	deleteBatch deleteBatchFunc
	sendBatch   sendBatchFunc
	acks        *coalescer[ports.Receipt]                      // single-receipt Acks
	sends       *coalescer[types.SendMessageBatchRequestEntry] // Sends

	closeOnce sync.Once
	closed    chan struct{}
	noCount   sync.Once // warns once of a missing receive count
}

var (
	_ ports.Broker       = (*Broker)(nil)
	_ ports.Requeuer     = (*Broker)(nil)
	_ ports.DeadLetterer = (*Broker)(nil)
)

// New returns a Broker for the queue at queueURL. A URL ending in ".fifo" is
// a FIFO queue (IsFIFOURL). New makes no request; a missing queue shows up as
// ports.ErrNotFound on the first call. The client is not closed by Close.
func New(client *sqs.Client, queueURL string, opts *Options) (*Broker, error) {
	if client == nil {
		return nil, invalid("new", "nil client")
	}
	if queueURL == "" {
		return nil, invalid("new", "empty queue URL")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.WaitTime == 0 {
		o.WaitTime = DefaultWaitTime
	}
	if o.WaitTime < 0 || o.WaitTime > maxWaitTime {
		return nil, invalid("new", "WaitTime %v not in (0, %v]", o.WaitTime, maxWaitTime)
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxBodyBytes < 0 || o.MaxBodyBytes > maxSQSMessageBytes {
		return nil, invalid("new", "MaxBodyBytes %d not in (0, %d]", o.MaxBodyBytes, maxSQSMessageBytes)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	fifo := IsFIFOURL(queueURL)
	switch o.FairQueue {
	case FairAuto:
	case FairOn:
		if !fifo {
			o.Logger.Warn("sqs: fair-queue mode needs a FIFO queue; FairOn on a standard queue is ignored (no MessageGroupId is sent)", "queue", queueURL)
		}
	case FairOff:
		if fifo {
			return nil, invalid("new", "FairQueue off on FIFO queue %s: FIFO queues require a message group on every message (valid: auto or on)", queueURL)
		}
	default:
		return nil, invalid("new", "FairQueue %v: want FairAuto, FairOn or FairOff", o.FairQueue)
	}
	b := &Broker{
		client:   client,
		url:      queueURL,
		fifo:     fifo,
		waitSecs: int32(ceilSeconds(o.WaitTime)),
		maxBody:  o.MaxBodyBytes,
		log:      o.Logger,
		closed:   make(chan struct{}),
		deleteBatch: func(ctx context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
			return client.DeleteMessageBatch(ctx, in)
		},
		sendBatch: func(ctx context.Context, in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
			return client.SendMessageBatch(ctx, in)
		},
	}
	// The request functions read b.deleteBatch and b.sendBatch at call time
	// (tests replace them).
	b.acks = newCoalescer("ack", o.NoCoalescing, 0, nil,
		func(ctx context.Context, url string, rs []ports.Receipt) (map[int]error, error) {
			return deleteReceipts(ctx, b.deleteBatch, url, rs)
		})
	b.sends = newCoalescer("send", o.NoCoalescing, maxSQSBatchBytes, entrySize,
		func(ctx context.Context, url string, es []types.SendMessageBatchRequestEntry) (map[int]error, error) {
			return sendEntries(ctx, b.sendBatch, "send", url, es)
		})
	return b, nil
}

// FIFO reports whether the queue is a FIFO queue.
func (b *Broker) FIFO() bool { return b.fifo }

func (b *Broker) isClosed() bool {
	select {
	case <-b.closed:
		return true
	default:
		return false
	}
}

func closedErr(op string) error { return fmt.Errorf("sqs: %s: %w", op, ports.ErrClosed) }

// Send implements ports.Broker with one SendMessageBatch request, which it
// shares with concurrent Sends (see Options.NoCoalescing); messages that do
// not fit one request together (over the 1 MiB batch limit) are sent in as
// many requests as needed, in order. A caller whose ctx ends while waiting
// gets ctx's error, but its messages may still be sent.
func (b *Broker) Send(ctx context.Context, msgs ...ports.Message) error {
	const op = "send"
	if b.isClosed() {
		return closedErr(op)
	}
	if len(msgs) == 0 || len(msgs) > ports.MaxBatch {
		return invalid(op, "%d messages, want 1 to %d", len(msgs), ports.MaxBatch)
	}
	entries := make([]types.SendMessageBatchRequestEntry, len(msgs))
	for i, m := range msgs {
		e, err := b.entry(m)
		if err != nil {
			return fmt.Errorf("sqs: %s: message %d: %w", op, i, err)
		}
		entries[i] = e
	}
	return b.sends.do(ctx, b.url, entries)
}

// entry is the SendMessageBatch entry of m, without its Id (set per
// request).
func (b *Broker) entry(m ports.Message) (types.SendMessageBatchRequestEntry, error) {
	if m.ID == "" {
		return types.SendMessageBatchRequestEntry{}, fmt.Errorf("%w: empty ID", ports.ErrInvalidArgument)
	}
	if len(m.Body) > b.maxBody {
		return types.SendMessageBatchRequestEntry{}, fmt.Errorf("%w: body of %d bytes over the limit of %d", ports.ErrInvalidArgument, len(m.Body), b.maxBody)
	}
	if len(m.Attributes) > ports.MaxAttributes {
		return types.SendMessageBatchRequestEntry{}, fmt.Errorf("%w: %d attributes, at most %d", ports.ErrInvalidArgument, len(m.Attributes), ports.MaxAttributes)
	}
	if m.Delay < 0 || m.Delay > ports.MaxDelay {
		return types.SendMessageBatchRequestEntry{}, fmt.Errorf("%w: delay %v not in [0, %v]", ports.ErrInvalidArgument, m.Delay, ports.MaxDelay)
	}
	if b.fifo && m.Delay != 0 {
		return types.SendMessageBatchRequestEntry{}, fmt.Errorf("%w: FIFO queues refuse per-message delays (delay %v)", ports.ErrInvalidArgument, m.Delay)
	}
	body, enc := encodeBody(m.Body)
	attrs := make(map[string]types.MessageAttributeValue, len(m.Attributes)+2)
	for k, v := range m.Attributes {
		if err := validAttrName(k); err != nil {
			return types.SendMessageBatchRequestEntry{}, fmt.Errorf("%w: %w", ports.ErrInvalidArgument, err)
		}
		attrs[k] = stringAttr(v)
	}
	attrs[attrID] = stringAttr(m.ID)
	attrs[attrEncoding] = stringAttr(enc)
	e := types.SendMessageBatchRequestEntry{
		MessageBody:       aws.String(body),
		MessageAttributes: attrs,
	}
	if n := entrySize(e); n > maxSQSMessageBytes {
		return types.SendMessageBatchRequestEntry{}, fmt.Errorf("%w: message of %d bytes (%s body as sent plus attributes) over the SQS limit of %d bytes",
			ports.ErrInvalidArgument, n, enc, maxSQSMessageBytes)
	}
	if b.fifo {
		group := m.GroupID
		if group == "" {
			group = m.ID
		}
		e.MessageGroupId = aws.String(fifoToken(group))
		e.MessageDeduplicationId = aws.String(fifoToken(m.ID))
	} else if m.Delay > 0 {
		e.DelaySeconds = int32(ceilSeconds(m.Delay))
	}
	return e, nil
}

// Receive implements ports.Broker with one ReceiveMessage request that long
// polls for WaitTime, or less when ctx's deadline is nearer. A request cut
// short by ctx may still be handed messages by SQS, which stay leased, unseen,
// until their lease ends: let a Receive end rather than cancel it when that
// matters (core's worker does at shutdown).
func (b *Broker) Receive(ctx context.Context, n int, lease time.Duration) ([]ports.Delivery, error) {
	const op = "receive"
	if b.isClosed() {
		return nil, closedErr(op)
	}
	if n < 1 || n > ports.MaxBatch {
		return nil, invalid(op, "max %d, want 1 to %d", n, ports.MaxBatch)
	}
	if lease <= 0 || lease > ports.MaxLease {
		return nil, invalid(op, "lease %v not in (0, %v]", lease, ports.MaxLease)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqs: %s: %w", op, err)
	}
	wait := b.waitSecs
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, int32(max(0, time.Until(dl)/time.Second)))
	}
	// Close aborts a blocked Receive.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-b.closed:
			cancel()
		case <-rctx.Done():
		}
	}()
	out, err := b.client.ReceiveMessage(rctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    &b.url,
		MaxNumberOfMessages:         int32(n),
		VisibilityTimeout:           int32(ceilSeconds(lease)),
		WaitTimeSeconds:             wait,
		MessageSystemAttributeNames: systemAttributes,
		// The same names in the older parameter, which AWS still reads and
		// SQS-compatible servers (ElasticMQ, LocalStack, local-aws-sqs) read
		// alone: without it they report no receive count.
		//lint:ignore SA1019 sent on purpose, next to MessageSystemAttributeNames
		AttributeNames:        legacySystemAttributes,
		MessageAttributeNames: []string{"All"},
	})
	if err != nil {
		if ctx.Err() == nil && b.isClosed() {
			return nil, closedErr(op)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sqs: %s: %w", op, ctx.Err())
		}
		return nil, wrap(op, err, false)
	}
	ds := make([]ports.Delivery, 0, len(out.Messages))
	for _, m := range out.Messages {
		ds = append(ds, b.delivery(m))
	}
	return ds, nil
}

// systemAttributes are the message system attributes Receive asks for, and
// legacySystemAttributes the same in the older AttributeNames parameter.
var (
	systemAttributes = []types.MessageSystemAttributeName{
		types.MessageSystemAttributeNameApproximateReceiveCount,
		types.MessageSystemAttributeNameSentTimestamp,
		types.MessageSystemAttributeNameMessageGroupId,
	}
	legacySystemAttributes = func() []types.QueueAttributeName {
		names := make([]types.QueueAttributeName, len(systemAttributes))
		for i, a := range systemAttributes {
			names[i] = types.QueueAttributeName(a)
		}
		return names
	}()
)

// delivery converts a received message. A receive count the server did not
// report (or not as a positive number) leaves Attempt 0: unknown.
func (b *Broker) delivery(m types.Message) ports.Delivery {
	d := ports.Delivery{Receipt: ports.Receipt(deref(m.ReceiptHandle))}
	var enc string
	for k, v := range m.MessageAttributes {
		switch k {
		case attrID:
			d.ID = deref(v.StringValue)
		case attrEncoding:
			enc = deref(v.StringValue)
		default:
			if d.Attributes == nil {
				d.Attributes = make(map[string]string, len(m.MessageAttributes))
			}
			d.Attributes[k] = deref(v.StringValue)
		}
	}
	if d.ID == "" { // not sent by dagq
		d.ID = deref(m.MessageId)
	}
	body, err := decodeBody(deref(m.Body), enc)
	if err != nil {
		b.log.Warn("sqs: delivering undecodable body as raw text", "queue", b.url, "id", d.ID, "err", err)
		body = []byte(deref(m.Body))
	}
	d.Body = body
	if n, err := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil && n > 0 {
		d.Attempt = n
	} else {
		b.noCount.Do(func() {
			b.log.Warn("sqs: the queue reported no ApproximateReceiveCount; deliveries have an unknown attempt (0), "+
				"so the worker checks each for a result before running it and leaves redelivery limits to the queue's redrive policy",
				"queue", b.url)
		})
	}
	if ms, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		d.SentAt = time.UnixMilli(ms)
	}
	if b.fifo {
		d.GroupID = m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)]
	}
	d.Attributes = maps.Clone(d.Attributes)
	return d
}

// Ack implements ports.Broker with one DeleteMessageBatch request, which a
// single-receipt Ack shares with concurrent ones (see Options.NoCoalescing).
// Entries failing because the receipt is stale or invalid are not errors.
func (b *Broker) Ack(ctx context.Context, receipts ...ports.Receipt) error {
	const op = "ack"
	if b.isClosed() {
		return closedErr(op)
	}
	if err := checkReceipts(op, receipts); err != nil {
		return err
	}
	if len(receipts) == 1 {
		return b.acks.do(ctx, b.url, receipts)
	}
	failed, err := deleteReceipts(ctx, b.deleteBatch, b.url, receipts)
	if err != nil {
		return err
	}
	return batchResult(failed, len(receipts))
}

// Nack implements ports.Broker with ChangeMessageVisibility(delay).
func (b *Broker) Nack(ctx context.Context, r ports.Receipt, delay time.Duration) error {
	const op = "nack"
	if b.isClosed() {
		return closedErr(op)
	}
	if delay < 0 || delay > ports.MaxLease {
		return invalid(op, "delay %v not in [0, %v]", delay, ports.MaxLease)
	}
	if r == "" {
		return invalid(op, "empty receipt")
	}
	_, err := b.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          &b.url,
		ReceiptHandle:     aws.String(string(r)),
		VisibilityTimeout: int32(ceilSeconds(delay)),
	})
	if err != nil {
		return wrap(op, err, true)
	}
	return nil
}

// Requeue implements ports.Requeuer on a standard queue: it sends the copy
// (built and checked as Send builds its messages: the ID and encoding
// attributes, the attribute and size limits; d.Delay as DelaySeconds), then deletes the
// original, each request shared with concurrent Sends and Acks as theirs are
// (see Options.NoCoalescing). A stale receipt is not detected: SQS ignores
// its delete, as Ack does, and the copy is then a duplicate. An error after
// the copy was sent (its delete failed) leaves both messages. On a FIFO
// queue it fails with ports.ErrUnsupported and makes no request: a copy with
// the same MessageDeduplicationId within SQS's 5-minute window would be
// dropped, and it would go to the back of its message group.
func (b *Broker) Requeue(ctx context.Context, d ports.Delivery, attrs map[string]string) error {
	const op = "requeue"
	if b.isClosed() {
		return closedErr(op)
	}
	if b.fifo {
		return fmt.Errorf("sqs: %s: %w on FIFO queue %s: a copy would be dropped by deduplication (same ID within 5 minutes) and go to the back of its group; release with Nack",
			op, ports.ErrUnsupported, b.url)
	}
	if d.Receipt == "" {
		return invalid(op, "empty receipt")
	}
	merged := make(map[string]string, len(d.Attributes)+len(attrs))
	maps.Copy(merged, d.Attributes)
	maps.Copy(merged, attrs)
	e, err := b.entry(ports.Message{ID: d.ID, Body: d.Body, GroupID: d.GroupID, Attributes: merged, Delay: d.Delay})
	if err != nil {
		return fmt.Errorf("sqs: %s: %w", op, err)
	}
	if err := b.sends.do(ctx, b.url, []types.SendMessageBatchRequestEntry{e}); err != nil {
		return fmt.Errorf("sqs: %s: sending the copy: %w", op, err)
	}
	if err := b.acks.do(ctx, b.url, []ports.Receipt{d.Receipt}); err != nil {
		return fmt.Errorf("sqs: %s: the copy was sent; deleting the original: %w", op, err)
	}
	return nil
}

// Extend implements ports.Broker with one ChangeMessageVisibilityBatch
// request.
func (b *Broker) Extend(ctx context.Context, lease time.Duration, receipts ...ports.Receipt) error {
	const op = "extend"
	if b.isClosed() {
		return closedErr(op)
	}
	if lease <= 0 || lease > ports.MaxLease {
		return invalid(op, "lease %v not in (0, %v]", lease, ports.MaxLease)
	}
	if err := checkReceipts(op, receipts); err != nil {
		return err
	}
	secs := int32(ceilSeconds(lease))
	entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(receipts))
	for i, r := range receipts {
		entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{
			Id:                aws.String(strconv.Itoa(i)),
			ReceiptHandle:     aws.String(string(r)),
			VisibilityTimeout: secs,
		}
	}
	out, err := b.client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: &b.url, Entries: entries})
	if err != nil {
		return wrap(op, err, true)
	}
	failed := make(map[int]error)
	for _, f := range out.Failed {
		i, ok := entryIndex(f.Id, len(receipts))
		if !ok {
			return fmt.Errorf("sqs: %s: unexpected batch entry id %q", op, deref(f.Id))
		}
		failed[i] = entryError(op, f, true)
	}
	return batchResult(failed, len(receipts))
}

// Close implements ports.Broker: later calls fail with ports.ErrClosed and a
// blocked Receive returns. Acks and Sends waiting for their batch are sent
// at once, and Close returns once every coalesced request is done. Leases
// keep running; the SQS client stays open.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() { close(b.closed) })
	b.acks.close()
	b.sends.close()
	return nil
}

func checkReceipts(op string, rs []ports.Receipt) error {
	if len(rs) == 0 || len(rs) > ports.MaxBatch {
		return invalid(op, "%d receipts, want 1 to %d", len(rs), ports.MaxBatch)
	}
	for i, r := range rs {
		if r == "" {
			return invalid(op, "receipt %d is empty", i)
		}
	}
	return nil
}

// batchResult returns nil when nothing failed, the item's error for a
// one-item call, and a *ports.BatchError otherwise.
func batchResult(failed map[int]error, n int) error {
	if len(failed) == 0 {
		return nil
	}
	if n == 1 {
		return failed[0]
	}
	return &ports.BatchError{Failed: failed}
}

func entryIndex(id *string, n int) (int, bool) {
	i, err := strconv.Atoi(deref(id))
	return i, err == nil && i >= 0 && i < n
}

func ceilSeconds(d time.Duration) int64 {
	return int64(math.Ceil(d.Seconds()))
}
