package wire

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// PoolWaitAttribute is the message attribute of a task postponed because
// its pool was full (see core.PoolOptions): "<first wait>.<ticket
// expiry>.<waits>", the time it first waited (Unix nanoseconds), the expiry
// of the wait ticket it wrote last (Unix milliseconds) and how often it
// waited. It travels on the postponed copy (a delayed requeue), so a task
// keeps its place in the pool's queue of waiters across re-checks, workers
// and restarts. Like PriorAttemptsAttribute it is not covered by the
// message signature: it only orders waiters.
const PoolWaitAttribute = "dagq-pool-wait"

// PoolWait is the value of PoolWaitAttribute.
type PoolWait struct {
	// Since is when the task first found its pool full.
	Since time.Time
	// Ticket is the expiry of the wait ticket the task wrote last (its key
	// names it, so the next check can delete it).
	Ticket time.Time
	// Waits counts the task's waits so far.
	Waits int
}

// maxPoolWaits bounds PoolWait.Waits (a sanity check, far above any wait).
const maxPoolWaits = 1 << 30

// Format returns the attribute value of w.
func (w PoolWait) Format() string {
	return strconv.FormatInt(w.Since.UnixNano(), 10) + "." + strconv.FormatInt(w.Ticket.UnixMilli(), 10) + "." +
		strconv.Itoa(w.Waits)
}

// ParsePoolWait reads a PoolWaitAttribute value.
func ParsePoolWait(v string) (PoolWait, error) {
	bad := func() (PoolWait, error) {
		return PoolWait{}, fmt.Errorf("attribute %s is %q; want <unix ns>.<unix ms>.<waits>", PoolWaitAttribute, v)
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return bad()
	}
	since, err1 := strconv.ParseInt(parts[0], 10, 64)
	ticket, err2 := strconv.ParseInt(parts[1], 10, 64)
	waits, err3 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || since <= 0 || ticket <= 0 || waits < 0 || waits > maxPoolWaits {
		return bad()
	}
	return PoolWait{Since: time.Unix(0, since), Ticket: time.UnixMilli(ticket), Waits: waits}, nil
}
