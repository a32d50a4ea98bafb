package s3

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/dagq/dagq/ports"
)

// StateStore is a ports.StateStore of small records under
// "<prefix>state/<key>", versioned by ETag and written with S3 conditional
// writes.
type StateStore struct {
	s store
}

var (
	_ ports.StateStore = (*StateStore)(nil)
	_ ports.KeyLister  = (*StateStore)(nil)
)

// NewStateStore returns a StateStore keeping records in bucket (which must
// exist). opts may be nil.
func NewStateStore(client *s3.Client, bucket string, opts *Options) (*StateStore, error) {
	st := &StateStore{}
	if err := st.s.init(client, bucket, opts, "state/"); err != nil {
		return nil, err
	}
	return st, nil
}

// Get returns the record under key, or ErrNotFound.
func (st *StateStore) Get(ctx context.Context, key string) (ports.Record, error) {
	if err := st.s.check("get state"); err != nil {
		return ports.Record{}, err
	}
	obj, err := st.objectKey("get state", key)
	if err != nil {
		return ports.Record{}, err
	}
	o, err := st.s.get(ctx, fmt.Sprintf("get state %q", obj), obj)
	if err != nil {
		return ports.Record{}, err
	}
	return ports.Record{Key: key, Data: o.data, Version: o.etag, UpdatedAt: aws.ToTime(o.out.LastModified)}, nil
}

// Put writes data under key when cond holds: MustNotExist as If-None-Match: *
// (ErrAlreadyExists when the key exists), MatchVersion as If-Match (ErrConflict
// when the ETag changed, ErrNotFound when the key is gone). It returns the
// new ETag.
func (st *StateStore) Put(ctx context.Context, key string, data []byte, cond ports.WriteCondition) (string, error) {
	if err := st.s.check("put state"); err != nil {
		return "", err
	}
	obj, err := st.objectKey("put state", key)
	if err != nil {
		return "", err
	}
	if err := cond.Validate(); err != nil {
		return "", fmt.Errorf("s3: put state %q: %w", key, err)
	}
	in := &s3.PutObjectInput{
		Bucket:        &st.s.bucket,
		Key:           &obj,
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/octet-stream"),
	}
	o := opWrite
	switch {
	case cond.MustNotExist:
		in.IfNoneMatch, o = aws.String("*"), opCreate
	case cond.MatchVersion != "":
		in.IfMatch, o = aws.String(cond.MatchVersion), opMatchUpdate
	}
	out, err := st.s.client.PutObject(ctx, in)
	if err != nil {
		return "", wrap(o, fmt.Sprintf("put state %q", obj), err)
	}
	etag := aws.ToString(out.ETag)
	if etag == "" {
		return "", fmt.Errorf("s3: put state %q: the response carries no ETag", obj)
	}
	return etag, nil
}

// Delete removes key; a missing key is not an error.
func (st *StateStore) Delete(ctx context.Context, key string) error {
	if err := st.s.check("delete state"); err != nil {
		return err
	}
	obj, err := st.objectKey("delete state", key)
	if err != nil {
		return err
	}
	if _, err := st.s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &st.s.bucket, Key: &obj}); err != nil {
		return wrap(opRead, fmt.Sprintf("delete state %q", obj), err)
	}
	return nil
}

// List returns the keys of the records whose key starts with prefix, in
// lexicographic (UTF-8 byte) order: ListObjectsV2 requests under
// "<Options.Prefix>state/<prefix>", paginated (one request per 1000 keys).
// An empty prefix lists every record. It is not part of ports.StateStore:
// callers find it with a type assertion (adapters/sqs's CancelChannel
// does, to load cancellation marks at once instead of one GET per ID).
func (st *StateStore) List(ctx context.Context, prefix string) ([]string, error) {
	if err := st.s.check("list state"); err != nil {
		return nil, err
	}
	full := st.s.space + prefix
	if len(full) > maxObjectKey {
		return nil, fmt.Errorf("s3: list state: %w: prefix %q is %d bytes; S3 allows %d", ports.ErrInvalidArgument, full, len(full), maxObjectKey)
	}
	var keys []string
	p := s3.NewListObjectsV2Paginator(st.s.client, &s3.ListObjectsV2Input{Bucket: &st.s.bucket, Prefix: &full})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			what := fmt.Sprintf("list state %q", full)
			if isNoSuchBucket(err) {
				what = fmt.Sprintf("%s (bucket %q)", what, st.s.bucket)
			}
			return nil, wrap(opRead, what, err)
		}
		for _, o := range page.Contents {
			if k := aws.ToString(o.Key); strings.HasPrefix(k, st.s.space) {
				keys = append(keys, k[len(st.s.space):])
			}
		}
	}
	return keys, nil
}

// ListKeys implements ports.KeyLister: one ListObjectsV2 request (Prefix
// "<Options.Prefix>state/<prefix>", StartAfter the same space plus after,
// MaxKeys limit).
func (st *StateStore) ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, bool, error) {
	if err := st.s.check("list keys"); err != nil {
		return nil, false, err
	}
	if err := ports.CheckListKeys(prefix, after, limit); err != nil {
		return nil, false, fmt.Errorf("s3: list keys: %w", err)
	}
	full := st.s.space + prefix
	in := &s3.ListObjectsV2Input{Bucket: &st.s.bucket, Prefix: &full, MaxKeys: aws.Int32(int32(limit))}
	if after != "" {
		in.StartAfter = aws.String(st.s.space + after)
	}
	out, err := st.s.client.ListObjectsV2(ctx, in)
	if err != nil {
		what := fmt.Sprintf("list keys %q", full)
		if isNoSuchBucket(err) {
			what = fmt.Sprintf("%s (bucket %q)", what, st.s.bucket)
		}
		return nil, false, wrap(opRead, what, err)
	}
	keys := make([]string, 0, len(out.Contents))
	for _, o := range out.Contents {
		if k := aws.ToString(o.Key); strings.HasPrefix(k, st.s.space) {
			keys = append(keys, k[len(st.s.space):])
		}
	}
	return keys, aws.ToBool(out.IsTruncated), nil
}

// Close makes later calls fail with ErrClosed. It does not close the client.
func (st *StateStore) Close() error { return st.s.close() }

func (st *StateStore) objectKey(what, key string) (string, error) {
	if err := ports.ValidateKey(key); err != nil {
		return "", fmt.Errorf("s3: %s: %w", what, err)
	}
	obj, err := st.s.key(key)
	if err != nil {
		return "", fmt.Errorf("s3: %s: %w", what, err)
	}
	return obj, nil
}
