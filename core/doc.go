// Package core is dagq's transport-independent engine: the task registry and
// typed handlers, the message envelope, the Client (submit, wait, cancel,
// status) and the Worker (receive loop, leases, retries, cancellation,
// graceful shutdown). It depends only on package ports; adapters are plugged
// in by the caller (see package app for the configured wiring).
package core
