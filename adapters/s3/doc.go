// Package s3 implements dagq's storage ports over Amazon S3 (aws-sdk-go-v2):
// a write-once [ports.ResultBackend], the claim-check [ports.PayloadStore]
// and the optimistic [ports.StateStore]. All three share one bucket and keep
// separate key spaces under a configurable prefix:
//
//	<prefix>results/<taskID>   one JSON-encoded ports.Result per task
//	<prefix>payloads/<key>     message bodies too large for the broker
//	<prefix>state/<key>        small mutable records (runs, heartbeats)
//
// Constructors take an *s3.Client the application configured (region,
// credentials, endpoint, path-style addressing) and a nil-safe *Options:
//
//	results, err := s3.NewResultBackend(client, "my-bucket", &s3.Options{Prefix: "dagq/"})
//
// Closing a store only makes its later calls fail with [ports.ErrClosed]; it
// never closes the shared SDK client.
//
// # Delivery semantics
//
// Results are write-once: Put uses a conditional PutObject with
// If-None-Match: *, so of several racing Puts of one task ID exactly one
// wins, and the others fail with [ports.ErrAlreadyExists] without touching
// the stored result. S3 has been strongly read-after-write consistent since
// December 2020, so a Get after a successful Put sees it from any process.
//
// StateStore versions are S3 ETags. WriteCondition.MustNotExist maps to
// If-None-Match: *, WriteCondition.MatchVersion to If-Match: <ETag>. An ETag
// of a single-part upload without SSE-KMS is the MD5 of the content, so
// rewriting a record with byte-identical data keeps its version: writers that
// need ABA protection must put something that changes (a counter, a
// timestamp) into the record.
//
// Payloads are plain objects; Put overwrites, Delete removes up to
// [ports.MaxBatch] keys with one DeleteObjects request and ignores missing
// keys. Payload objects whose message was lost (a producer crashed between
// Put and Send) are never deleted by dagq: configure a bucket lifecycle rule
// expiring <prefix>payloads/ after a few days (longer than the queue's
// message retention) as the safety net.
//
// Adapters do not retry on their own: the SDK's retryer (configured on the
// client) retries throttling and 5xx responses; what is left surfaces as
// [ports.ErrUnavailable].
//
// # Errors
//
// One table maps S3 error codes to the ports sentinels; every error is
// wrapped once so that both errors.Is(err, ports.ErrX) and
// errors.As(err, &smithy.APIError) work:
//
//	NoSuchKey, NotFound (HEAD), 404      ports.ErrNotFound
//	NoSuchBucket                         ports.ErrNotFound (message names the bucket)
//	PreconditionFailed, 412              ports.ErrAlreadyExists for create-only writes
//	                                     (result Put, MustNotExist), ports.ErrConflict
//	                                     for MatchVersion writes
//	ConditionalRequestConflict, 409      ports.ErrConflict (ports.ErrAlreadyExists for
//	                                     create-only writes: another create raced it)
//	SlowDown, Throttling, InternalError  ports.ErrUnavailable
//	any other code with a 5xx status     ports.ErrUnavailable
//	no answer (refused, reset, timeout)  ports.ErrUnavailable
//	AccessDenied, AllAccessDisabled      ports.ErrPermissionDenied
//	InvalidAccessKeyId, ExpiredToken,    ports.ErrUnauthenticated
//	SignatureDoesNotMatch, ...
//	any other code of a 4xx answer       unmapped: the SDK error as is
//
// A 403, 404, 409 or 412 answer without an error code (HEAD) is classified by its
// status as the codes above. The caller's own context cancellation is
// returned as is, not as ErrUnavailable.
//
// Requests are validated before any call to S3: an invalid Result, an empty
// or over-long key, an invalid StateStore key (ports.ValidateKey), both write
// conditions at once or a Delete batch outside 1..MaxBatch fail with
// [ports.ErrInvalidArgument].
//
// # Configuration
//
// Options.Prefix is prepended to every key (use a trailing "/", e.g.
// "dagq/prod/"). The bucket must exist. The IAM principal needs
// s3:GetObject, s3:PutObject and s3:DeleteObject on
// arn:aws:s3:::<bucket>/<prefix>*; nothing else (no ListBucket: a missing
// key is reported as 403 AccessDenied (ports.ErrPermissionDenied) instead of 404 without it, so grant
// s3:ListBucket on the bucket, restricted with an s3:prefix condition, if
// callers rely on ErrNotFound).
//
// S3-compatible servers (versitygw, MinIO) need the client built with
// UsePathStyle and BaseEndpoint; this package makes no request that needs
// more than the conditional-write support AWS S3 has had since 2024.
//
// # Wire
//
// [Set] is the package's Wire provider set: the *ResultBackend, *StateStore
// and *PayloadStore in the injector's [Bucket], each bound to its port and
// closed by its cleanup. adapters/awsports builds the complete AWS port set
// with it and adapters/sqs's Set in one call.
package s3
