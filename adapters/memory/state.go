package memory

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dagq/dagq/ports"
)

// stateStore is the Transport's versioned record space.
type stateStore struct {
	mu      sync.Mutex
	seq     uint64
	records map[string]ports.Record
}

// stateHandle is one handle on a stateStore.
type stateHandle struct {
	store  *stateStore
	closed atomic.Bool
}

var (
	_ ports.StateStore = (*stateHandle)(nil)
	_ ports.KeyLister  = (*stateHandle)(nil)
)

func (h *stateHandle) check(ctx context.Context, op, key string) error {
	if h.closed.Load() {
		return errClosed(op)
	}
	if err := checkCtx(ctx, op); err != nil {
		return err
	}
	if err := ports.ValidateKey(key); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	return nil
}

// Get returns a copy of the record under key, or ErrNotFound.
func (h *stateHandle) Get(ctx context.Context, key string) (ports.Record, error) {
	if err := h.check(ctx, "get record", key); err != nil {
		return ports.Record{}, err
	}
	h.store.mu.Lock()
	r, ok := h.store.records[key]
	h.store.mu.Unlock()
	if !ok {
		return ports.Record{}, fmt.Errorf("memory: get record %q: %w", key, ports.ErrNotFound)
	}
	r.Data = cloneBytes(r.Data)
	return r, nil
}

// Put writes a copy of data under key when cond holds.
func (h *stateHandle) Put(ctx context.Context, key string, data []byte, cond ports.WriteCondition) (string, error) {
	if err := h.check(ctx, "put record", key); err != nil {
		return "", err
	}
	if err := cond.Validate(); err != nil {
		return "", fmt.Errorf("memory: put record %q: %w", key, err)
	}
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	cur, exists := h.store.records[key]
	switch {
	case cond.MustNotExist && exists:
		return "", fmt.Errorf("memory: put record %q: %w", key, ports.ErrAlreadyExists)
	case cond.MatchVersion != "" && !exists:
		return "", fmt.Errorf("memory: put record %q: %w", key, ports.ErrNotFound)
	case cond.MatchVersion != "" && cur.Version != cond.MatchVersion:
		return "", fmt.Errorf("memory: put record %q: version %q is not the current one: %w", key, cond.MatchVersion, ports.ErrConflict)
	}
	h.store.seq++
	v := "v" + strconv.FormatUint(h.store.seq, 10)
	h.store.records[key] = ports.Record{Key: key, Data: cloneBytes(data), Version: v, UpdatedAt: time.Now()}
	return v, nil
}

// Delete removes key; a missing key is not an error.
func (h *stateHandle) Delete(ctx context.Context, key string) error {
	if err := h.check(ctx, "delete record", key); err != nil {
		return err
	}
	h.store.mu.Lock()
	delete(h.store.records, key)
	h.store.mu.Unlock()
	return nil
}

// ListKeys implements ports.KeyLister (a sort of the matching keys per
// call).
func (h *stateHandle) ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, bool, error) {
	const op = "list keys"
	if h.closed.Load() {
		return nil, false, errClosed(op)
	}
	if err := checkCtx(ctx, op); err != nil {
		return nil, false, err
	}
	if err := ports.CheckListKeys(prefix, after, limit); err != nil {
		return nil, false, fmt.Errorf("memory: %s: %w", op, err)
	}
	h.store.mu.Lock()
	var keys []string
	for k := range h.store.records {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	h.store.mu.Unlock()
	slices.Sort(keys)
	if len(keys) > limit {
		return keys[:limit], true, nil
	}
	return keys, false, nil
}

// Close closes this handle only.
func (h *stateHandle) Close() error {
	h.closed.Store(true)
	return nil
}
