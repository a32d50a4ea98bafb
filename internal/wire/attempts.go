package wire

import (
	"fmt"
	"strconv"
)

// PriorAttemptsAttribute is the message attribute of a requeued message:
// the attempts the task's earlier messages used. A worker that hands back a
// message it never started puts it back as a new message
// (ports.Requeuer), whose receive count starts again at 1, and sets this
// attribute to the value it carried (0 if none) plus the receives of the
// delivery it hands back minus one (that delivery was not an attempt). The
// worker's attempt number is then
//
//	Envelope.Attempt + prior attempts + max(Delivery.Attempt, 1) - 1
//
// and a message carrying the attribute is never taken for a first delivery
// (its task may have run before). It is not covered by the message
// signature, which covers the envelope alone; it only moves the attempt
// number.
const PriorAttemptsAttribute = "dagq-prior-attempts"

// MaxPriorAttempts is the largest value of PriorAttemptsAttribute a worker
// accepts (far above any retry policy's MaxAttempts).
const MaxPriorAttempts = 1 << 20

// ParsePriorAttempts reads the value of PriorAttemptsAttribute: a decimal
// integer from 0 to MaxPriorAttempts.
func ParsePriorAttempts(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > MaxPriorAttempts {
		return 0, fmt.Errorf("attribute %s is %q; want an integer from 0 to %d", PriorAttemptsAttribute, v, MaxPriorAttempts)
	}
	return n, nil
}
