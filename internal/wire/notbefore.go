package wire

import (
	"fmt"
	"time"
)

// NotBeforeAttribute is the message attribute that carries a due time set
// by a worker, not by the producer: when a failed attempt's retry backoff
// is longer than one broker delay (ports.MaxDelay), the worker sends the
// task on as a new message (ports.Requeuer), delayed by at most that much,
// with this attribute set to when the next attempt is due. The message body
// (and so a signature, or a claim check) stays as it is. A task is due at
// the later of this attribute and the envelope's NotBefore.
//
// Its value is a time in RFC 3339 with nanoseconds, UTC
// (2026-11-25T09:00:00.123Z). Like PriorAttemptsAttribute it is not covered
// by the message signature: it only moves when a task starts.
const NotBeforeAttribute = "dagq-not-before"

// FormatNotBefore writes t as a NotBeforeAttribute value.
func FormatNotBefore(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// ParseNotBefore reads a NotBeforeAttribute value.
func ParseNotBefore(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("attribute %s is %q; want a time in RFC 3339 (2026-11-25T09:00:00Z)", NotBeforeAttribute, v)
	}
	return t, nil
}
