package sqs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

// privateQueue is the queue of one Inbox or CancelSubscription: created
// when it is opened, read by one goroutine, deleted when it is closed. The
// two differ only in what their messages mean.
type privateQueue struct {
	client   *sqs.Client
	url      string
	waitSecs int32
	// ownerDone is closed when the bus or channel that opened it closes.
	ownerDone <-chan struct{}

	closeOnce sync.Once
	closed    chan struct{}
}

func newPrivateQueue(client *sqs.Client, url string, waitSecs int32, ownerDone <-chan struct{}) privateQueue {
	return privateQueue{client: client, url: url, waitSecs: waitSecs, ownerDone: ownerDone, closed: make(chan struct{})}
}

// createPrivateQueue creates the standard queue of one inbox or cancel
// subscription: prefix + 32 random hex characters, the given message
// retention, and the tag InboxTagKey=role (for finding orphans).
func createPrivateQueue(ctx context.Context, client *sqs.Client, prefix string, retention time.Duration, role string) (string, error) {
	id := make([]byte, inboxIDLen/2)
	_, _ = rand.Read(id)
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName: aws.String(prefix + hex.EncodeToString(id)),
		Attributes: map[string]string{
			string(types.QueueAttributeNameMessageRetentionPeriod): strconv.Itoa(int(retention / time.Second)),
		},
		Tags: map[string]string{InboxTagKey: role},
	})
	if err != nil {
		return "", err
	}
	return deref(out.QueueUrl), nil
}

func (q *privateQueue) isClosed() bool {
	select {
	case <-q.closed:
		return true
	case <-q.ownerDone:
		return true
	default:
		return false
	}
}

// receive makes one ReceiveMessage request (up to 10 messages, long polling
// for waitSecs or less when ctx's deadline is nearer). Closing the queue or
// its owner aborts a blocked receive with ports.ErrClosed.
func (q *privateQueue) receive(ctx context.Context, op string) ([]types.Message, error) {
	if q.isClosed() {
		return nil, closedErr(op)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqs: %s: %w", op, err)
	}
	wait := q.waitSecs
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, int32(max(0, time.Until(dl)/time.Second)))
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-q.closed:
			cancel()
		case <-q.ownerDone:
			cancel()
		case <-rctx.Done():
		}
	}()
	out, err := q.client.ReceiveMessage(rctx, &sqs.ReceiveMessageInput{
		QueueUrl:              &q.url,
		MaxNumberOfMessages:   ports.MaxBatch,
		VisibilityTimeout:     inboxVisibility,
		WaitTimeSeconds:       wait,
		MessageAttributeNames: []string{attrEncoding},
	})
	if err != nil {
		if ctx.Err() == nil && q.isClosed() {
			return nil, closedErr(op)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sqs: %s: %w", op, ctx.Err())
		}
		return nil, wrap(op, err, false)
	}
	return out.Messages, nil
}

// deleteMessages deletes received messages in one DeleteMessageBatch
// request, even when ctx is done (bounded by deleteTimeout).
func (q *privateQueue) deleteMessages(ctx context.Context, msgs []types.Message) (*sqs.DeleteMessageBatchOutput, error) {
	entries := make([]types.DeleteMessageBatchRequestEntry, len(msgs))
	for i, m := range msgs {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	return q.client.DeleteMessageBatch(dctx, &sqs.DeleteMessageBatchInput{QueueUrl: &q.url, Entries: entries})
}

// drop closes the queue once: it marks it closed (a blocked receive
// returns), runs forget (the owner removes it from its set) and deletes the
// queue with one DeleteQueue request, bounded by deleteTimeout as Close has
// no context. A queue already gone is not an error; later calls return nil.
func (q *privateQueue) drop(op string, forget func()) error {
	var closeErr error
	q.closeOnce.Do(func() {
		close(q.closed)
		forget()
		ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
		defer cancel()
		if _, err := q.client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: &q.url}); err != nil {
			if err = wrap(op, err, false); !errors.Is(err, ports.ErrNotFound) {
				closeErr = err
			}
		}
	})
	return closeErr
}
