// Package core is dagq's task queue: the registry of handlers and typed
// tasks, the Client (submit, wait, cancel, status, watch) and the Worker
// (receive loop, leases and their heartbeat, retries, cancellation, graceful
// shutdown), over a transport described by Ports.
//
// It depends only on package ports and on its wire format (the envelope,
// claim checks and signatures, in internal/wire; docs/semantics.md
// describes it). The caller plugs in the adapters: by
// hand (adapters/memory for one process, adapters/sqs and adapters/s3 on
// AWS), with one call on AWS (adapters/awsports), or from configuration
// (package app). DAGs of steps — jobs, their executor and the launcher of
// runs — are built on this API in package core/dag.
//
// # Delivery semantics
//
// Delivery is at-least-once. A task's ID is stable across redeliveries and
// its result is written once: a redelivered task that already finished is
// not run again. A Worker holds each message under a lease it extends while
// the handler runs; a worker that dies loses its leases and another worker
// gets the task. A failed attempt is retried with backoff (RetryPolicy) and
// then recorded as failed. A message that cannot be decoded or verified, or
// whose fields break the limits of the wire format (MaxTaskIDLen and the
// other Max constants, which Submit enforces too), is never executed.
//
// # Result policies
//
// What a worker keeps of a task's outcome is its ResultPolicy, chosen per
// submit (WithResult) or per task type (TaskType.WithResult): ResultDurable
// (the default) writes the result to Ports.Results and pushes its
// completion; ResultReply pushes the completion with the result inline
// only (no result write; lost if the waiting client is gone); ResultNone
// records nothing. docs/semantics.md says what each survives.
//
// # Cancellation
//
// Client.Cancel records a durable request and broadcasts it (Ports.Cancels):
// a queued task never starts, a running one has its context cancelled
// (cause ErrTaskCanceled) on whichever worker runs it, a finished one is
// left as it is.
//
// # Errors
//
// Invalid options and arguments fail with errors matching
// ports.ErrInvalidArgument that name the field and what is valid; a missing
// required port is such an error at construction. Handlers return
// ErrSkipRetry (wrapped) to fail without retry.
package core
