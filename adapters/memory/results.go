package memory

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dagq/dagq/ports"
)

// resultStore is the Transport's write-once result map.
type resultStore struct {
	mu      sync.RWMutex
	results map[string]ports.Result
}

// resultBackend is one handle on a resultStore.
type resultBackend struct {
	store  *resultStore
	closed atomic.Bool
}

var _ ports.ResultBackend = (*resultBackend)(nil)

func (b *resultBackend) check(ctx context.Context, op string) error {
	if b.closed.Load() {
		return errClosed(op)
	}
	return checkCtx(ctx, op)
}

// Put stores r unless a result of r.TaskID exists (ErrAlreadyExists).
func (b *resultBackend) Put(ctx context.Context, r ports.Result) error {
	if err := b.check(ctx, "put result"); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return fmt.Errorf("memory: put result: %w", err)
	}
	s := b.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.results[r.TaskID]; ok {
		return fmt.Errorf("memory: put result of task %q: %w", r.TaskID, ports.ErrAlreadyExists)
	}
	s.results[r.TaskID] = cloneResult(r)
	return nil
}

// Get returns a copy of the result of taskID, or ErrNotFound.
func (b *resultBackend) Get(ctx context.Context, taskID string) (ports.Result, error) {
	if err := b.check(ctx, "get result"); err != nil {
		return ports.Result{}, err
	}
	s := b.store
	s.mu.RLock()
	r, ok := s.results[taskID]
	s.mu.RUnlock()
	if !ok {
		return ports.Result{}, fmt.Errorf("memory: get result of task %q: %w", taskID, ports.ErrNotFound)
	}
	return cloneResult(r), nil
}

// Close closes this handle only.
func (b *resultBackend) Close() error {
	b.closed.Store(true)
	return nil
}
