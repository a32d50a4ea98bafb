package memory

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dagq/dagq/ports"
)

// resultShards is the number of independently locked parts of a
// resultStore: workers' Puts and clients' Gets of different tasks rarely
// wait for each other.
const resultShards = 64

// resultStore is the Transport's write-once result map, sharded by task ID.
type resultStore struct {
	shards [resultShards]resultShard
}

// resultShard holds its results in append-only chunks (a deleted result,
// which is rare, only leaves the index) indexed by task ID, so that the map's slots stay small: lookups
// touch less memory, and neither growing the map nor adding a chunk copies
// results.
type resultShard struct {
	mu     sync.RWMutex
	index  map[string]int   // task ID -> position in chunks
	chunks [][]ports.Result // each of capacity resultChunk; only the last is not full
	_      [8]byte          // keep shards on separate cache lines
}

// resultChunk is the number of results in a chunk of a resultShard.
const resultChunk = 128

// add appends r and returns its position.
func (s *resultShard) add(r ports.Result) int {
	n := len(s.chunks)
	if n == 0 || len(s.chunks[n-1]) == resultChunk {
		s.chunks = append(s.chunks, make([]ports.Result, 0, resultChunk))
		n++
	}
	s.chunks[n-1] = append(s.chunks[n-1], r)
	return (n-1)*resultChunk + len(s.chunks[n-1]) - 1
}

// at returns the result at position i.
func (s *resultShard) at(i int) ports.Result {
	return s.chunks[i/resultChunk][i%resultChunk]
}

func newResultStore() *resultStore {
	s := &resultStore{}
	for i := range s.shards {
		s.shards[i].index = make(map[string]int)
	}
	return s
}

// shard returns the shard of taskID (FNV-1a).
func (s *resultStore) shard(taskID string) *resultShard {
	h := uint32(2166136261)
	for i := 0; i < len(taskID); i++ {
		h ^= uint32(taskID[i])
		h *= 16777619
	}
	return &s.shards[h%resultShards]
}

// resultBackend is one handle on a resultStore.
type resultBackend struct {
	store  *resultStore
	closed atomic.Bool
}

var (
	_ ports.ResultBackend = (*resultBackend)(nil)
	_ ports.ResultDeleter = (*resultBackend)(nil)
)

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
	r = cloneResult(r)
	s := b.store.shard(r.TaskID)
	s.mu.Lock()
	_, exists := s.index[r.TaskID]
	if !exists {
		s.index[r.TaskID] = s.add(r)
	}
	s.mu.Unlock()
	if exists {
		return fmt.Errorf("memory: put result of task %q: %w", r.TaskID, ports.ErrAlreadyExists)
	}
	return nil
}

// Get returns a copy of the result of taskID, or ErrNotFound.
func (b *resultBackend) Get(ctx context.Context, taskID string) (ports.Result, error) {
	if err := b.check(ctx, "get result"); err != nil {
		return ports.Result{}, err
	}
	s := b.store.shard(taskID)
	s.mu.RLock()
	i, ok := s.index[taskID]
	var r ports.Result
	if ok {
		r = s.at(i)
	}
	s.mu.RUnlock()
	if !ok {
		return ports.Result{}, notFoundError{taskID}
	}
	return cloneResult(r), nil
}

// Delete removes the result of taskID (ports.ResultDeleter); its slot in
// the chunk stays, unreferenced.
func (b *resultBackend) Delete(ctx context.Context, taskID string) error {
	if err := b.check(ctx, "delete result"); err != nil {
		return err
	}
	s := b.store.shard(taskID)
	s.mu.Lock()
	delete(s.index, taskID)
	s.mu.Unlock()
	return nil
}

// Close closes this handle only.
func (b *resultBackend) Close() error {
	b.closed.Store(true)
	return nil
}

// notFoundError is Get's error for a missing result: the error
// fmt.Errorf("memory: get result of task %q: %w", taskID, ports.ErrNotFound)
// would be, formatted only when asked for (waiters poll for results that do
// not exist yet, and only test the error with errors.Is).
type notFoundError struct{ taskID string }

func (e notFoundError) Error() string {
	return fmt.Sprintf("memory: get result of task %q: %v", e.taskID, ports.ErrNotFound)
}

func (e notFoundError) Unwrap() error { return ports.ErrNotFound }
