// Package sqs implements [ports.Broker] over Amazon SQS with
// aws-sdk-go-v2 (service/sqs). It passes the conformance suite of package
// porttest against the fauxqs emulator, with the differences declared in its
// test harness.
//
//	client := sqs.NewFromConfig(cfg) // github.com/aws/aws-sdk-go-v2/service/sqs
//	broker, err := dagqsqs.New(client, queueURL, &dagqsqs.Options{WaitTime: 20 * time.Second})
//
// # Delivery semantics
//
// At-least-once, as SQS. Receive is one ReceiveMessage request: up to max
// messages, VisibilityTimeout = the lease rounded up to whole seconds,
// long polling for Options.WaitTime (the poll bound; shortened to the
// whole seconds left before ctx's deadline). Attempt is
// ApproximateReceiveCount, SentAt is SentTimestamp, Receipt is the receipt
// handle. If ctx is cancelled while a Receive is in flight, messages SQS
// leased for it are not returned and become visible again when their
// visibility timeout ends (SQS gives no way to release them).
//
// Send is one SendMessageBatch request. The message ID travels in the
// "dagq-id" message attribute, user attributes as String attributes. Bodies
// are base64-encoded (SQS bodies must be non-empty valid XML text); the
// "dagq-enc" attribute says so ("base64", or "empty" for an empty body sent
// as "-"). A message without "dagq-enc" (sent by another producer) is
// delivered with its raw text as body and its SQS MessageId as ID. The two
// reserved attributes plus ports.MaxAttributes user attributes make the SQS
// limit of 10; user names starting with "dagq-" are refused.
//
// FIFO queues are detected from the ".fifo" suffix of the queue URL. On them
// MessageGroupId is Message.GroupID, or the ID when GroupID is empty, and
// MessageDeduplicationId is the ID, so SQS drops a second Send of an ID
// within its 5-minute deduplication window. Both must be 1 to 128 characters
// of [A-Za-z0-9] and ASCII punctuation: a value that is not is replaced by
// "sha256-" and its hex SHA-256 (stable, so deduplication and grouping still
// work). Deliveries carry the effective MessageGroupId as GroupID (so the
// hashed form when the group was hashed). Per-message delays are refused on
// FIFO queues with ports.ErrInvalidArgument before any request is made. On
// standard queues GroupID is ignored and delivered empty.
//
// Ack is one DeleteMessageBatch request; entries failing only because the
// receipt is stale or invalid are not errors (the weak contract). Nack is
// ChangeMessageVisibility to the delay rounded up to whole seconds. Extend
// is one ChangeMessageVisibilityBatch request. Close makes every later call
// fail with ports.ErrClosed and aborts a blocked Receive; leases keep running
// and the SQS client is not closed.
//
// # Errors
//
// One table (codes in errors.go) maps SQS error codes to the sentinels of
// package ports: QueueDoesNotExist and AWS.SimpleQueueService.NonExistentQueue
// → ErrNotFound; ReceiptHandleIsInvalid, MessageNotInflight, and (on Ack,
// Nack and Extend) InvalidParameterValue naming the receipt handle →
// ErrLeaseLost; throttling, internal errors, HTTP 5xx and network errors →
// ErrUnavailable; InvalidParameterValue and the other validation codes →
// ErrInvalidArgument; UnsupportedOperation → ErrUnsupported. Other codes
// (access denied, KMS) carry no sentinel. Errors are wrapped once, as
// fmt.Errorf("sqs: send: %w: %w", ports.ErrX, sdkErr), so errors.Is finds the
// sentinel and errors.As finds the smithy.APIError. Failed batch entries
// become *ports.BatchError items wrapped the same way (their SDK form is a
// *smithy.GenericAPIError carrying the entry's code); a one-item call returns
// the item's error itself. Context errors are wrapped as they are. The
// adapter does not retry beyond the SDK's retryer.
//
// # Configuration
//
// [New] takes the SDK client (region, credentials and endpoint come from it,
// e.g. config.LoadDefaultConfig, which honours AWS_ENDPOINT_URL) and a
// nil-safe *[Options]:
//
//   - WaitTime: long-polling wait and poll bound, default 20s (the SQS
//     maximum), rounded up to whole seconds.
//   - MaxBodyBytes: largest body Send accepts, default 256 KiB
//     ([DefaultMaxBodyBytes]), at most 768 KiB; base64 makes the wire body
//     4/3 as large, which must fit the queue's MaximumMessageSize (create
//     queues with 1 MiB, 1048576). Larger payloads belong in a claim-check
//     store (ports.PayloadStore), which core applies above its threshold.
//   - Logger: an *slog.Logger for warnings (undecodable foreign messages);
//     nil discards.
//
// The queue's own settings (default visibility timeout, redrive policy,
// retention) are not touched: leases are given per Receive.
package sqs
