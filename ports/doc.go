// Package ports defines the transport contracts dagq's core runs on: six ports —
// a lease-based task queue ([Broker]), write-once results ([ResultBackend]),
// durable broadcast cancellation ([CancelChannel]), push notification of
// finished tasks ([CompletionBus]), a claim-check store for large bodies
// ([PayloadStore]) and versioned records with optimistic concurrency
// ([StateStore]) — and the two handles two of them return: a cancellation
// subscription ([CancelSubscription], from CancelChannel.Subscribe) and a
// client's completion inbox ([Inbox], from CompletionBus.Open) — plus five
// optional capabilities, discovered by type assertion: [Requeuer], which a
// Broker may have, hands a leased message back as a new message whose
// receive count starts again at 1; [DeadLetterer], which a Broker may have,
// opens the dead-letter queue behind the broker's queue (a
// [DeadLetterQueue]); [ResultDeleter], which a ResultBackend may have,
// removes a result recorded for a dead-lettered task when the task runs
// after all; [KeyLister], which a StateStore may have, lists keys a page at
// a time; [KeyLimiter], which a ResultBackend or PayloadStore may have,
// tells the longest key it can store.
//
// The package imports neither the AWS SDK nor dagq's core: adapters
// (adapters/memory, adapters/sqs, adapters/s3) implement these interfaces and
// core consumes them. Package [github.com/dagq/dagq/ports/porttest] is the one
// conformance suite every adapter runs; where an adapter cannot match a contract
// it declares so in [porttest.Features], visibly, instead of skipping.
//
// # Common rules
//
// Unless a method's doc says otherwise, every implementation obeys these rules:
//
//   - Concurrency: all methods are safe for concurrent use by multiple goroutines.
//   - Blocking: a method returns once the backing service answered, or when ctx is
//     done (then the error wraps ctx.Err()). Receive-style methods additionally
//     block for at most an adapter-defined poll bound (documented on the adapter;
//     about one second for the memory adapter, WaitTimeSeconds for SQS) and may
//     return nothing and no error.
//   - Retries: adapters do not retry on their own beyond the SDK's standard retryer.
//     Retrying, backoff and polling loops live in core.
//   - Errors: failures match the sentinels of this package with [errors.Is]
//     ([ErrNotFound], [ErrClosed], [ErrAlreadyExists], [ErrLeaseLost],
//     [ErrInvalidArgument], [ErrUnsupported], [ErrUnavailable],
//     [ErrPermissionDenied], [ErrUnauthenticated]); the underlying
//     SDK error stays reachable with [errors.As]. Wrap with
//     fmt.Errorf("sqs: send: %w: %w", ports.ErrNotFound, sdkErr).
//   - Batches: a variadic method that partially fails returns a [*BatchError]
//     naming the index of every failed item; items not named succeeded.
//   - Ownership: adapters copy byte slices and maps they are given and return
//     slices the caller owns.
//   - Close: Close releases the adapter's resources and is idempotent; every other
//     method called after Close returns an error matching [ErrClosed]. Close does
//     not close SDK clients that were passed in by the caller.
package ports
