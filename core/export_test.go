package core

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

// ReceiveGather bounds how long a busy worker waits for more free slots
// before a receive.
const ReceiveGather = receiveGather
