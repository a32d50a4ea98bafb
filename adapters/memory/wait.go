package memory

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/dagq/dagq/ports"
)

// signal wakes every goroutine waiting for a state change. It is guarded by
// the mutex of the state it belongs to. The channel is made on demand by the
// first waiter, so it belongs to the waiter's synctest bubble, if any.
type signal struct {
	ch chan struct{}
}

// wait returns a channel that is closed by the next notify.
func (s *signal) wait() <-chan struct{} {
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// notify wakes the current waiters.
func (s *signal) notify() {
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// sleep blocks until wake is closed, d has passed or ctx is done; only the
// last case returns an error (ctx's).
func sleep(ctx context.Context, wake <-chan struct{}, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-wake:
		return nil
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkCtx fails fast with ctx's error, as an SDK call would.
func checkCtx(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	return nil
}

func errClosed(op string) error {
	return fmt.Errorf("memory: %s: %w", op, ports.ErrClosed)
}

// cloneBytes copies b, keeping nil as nil.
func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// cloneAttrs copies m; an empty map comes back nil.
func cloneAttrs(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

func cloneResult(r ports.Result) ports.Result {
	r.Output = cloneBytes(r.Output)
	return r
}
