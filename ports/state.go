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

// KeyLister is an optional StateStore capability, discovered by type
// assertion (state.(ports.KeyLister)): the keys of the records under a
// prefix, in byte order, a page at a time — for indexes kept in the key
// space (the run index, the worker registry) that are read without one Get
// per record.
type KeyLister interface {
	// ListKeys returns up to limit keys (1 ≤ limit ≤ MaxListKeys) that
	// start with prefix and sort after after (byte order; "" lists from
	// the start), in byte order, and whether more such keys remain. It
	// makes one request where the service pages (S3: one ListObjectsV2).
	// A key written or deleted during a listing may or may not be in it.
	// ErrInvalidArgument for a limit out of range or a prefix or after
	// longer than MaxKeyLen; ErrClosed and ErrUnavailable as for Get.
	ListKeys(ctx context.Context, prefix, after string, limit int) (keys []string, more bool, err error)
}

// MaxListKeys is the largest page of KeyLister.ListKeys (the S3 limit).
const MaxListKeys = 1000

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

// CheckListKeys reports ErrInvalidArgument when the arguments of
// KeyLister.ListKeys are out of range. Adapters call it first.
func CheckListKeys(prefix, after string, limit int) error {
	switch {
	case limit < 1 || limit > MaxListKeys:
		return fmt.Errorf("%w: list limit %d; valid: 1 to %d", ErrInvalidArgument, limit, MaxListKeys)
	case len(prefix) > MaxKeyLen:
		return fmt.Errorf("%w: list prefix of %d bytes; at most %d are allowed", ErrInvalidArgument, len(prefix), MaxKeyLen)
	case len(after) > MaxKeyLen:
		return fmt.Errorf("%w: list cursor (after) of %d bytes; at most %d are allowed", ErrInvalidArgument, len(after), MaxKeyLen)
	}
	return nil
}
