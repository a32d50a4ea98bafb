package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/dagq/dagq/ports"
)

// Options configures the stores of this package. A nil *Options means the
// defaults.
type Options struct {
	// Prefix is prepended to every object key, e.g. "dagq/prod/". Empty means
	// the bucket root. It should end with "/".
	Prefix string
}

// maxObjectKey is S3's longest object key, in bytes.
const maxObjectKey = 1024

// store is what the three stores share: the client, the bucket, the key
// space and the closed flag.
type store struct {
	client *s3.Client
	bucket string
	space  string // Prefix + "results/" and so on
	closed atomic.Bool
}

func (s *store) init(client *s3.Client, bucket string, opts *Options, space string) error {
	if client == nil {
		return fmt.Errorf("s3: %w: nil *s3.Client", ports.ErrInvalidArgument)
	}
	if bucket == "" {
		return fmt.Errorf("s3: %w: empty bucket name", ports.ErrInvalidArgument)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	s.client, s.bucket, s.space = client, bucket, o.Prefix+space
	return nil
}

// key returns the object key of k, or ErrInvalidArgument when it is empty or
// too long for S3.
func (s *store) key(k string) (string, error) {
	if k == "" {
		return "", fmt.Errorf("%w: empty key", ports.ErrInvalidArgument)
	}
	full := s.space + k
	if len(full) > maxObjectKey {
		return "", fmt.Errorf("%w: object key %q is %d bytes; S3 allows %d", ports.ErrInvalidArgument, full, len(full), maxObjectKey)
	}
	return full, nil
}

// maxKeyLen is the longest key the store accepts: S3's limit minus the
// prefix and key space.
func (s *store) maxKeyLen() int { return max(maxObjectKey-len(s.space), 0) }

func (s *store) check(what string) error {
	if s.closed.Load() {
		return fmt.Errorf("s3: %s: %w", what, ports.ErrClosed)
	}
	return nil
}

func (s *store) close() error {
	s.closed.Store(true)
	return nil
}

// object is one object read back.
type object struct {
	data []byte
	etag string
	out  *s3.GetObjectOutput
}

func (s *store) get(ctx context.Context, what, key string) (object, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		if isNoSuchBucket(err) {
			return object{}, wrap(opRead, fmt.Sprintf("%s (bucket %q)", what, s.bucket), err)
		}
		return object{}, wrap(opRead, what, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return object{}, wrap(opRead, what, err)
	}
	return object{data: data, etag: aws.ToString(out.ETag), out: out}, nil
}

func isNoSuchBucket(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchBucket"
}
