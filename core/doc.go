// Package core is dagq's transport-independent engine: the task registry and
// typed handlers, the Client (submit, wait, cancel, status) and the Worker
// (receive loop, leases, retries, cancellation, graceful shutdown). It
// depends only on package ports and on its wire format (the envelope, claim
// checks and signatures, in internal/wire; docs/semantics.md describes it);
// adapters are plugged in by the caller (see package app for the configured
// wiring).
package core
