package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/dagq/dagq/ports"
)

// ResultBackend is a write-once ports.ResultBackend: one JSON object per task
// under "<prefix>results/<taskID>", created with If-None-Match: *.
type ResultBackend struct {
	s store
}

var (
	_ ports.ResultBackend = (*ResultBackend)(nil)
	_ ports.ResultDeleter = (*ResultBackend)(nil)
	_ ports.KeyLimiter    = (*ResultBackend)(nil)
)

// NewResultBackend returns a ResultBackend storing results in bucket (which
// must exist). opts may be nil.
func NewResultBackend(client *s3.Client, bucket string, opts *Options) (*ResultBackend, error) {
	b := &ResultBackend{}
	if err := b.s.init(client, bucket, opts, "results/"); err != nil {
		return nil, err
	}
	return b, nil
}

// Put stores r unless a result of r.TaskID exists: ErrAlreadyExists then.
func (b *ResultBackend) Put(ctx context.Context, r ports.Result) error {
	if err := b.s.check("put result"); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return fmt.Errorf("s3: put result: %w", err)
	}
	key, err := b.s.key(r.TaskID)
	if err != nil {
		return fmt.Errorf("s3: put result: %w", err)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("s3: put result %q: %w: %w", r.TaskID, ports.ErrInvalidArgument, err)
	}
	_, err = b.s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      &b.s.bucket,
		Key:         &key,
		Body:        bytes.NewReader(data),
		ContentType: aws.String("application/json"),
		IfNoneMatch: aws.String("*"),
	})
	if err != nil {
		return wrap(opCreate, fmt.Sprintf("put result %q", key), err)
	}
	return nil
}

// Get returns the result of taskID, or ErrNotFound.
func (b *ResultBackend) Get(ctx context.Context, taskID string) (ports.Result, error) {
	if err := b.s.check("get result"); err != nil {
		return ports.Result{}, err
	}
	key, err := b.s.key(taskID)
	if err != nil {
		return ports.Result{}, fmt.Errorf("s3: get result: %w", err)
	}
	obj, err := b.s.get(ctx, fmt.Sprintf("get result %q", key), key)
	if err != nil {
		return ports.Result{}, err
	}
	var r ports.Result
	if err := json.Unmarshal(obj.data, &r); err != nil {
		return ports.Result{}, fmt.Errorf("s3: get result %q: decoding the stored object: %w", key, err)
	}
	return r, nil
}

// Delete removes the result of taskID with one DeleteObject
// (ports.ResultDeleter); S3 answers a missing object with success.
func (b *ResultBackend) Delete(ctx context.Context, taskID string) error {
	if err := b.s.check("delete result"); err != nil {
		return err
	}
	key, err := b.s.key(taskID)
	if err != nil {
		return fmt.Errorf("s3: delete result: %w", err)
	}
	if _, err := b.s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.s.bucket, Key: &key}); err != nil {
		return wrap(opRead, fmt.Sprintf("delete result %q", key), err)
	}
	return nil
}

// MaxKeyLen returns the longest task ID the backend stores (ports.KeyLimiter):
// 1,024 bytes, S3's object key limit, minus "<prefix>results/". A longer ID
// fails Put and Get with ErrInvalidArgument before any request.
func (b *ResultBackend) MaxKeyLen() int { return b.s.maxKeyLen() }

// Close makes later calls fail with ErrClosed. It does not close the client.
func (b *ResultBackend) Close() error { return b.s.close() }
