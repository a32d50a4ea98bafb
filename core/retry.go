package core

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// ErrSkipRetry, wrapped into a handler's error, fails the task at once without
// further attempts: return fmt.Errorf("bad input: %w", core.ErrSkipRetry). The
// task's Result.Error then reads "failed without retry: bad input": the
// sentinel's own text is left out of it.
var ErrSkipRetry = errors.New("skip retry")

// failedWithoutRetry is the Result.Error of a task whose error wraps
// ErrSkipRetry: what happened ("failed without retry: bad input"), without
// the sentinel's own text, which means nothing to the people who read
// results (dagq status, dagq run's table).
func failedWithoutRetry(err error) string {
	if msg := withoutSkipRetry(err); msg != "" {
		return "failed without retry: " + msg
	}
	return "failed without retry"
}

// quietSkipRetry is a handler's error wrapping ErrSkipRetry as logged: its
// text leaves the sentinel's out (the log line says "failed without
// retry"), and errors.Is still finds it.
type quietSkipRetry struct{ err error }

func (q quietSkipRetry) Error() string { return withoutSkipRetry(q.err) }
func (q quietSkipRetry) Unwrap() error { return q.err }

// withoutSkipRetry is err's text without ErrSkipRetry's ("bad input" for
// "bad input: skip retry"); empty when nothing else is left.
func withoutSkipRetry(err error) string {
	skip := ErrSkipRetry.Error()
	msg := err.Error()
	msg = strings.ReplaceAll(msg, ": "+skip+":", ":")
	msg = strings.TrimSuffix(msg, ": "+skip)
	msg = strings.TrimPrefix(msg, skip+": ")
	if msg == skip {
		return ""
	}
	return msg
}

// RetryPolicy says how often a failing task runs and how long it waits between
// attempts. The delay before attempt n+1 is
// min(MaxBackoff, InitialBackoff·Multiplier^(n-1)), then reduced by a random
// fraction of up to Jitter.
type RetryPolicy struct {
	// MaxAttempts counts every run including the first; 1 means no retry.
	MaxAttempts int `json:"max_attempts"`
	// InitialBackoff is the delay after the first failure.
	InitialBackoff time.Duration `json:"initial_backoff"`
	// MaxBackoff caps the delay, at most MaxTaskDelay; zero means a cap of
	// ports.MaxLease (12h). A delay longer than the worker's MaxDelay (15
	// minutes by default) is waited for in the queue, as a new message sent
	// on until the retry is due, not as a Nack (see Worker, Due times).
	MaxBackoff time.Duration `json:"max_backoff"`
	// Multiplier grows the delay per attempt (≥ 1); zero means 1 (constant).
	Multiplier float64 `json:"multiplier"`
	// Jitter in [0,1] is the largest fraction of the delay removed at random,
	// so that tasks failing together do not retry together.
	Jitter float64 `json:"jitter"`
}

// DefaultRetryPolicy is used when neither the worker nor the task sets one:
// 3 attempts, 1s then 2s (up to 5 min), 20% jitter.
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts:    3,
	InitialBackoff: time.Second,
	MaxBackoff:     5 * time.Minute,
	Multiplier:     2,
	Jitter:         0.2,
}

// Validate reports a policy that cannot be used, naming the field and the
// valid range.
func (p RetryPolicy) Validate() error {
	// The rules travel with the envelope: a worker refuses a task whose
	// policy breaks them as malformed.
	return wire.Retry(p).Validate()
}

// Backoff returns the delay after failed attempt n (n ≥ 1).
func (p RetryPolicy) Backoff(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	mult, limit := p.Multiplier, p.MaxBackoff
	if mult == 0 {
		mult = 1
	}
	if limit == 0 {
		limit = ports.MaxLease
	}
	limit = min(limit, MaxTaskDelay)
	d := float64(p.InitialBackoff) * math.Pow(mult, float64(n-1))
	if d > float64(limit) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(limit)
	}
	if p.Jitter > 0 {
		d -= d * p.Jitter * rand.Float64()
	}
	return time.Duration(d)
}
