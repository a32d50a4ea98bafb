package cli

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"sync"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/dagq/dagq/app"
)

// AWSCounterMiddlewareID is the ID of the middleware an AWSCounter adds to
// the Finalize step of every AWS API call.
const AWSCounterMiddlewareID = "dagq.AWSCounter"

// AWSCounter counts the AWS API requests of the SDK clients it is attached
// to, per service ("SQS", "S3") and operation ("SendMessageBatch",
// "PutObject", …). Attach it to the sqs transport of a Runtime with
// WithAWSCounter, or to any aws.Config with
//
//	cfg.APIOptions = append(cfg.APIOptions, counter.APIOption)
//
// What counts is each HTTP attempt: the middleware sits in the Finalize step
// after the SDK's retry middleware, so an operation retried twice counts
// three requests, since AWS bills each attempt that reaches it. An attempt
// that fails before it reaches the service (a refused connection, a
// cancelled context) counts as well, and so does an attempt answered with an
// error; AWSCount.Errors counts those, except the not-found answers of S3
// lookups (GetObject, HeadObject answered 404: a cancel mark, a result or a
// record that does not exist), which dagq expects. A long poll cut short at
// shutdown therefore shows as one request and one error.
//
// An AWSCounter is safe for concurrent use, and one counter may be shared by
// several clients and runtimes; the zero value is not usable (NewAWSCounter).
type AWSCounter struct {
	mu     sync.Mutex
	counts map[awsOp]*awsOpCount
}

type awsOp struct{ service, operation string }

type awsOpCount struct{ requests, errors int64 }

// NewAWSCounter returns an AWSCounter with no requests counted.
func NewAWSCounter() *AWSCounter {
	return &AWSCounter{counts: make(map[awsOp]*awsOpCount)}
}

// WithAWSCounter counts the AWS API requests of the runtime's SQS and S3
// clients (transport sqs) in c: app.WithAWSAPIOptions(c.APIOption). The
// memory transport makes no AWS request, so nothing is counted there.
func WithAWSCounter(c *AWSCounter) app.Option { return app.WithAWSAPIOptions(c.APIOption) }

// APIOption adds the counting middleware to stack: use it as an element of
// aws.Config.APIOptions (or of an SDK client's Options.APIOptions). Adding it
// to a stack that has it already is a no-op.
func (c *AWSCounter) APIOption(stack *middleware.Stack) error {
	if _, ok := stack.Finalize.Get(AWSCounterMiddlewareID); ok {
		return nil
	}
	mw := middleware.FinalizeMiddlewareFunc(AWSCounterMiddlewareID, c.handleFinalize)
	// After the retry middleware, so that every attempt passes; a stack
	// without one (none of the SDK's operations) still gets it, last.
	if _, ok := stack.Finalize.Get("Retry"); ok {
		return stack.Finalize.Insert(mw, "Retry", middleware.After)
	}
	return stack.Finalize.Add(mw, middleware.After)
}

func (c *AWSCounter) handleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
	middleware.FinalizeOutput, middleware.Metadata, error) {
	out, md, err := next.HandleFinalize(ctx, in)
	service, op := serviceID(ctx), operationName(ctx)
	c.Add(service, op, 1, err != nil && !lookupNotFound(service, op, err))
	return out, md, err
}

// lookupNotFound reports whether err is the not-found answer (HTTP 404) of
// an S3 lookup, GetObject or HeadObject: dagq asks for keys that usually do
// not exist — a task's cancel mark before it starts and on its heartbeat, a
// result not written yet, a run record — so that answer is expected, not an
// error. A 404 of any other operation (PutObject into a missing bucket, a
// missing queue) is one.
func lookupNotFound(service, op string, err error) bool {
	if service != "S3" || (op != "GetObject" && op != "HeadObject") {
		return false
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// Add counts n requests of operation op of service (and n errors when
// failed). The middleware calls it for every attempt; it is exported for
// wrappers that count requests of their own.
func (c *AWSCounter) Add(service, op string, n int64, failed bool) {
	c.mu.Lock()
	k := awsOp{service, op}
	v := c.counts[k]
	if v == nil {
		v = &awsOpCount{}
		c.counts[k] = v
	}
	v.requests += n
	if failed {
		v.errors += n
	}
	c.mu.Unlock()
}

// Snapshot returns a copy of the counts, sorted by service and operation.
func (c *AWSCounter) Snapshot() AWSCounts {
	c.mu.Lock()
	out := make(AWSCounts, 0, len(c.counts))
	for k, v := range c.counts {
		out = append(out, AWSCount{Service: k.service, Operation: k.operation, Requests: v.requests, Errors: v.errors})
	}
	c.mu.Unlock()
	out.sort()
	return out
}

// Reset forgets every count.
func (c *AWSCounter) Reset() {
	c.mu.Lock()
	clear(c.counts)
	c.mu.Unlock()
}

// serviceID and operationName read the IDs the SDK's clients put in the
// context of every operation (smithy's first, the AWS metadata's else).
func serviceID(ctx context.Context) string {
	if s := middleware.GetServiceID(ctx); s != "" {
		return s
	}
	if s := awsmiddleware.GetServiceID(ctx); s != "" {
		return s
	}
	return "unknown"
}

func operationName(ctx context.Context) string {
	if s := middleware.GetOperationName(ctx); s != "" {
		return s
	}
	if s := awsmiddleware.GetOperationName(ctx); s != "" {
		return s
	}
	return "unknown"
}

// AWSCount is the number of requests of one operation.
type AWSCount struct {
	// Service is the SDK's service ID: "SQS", "S3".
	Service string `json:"service"`
	// Operation is the API operation: "SendMessageBatch", "GetObject".
	Operation string `json:"operation"`
	// Requests counts the HTTP attempts, failed ones included.
	Requests int64 `json:"requests"`
	// Errors counts the attempts that failed: an error response (but not the
	// 404 of an S3 GetObject or HeadObject, an expected answer), a transport
	// error or a cancelled context.
	Errors int64 `json:"errors,omitempty"`
}

// AWSCounts are request counts per operation, sorted by service and
// operation (AWSCounter.Snapshot).
type AWSCounts []AWSCount

func (cs AWSCounts) sort() {
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Service != cs[j].Service {
			return cs[i].Service < cs[j].Service
		}
		return cs[i].Operation < cs[j].Operation
	})
}

// Total returns the requests of every operation of every service.
func (cs AWSCounts) Total() int64 {
	var n int64
	for _, c := range cs {
		n += c.Requests
	}
	return n
}

// Service returns the requests of every operation of service ("SQS", "S3").
func (cs AWSCounts) Service(service string) int64 {
	var n int64
	for _, c := range cs {
		if c.Service == service {
			n += c.Requests
		}
	}
	return n
}

// ByService returns the requests per service.
func (cs AWSCounts) ByService() map[string]int64 {
	m := make(map[string]int64)
	for _, c := range cs {
		m[c.Service] += c.Requests
	}
	return m
}

// Get returns the requests of one operation (0 when it was never called).
func (cs AWSCounts) Get(service, op string) int64 {
	for _, c := range cs {
		if c.Service == service && c.Operation == op {
			return c.Requests
		}
	}
	return 0
}

// Plus returns the sum of cs and other per operation (counts of several
// counters, e.g. of several processes), sorted.
func (cs AWSCounts) Plus(other AWSCounts) AWSCounts { return cs.combine(other, 1) }

// Minus returns cs less earlier per operation: the requests made between two
// snapshots of one counter (earlier taken first), sorted; operations without
// requests in between are left out.
func (cs AWSCounts) Minus(earlier AWSCounts) AWSCounts { return cs.combine(earlier, -1) }

func (cs AWSCounts) combine(other AWSCounts, sign int64) AWSCounts {
	m := make(map[awsOp]*awsOpCount, len(cs)+len(other))
	add := func(list AWSCounts, sign int64) {
		for _, c := range list {
			k := awsOp{c.Service, c.Operation}
			v := m[k]
			if v == nil {
				v = &awsOpCount{}
				m[k] = v
			}
			v.requests += sign * c.Requests
			v.errors += sign * c.Errors
		}
	}
	add(cs, 1)
	add(other, sign)
	out := make(AWSCounts, 0, len(m))
	for k, v := range m {
		if v.requests == 0 && v.errors == 0 {
			continue
		}
		out = append(out, AWSCount{Service: k.service, Operation: k.operation, Requests: v.requests, Errors: v.errors})
	}
	out.sort()
	return out
}
