package porttest

import (
	"bytes"
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/ports"
)

// env is the suite's view of an adapter's Features, with defaults applied
// and the time tolerances derived from them.
type env struct {
	f Features
	// gran is the lease/delay step (Features.LeaseGranularity).
	gran time.Duration
	// poll is the poll bound (Features.PollBound).
	poll time.Duration
	// slack is added to upper time bounds: zero on the synctest clock, a
	// fraction of gran in real time (request latency).
	slack time.Duration
	// early is subtracted from lower time bounds: zero on the synctest
	// clock, a small fraction of gran in real time (clock resolution).
	early time.Duration
}

func newEnv(f Features) env {
	e := env{f: f, gran: f.LeaseGranularity, poll: f.PollBound}
	if e.gran <= 0 {
		e.gran = time.Second
	}
	if e.poll <= 0 {
		e.poll = time.Second
	}
	if !f.Synctest {
		e.slack = max(e.gran/2, 250*time.Millisecond)
		e.early = e.gran / 10
	}
	return e
}

// need names an optional feature a subtest depends on.
type need int

const (
	needNothing need = iota
	needFIFO
	needRequeue     // Features.Requeue
	needFIFORequeue // Features.FIFO and Features.Requeue
	needDeadLetters // Features.DeadLetters
	needResultDelete
	needListKeys
)

// missing names the feature n needs that f does not declare ("" if none).
func (n need) missing(f Features) string {
	switch {
	case (n == needFIFO || n == needFIFORequeue) && !f.FIFO:
		return "FIFO"
	case (n == needRequeue || n == needFIFORequeue) && !f.Requeue:
		return "Requeue"
	case n == needDeadLetters && !f.DeadLetters:
		return "DeadLetters"
	case n == needResultDelete && !f.ResultDelete:
		return "ResultDelete"
	case n == needListKeys && !f.ListKeys:
		return "ListKeys"
	}
	return ""
}

// run runs fn as the parallel subtest name: inside a synctest bubble when
// the adapter declares Synctest, in real time otherwise. A subtest that needs
// an undeclared feature is skipped, visibly.
func (e env) run(t *testing.T, name string, n need, fn func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		if f := n.missing(e.f); f != "" {
			t.Skipf("feature %s not declared by adapter", f)
		}
		t.Parallel()
		if e.f.Synctest {
			synctest.Test(t, fn)
			return
		}
		fn(t)
	})
}

// ctx returns the subtest's context, bounded so that a hanging adapter fails
// the subtest instead of the whole test binary.
func (e env) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// longLease is a lease no subtest outlives.
func (e env) longLease() time.Duration {
	return min(60*e.gran, ports.MaxLease)
}

// within is how long a message, ID or completion that is due may take to
// arrive: a few poll bounds plus slack.
func (e env) within() time.Duration {
	return 3*e.poll + 2*e.gran + e.slack
}

// requireQuick fails when more than limit (plus slack) passed since start.
func (e env) requireQuick(t *testing.T, start time.Time, limit time.Duration, what string) {
	t.Helper()
	elapsed := time.Since(start)
	require.LessOrEqualf(t, elapsed, limit+e.slack, "%s took %v, want at most %v (+%v slack)", what, elapsed, limit, e.slack)
}

// requireNotBefore fails when less than d passed since start.
func (e env) requireNotBefore(t *testing.T, start time.Time, d time.Duration, what string) {
	t.Helper()
	elapsed := time.Since(start)
	require.GreaterOrEqualf(t, elapsed, d-e.early, "%s after %v, want not before %v (-%v)", what, elapsed, d, e.early)
}

// requireBytes compares byte slices by content (nil equals empty).
func requireBytes(t *testing.T, want, got []byte, msgAndArgs ...any) {
	t.Helper()
	if !bytes.Equal(want, got) {
		require.Equal(t, want, got, msgAndArgs...) // fails, printing the difference
	}
}

// allBytes returns the 256 byte values in order.
func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// pattern returns n deterministic, non-repeating-looking bytes.
func pattern(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// requireTimeEqual compares instants (not locations or monotonic readings).
func requireTimeEqual(t *testing.T, want, got time.Time, what string) {
	t.Helper()
	require.Truef(t, want.Equal(got), "%s: want %v, got %v", what, want, got)
}

// requireResultEqual compares results field by field, times with Equal.
func requireResultEqual(t *testing.T, want, got ports.Result) {
	t.Helper()
	require.Equal(t, want.TaskID, got.TaskID, "TaskID")
	require.Equal(t, want.State, got.State, "State")
	requireBytes(t, want.Output, got.Output, "Output")
	require.Equal(t, want.Error, got.Error, "Error")
	require.Equal(t, want.Attempts, got.Attempts, "Attempts")
	require.Equal(t, want.Worker, got.Worker, "Worker")
	requireTimeEqual(t, want.StartedAt, got.StartedAt, "StartedAt")
	requireTimeEqual(t, want.FinishedAt, got.FinishedAt, "FinishedAt")
}
