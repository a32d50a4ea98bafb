package awsports

import (
	"context"
	"errors"
	"fmt"
	"sync"

	dagqsqs "github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/ports"
)

// The resources of a CheckError, by the Options field that names them.
const (
	FieldQueueURL    = "QueueURL"
	FieldRunQueueURL = "RunQueueURL"
	FieldBucket      = "Bucket"
	// FieldCredentials: the aws.Config's credentials could not be
	// retrieved (none configured, an expired SSO session, ...).
	FieldCredentials = "Credentials"
)

// CheckError is one problem Transport.Check found. Err matches the
// sentinels of package ports: ErrNotFound (the queue, its dead-letter
// queue or the bucket does not exist), ErrUnavailable (the endpoint did not
// answer, or answered with a server error or throttling),
// ErrPermissionDenied, ErrUnauthenticated (the credentials were refused or
// could not be retrieved), ErrClosed; the SDK's error stays reachable with
// errors.As.
type CheckError struct {
	// Field is the Options field of the resource: FieldQueueURL,
	// FieldRunQueueURL, FieldBucket or FieldCredentials.
	Field string
	// Name is the queue URL or the bucket name ("" for FieldCredentials).
	Name string
	// DeadLetterQueue is the ARN of the dead-letter queue named by the
	// queue's redrive policy when the problem is that queue, else "".
	DeadLetterQueue string
	Err             error
}

func (e *CheckError) Error() string {
	switch {
	case e.Field == FieldCredentials:
		return fmt.Sprintf("awsports: credentials: %v", e.Err)
	case e.DeadLetterQueue != "":
		return fmt.Sprintf("awsports: Options.%s %s: dead-letter queue %s: %v", e.Field, e.Name, e.DeadLetterQueue, e.Err)
	}
	return fmt.Sprintf("awsports: Options.%s %s: %v", e.Field, e.Name, e.Err)
}

func (e *CheckError) Unwrap() error { return e.Err }

// CheckOptions choose what Transport.Check leaves out; the zero value
// checks everything.
type CheckOptions struct {
	// SkipQueue, SkipRunQueue and SkipBucket leave out the task queue (and
	// its dead-letter queue), the run queue (and its DLQ), the bucket.
	SkipQueue, SkipRunQueue, SkipBucket bool
}

// Check reports whether the transport's resources can be used, with one
// cheap request each, made concurrently: GetQueueAttributes on the task
// queue and the run queue (when Options.RunQueueURL is set), GetQueueUrl on
// the dead-letter queue their redrive policy names, if any, and HeadBucket
// on the bucket. Those requests also prove that the endpoints answer and
// take the credentials, which Check retrieves first (when they cannot be,
// that is the one problem it reports). It returns nil, or every problem
// found as a *CheckError, joined (errors.Join). It sends, receives and
// writes nothing, so a process can call it at start and again until the
// infrastructure is there.
func (t *Transport) Check(ctx context.Context, opts CheckOptions) error {
	if t.creds != nil {
		if _, err := t.creds.Retrieve(ctx); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("awsports: check: %w", err)
			}
			return &CheckError{Field: FieldCredentials,
				Err: fmt.Errorf("retrieve credentials: %w: %w", ports.ErrUnauthenticated, err)}
		}
	}
	type check struct {
		field, name string
		run         func(context.Context) error
	}
	var checks []check
	if !opts.SkipQueue {
		checks = append(checks, check{FieldQueueURL, t.queueURL, t.Broker.Check})
	}
	if !opts.SkipRunQueue && t.RunBroker != nil {
		checks = append(checks, check{FieldRunQueueURL, t.runQueueURL, t.RunBroker.Check})
	}
	if !opts.SkipBucket {
		checks = append(checks, check{FieldBucket, t.bucket, t.Results.Check})
	}
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			err := c.run(ctx)
			if err == nil {
				return
			}
			ce := &CheckError{Field: c.field, Name: c.name, Err: err}
			var dlq *dagqsqs.DeadLetterQueueError
			if errors.As(err, &dlq) {
				ce.DeadLetterQueue, ce.Err = dlq.ARN, dlq.Err
			}
			errs[i] = ce
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
