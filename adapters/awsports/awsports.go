package awsports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	dagqs3 "github.com/dagq/dagq/adapters/s3"
	dagqsqs "github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// MaxPayloadThreshold is the largest Options.PayloadThreshold: an envelope
// that is not plain text travels base64-encoded (4/3 of its size), and
// 768 KiB so encoded still fits the 1 MiB SQS message limit with its
// attributes.
const MaxPayloadThreshold = 768 << 10

// Options configure the AWS transport. QueueURL and Bucket are required;
// every other field's zero value is its default.
type Options struct {
	// QueueURL is the URL of the SQS task queue (Ports.Broker), e.g.
	// https://sqs.us-east-1.amazonaws.com/123456789012/dagq-tasks. A URL
	// ending in ".fifo" is a FIFO queue. Required.
	QueueURL string
	// RunQueueURL is the URL of the run queue (Ports.RunBroker), which the
	// DAG layer's Launcher and run workers use. Optional (empty: no
	// RunBroker); it must not be QueueURL.
	RunQueueURL string
	// Bucket is the S3 bucket of results, claim-check payloads, run state
	// and cancellation marks. It must exist. Required.
	Bucket string
	// Prefix starts every object key dagq writes: empty (the bucket root)
	// or a prefix ending in "/" that does not start with one, e.g. "dagq/".
	Prefix string

	// SQSEndpoint and S3Endpoint override the base endpoint of the SQS and
	// S3 clients (emulators, VPC endpoints), as http(s) URLs. Empty: the
	// endpoint of the aws.Config (config.LoadDefaultConfig honours
	// AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS and AWS_ENDPOINT_URL_S3).
	SQSEndpoint, S3Endpoint string
	// S3PathStyle addresses objects as endpoint/bucket/key instead of
	// bucket.endpoint/key: true for most S3 emulators.
	S3PathStyle bool
	// SQSClientOptions and S3ClientOptions are applied to the SDK clients
	// after the fields above (a retryer, middleware, an HTTP client).
	SQSClientOptions []func(*sqs.Options)
	S3ClientOptions  []func(*s3.Options)

	// WaitTime is the SQS long-polling wait of one receive (tasks,
	// completions, cancellation requests), rounded up to whole seconds.
	// 0 means 20s (the SQS maximum); at most 20s.
	WaitTime time.Duration
	// FairQueue is the fair-queue (message-group) mode of both queues:
	// FairAuto (the default) follows the queue type; FairOn on a standard
	// queue logs a warning on Logger and is ignored; FairOff is refused for
	// FIFO queues, which need a message group on every message.
	FairQueue dagqsqs.FairMode
	// CancelListLag is how long SQS may take to list a new queue
	// (ListQueues is eventually consistent): a worker's cancellation check
	// reads the marks in S3 until its cancel subscription is this old, then
	// answers from memory. It has the meaning of the adapter's
	// CancelOptions.ListLag: 0 means the default, 60s, right for real SQS;
	// dagqsqs.NoCancelListLag (any negative value) means none, for
	// emulators that list a queue as soon as it exists (fauxqs). (dagq's
	// configuration key sqs.cancel_list_lag spells none "0s"; here 0 is the
	// safe default.)
	CancelListLag time.Duration
	// NoCancel builds no cancellation transport: Ports.Cancels is nil and
	// Ports.NoCancel is set. By default cancellation requests are durable
	// marks in Bucket broadcast to one SQS queue per subscribed process
	// (dagq-cancel-…), shared by the workers of the process.
	NoCancel bool

	// PayloadThreshold is the largest encoded task envelope (bytes) sent in
	// the SQS message itself; larger ones are stored in Bucket (the claim
	// check) and the message carries their key. 0 means
	// core.DefaultPayloadThreshold (200 KiB); at most MaxPayloadThreshold.
	PayloadThreshold int

	// SigningKeys, when not empty, turn signing on: workers accept only
	// tasks signed with one of these keys (key ID → key, each key at least
	// core.MinSigningKeyBytes), and clients sign with SigningKeyID, which is
	// then required and must be one of them.
	SigningKeys  map[string][]byte
	SigningKeyID string
	// AcceptUnsigned lets workers run unsigned tasks (a fleet turning
	// signing on: workers first, then clients); a task with a bad signature
	// is still refused. Needs SigningKeys.
	AcceptUnsigned bool

	// Logger receives the adapters' warnings (FairOn on a standard queue,
	// undecodable messages). Nil discards them.
	Logger *slog.Logger
}

// Transport is the AWS transport: the SDK clients, one handle of each
// adapter, and the core.Ports built over them. Close it when done.
type Transport struct {
	SQS *sqs.Client
	S3  *s3.Client

	// Broker is on Options.QueueURL; RunBroker on Options.RunQueueURL (nil
	// without it).
	Broker, RunBroker *dagqsqs.Broker
	Results           *dagqs3.ResultBackend
	State             *dagqs3.StateStore
	Payloads          *dagqs3.PayloadStore
	// Cancels is the cancellation transport as the adapter provides it (nil
	// with Options.NoCancel); Ports().Cancels shares its subscriptions.
	Cancels     *dagqsqs.CancelChannel
	Completions *dagqsqs.CompletionBus

	ports   core.Ports
	cleanup func()
	// creds are the aws.Config's credentials (nil: anonymous), which Check
	// retrieves first.
	creds aws.CredentialsProvider
	// queueURL, runQueueURL and bucket are the Options', for Check.
	queueURL, runQueueURL, bucket string
}

// Ports returns the port set of the transport, with the options' settings
// applied (see New). Every call returns the same handles.
func (t *Transport) Ports() core.Ports { return t.ports }

// Close closes every handle of the transport (deleting the SQS queues of
// open inboxes and cancel subscriptions). It closes neither the SDK clients
// nor the HTTP client of the aws.Config. Stop the workers and close the
// clients built on Ports first.
func (t *Transport) Close() error {
	t.cleanup()
	return nil
}

// New builds the complete port set of the AWS transport from an
// aws.Config (region and credentials; see config.LoadDefaultConfig) and
// opts, in one call: a Broker on the task queue and (optionally) one on the
// run queue; the ResultBackend, StateStore and claim-check PayloadStore in
// the bucket; the CompletionBus (a reply queue per waiting client, so
// waiting makes no S3 reads); the CancelChannel (marks in the bucket,
// broadcast to a queue per process), its subscriptions shared by the
// process's workers (core.ShareSubscriptions); the claim-check threshold;
// and the Signer and Verifier of the signing keys. Hand the Ports to every
// core.Client and core.Worker of the process; call the cleanup after
// stopping them.
//
// New makes no request (a missing queue or bucket shows on first use, or
// on Transport.Check); ctx bounds none today. Invalid options fail with one error matching
// ports.ErrInvalidArgument that names every bad option and what is valid.
func New(ctx context.Context, cfg aws.Config, opts Options) (core.Ports, func(), error) {
	t, err := Open(ctx, cfg, opts)
	if err != nil {
		return core.Ports{}, nil, err
	}
	return t.Ports(), func() { _ = t.Close() }, nil
}

// Open is New returning the Transport, for callers that need the SDK
// clients or an adapter's own methods as well as the Ports.
func Open(_ context.Context, cfg aws.Config, opts Options) (*Transport, error) {
	signer, verifier, err := opts.validate(cfg)
	if err != nil {
		return nil, err
	}
	wait := opts.WaitTime
	sqsClient := opts.sqsClient(cfg)
	s3Client := opts.s3Client(cfg)
	brokerOpts := &dagqsqs.Options{WaitTime: wait, FairQueue: opts.FairQueue, Logger: opts.Logger}
	a, cleanup, err := openAdapters(sqsClient, s3Client, dagqsqs.QueueURL(opts.QueueURL), dagqs3.Bucket(opts.Bucket),
		brokerOpts,
		&dagqsqs.CancelOptions{WaitTime: wait, ListLag: opts.CancelListLag},
		&dagqsqs.CompletionOptions{WaitTime: wait, Logger: opts.Logger},
		&dagqs3.Options{Prefix: opts.Prefix})
	if err != nil {
		return nil, fmt.Errorf("awsports: %w", err)
	}
	t := &Transport{SQS: sqsClient, S3: s3Client, Broker: a.Broker, Results: a.Results, State: a.State,
		Payloads: a.Payloads, Cancels: a.Cancels, Completions: a.Completions, cleanup: cleanup, creds: cfg.Credentials,
		queueURL: opts.QueueURL, runQueueURL: opts.RunQueueURL, bucket: opts.Bucket}
	p := core.Ports{Broker: a.Broker, Results: a.Results, Completions: a.Completions, State: a.State,
		Payloads: a.Payloads, PayloadThreshold: opts.PayloadThreshold, Signer: signer, Verifier: verifier}
	if opts.RunQueueURL != "" {
		rb, closeRuns, err := dagqsqs.ProvideBroker(sqsClient, dagqsqs.QueueURL(opts.RunQueueURL), brokerOpts)
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("awsports: Options.RunQueueURL: %w", err)
		}
		t.RunBroker, p.RunBroker = rb, rb
		t.cleanup = func() { closeRuns(); cleanup() }
	}
	if opts.NoCancel {
		_ = a.Cancels.Close()
		t.Cancels = nil
		p.NoCancel = true
	} else {
		shared := core.ShareSubscriptions(a.Cancels)
		p.Cancels = shared
		closeRest := t.cleanup
		t.cleanup = func() { _ = shared.Close(); closeRest() }
	}
	t.ports = p
	return t, nil
}

// sqsClient builds the SQS client of cfg with the options' endpoint and
// client options.
func (o Options) sqsClient(cfg aws.Config) *sqs.Client {
	return sqs.NewFromConfig(cfg, append([]func(*sqs.Options){func(so *sqs.Options) {
		if o.SQSEndpoint != "" {
			so.BaseEndpoint = aws.String(o.SQSEndpoint)
		}
	}}, o.SQSClientOptions...)...)
}

// s3Client builds the S3 client of cfg with the options' endpoint,
// addressing style and client options.
func (o Options) s3Client(cfg aws.Config) *s3.Client {
	return s3.NewFromConfig(cfg, append([]func(*s3.Options){func(so *s3.Options) {
		if o.S3Endpoint != "" {
			so.BaseEndpoint = aws.String(o.S3Endpoint)
		}
		so.UsePathStyle = o.S3PathStyle
	}}, o.S3ClientOptions...)...)
}

// SQSClient returns the SQS client New builds from cfg: SQSEndpoint and
// SQSClientOptions applied. For tools that manage the queues.
func (o Options) SQSClient(cfg aws.Config) *sqs.Client { return o.sqsClient(cfg) }

// S3Client returns the S3 client New builds from cfg: S3Endpoint,
// S3PathStyle and S3ClientOptions applied. For tools that manage the bucket.
func (o Options) S3Client(cfg aws.Config) *s3.Client { return o.s3Client(cfg) }

var (
	bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	// sqsHostRE matches the AWS SQS hosts that name their region:
	// sqs.<region>.amazonaws.com (and .com.cn), and the legacy
	// <region>.queue.amazonaws.com.
	sqsHostRE = regexp.MustCompile(`^(?:sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?|([a-z0-9-]+)\.queue\.amazonaws\.com)$`)
)

// validate reports every invalid option as one error matching
// ports.ErrInvalidArgument, and returns the signer and verifier of the
// signing keys (nil when signing is off).
func (o Options) validate(cfg aws.Config) (*core.Signer, *core.Verifier, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: Options.%s: %s", ports.ErrInvalidArgument, field, fmt.Sprintf(format, args...)))
	}
	if cfg.Region == "" {
		errs = append(errs, fmt.Errorf("%w: aws.Config.Region is empty; valid: the region of the queues and bucket, "+
			"e.g. from AWS_REGION or config.WithRegion(\"us-east-1\")", ports.ErrInvalidArgument))
	}
	for _, q := range []struct{ field, url string }{{"QueueURL", o.QueueURL}, {"RunQueueURL", o.RunQueueURL}} {
		switch msg := queueURLProblem(q.url); {
		case q.url == "" && q.field == "QueueURL":
			bad(q.field, "is required: the URL of the SQS task queue, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/dagq-tasks")
		case q.url == "":
		case msg != "":
			bad(q.field, "%q %s; valid: an http(s) URL of the form https://sqs.<region>.amazonaws.com/<account>/<queue name>", q.url, msg)
		case cfg.Region != "" && urlRegion(q.url) != "" && urlRegion(q.url) != cfg.Region:
			bad(q.field, "%q is in region %s but aws.Config.Region is %s; valid: a queue in %s, or an aws.Config with Region %s",
				q.url, urlRegion(q.url), cfg.Region, cfg.Region, urlRegion(q.url))
		case o.FairQueue == dagqsqs.FairOff && dagqsqs.IsFIFOURL(q.url):
			bad("FairQueue", "FairOff, but %s %q is a FIFO queue, which needs a message group on every message; valid: FairAuto or FairOn", q.field, q.url)
		}
	}
	if o.RunQueueURL != "" && strings.TrimRight(o.RunQueueURL, "/") == strings.TrimRight(o.QueueURL, "/") {
		bad("RunQueueURL", "%q is also the task queue (QueueURL); valid: empty, or the URL of another queue "+
			"(a run task holds a worker slot for the whole run)", o.RunQueueURL)
	}
	switch {
	case o.Bucket == "":
		bad("Bucket", "is required: the S3 bucket of results, large payloads and run state, e.g. my-dagq-bucket")
	case !bucketRE.MatchString(o.Bucket):
		bad("Bucket", "%q is not a valid bucket name; valid: 3 to 63 of lower-case letters, digits, . and -, starting and ending with a letter or digit", o.Bucket)
	}
	if o.Prefix != "" && (!strings.HasSuffix(o.Prefix, "/") || strings.HasPrefix(o.Prefix, "/")) {
		bad("Prefix", "%q must end with / and not start with one; valid: empty (the bucket root) or e.g. \"dagq/\"", o.Prefix)
	}
	for _, e := range []struct{ field, url string }{{"SQSEndpoint", o.SQSEndpoint}, {"S3Endpoint", o.S3Endpoint}} {
		if u, err := url.Parse(e.url); e.url != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
			bad(e.field, "%q is not an http(s) URL; valid: empty (the aws.Config's endpoint) or e.g. http://127.0.0.1:4566", e.url)
		}
	}
	if o.WaitTime < 0 || o.WaitTime > 20*time.Second {
		bad("WaitTime", "%v is out of range; valid: 0 (default 20s) to 20s", o.WaitTime)
	}
	if o.FairQueue != dagqsqs.FairAuto && o.FairQueue != dagqsqs.FairOn && o.FairQueue != dagqsqs.FairOff {
		bad("FairQueue", "%v is not a mode; valid: FairAuto, FairOn or FairOff", o.FairQueue)
	}
	if o.PayloadThreshold < 0 || o.PayloadThreshold > MaxPayloadThreshold {
		bad("PayloadThreshold", "%d is out of range; valid: 0 (default %d) to %d bytes", o.PayloadThreshold,
			core.DefaultPayloadThreshold, MaxPayloadThreshold)
	}
	signer, verifier := o.signing(bad)
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("awsports: invalid options: %w", errors.Join(errs...))
	}
	return signer, verifier, nil
}

// signing checks the signing options and builds their signer and
// verifier. Messages never contain a key.
func (o Options) signing(bad func(field, format string, args ...any)) (*core.Signer, *core.Verifier) {
	ids := strings.Join(slices.Sorted(maps.Keys(o.SigningKeys)), ", ")
	switch {
	case len(o.SigningKeys) == 0 && o.SigningKeyID != "":
		bad("SigningKeyID", "%q is set but SigningKeys is empty; valid: empty (signing off), or the ID of one of SigningKeys", o.SigningKeyID)
		return nil, nil
	case len(o.SigningKeys) == 0 && o.AcceptUnsigned:
		bad("AcceptUnsigned", "is set but SigningKeys is empty (signing is off: every task is accepted); valid: false, or set SigningKeys")
		return nil, nil
	case len(o.SigningKeys) == 0:
		return nil, nil
	case o.SigningKeyID == "":
		bad("SigningKeyID", "is required with SigningKeys: the ID of the key this process signs with; valid: one of %s", ids)
		return nil, nil
	case o.SigningKeys[o.SigningKeyID] == nil:
		bad("SigningKeyID", "%q is not in SigningKeys; valid: one of %s", o.SigningKeyID, ids)
		return nil, nil
	}
	verifier, err := core.NewVerifier(core.VerifierOptions{Keys: o.SigningKeys, AcceptUnsigned: o.AcceptUnsigned})
	if err != nil {
		bad("SigningKeys", "%v", err)
		return nil, nil
	}
	signer, err := core.NewSigner(o.SigningKeyID, o.SigningKeys[o.SigningKeyID])
	if err != nil {
		bad("SigningKeyID", "%v", err)
		return nil, nil
	}
	return signer, verifier
}

// queueURLProblem says what is wrong with an SQS queue URL, or "".
func queueURLProblem(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return "is not an http(s) URL"
	case u.RawQuery != "" || u.Fragment != "":
		return "has a query or fragment"
	}
	if parts := strings.Split(strings.Trim(u.Path, "/"), "/"); len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "has no /<account>/<queue name> path"
	}
	return ""
}

// urlRegion returns the region an AWS SQS queue URL names in its host, or
// "" when the host is not an AWS SQS endpoint (an emulator, a VPC endpoint).
func urlRegion(queueURL string) string {
	u, err := url.Parse(queueURL)
	if err != nil {
		return ""
	}
	if m := sqsHostRE.FindStringSubmatch(strings.ToLower(u.Hostname())); m != nil {
		return m[1] + m[2]
	}
	return ""
}
