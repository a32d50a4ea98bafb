// Package memory implements every dagq port in process memory, with the
// semantics of the production adapters (SQS queues, S3 objects): leases,
// redelivery with growing attempt numbers, FIFO message groups and
// deduplication, redrive to a dead-letter queue, write-once results and
// broadcast cancellation. It backs the embedded mode and tests, and passes the
// whole conformance suite of package porttest.
//
// A [Transport] is one namespace, like one AWS account: it holds named queues,
// one result store, one cancellation domain, one completion domain and one
// payload key space. Its methods hand out handles over that shared state:
//
//	tr := memory.NewTransport()
//	err := tr.CreateQueue("tasks", memory.QueueOptions{})
//	broker := tr.Broker("tasks")      // ports.Broker
//	results := tr.ResultBackend()     // ports.ResultBackend
//	cancels := tr.CancelChannel()     // ports.CancelChannel
//	completions := tr.CompletionBus() // ports.CompletionBus
//	payloads := tr.PayloadStore()     // ports.PayloadStore
//
// Every call returns a new, independent handle, as separate processes would
// hold; closing a handle closes only that handle (and the subscriptions or
// inboxes opened from it), never the shared state. A Transport needs no
// closing.
//
// # Delivery semantics
//
// Brokers follow SQS. A received message is leased (invisible) until it is
// acked, nacked or its lease ends; it is then delivered again with Attempt+1
// and a new receipt, and every earlier receipt of it goes stale. Receipts are
// unique per delivery across the Transport. Extend and Nack with a stale
// receipt fail with [ports.ErrLeaseLost]. Ack is weak: a stale or repeated
// receipt is not an error; it deletes the message only while the receipt is
// the message's latest delivery (even after that lease expired, as long as no
// one received the message again), as SQS does.
//
// Standard queues currently deliver in send order, which is not a promise:
// code must not rely on it. FIFO queues deliver each message group in send
// order; a group is held back while one of its messages is leased or waiting
// out a Nack delay, and one Receive may return several messages of the same
// group, in order. An empty GroupID puts a message in a group of its own. FIFO
// queues deduplicate by message ID: a second Send of an ID within the dedup
// window (counted from the first Send, even if that message was acked since)
// is accepted and dropped. Per-message delays are refused on FIFO queues.
//
// Brokers also implement the optional [ports.Requeuer]: on a standard queue
// Requeue replaces a leased message, atomically, by a copy at the back of
// the queue, visible at once, whose first delivery has Attempt 1 (its
// receive count, and so its redrive count, starts again). A stale receipt
// fails with [ports.ErrLeaseLost]. FIFO queues fail with
// [ports.ErrUnsupported], as on SQS.
//
// A queue with MaxReceives > 0 redrives like SQS: a message already received
// MaxReceives times is moved to its DeadLetterQueue on its next receive
// instead of being delivered. It keeps its ID, body, attributes, group and
// SentAt; its Attempt restarts at 1 in the dead-letter queue. If the
// dead-letter queue has been deleted, the message is delivered as usual.
//
// Receive blocks until a message is available, for at most the queue's
// PollWait (the poll bound), or until ctx is done or the broker is closed.
// Subscription and inbox Receives block the same way, for at most the
// Transport's poll wait.
//
// Cancellation requests are kept for the Transport's lifetime (the retention
// of [ports.CancelChannel.Canceled]) and broadcast to every open subscription;
// each subscription buffers the IDs it has not received yet, without bound.
//
// Nothing runs in the background: lease ends and delays are evaluated lazily
// against time.Now, and waiting uses only timers, channels and contexts. The
// package therefore works inside testing/synctest bubbles (use a Transport
// from within one bubble only).
//
// Every byte slice and map is copied on the way in and on the way out, so a
// caller that mutates a slice after Send, Put or Publish, or a slice it
// received, changes nothing else.
//
// # Errors
//
// Errors wrap the sentinels of package ports:
//
//   - [ports.ErrNotFound]: the queue does not exist (never created or deleted;
//     from every Broker method but Close), a missing result or payload key, a
//     Publish to an inbox that was never opened or is closed, or a
//     DeadLetterQueue that does not exist.
//   - [ports.ErrAlreadyExists]: a second ResultBackend.Put of a task ID;
//     CreateQueue of an existing name with different options.
//   - [ports.ErrLeaseLost]: Extend or Nack with a stale receipt.
//   - [ports.ErrInvalidArgument]: a request outside the limits of package
//     ports (batch sizes, empty IDs or keys, attribute names, delays, leases),
//     a message whose body plus attribute names and values exceed the queue's
//     MaxBodyBytes, a delay on a FIFO queue, invalid QueueOptions or an
//     invalid queue name.
//   - [ports.ErrClosed]: any method of a closed handle, and Receive of a
//     subscription or inbox that was closed or whose channel or bus was.
//   - A ctx that is done fails the call with an error wrapping ctx.Err().
//
// The adapter never returns [ports.ErrUnavailable] or [ports.ErrUnsupported].
//
// # Configuration
//
// [NewTransport] takes options; [WithPollWait] sets the poll bound of
// subscriptions and inboxes and the default PollWait of queues (default one
// second).
//
// Queues are created explicitly with [Transport.CreateQueue], as SQS queues are
// provisioned before use. Names follow the SQS rules: 1 to 80 characters of
// [A-Za-z0-9_-], and a FIFO queue's name ends in ".fifo" (and only a FIFO
// queue's). [QueueOptions] fields, zero meaning the default:
//
//   - FIFO: a FIFO queue (false: standard).
//   - PollWait: the longest a Receive blocks (default: the Transport's).
//   - MaxBodyBytes: the size limit of body plus attributes (default 1 MiB,
//     as SQS).
//   - DedupWindow: the FIFO deduplication window (default 5 minutes).
//   - MaxReceives and DeadLetterQueue: the redrive policy, set both or
//     neither; the dead-letter queue must exist and be of the same type.
//
// [Transport.Stats] reports a queue's visible, in-flight and delayed message
// counts, for tests and metrics.
//
// # Wire
//
// [Set] is the package's Wire provider set: a *Transport created with the
// injector's [Queues], and one handle of each port not bound to a queue
// (ResultBackend, CancelChannel, CompletionBus, PayloadStore, StateStore),
// each with a cleanup that closes it. Brokers are bound to queue names by
// the application, which knows what each queue is for (package app binds
// the task queue and the run queue).
package memory
