package ports

import "context"

// PayloadStore holds message bodies too large for the broker (the claim-check
// pattern): the producer stores the body under a fresh key and sends only the
// key; the consumer fetches it, and deletes it after the message is acked.
// Its key space is separate from the ResultBackend's.
type PayloadStore interface {
	// Put stores data under key (non-empty), replacing any previous value.
	Put(ctx context.Context, key string, data []byte) error

	// Get returns the data stored under key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)

	// Delete removes the keys (1 ≤ len ≤ MaxBatch); a missing key is not an
	// error.
	Delete(ctx context.Context, keys ...string) error

	// Close releases the store.
	Close() error
}
