package core

import (
	"fmt"
	"time"

	"github.com/dagq/dagq/ports"
)

// sendSchedule is when a submitted task's message becomes visible (delay)
// and, for a task due later than that, its due time (the envelope's
// NotBefore).
type sendSchedule struct {
	delay time.Duration
	due   time.Time
}

// schedule validates req's Delay and NotBefore against now and returns how
// the task is sent: a delay of whole seconds within MaxDelay is the
// message's own; a task due further ahead, after a delay that is not whole
// seconds, or at an absolute NotBefore, is sent delayed by the whole
// seconds left, at most MaxDelay, with its due time in the envelope, and
// the workers send it on until it is due and wait for the last fraction of
// a second (see Worker, Due times). Errors match ports.ErrInvalidArgument.
func (c *Client) schedule(req *Request, id string, now time.Time) (sendSchedule, error) {
	bad := func(format string, args ...any) (sendSchedule, error) {
		return sendSchedule{}, fmt.Errorf("%w: task %q (id %s): "+format,
			append([]any{ports.ErrInvalidArgument, req.Task, id}, args...)...)
	}
	var s sendSchedule
	switch {
	case req.Delay != 0 && !req.NotBefore.IsZero():
		return bad("both Delay (%v) and NotBefore (%v) are set; set one", req.Delay, req.NotBefore)
	case req.Delay < 0 || req.Delay > MaxTaskDelay:
		return bad("delay %v; valid delays are 0..%v (MaxTaskDelay)", req.Delay, MaxTaskDelay)
	case req.Delay > c.maxDelay || req.Delay%time.Second != 0:
		// Beyond one message's delay, or not whole seconds (which SQS
		// would round up, starting the task up to a second late).
		s.due = now.Add(req.Delay)
	case req.Delay > 0:
		s.delay = req.Delay // the broker's own delay; no due time needed
	case !req.NotBefore.IsZero():
		if ahead := req.NotBefore.Sub(now); ahead > MaxTaskDelay {
			return bad("NotBefore %v is %v ahead; at most %v (MaxTaskDelay)", req.NotBefore, ahead.Round(time.Second), MaxTaskDelay)
		} else if ahead > 0 {
			s.due = req.NotBefore
		} // a time past: due at once
	}
	if !s.due.IsZero() {
		s.delay = min(c.maxDelay, s.due.Sub(now).Truncate(time.Second))
	}
	if !req.Deadline.IsZero() && (s.delay > 0 || !s.due.IsZero()) {
		start := now.Add(s.delay)
		if s.due.After(start) {
			start = s.due
		}
		if !req.Deadline.After(start) {
			return bad("deadline %v is not after the task's due time %v: it would never run", req.Deadline, start)
		}
	}
	return s, nil
}
