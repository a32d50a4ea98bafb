package s3

import (
	"context"
	"errors"
	"fmt"
	"net"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/dagq/dagq/ports"
)

// op says how a failed request is classified where the same S3 answer means
// different things: a failed precondition on a create-only write is "already
// exists", on a MatchVersion write "conflict".
type op int

const (
	opRead        op = iota // Get, Head, Delete
	opWrite                 // unconditional Put
	opCreate                // Put with If-None-Match: *
	opMatchUpdate           // Put with If-Match
)

// codes is the error-code table: S3 error codes to ports sentinels. Codes
// that are not listed are returned unmapped.
var codes = map[string]error{
	"NoSuchKey":                  ports.ErrNotFound,
	"NotFound":                   ports.ErrNotFound, // HEAD has no body, only the status
	"NoSuchBucket":               ports.ErrNotFound,
	"PreconditionFailed":         errPrecondition,
	"ConditionalRequestConflict": ports.ErrConflict,
	"SlowDown":                   ports.ErrUnavailable,
	"Throttling":                 ports.ErrUnavailable,
	"ThrottlingException":        ports.ErrUnavailable,
	"RequestTimeout":             ports.ErrUnavailable,
	"InternalError":              ports.ErrUnavailable,
	"ServiceUnavailable":         ports.ErrUnavailable,
	"AccessDenied":               ports.ErrPermissionDenied,
	"AllAccessDisabled":          ports.ErrPermissionDenied,
	"InvalidAccessKeyId":         ports.ErrUnauthenticated,
	"SignatureDoesNotMatch":      ports.ErrUnauthenticated,
	"ExpiredToken":               ports.ErrUnauthenticated,
	"InvalidToken":               ports.ErrUnauthenticated,
	"TokenRefreshRequired":       ports.ErrUnauthenticated,
	"XAdminUserNotFound":         ports.ErrUnauthenticated, // versitygw's InvalidAccessKeyId
}

// statuses classifies answers that carry no error code.
var statuses = map[int]error{
	403: ports.ErrPermissionDenied, // HEAD: access denied, or bad credentials
	404: ports.ErrNotFound,
	409: ports.ErrConflict,
	412: errPrecondition,
	429: ports.ErrUnavailable,
	500: ports.ErrUnavailable,
	502: ports.ErrUnavailable,
	503: ports.ErrUnavailable,
	504: ports.ErrUnavailable,
}

// errPrecondition is a placeholder in the tables, resolved per op.
var errPrecondition = errors.New("precondition failed")

// classify returns the ports sentinel for err, or nil to leave err unmapped.
func classify(o op, err error) error {
	var sentinel error
	var apiErr smithy.APIError
	var respErr *awshttp.ResponseError
	found := false
	if errors.As(err, &apiErr) {
		sentinel, found = codes[apiErr.ErrorCode()]
	}
	if !found && errors.As(err, &respErr) {
		status := respErr.HTTPStatusCode()
		if apiErr == nil || apiErr.ErrorCode() == "" {
			// No error code (HEAD answers have no body): the status decides.
			sentinel, found = statuses[status]
		} else if status >= 500 {
			// An unlisted code of a server-side failure is still transient.
			sentinel, found = ports.ErrUnavailable, true
		}
		// An unlisted code of a 4xx answer stays unmapped: its status says
		// little about what went wrong.
	}
	if !found && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		// No answer from S3: connection refused, reset, timed out.
		var netErr net.Error
		if errors.As(err, &netErr) {
			sentinel = ports.ErrUnavailable
		}
	}
	switch {
	case sentinel == errPrecondition && o == opMatchUpdate:
		return ports.ErrConflict
	case sentinel == errPrecondition:
		// A failed If-None-Match: * means the key exists.
		return ports.ErrAlreadyExists
	case sentinel == ports.ErrConflict && o == opCreate:
		// A concurrent create of the same key is in flight (S3 409): this
		// create lost the race.
		return ports.ErrAlreadyExists
	}
	return sentinel
}

// wrap wraps err once, as "s3: <what>: <sentinel>: <err>", so that errors.Is
// finds the sentinel and errors.As the SDK error. A context error of the
// caller's own context is returned wrapped without a sentinel.
func wrap(o op, what string, err error) error {
	if s := classify(o, err); s != nil {
		return fmt.Errorf("s3: %s: %w: %w", what, s, err)
	}
	return fmt.Errorf("s3: %s: %w", what, err)
}
