package ports

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrConflict: a conditional write lost because the record changed (or
// appeared) since the version the writer read. Re-read and try again.
var ErrConflict = errors.New("conflict")

// Record is one versioned value of a StateStore.
type Record struct {
	Key  string
	Data []byte
	// Version identifies this write of the record (S3: the ETag). It changes
	// on every write; compare it only for equality.
	Version   string
	UpdatedAt time.Time
}

// WriteCondition makes a StateStore.Put conditional. The zero value writes
// unconditionally. Setting both fields is ErrInvalidArgument.
type WriteCondition struct {
	// MustNotExist makes the write create-only: it fails with
	// ErrAlreadyExists when the key exists.
	MustNotExist bool
	// MatchVersion, when non-empty, makes the write succeed only while the
	// record's current version equals it: ErrConflict when it changed,
	// ErrNotFound when the record is gone.
	MatchVersion string
}

// StateStore holds small mutable records with optimistic concurrency: run
// records, worker heartbeats. Keys are non-empty, at most 512 bytes of
// printable ASCII without spaces; "/" separates levels. Its key space is
// separate from the ResultBackend's and the PayloadStore's.
type StateStore interface {
	// Get returns the record under key, or ErrNotFound.
	Get(ctx context.Context, key string) (Record, error)

	// Put writes data under key when cond holds and returns the new version.
	// Of several conditional writes racing on one version, exactly one wins.
	Put(ctx context.Context, key string, data []byte, cond WriteCondition) (string, error)

	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error

	// Close releases the store.
	Close() error
}

// MaxKeyLen is the longest StateStore key.
const MaxKeyLen = 512

// ValidateKey reports ErrInvalidArgument when key is not a valid StateStore
// key. Adapters call it before touching their service.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidArgument)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: key of %d bytes; at most %d are allowed", ErrInvalidArgument, len(key), MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("%w: key %q has byte %#x at %d; keys are printable ASCII without spaces", ErrInvalidArgument, key, c, i)
		}
	}
	return nil
}

// Validate reports ErrInvalidArgument when both conditions are set.
func (c WriteCondition) Validate() error {
	if c.MustNotExist && c.MatchVersion != "" {
		return fmt.Errorf("%w: write condition sets both MustNotExist and MatchVersion %q", ErrInvalidArgument, c.MatchVersion)
	}
	return nil
}
