package core

// ClientWaiters reports what a client is waiting for: the task IDs with
// waiters, the entries scheduled for a Results read and the open Watches.
// Tests use it to prove that nothing is left behind.
func ClientWaiters(c *Client) (entries, scheduled, watches int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), len(c.sched), len(c.watches)
}
