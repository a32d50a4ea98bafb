package core

import (
	"context"
	"sync"
	"time"
)

// slots counts a worker's in-flight deliveries against its concurrency. The
// receive loop (its only taker) waits for free slots; a finishing delivery
// wakes it only when as many slots as it waits for are free, not once per
// slot (a wake-up per finished task cost a goroutine switch per task).
type slots struct {
	mu   sync.Mutex
	max  int
	used int
	want int           // > 0: the taker waits until max-used ≥ want
	wake chan struct{} // capacity 1: signals the taker
}

func newSlots(max int) *slots {
	return &slots{max: max, wake: make(chan struct{}, 1)}
}

// inUse returns the number of slots taken.
func (s *slots) inUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// release frees k slots.
func (s *slots) release(k int) {
	s.mu.Lock()
	s.used -= k
	if s.want > 0 && s.max-s.used >= s.want {
		s.want = 0
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
}

// take waits until at least need slots are free, then takes up to k (≥ need)
// of the free ones and returns how many it took. When timer is not nil (a
// stopped timer take may use) it waits at most timeout and then takes what
// is free, possibly fewer than need. When ctx is done first it takes none.
func (s *slots) take(ctx context.Context, need, k int, timer *time.Timer, timeout time.Duration) int {
	var expired <-chan time.Time
	for {
		s.mu.Lock()
		if free := s.max - s.used; free >= need {
			n := min(k, free)
			s.used += n
			s.want = 0
			s.mu.Unlock()
			return n
		}
		s.want = need
		s.mu.Unlock()
		if timer != nil && expired == nil {
			timer.Reset(timeout)
			expired = timer.C
		}
		stopped := false
		select {
		case <-s.wake:
			continue
		case <-expired:
		case <-ctx.Done():
			stopped = true
		}
		if timer != nil {
			timer.Stop()
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.want = 0
		if stopped {
			return 0
		}
		// Timed out: take what is free.
		n := min(k, s.max-s.used)
		s.used += n
		return n
	}
}
