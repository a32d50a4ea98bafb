package core

import "github.com/dagq/dagq/internal/wire"

// ClientWaiters reports what a client is waiting for: the task IDs with
// waiters, the entries scheduled for a Results read and the open Watches.
// Tests use it to prove that nothing is left behind.
func ClientWaiters(c *Client) (entries, scheduled, watches int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), len(c.sched), len(c.watches)
}

// HelperDelay is how long a batch's jobs wait for the batch's goroutine
// before helpers take them.
const HelperDelay = helperDelay

// DecodedEnvelope is a decoded envelope with its retry policy as a
// RetryPolicy, for DecodeEnvelope.
type DecodedEnvelope struct {
	wire.Envelope
	Retry *RetryPolicy // (instead of Envelope.Retry)
}

// DecodeEnvelope decodes a message body, for the DAG tests still in package
// core_test (launcher_test.go); the other tests, and those once they have
// their own package, call wire.Decode.
func DecodeEnvelope(body []byte) (DecodedEnvelope, error) {
	e, err := wire.Decode(body)
	return DecodedEnvelope{Envelope: e, Retry: (*RetryPolicy)(e.Retry)}, err
}

// ReceiveGather bounds how long a busy worker waits for more free slots
// before a receive.
const ReceiveGather = receiveGather
