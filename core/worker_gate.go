package core

import (
	"fmt"

	"github.com/dagq/dagq/ports"
)

// gate runs the checks that may postpone a task right before its start,
// without counting an attempt and without holding a worker slot while it
// waits: its due time (the envelope's NotBefore) and, for a task of a
// pool, a slot of that pool. It reports whether the task must not start
// now (it was postponed, or finished otherwise); the worker then returns
// its slot.
func (w *Worker) gate(j *workerJob) bool {
	if w.notDue(j) {
		return true
	}
	return w.waitForPoolSlot(j)
}

// notDue postpones a task whose due time has not come (see untilDue).
func (w *Worker) notDue(j *workerJob) bool {
	return w.untilDue(j)
}

// waitForPoolSlot (core/pool.go) acquires a slot of the task's pool, or
// postpones the task while the pool has none for it.

// MaxPoolNameLen is the longest pool name.
const MaxPoolNameLen = 63

// ValidatePoolName checks a pool name: 1 to MaxPoolNameLen bytes of
// [A-Za-z0-9_-]. The error wraps ports.ErrInvalidArgument.
func ValidatePoolName(name string) error {
	if name == "" || len(name) > MaxPoolNameLen {
		return fmt.Errorf("%w: pool name %q is %d bytes; pool names are 1 to %d bytes of A-Z, a-z, 0-9, '_' and '-'",
			ports.ErrInvalidArgument, name, len(name), MaxPoolNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: pool name %q has %q at byte %d; pool names use only A-Z, a-z, 0-9, '_' and '-'",
				ports.ErrInvalidArgument, name, c, i)
		}
	}
	return nil
}
