package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/aws/smithy-go"
	"github.com/spf13/pflag"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/ports"
)

// The backoff of --wait-for-transport between two checks, and the longest
// silence between two "waiting" lines when the problems do not change.
const (
	transportRetryMin = time.Second
	transportRetryMax = 10 * time.Second
	transportLogEvery = 30 * time.Second
)

// addWaitForTransportFlag defines --wait-for-transport on fs.
func addWaitForTransportFlag(fs *pflag.FlagSet, dst *time.Duration) {
	fs.DurationVar(dst, "wait-for-transport", 0,
		"at start, re-check the queues and bucket of the sqs transport with backoff for up to this long until they are usable "+
			"(0: check once and exit 1 at once when they are not)")
}

// errCheckInterrupted: ctx ended (SIGINT, SIGTERM) while checkTransport
// checked or waited. A worker then stops cleanly; run and launch exit
// ExitCancelled.
var errCheckInterrupted = errors.New("interrupted while checking the transport")

// checkTransport checks rt's transport at the start of a command (see
// app.Runtime.CheckTransport). With wait 0 it checks once; otherwise it
// checks again with backoff until the checks pass or wait has passed,
// saying on stderr what it still waits for (when that changes, and at least
// every transportLogEvery). Its error lists every problem, one line each,
// naming the key, what is wrong and the fix, and exits ExitFailed; when
// ctx ends first it matches errCheckInterrupted and exits ExitCancelled.
func checkTransport(ctx context.Context, rt *app.Runtime, o app.CheckOptions, wait time.Duration, stderr io.Writer) error {
	err := rt.CheckTransport(ctx, o)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return exitErr(ExitCancelled, errCheckInterrupted)
	}
	if wait <= 0 {
		return transportFailure(err, rt.Config, wait)
	}
	deadline := time.Now().Add(wait)
	delay := transportRetryMin
	var said []string
	var saidAt time.Time
	for {
		lines := transportProblems(err, rt.Config)
		if !slices.Equal(lines, said) || time.Since(saidAt) >= transportLogEvery {
			fmt.Fprintf(stderr, "dagq: waiting for the transport (%v left): %d problem(s):\n", time.Until(deadline).Round(time.Second), len(lines))
			for _, l := range lines {
				fmt.Fprintf(stderr, "  %s\n", l)
			}
			said, saidAt = lines, time.Now()
		}
		left := time.Until(deadline)
		if left <= 0 {
			return transportFailure(err, rt.Config, wait)
		}
		t := time.NewTimer(min(delay, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return exitErr(ExitCancelled, fmt.Errorf("%w: %s", errCheckInterrupted, strings.Join(lines, "; ")))
		case <-t.C:
		}
		delay = min(2*delay, transportRetryMax)
		next := rt.CheckTransport(ctx, o)
		if next == nil {
			fmt.Fprintln(stderr, "dagq: the transport is ready")
			return nil
		}
		if ctx.Err() != nil {
			return exitErr(ExitCancelled, fmt.Errorf("%w: %s", errCheckInterrupted, strings.Join(lines, "; ")))
		}
		err = next
	}
}

// transportFailure is the error of a failed checkTransport.
func transportFailure(err error, cfg config.Config, wait time.Duration) error {
	lines := transportProblems(err, cfg)
	head := "the transport is not usable"
	if wait > 0 {
		head = fmt.Sprintf("the transport is still not usable after --wait-for-transport %v", wait)
	}
	return exitErr(ExitFailed, fmt.Errorf("%s: %d problem(s):\n%s", head, len(lines), strings.Join(lines, "\n")))
}

// transportProblems turns the errors of CheckTransport into one line per
// problem: a problem of an endpoint (no answer, credentials refused) is
// one line however many resources it affects.
func transportProblems(err error, cfg config.Config) []string {
	var lines []string
	seen := map[string]bool{}
	add := func(group, line string) {
		if !seen[group] {
			seen[group] = true
			lines = append(lines, line)
		}
	}
	for _, e := range unjoin(err) {
		var te *app.TransportError
		if !errors.As(e, &te) {
			add(e.Error(), e.Error())
			continue
		}
		switch {
		case te.Key == "":
			add("credentials", fmt.Sprintf("AWS credentials: none could be found (%s); "+
				"fix: provide credentials through the AWS chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "+
				"an instance or task role) — see docs/aws.md", cause(te.Err)))
		case errors.Is(te.Err, ports.ErrUnavailable):
			add("endpoint "+te.EndpointKey, fmt.Sprintf("%s: %s is unreachable or failing (%s); "+
				"fix: check %s (%s) / %s and that the service is up and reachable from here",
				te.EndpointKey, endpointDesc(te), cause(te.Err), te.EndpointKey, config.EnvName(te.EndpointKey), endpointEnv(te.EndpointKey)))
		case errors.Is(te.Err, ports.ErrUnauthenticated):
			add("credentials "+te.EndpointKey, fmt.Sprintf("AWS credentials: %s refuses them (%s); "+
				"fix: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN / AWS_PROFILE, "+
				"and that %s (%s) is the endpoint they belong to",
				endpointDesc(te), cause(te.Err), te.EndpointKey, config.EnvName(te.EndpointKey)))
		case errors.Is(te.Err, ports.ErrNotFound) && te.DeadLetterQueue != "":
			add(te.Key+" dlq", fmt.Sprintf("%s: the dead-letter queue %s that the redrive policy of %s names does not exist; "+
				"fix: run `dagq queue init` (creates it), or correct the queue's redrive policy", te.Key, te.DeadLetterQueue, te.Name))
		case errors.Is(te.Err, ports.ErrNotFound) && te.Key == "s3.bucket":
			add(te.Key, fmt.Sprintf("s3.bucket: bucket %q does not exist (on %s); "+
				"fix: run `dagq queue init` (creates it), or correct s3.bucket (%s)", te.Name, endpointDesc(te), config.EnvName(te.Key)))
		case errors.Is(te.Err, ports.ErrNotFound):
			add(te.Key, fmt.Sprintf("%s: queue %s does not exist (on %s); "+
				"fix: run `dagq queue init` (creates it), or correct %s (%s)", te.Key, te.Name, endpointDesc(te), te.Key, config.EnvName(te.Key)))
		case errors.Is(te.Err, ports.ErrPermissionDenied):
			what, perms := "queue "+te.Name, "sqs:GetQueueAttributes"
			switch {
			case te.DeadLetterQueue != "":
				what, perms = "the dead-letter queue "+te.DeadLetterQueue+" of "+te.Name, "sqs:GetQueueUrl"
			case te.Key == "s3.bucket":
				what, perms = fmt.Sprintf("bucket %q", te.Name), "s3:GetObject and s3:ListBucket"
			}
			add(te.Key+" denied", fmt.Sprintf("%s: access denied to %s (%s); "+
				"fix: grant the credentials' principal %s on it (docs/aws.md, IAM), or correct %s",
				te.Key, what, cause(te.Err), perms, te.Key))
		default:
			add(te.Key+" other", fmt.Sprintf("%s: %s: %v", te.Key, te.Name, te.Err))
		}
	}
	return lines
}

// endpointDesc names the endpoint a resource was reached on.
func endpointDesc(te *app.TransportError) string {
	service := "SQS"
	if te.EndpointKey == "s3.endpoint" {
		service = "S3"
	}
	if te.Endpoint != "" {
		return service + " at " + te.Endpoint
	}
	return service + " at the AWS chain's endpoint"
}

// endpointEnv names the AWS SDK variables that set the endpoint of a
// service when its dagq key is empty.
func endpointEnv(key string) string {
	if key == "s3.endpoint" {
		return "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL"
	}
	return "AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL"
}

// cause is the short reason of a failed request: the network error, the
// service's error code and message, or the error.
func cause(err error) string {
	var netErr net.Error
	if errors.As(err, &netErr) {
		return netErr.Error()
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		if msg := apiErr.ErrorMessage(); msg != "" {
			return apiErr.ErrorCode() + ": " + msg
		}
		return apiErr.ErrorCode()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %v", app.CheckTimeout)
	}
	return err.Error()
}

// unjoin returns the errors joined in err (errors.Join), or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// checkTransportAtStart is checkTransport for run and launch, whose
// interrupt handling starts later: while waiting, SIGINT or SIGTERM stops
// the wait.
func checkTransportAtStart(ctx context.Context, rt *app.Runtime, o app.CheckOptions, wait time.Duration, stderr io.Writer) error {
	if wait > 0 {
		var release func()
		ctx, release = interruptContext(ctx, stderr, "stopping the wait for the transport")
		defer release()
	}
	return checkTransport(ctx, rt, o, wait, stderr)
}
