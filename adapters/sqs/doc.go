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
// Send is one SendMessageBatch request, shared with concurrent Sends (see
// Coalescing below). The message ID travels in the "dagq-id" message
// attribute, user attributes as String attributes. SQS bodies must be
// non-empty valid XML text, so the "dagq-enc" attribute says how the body
// travels: "text" when it is valid UTF-8 made only of the characters SQS
// accepts (#x9, #xA, #xD, #x20–#xD7FF, #xE000–#xFFFD, #x10000–#x10FFFF), so
// JSON and other text is sent as it is, at its own size; "base64" for any
// other body (4/3 of its size); "empty" for an empty body, sent as "-".
// Receivers decode all three (so messages of older versions, always base64,
// still decode; an older receiver delivers a "text" body as its raw text
// after logging an unknown encoding, which is the right body). A message
// without "dagq-enc" (sent by another producer) is delivered with its raw
// text as body and its SQS MessageId as ID. The two reserved attributes plus
// ports.MaxAttributes user attributes make the SQS limit of 10; the two
// reserved names are refused as user attributes (core's own "dagq-payload",
// the claim-check reference, is an ordinary attribute here).
//
// Sizes: Options.MaxBodyBytes limits the raw Message.Body (its bytes as given,
// before encoding; default 1 MiB). Separately, Send refuses with
// ports.ErrInvalidArgument, naming the size and the limit, any message whose
// SQS form exceeds the 1 MiB SQS message limit (1,048,576 bytes), counted as
// SQS counts it: the body as sent plus the name, data type and value of every
// attribute. Both checks happen before any request is made.
//
// FIFO queues are detected from the ".fifo" suffix of the queue URL
// ([IsFIFOURL]). On them MessageGroupId is Message.GroupID, or the ID when
// GroupID is empty, and MessageDeduplicationId is the ID, so SQS drops a
// second Send of an ID within its 5-minute deduplication window. Both must be
// 1 to 128 characters of [A-Za-z0-9] and ASCII punctuation: a value that is
// not is replaced by "sha256-" and its hex SHA-256 (stable, so deduplication
// and grouping still work). Deliveries carry the effective MessageGroupId as
// GroupID (so the hashed form when the group was hashed). Per-message delays
// are refused on FIFO queues with ports.ErrInvalidArgument before any request
// is made. On standard queues GroupID is ignored and delivered empty.
//
// Fair-queue (message-group) mode is Options.FairQueue: [FairAuto] (the zero
// value) follows the queue type, on for a FIFO queue and off for a standard
// one. [FairOn] on a standard queue is logged once by New as a warning on
// Options.Logger and ignored: no MessageGroupId is sent. [FairOff] on a FIFO
// queue makes New fail with ports.ErrInvalidArgument, since FIFO queues
// require a message group on every message. So in every accepted
// configuration, groups are sent exactly on FIFO queues. (Amazon's newer
// "fair queues" feature, which reads MessageGroupId on standard queues to
// mitigate noisy tenants, is not used by this adapter.)
//
// Ack is one DeleteMessageBatch request; entries failing only because the
// receipt is stale or invalid are not errors (the weak contract).
// Single-receipt Acks (the worker acks each task on its own) are coalesced
// (below); an Ack of several receipts is its own request, as before. Nack is
// ChangeMessageVisibility to the delay rounded up to whole seconds. Extend
// is one ChangeMessageVisibilityBatch request. Close makes every later call
// fail with ports.ErrClosed and aborts a blocked Receive; Acks and Sends
// waiting for their batch are sent at once and Close returns when every
// coalesced request is done. Leases keep running and the SQS client is not
// closed.
//
// Broker also implements the optional [ports.Requeuer] on standard queues:
// Requeue sends a copy of the delivery (built as Send builds a message, with
// the given attributes merged over the delivery's) and then deletes the
// original, so the copy's ApproximateReceiveCount starts again at 1 and the
// release is not counted by the queue's redrive policy. Both requests are
// coalesced like Send's and Ack's. A crash between them leaves a duplicate,
// never a loss. On FIFO queues it fails with ports.ErrUnsupported and makes
// no request (a copy with the same deduplication ID within 5 minutes would
// be dropped, and it would lose its place in its group): there a release
// still counts as a receive.
//
// # Coalescing
//
// One mechanism shares batch requests among concurrent calls: single-receipt
// Acks (DeleteMessageBatch), Sends of any size on one Broker
// (SendMessageBatch), and Publishes to one inbox queue URL (SendMessageBatch,
// see Completion inboxes). It is group commit, per queue URL and kind of
// request, with no timer:
//
//   - A call finding no request of its kind in flight to its queue is sent
//     at once, alone or with what waits: an idle queue adds no latency.
//   - Calls arriving while one is in flight join the next batch, which
//     leaves as soon as the request in flight returns: a busy queue sends
//     full batches, one request in flight at a time.
//   - A batch stops taking items when it holds 10 entries or when the next
//     call's items would not fit it (over 10 entries, or over the SQS batch
//     payload limit of 1 MiB, counted as for one message: bodies as sent
//     plus attribute names, types and values); later calls start another
//     batch behind it, which leaves after it. A full batch waits for the
//     request in flight like any other.
//
// A call's items join a batch as a unit and are never split across requests
// unless they alone cannot fit one (say ten 300 KiB bodies): they are then
// cut into chunks that fit, sent one after the other in order. Entry Ids
// are the position in the request and are mapped back, so every caller gets
// only its own results, indexed as in its call: nil, the request's error
// when the whole request failed, the item's error for a one-item call, or a
// *ports.BatchError with its own indexes on a partial failure (entries
// failing only because a receipt is stale are dropped from Ack's results, as
// always). The request runs on no caller's context (the first caller's
// values, bounded by 30 seconds), so a caller leaving does not fail the
// others. The SDK's retryer retries a request as it would an uncoalesced
// one; the batch behind it waits meanwhile.
//
// A caller whose ctx ends while waiting gets ctx's error, but its items stay
// in their batch and may still be sent: a Send that returned ctx's error may
// have enqueued its messages (at-least-once, as after any lost response;
// on FIFO queues the task ID is the MessageDeduplicationId, so a retried Send
// within 5 minutes is dropped), and an Ack may still delete (the weak
// contract). The other callers of its batch are not affected. A call whose
// ctx is already done joins nothing.
//
// Cost and benefit: a lone call costs what it would without coalescing (one
// request, at once). Concurrent calls share requests: about one per 10
// messages or acks instead of one each (200 single Sends from 32 goroutines
// on fauxqs: about 21 requests instead of 200, 7 times faster in wall
// time). A call arriving while a request is in flight waits for the rest of
// that request's round trip before its own batch leaves. Options.NoCoalescing
// (CompletionOptions.NoCoalescing for Publishes) turns coalescing off: every
// call makes its own request(s) on its own context.
//
// # Errors
//
// One table (codes in errors.go) maps SQS error codes to the sentinels of
// package ports: QueueDoesNotExist and AWS.SimpleQueueService.NonExistentQueue
// → ErrNotFound; ReceiptHandleIsInvalid, MessageNotInflight, and (on Ack,
// Nack and Extend) InvalidParameterValue naming the receipt handle →
// ErrLeaseLost; throttling, internal errors, HTTP 5xx and network errors →
// ErrUnavailable; InvalidParameterValue and the other validation codes →
// ErrInvalidArgument; UnsupportedOperation → ErrUnsupported; AccessDenied →
// ErrPermissionDenied; InvalidClientTokenId, SignatureDoesNotMatch,
// ExpiredToken and the other credential codes → ErrUnauthenticated. Other
// codes (KMS) carry no sentinel. Errors are wrapped once, as
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
//   - MaxBodyBytes: largest raw body (bytes as given, before encoding) Send
//     accepts, default and at most 1 MiB ([DefaultMaxBodyBytes]). The
//     message as sent must also fit 1 MiB with its attributes (see above):
//     text bodies travel at their size, others at 4/3 (base64), so binary
//     bodies over about 767 KiB never fit. The queue's MaximumMessageSize
//     must allow it (create queues with 1 MiB, 1048576). Larger payloads
//     belong in a claim-check store (ports.PayloadStore), which core applies
//     above its threshold.
//   - Logger: an *slog.Logger for warnings (undecodable foreign messages,
//     FairOn on a standard queue); nil discards.
//   - NoCoalescing: every single-receipt Ack and Send makes its own
//     requests (see Coalescing). Off by default: coalescing adds no latency
//     to a lone call, so there is little reason to turn it off.
//   - FairQueue: fair-queue (message-group) mode, [FairAuto], [FairOn] or
//     [FairOff] (see above).
//
// The queue's own settings (default visibility timeout, redrive policy,
// retention) are not touched: leases are given per Receive.
//
// # Completion inboxes
//
// [NewCompletionBus] returns a [CompletionBus] (nil-safe
// *[CompletionOptions]: QueuePrefix, WaitTime, Logger, NoCoalescing). Every
// inbox is a standard SQS queue of its own:
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
//   - Publish is one SendMessageBatch request. Concurrent Publishes to the
//     same inbox URL share it (see Coalescing; CompletionOptions.NoCoalescing
//     turns it off; up to 1,000 completions or about
//     1 MiB per request), and the completions of a shared request travel
//     packed: one message whose body is the JSON array of all of them that
//     are valid SQS text (as many messages as the 1 MiB message limit
//     needs), so a busy inbox costs one send, one receive and one delete per
//     batch instead of per completion. A lone completion is its JSON object;
//     one that contains characters SQS refuses in a body (such as U+FFFE)
//     travels alone as the base64 of its JSON with the "dagq-enc" attribute.
//     A completion over the 1 MiB message limit is refused with
//     ports.ErrInvalidArgument. A failed message fails the Publishes whose
//     completions it carried. CompletionBus.Close sends the waiting ones
//     first. A missing queue (QueueDoesNotExist) is ports.ErrNotFound for
//     every caller sharing the request.
//   - Receive is one ReceiveMessage request (up to 10 messages, each one
//     completion or a packed array of them, long polling
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
// QueuePrefix, WaitTime, ListLag, Relist) over an SQS client and a
// ports.StateStore (in practice adapters/s3's StateStore, so S3). A request
// has two halves:
//
//   - Durable mark: Cancel writes, per task ID, the StateStore record
//     "cancels/<id>" ([CancelMarkPrefix]; an ID that is not a valid key is
//     stored as "cancels/sha256-<hex>") holding {"at": <time>},
//     unconditionally, so repeating a request is harmless. Without a
//     settled subscription (below), Canceled is one GET per ID (up to 16 at
//     once); ErrNotFound means not cancelled. Workers call it once per
//     received batch, before starting the tasks. Marks are never deleted by
//     the adapter (retention is the StateStore's: forever, or an S3
//     lifecycle rule on the prefix).
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
// Answering from memory: once one of the channel's subscriptions has
// settled, Canceled makes no request. Every request made after the settle
// point reaches the subscription by broadcast, and every request made before
// it is in the StateStore, loaded by one LIST. Precisely: a subscription
// queue created at T is listed by every ListQueues after T + ListLag (the
// ListQueues lag, CancelOptions.ListLag, default 60s; negative: none, for
// fauxqs), so every Cancel that lists later broadcasts to it, and every
// Cancel that listed earlier wrote its marks earlier. At T + ListLag +
// ListLag/10 the channel lists the marks (the StateStore must have the
// [MarkLister] method, as adapters/s3's has: ListObjectsV2, one request per
// 1000 marks) and from then on answers from the union of the listed marks,
// the IDs its subscriptions delivered (recorded as Receive returns them)
// and those its own Cancel recorded. Every Relist (default 10 minutes) it
// lists again, keeping of the rest only what it learned since that LIST
// began, so marks expired by a lifecycle rule leave memory too.
//
// It answers from memory only while such a subscription is open, being
// received (a Receive in flight or returned within 2 seconds) and sound:
// a Receive failing with ErrNotFound (queue deleted) or a gap of 30 minutes
// between Receives (requests may have expired) un-settles it for good; any
// other failed or aborted Receive (SQS may hold back messages it leased for
// it) for 32 seconds. Otherwise, and on a channel without subscriptions
// (a client's Status), Canceled reads the StateStore as above. Settled
// reports which mode is in force. When the last subscription closes the
// memory is dropped.
//
// What this changes: a request made in another process reaches memory
// when its broadcast is received (about 10 ms after Cancel returns on
// the emulators), not when Cancel returns; a check in that window misses
// it. Core's worker loses nothing: it registers a batch's tasks before the
// check, so the broadcast received after the check cancels the task
// (before or just after its handler starts). A Cancel that returned an
// error may have written marks it did not broadcast (a failed mark write
// stops it before the broadcast; or "requests recorded, broadcast
// failed"): settled channels see them only at their next re-LIST, so
// retry such a Cancel (it is idempotent). Too small a ListLag on real SQS has the same effect on
// the requests made in a subscription's first minute.
//
// Cost: one LIST per 1000 marks at settling and per Relist, instead of one
// GET per task checked. Memory: about 100 bytes per known mark (an ID of 36
// bytes; 80 for 20 bytes), so 100 MB per million marks the StateStore
// holds; bound it with a lifecycle rule on the marks (see docs/aws.md).
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
// before starting a task (which reads the marks until the subscription has
// settled, past that delay), and a request missed this way only interrupts
// a running task later or not at all. A deleted queue may likewise still
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
//
// # Wire
//
// [Set] is the package's Wire provider set: a *Broker on the injector's
// [QueueURL], a *CancelChannel and a *CompletionBus, each bound to its port
// and closed by its cleanup ([ProvideBroker], [ProvideCancelChannel],
// [ProvideCompletionBus]). adapters/awsports builds the complete AWS port set
// with it and adapters/s3's Set in one call.
package sqs
