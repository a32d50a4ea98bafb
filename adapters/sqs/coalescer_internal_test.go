package sqs

// Helpers that look inside the coalescer; the tests of batcher_test.go and
// send_test.go otherwise go through its callers or do.

// pendingItems is the number of items waiting (not yet sent) for key in c.
func pendingItems[T any](c *coalescer[T], key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	if l := c.lanes[key]; l != nil {
		for _, bt := range l.waiting {
			n += len(bt.items)
		}
	}
	return n
}

// newTestCoalescer is a coalescer of ints over request, with the defaults
// of the Broker's.
func newTestCoalescer(request requestFunc[int]) *coalescer[int] {
	return newCoalescer[int]("test", false, 0, nil, request)
}
