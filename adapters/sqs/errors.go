package sqs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/dagq/dagq/ports"
)

// codes is the one table mapping SQS error codes (JSON and legacy query
// protocol spellings) to the sentinels of package ports. Codes not listed are
// wrapped without a sentinel; see classify for the rules that need more than
// the code (receipt errors, HTTP status, network errors).
var codes = map[string]error{
	// The queue does not exist.
	"QueueDoesNotExist":                       ports.ErrNotFound,
	"AWS.SimpleQueueService.NonExistentQueue": ports.ErrNotFound,
	"ResourceNotFoundException":               ports.ErrNotFound,

	// The receipt no longer holds a lease.
	"ReceiptHandleIsInvalid":                    ports.ErrLeaseLost,
	"MessageNotInflight":                        ports.ErrLeaseLost,
	"AWS.SimpleQueueService.MessageNotInflight": ports.ErrLeaseLost,

	// Throttled or failing service: retryable by the caller.
	"RequestThrottled":                   ports.ErrUnavailable,
	"ThrottlingException":                ports.ErrUnavailable,
	"Throttling":                         ports.ErrUnavailable,
	"KmsThrottled":                       ports.ErrUnavailable,
	"KMS.ThrottlingException":            ports.ErrUnavailable,
	"ServiceUnavailable":                 ports.ErrUnavailable,
	"InternalError":                      ports.ErrUnavailable,
	"InternalFailure":                    ports.ErrUnavailable,
	"AWS.SimpleQueueService.Unavailable": ports.ErrUnavailable,
	"RequestTimeout":                     ports.ErrUnavailable,
	"OverLimit":                          ports.ErrUnavailable,

	// Malformed requests: not retryable.
	"InvalidParameterValue":                               ports.ErrInvalidArgument,
	"InvalidParameterCombination":                         ports.ErrInvalidArgument,
	"MissingParameter":                                    ports.ErrInvalidArgument,
	"ValidationError":                                     ports.ErrInvalidArgument,
	"InvalidAttributeName":                                ports.ErrInvalidArgument,
	"InvalidAttributeValue":                               ports.ErrInvalidArgument,
	"InvalidMessageContents":                              ports.ErrInvalidArgument,
	"InvalidAddress":                                      ports.ErrInvalidArgument,
	"InvalidIdFormat":                                     ports.ErrInvalidArgument,
	"InvalidBatchEntryId":                                 ports.ErrInvalidArgument,
	"AWS.SimpleQueueService.InvalidBatchEntryId":          ports.ErrInvalidArgument,
	"BatchEntryIdsNotDistinct":                            ports.ErrInvalidArgument,
	"AWS.SimpleQueueService.BatchEntryIdsNotDistinct":     ports.ErrInvalidArgument,
	"TooManyEntriesInBatchRequest":                        ports.ErrInvalidArgument,
	"AWS.SimpleQueueService.TooManyEntriesInBatchRequest": ports.ErrInvalidArgument,
	"EmptyBatchRequest":                                   ports.ErrInvalidArgument,
	"AWS.SimpleQueueService.EmptyBatchRequest":            ports.ErrInvalidArgument,
	"BatchRequestTooLong":                                 ports.ErrInvalidArgument,
	"AWS.SimpleQueueService.BatchRequestTooLong":          ports.ErrInvalidArgument,
	"MessageTooLong":                                      ports.ErrInvalidArgument,

	// The credentials are refused, or are not allowed the request.
	"AccessDenied":                        ports.ErrPermissionDenied,
	"AccessDeniedException":               ports.ErrPermissionDenied,
	"AWS.SimpleQueueService.AccessDenied": ports.ErrPermissionDenied,
	"InvalidClientTokenId":                ports.ErrUnauthenticated,
	"UnrecognizedClientException":         ports.ErrUnauthenticated,
	"InvalidAccessKeyId":                  ports.ErrUnauthenticated,
	"SignatureDoesNotMatch":               ports.ErrUnauthenticated,
	"IncompleteSignature":                 ports.ErrUnauthenticated,
	"MissingAuthenticationToken":          ports.ErrUnauthenticated,
	"InvalidSecurity":                     ports.ErrUnauthenticated,
	"ExpiredToken":                        ports.ErrUnauthenticated,
	"ExpiredTokenException":               ports.ErrUnauthenticated,

	// The queue type does not support the request.
	"UnsupportedOperation":                        ports.ErrUnsupported,
	"AWS.SimpleQueueService.UnsupportedOperation": ports.ErrUnsupported,
}

// classify returns the ports sentinel for err, or nil when none applies.
// receipt is true for operations on a receipt handle (Ack, Nack, Extend),
// where SQS reports a stale or expired handle as InvalidParameterValue with a
// message naming the receipt handle: that is ErrLeaseLost, not a malformed
// request.
func classify(err error, receipt bool) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		if receipt && code == "InvalidParameterValue" && mentionsReceipt(apiErr.ErrorMessage()) {
			return ports.ErrLeaseLost
		}
		if s, ok := codes[code]; ok {
			return s
		}
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) && status.HTTPStatusCode() >= 500 {
		return ports.ErrUnavailable
	}
	if apiErr == nil {
		var netErr net.Error
		if errors.As(err, &netErr) {
			return ports.ErrUnavailable
		}
	}
	return nil
}

func mentionsReceipt(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "receipt")
}

// wrap wraps err, the failure of op, once: with its sentinel (when one
// applies) and the SDK error, so that errors.Is(err, ports.ErrX) and
// errors.As(err, &smithy.APIError) both work. Context errors are wrapped
// as they are.
func wrap(op string, err error, receipt bool) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("sqs: %s: %w", op, err)
	}
	if s := classify(err, receipt); s != nil {
		return fmt.Errorf("sqs: %s: %w: %w", op, s, err)
	}
	return fmt.Errorf("sqs: %s: %w", op, err)
}

// entryError turns a failed batch entry into an error that is wrapped like a
// whole-call failure (its SDK form is a *smithy.GenericAPIError).
func entryError(op string, e types.BatchResultErrorEntry, receipt bool) error {
	fault := smithy.FaultServer
	if e.SenderFault {
		fault = smithy.FaultClient
	}
	return wrap(op, &smithy.GenericAPIError{Code: deref(e.Code), Message: deref(e.Message), Fault: fault}, receipt)
}

// ignoredOnAck reports whether a failed delete means only that the receipt
// was stale (the weak Ack contract).
func ignoredOnAck(err error) bool {
	return errors.Is(err, ports.ErrLeaseLost)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func invalid(op, format string, args ...any) error {
	return fmt.Errorf("sqs: %s: %w: %s", op, ports.ErrInvalidArgument, fmt.Sprintf(format, args...))
}
