// Package sqs implements [ports.Broker], [ports.CompletionBus] and
// [ports.CancelChannel] over Amazon SQS with aws-sdk-go-v2 (service/sqs). It passes the conformance
// suites of package porttest against the fauxqs emulator, with the
// differences declared in its test harness.
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
// receipt is stale or invalid are not errors (the weak contract). Concurrent
// single-receipt Acks (the worker acks each task on its own) share their
// request: an Ack joins the pending batch, which is sent when it holds 10
// receipts or Options.FlushWindow after its first one joined; each caller
// waits for its batch's request and gets its own entry's result. A caller
// whose ctx ends stops waiting with ctx's error (its receipt stays in the
// batch and may still be deleted); the request itself runs on no caller's
// context, bounded by 30 seconds. An Ack of several receipts is its own
// request, as before. Nack is
// ChangeMessageVisibility to the delay rounded up to whole seconds. Extend
// is one ChangeMessageVisibilityBatch request. Close makes every later call
// fail with ports.ErrClosed and aborts a blocked Receive; Acks waiting for
// their batch are sent at once and Close returns when that request is done.
// Leases keep running and the SQS client is not closed.
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
//   - FlushWindow: how long a single-receipt Ack waits for others to share
//     its DeleteMessageBatch request, default 5ms ([DefaultFlushWindow]), at
//     most 1s; a negative value disables coalescing (one request per Ack).
//     A lone Ack thus completes one window later than without it; with many
//     concurrent tasks a batch fills before the window ends. Cost: with
//     concurrent tasks, about one DeleteMessageBatch per 10 acks instead of
//     one per ack; at worst (acks more than a window apart) one per ack.
//
// The queue's own settings (default visibility timeout, redrive policy,
// retention) are not touched: leases are given per Receive.
//
// # Completion inboxes
//
// [NewCompletionBus] returns a [CompletionBus] (nil-safe
// *[CompletionOptions]: QueuePrefix, WaitTime, Logger). Every inbox is a
// standard SQS queue of its own:
//
//   - Naming: Open creates the queue QueuePrefix + 32 random hex characters
//     (default prefix "dagq-reply-", so "dagq-reply-3f9c…"; prefixes are
//     [A-Za-z0-9_-], at most 48 characters, so names stay within the SQS
//     limit of 80). It sets MessageRetentionPeriod to one hour
//     ([InboxRetention]) and the tag dagq:role=reply-inbox ([InboxTagKey],
//     [InboxTagValue]). The inbox's Address is the queue URL; the publisher
//     needs sqs:SendMessage on it, the client sqs:CreateQueue,
//     sqs:TagQueue, sqs:ReceiveMessage, sqs:DeleteMessage and
//     sqs:DeleteQueue on the prefix (e.g. arn:aws:sqs:*:*:dagq-reply-*).
//   - Publish is one SendMessageBatch request, one message per completion:
//     its JSON encoding, or, when that contains characters SQS refuses in a
//     body (such as U+FFFE), the base64 of the JSON with the "dagq-enc"
//     attribute. A missing queue (QueueDoesNotExist) is ports.ErrNotFound.
//   - Receive is one ReceiveMessage request (up to 10 messages, long polling
//     for WaitTime, the poll bound) and one DeleteMessageBatch request for
//     the messages received. Undecodable messages are logged and deleted;
//     they never fail Receive. If the delete fails, the completions are
//     still returned and come again after 30 seconds (at-least-once).
//   - Inbox.Close is DeleteQueue (bounded by 30 seconds; a queue already gone
//     is not an error). CompletionBus.Close deletes the queues of the inboxes
//     opened from it that are still open.
//
// Real SQS takes up to 60 seconds to delete a queue, and a Publish in that
// window may still succeed (into the void) instead of failing with
// ports.ErrNotFound; fauxqs deletes at once. Either way completions are
// best-effort and the ResultBackend stays the source of truth.
//
// Cost: an idle inbox costs one ReceiveMessage request per WaitTime, that is
// 3 requests a minute at the default 20s (about 130,000 a month per waiting
// client), plus one CreateQueue and one DeleteQueue per inbox. Keep one inbox
// per client process, not per task.
//
// Orphans: the inbox of a client that crashed is never deleted. Its
// completions expire after the one-hour retention, but the queue itself
// remains (SQS deletes queues only when asked; idle queues cost nothing but
// count against account quotas and clutter listings). Clean up periodically,
// e.g. a scheduled job that lists the queues with the inbox prefix
// (ListQueues QueueNamePrefix), keeps those with the dagq:role=reply-inbox
// tag whose CreatedTimestamp is older than the longest a client lives, and
// deletes them. Deleting a live client's inbox is safe but costs it its push
// notifications: its Receive then fails with ports.ErrNotFound and it falls
// back to polling the ResultBackend or reopens an inbox.
//
// # Cancellation
//
// [NewCancelChannel] returns a [CancelChannel] (nil-safe *[CancelOptions]:
// QueuePrefix, WaitTime) over an SQS client and a ports.StateStore (in
// practice adapters/s3's StateStore, so S3). A request has two halves:
//
//   - Durable mark: Cancel writes, per task ID, the StateStore record
//     "cancels/<id>" ([CancelMarkPrefix]; an ID that is not a valid key is
//     stored as "cancels/sha256-<hex>") holding {"at": <time>},
//     unconditionally, so repeating a request is harmless. Canceled is one
//     GET per ID (up to 16 at once); ErrNotFound means not cancelled. Workers
//     call it once per received batch, before starting the tasks. Marks are
//     never deleted by the adapter (retention is the StateStore's: forever,
//     or an S3 lifecycle rule on the prefix).
//   - Broadcast: every Subscribe creates an SQS queue of its own, one per
//     subscribed worker. Cancel finds them by name prefix (ListQueues with
//     QueueNamePrefix, paginated) and sends the IDs to each (one
//     SendMessageBatch per queue, one message per ID). Each worker reads only
//     its own queue, so no request can be consumed by the wrong worker, as it
//     could from one shared queue. A queue that vanished meanwhile
//     (QueueDoesNotExist) is skipped; other send errors are returned, wrapped
//     as the error table says, but the marks already exist: workers still see
//     the request through Canceled, only the fast interruption of a running
//     task may be missed.
//
// Subscription.Receive is one ReceiveMessage (up to 10, long polling for
// WaitTime, the poll bound) and one DeleteMessageBatch; an ID may come more
// than once. Subscription.Close deletes the queue; CancelChannel.Close
// deletes the queues of its open subscriptions and fails later calls with
// ports.ErrClosed (the SQS client and the StateStore stay open).
//
// Naming: QueuePrefix (default "dagq-cancel-", [DefaultCancelPrefix];
// [A-Za-z0-9_-], at most 48 characters) + 32 random hex characters. The
// queues are standard queues even when the task queue is FIFO, so names are
// always valid (a FIFO-derived name such as "x.fifo-cancels" is not: ".fifo"
// may only end a name). Retention is one hour ([CancelRetention]) and the
// tag dagq:role=cancel-subscription ([InboxTagKey], [CancelTagValue]). All
// processes of a deployment share the prefix, and nothing else may use it.
// IAM: sqs:ListQueues, sqs:SendMessage on the prefix for cancellers;
// sqs:CreateQueue, sqs:TagQueue, sqs:ReceiveMessage, sqs:DeleteMessage,
// sqs:DeleteQueue on the prefix for workers.
//
// Costs: an idle subscriber makes one ReceiveMessage per WaitTime (3 a
// minute at the default 20s). A Cancel of k IDs makes k PUTs, one ListQueues
// (per 1000 subscribers) and one SendMessage request per 10 IDs per
// subscriber. Latency is about one SQS round trip plus the subscriber's
// long-poll wake-up, sub-second (about 10 ms from Cancel to Receive against
// local emulators, PUT and ListQueues included).
//
// Real SQS lists a just-created queue after a short delay (ListQueues is
// eventually consistent), so a request made right after Subscribe may miss
// that subscription's queue. That departs from the contract (every request
// made after Subscribe returned), though not on fauxqs, which lists at once;
// core must therefore not rely on the broadcast alone: it checks Canceled
// before starting a task, and a request missed this way only interrupts a
// running task later or not at all. A deleted queue may likewise still
// be listed for up to 60 seconds; sends to it succeed into the void.
//
// Orphans: the queue of a worker that crashed is never deleted. Its messages
// expire after the one-hour retention, but the queue remains and keeps
// receiving broadcasts (one more send per Cancel). Clean up as for inboxes: a
// scheduled job lists the queues with the cancel prefix, keeps those tagged
// dagq:role=cancel-subscription whose CreatedTimestamp is older than the
// longest a worker lives, and deletes them. Deleting a live worker's queue
// costs it only fast interruption: its Receive fails with ports.ErrNotFound
// and it resubscribes; Canceled still answers.
package sqs
