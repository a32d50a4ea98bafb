package core

// ClientStats is what a Client is waiting for at one moment (Client.Stats):
// for metrics, and for tests that prove nothing is left behind.
type ClientStats struct {
	// Tracked is the number of tasks the client tracks: those with a waiter
	// and those it submitted whose outcome it has not seen yet.
	Tracked int
	// ScheduledReads is the number of tasks scheduled for a read of the
	// result backend (a polled wait, or a reconcile of a pushed one).
	ScheduledReads int
	// Watches is the number of open Watches.
	Watches int
}

// Stats reports what the client is waiting for.
func (c *Client) Stats() ClientStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ClientStats{Tracked: len(c.entries), ScheduledReads: len(c.sched), Watches: len(c.watches)}
}
