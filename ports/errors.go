package ports

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Sentinel errors. Adapters wrap them together with the underlying cause so
// that errors.Is(err, ErrX) and errors.As(err, &sdkErr) both work.
var (
	// ErrNotFound: the queue, key, inbox or object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a write-once key was written before.
	ErrAlreadyExists = errors.New("already exists")
	// ErrLeaseLost: the receipt no longer holds the message's lease (it expired,
	// the message was acked, or it was delivered again to someone else).
	ErrLeaseLost = errors.New("lease lost")
	// ErrClosed: the adapter (or subscription) was closed.
	ErrClosed = errors.New("closed")
	// ErrInvalidArgument: the request is malformed (empty ID, body over the
	// adapter's size limit, a delay the queue type refuses, ...). Not retryable.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnsupported: the adapter does not implement the requested option.
	ErrUnsupported = errors.New("unsupported")
	// ErrUnavailable: the backing service could not be reached or throttled the
	// request. Retryable by the caller with backoff.
	ErrUnavailable = errors.New("service unavailable")
	// ErrPermissionDenied: the service refused the request to the
	// credentials it was made with (AWS AccessDenied): the principal lacks a
	// permission, or a resource policy excludes it. Not retryable.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnauthenticated: the service did not accept the credentials, or
	// none could be found: unknown access key, bad signature, expired token.
	// Not retryable.
	ErrUnauthenticated = errors.New("unauthenticated")
)

// BatchError reports the items of a variadic call (Send, Ack, Extend, Publish)
// that failed. Items whose index is not in Failed succeeded. errors.Is and
// errors.As see every item error, so errors.Is(err, ErrLeaseLost) is true when at
// least one item lost its lease.
type BatchError struct {
	// Failed maps the index of a failed item (in the call's argument order) to
	// its error.
	Failed map[int]error
}

// Error lists the failed items in index order.
func (e *BatchError) Error() string {
	idx := e.indexes()
	parts := make([]string, 0, len(idx))
	for _, i := range idx {
		parts = append(parts, fmt.Sprintf("item %d: %v", i, e.Failed[i]))
	}
	return fmt.Sprintf("%d item(s) failed: %s", len(idx), strings.Join(parts, "; "))
}

// Unwrap returns the item errors in index order.
func (e *BatchError) Unwrap() []error {
	idx := e.indexes()
	errs := make([]error, 0, len(idx))
	for _, i := range idx {
		errs = append(errs, e.Failed[i])
	}
	return errs
}

func (e *BatchError) indexes() []int {
	idx := make([]int, 0, len(e.Failed))
	for i := range e.Failed {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	return idx
}

// ItemError returns the error of item i of a batch call: nil when err is nil,
// the item's error when err is a *BatchError (nil if item i succeeded), and err
// itself otherwise (the whole call failed, so every item did).
func ItemError(err error, i int) error {
	if err == nil {
		return nil
	}
	var be *BatchError
	if errors.As(err, &be) {
		return be.Failed[i]
	}
	return err
}
