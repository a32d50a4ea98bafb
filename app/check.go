package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dagq/dagq/adapters/awsports"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/ports"
)

// CheckTimeout bounds one CheckTransport: a resource whose endpoint has not
// answered by then is reported as unreachable (ports.ErrUnavailable).
const CheckTimeout = 20 * time.Second

// CheckOptions choose what CheckTransport leaves out; the zero value checks
// everything the transport has. A command checks what it uses: dagq worker
// the task queue, the run queue (unless --runs=false) and the bucket; dagq
// run the task queue and the bucket; dagq launch the run queue and the
// bucket.
type CheckOptions struct {
	SkipTaskQueue, SkipRunQueue, SkipBucket bool
}

// TransportError is one problem CheckTransport found, named by the
// configuration keys an operator would fix. Err matches the sentinels of
// package ports (errors.Is): ports.ErrNotFound (the queue, the dead-letter
// queue its redrive policy names, or the bucket does not exist),
// ports.ErrUnavailable (the endpoint did not answer, or failed),
// ports.ErrPermissionDenied, ports.ErrUnauthenticated (the credentials
// were refused or could not be found); the SDK's error stays reachable
// with errors.As.
type TransportError struct {
	// Key is the configuration key of the resource: sqs.queue_url,
	// sqs.run_queue_url or s3.bucket; "" when the AWS credentials could not
	// be retrieved (they come from the AWS chain, not from a dagq key).
	Key string
	// Name is the queue URL or bucket name.
	Name string
	// DeadLetterQueue is the ARN of the dead-letter queue named by the
	// queue's redrive policy when the problem is that queue, else "".
	DeadLetterQueue string
	// EndpointKey is the key of the endpoint the resource is reached on:
	// sqs.endpoint or s3.endpoint; Endpoint its value ("": the AWS chain's
	// endpoint, AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL_S3 /
	// AWS_ENDPOINT_URL, else AWS itself).
	EndpointKey, Endpoint string
	Err                   error
}

func (e *TransportError) Error() string {
	switch {
	case e.Key == "":
		return fmt.Sprintf("AWS credentials: %v", e.Err)
	case e.DeadLetterQueue != "":
		return fmt.Sprintf("%s %s: dead-letter queue %s: %v", e.Key, e.Name, e.DeadLetterQueue, e.Err)
	}
	return fmt.Sprintf("%s %s: %v", e.Key, e.Name, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// transportChecker checks the transport's resources (nil: nothing to check,
// the memory transport).
type transportChecker func(ctx context.Context, o CheckOptions) error

// ProvideMemoryChecker: the memory transport lives in the process and has
// nothing to check.
func ProvideMemoryChecker() transportChecker { return nil }

// ProvideSQSChecker checks the queues and the bucket of the sqs transport
// with awsports.Transport.Check, naming each problem by its keys.
func ProvideSQSChecker(t *awsports.Transport, cfg config.Config) transportChecker {
	keys := map[string]string{
		awsports.FieldQueueURL:    "sqs.queue_url",
		awsports.FieldRunQueueURL: "sqs.run_queue_url",
		awsports.FieldBucket:      "s3.bucket",
	}
	return func(ctx context.Context, o CheckOptions) error {
		cctx, cancel := context.WithTimeout(ctx, CheckTimeout)
		defer cancel()
		err := t.Check(cctx, awsports.CheckOptions{SkipQueue: o.SkipTaskQueue, SkipRunQueue: o.SkipRunQueue, SkipBucket: o.SkipBucket})
		if err == nil || ctx.Err() != nil {
			return err
		}
		var out []error
		for _, e := range unjoin(err) {
			var ce *awsports.CheckError
			if !errors.As(e, &ce) {
				out = append(out, e)
				continue
			}
			te := &TransportError{Key: keys[ce.Field], Name: ce.Name, DeadLetterQueue: ce.DeadLetterQueue, Err: ce.Err}
			switch ce.Field {
			case awsports.FieldBucket:
				te.EndpointKey, te.Endpoint = "s3.endpoint", cfg.S3.Endpoint
			case awsports.FieldQueueURL, awsports.FieldRunQueueURL:
				te.EndpointKey, te.Endpoint = "sqs.endpoint", cfg.SQS.Endpoint
			}
			if errors.Is(te.Err, context.DeadlineExceeded) && !errors.Is(te.Err, ports.ErrUnavailable) {
				// Our own bound: the endpoint did not answer in time.
				te.Err = fmt.Errorf("%w: no answer within %v: %w", ports.ErrUnavailable, CheckTimeout, te.Err)
			}
			out = append(out, te)
		}
		return errors.Join(out...)
	}
}

// unjoin returns the errors joined in err (errors.Join), or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// CheckTransport checks that the transport's queues and bucket exist and
// can be used with the configured endpoints and credentials, with one cheap
// request each (see awsports.Transport.Check), and returns every problem
// found as a *TransportError, joined (errors.Join), or nil. The memory
// transport has nothing to check. Processes call it at start, so that a
// misconfiguration fails at once instead of showing as errors in the
// receive loop; it sends and receives nothing, so it can be called again
// until the infrastructure is there.
func (r *Runtime) CheckTransport(ctx context.Context, o CheckOptions) error {
	if r.check == nil {
		return nil
	}
	return r.check(ctx, o)
}
