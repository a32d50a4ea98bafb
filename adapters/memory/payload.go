package memory

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dagq/dagq/ports"
)

// payloadStore is the Transport's payload key space.
type payloadStore struct {
	mu   sync.RWMutex
	data map[string][]byte
}

// payloadHandle is one handle on a payloadStore.
type payloadHandle struct {
	store  *payloadStore
	closed atomic.Bool
}

var _ ports.PayloadStore = (*payloadHandle)(nil)

func (h *payloadHandle) check(ctx context.Context, op string) error {
	if h.closed.Load() {
		return errClosed(op)
	}
	return checkCtx(ctx, op)
}

// Put stores a copy of data under key, replacing any previous value.
func (h *payloadHandle) Put(ctx context.Context, key string, data []byte) error {
	if err := h.check(ctx, "put payload"); err != nil {
		return err
	}
	if key == "" {
		return fmt.Errorf("memory: put payload: %w: empty key", ports.ErrInvalidArgument)
	}
	c := make([]byte, len(data))
	copy(c, data)
	h.store.mu.Lock()
	h.store.data[key] = c
	h.store.mu.Unlock()
	return nil
}

// Get returns a copy of the data under key, or ErrNotFound.
func (h *payloadHandle) Get(ctx context.Context, key string) ([]byte, error) {
	if err := h.check(ctx, "get payload"); err != nil {
		return nil, err
	}
	h.store.mu.RLock()
	data, ok := h.store.data[key]
	h.store.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("memory: get payload %q: %w", key, ports.ErrNotFound)
	}
	return append([]byte{}, data...), nil
}

// Delete removes keys; missing keys are not an error.
func (h *payloadHandle) Delete(ctx context.Context, keys ...string) error {
	if err := h.check(ctx, "delete payloads"); err != nil {
		return err
	}
	if len(keys) < 1 || len(keys) > ports.MaxBatch {
		return fmt.Errorf("memory: delete payloads: %w: %d keys, want 1 to %d",
			ports.ErrInvalidArgument, len(keys), ports.MaxBatch)
	}
	for i, k := range keys {
		if k == "" {
			return fmt.Errorf("memory: delete payloads: %w: key %d is empty", ports.ErrInvalidArgument, i)
		}
	}
	h.store.mu.Lock()
	for _, k := range keys {
		delete(h.store.data, k)
	}
	h.store.mu.Unlock()
	return nil
}

// Close closes this handle only.
func (h *payloadHandle) Close() error {
	h.closed.Store(true)
	return nil
}
