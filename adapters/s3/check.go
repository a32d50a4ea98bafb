package s3

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/dagq/dagq/ports"
)

// checkKey is the key (in the result key space) Check reads. It is not a
// task ID dagq makes, so it is normally missing.
const checkKey = ".dagq-check"

// Check reports whether the store's bucket can be used, with one GetObject
// request for a key that normally does not exist, under the store's
// prefix: the permissions dagq needs anyway (s3:GetObject, and
// s3:ListBucket for a "no such key" answer) suffice, and the answer tells a
// missing bucket (NoSuchBucket) from a missing key. It also proves that the
// endpoint answers and takes the credentials. Its error matches the
// sentinels of package ports like any other of this package:
// ports.ErrNotFound (no such bucket), ports.ErrPermissionDenied,
// ports.ErrUnauthenticated, ports.ErrUnavailable (no answer). Check is for
// start-up; the three stores share the bucket, so checking one checks them
// all.
func (r *ResultBackend) Check(ctx context.Context) error { return r.s.checkBucket(ctx) }

// Check is ResultBackend.Check for the StateStore's bucket.
func (s *StateStore) Check(ctx context.Context) error { return s.s.checkBucket(ctx) }

// Check is ResultBackend.Check for the PayloadStore's bucket.
func (p *PayloadStore) Check(ctx context.Context) error { return p.s.checkBucket(ctx) }

func (s *store) checkBucket(ctx context.Context) error {
	what := "check: bucket " + s.bucket
	if err := s.check(what); err != nil {
		return err
	}
	key := s.space + checkKey
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err == nil {
		_ = out.Body.Close()
		return nil
	}
	if isNoSuchBucket(err) {
		return wrap(opRead, what, err)
	}
	if err = wrap(opRead, what, err); errors.Is(err, ports.ErrNotFound) {
		return nil // no such key: the bucket is there
	}
	return err
}
