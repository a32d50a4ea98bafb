package s3

import (
	"bytes"
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/dagq/dagq/ports"
)

// PayloadStore is the claim-check ports.PayloadStore: one object per payload
// under "<prefix>payloads/<key>".
type PayloadStore struct {
	s store
}

var (
	_ ports.PayloadStore = (*PayloadStore)(nil)
	_ ports.KeyLimiter   = (*PayloadStore)(nil)
)

// MaxKeyLen returns the longest payload key the store accepts
// (ports.KeyLimiter): 1,024 bytes, S3's object key limit, minus
// "<prefix>payloads/". A longer key fails Put and Get with
// ErrInvalidArgument before any request.
func (p *PayloadStore) MaxKeyLen() int { return p.s.maxKeyLen() }

// NewPayloadStore returns a PayloadStore keeping payloads in bucket (which
// must exist). opts may be nil.
func NewPayloadStore(client *s3.Client, bucket string, opts *Options) (*PayloadStore, error) {
	p := &PayloadStore{}
	if err := p.s.init(client, bucket, opts, "payloads/"); err != nil {
		return nil, err
	}
	return p, nil
}

// Put stores data under key, replacing any previous value.
func (p *PayloadStore) Put(ctx context.Context, key string, data []byte) error {
	if err := p.s.check("put payload"); err != nil {
		return err
	}
	obj, err := p.s.key(key)
	if err != nil {
		return fmt.Errorf("s3: put payload: %w", err)
	}
	_, err = p.s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &p.s.bucket,
		Key:           &obj,
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/octet-stream"),
	})
	if err != nil {
		return wrap(opWrite, fmt.Sprintf("put payload %q", obj), err)
	}
	return nil
}

// Get returns the payload under key, or ErrNotFound.
func (p *PayloadStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := p.s.check("get payload"); err != nil {
		return nil, err
	}
	obj, err := p.s.key(key)
	if err != nil {
		return nil, fmt.Errorf("s3: get payload: %w", err)
	}
	o, err := p.s.get(ctx, fmt.Sprintf("get payload %q", obj), obj)
	if err != nil {
		return nil, err
	}
	return o.data, nil
}

// Delete removes keys (1 ≤ len ≤ ports.MaxBatch) with one DeleteObjects
// request; missing keys are not an error. Keys S3 failed to delete are
// reported in a *ports.BatchError.
func (p *PayloadStore) Delete(ctx context.Context, keys ...string) error {
	if err := p.s.check("delete payloads"); err != nil {
		return err
	}
	if len(keys) == 0 || len(keys) > ports.MaxBatch {
		return fmt.Errorf("s3: delete payloads: %w: %d keys; 1 to %d are allowed", ports.ErrInvalidArgument, len(keys), ports.MaxBatch)
	}
	ids := make([]types.ObjectIdentifier, len(keys))
	index := make(map[string]int, len(keys))
	for i, k := range keys {
		obj, err := p.s.key(k)
		if err != nil {
			return fmt.Errorf("s3: delete payloads: key %d: %w", i, err)
		}
		ids[i] = types.ObjectIdentifier{Key: aws.String(obj)}
		index[obj] = i
	}
	out, err := p.s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
		Bucket: &p.s.bucket,
		Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
	})
	if err != nil {
		return wrap(opRead, fmt.Sprintf("delete %d payloads", len(keys)), err)
	}
	if len(out.Errors) == 0 {
		return nil
	}
	be := &ports.BatchError{Failed: make(map[int]error, len(out.Errors))}
	for _, e := range out.Errors {
		code, key := aws.ToString(e.Code), aws.ToString(e.Key)
		if code == "NoSuchKey" {
			continue // already gone: not an error
		}
		i, ok := index[key]
		if !ok {
			return fmt.Errorf("s3: delete payloads: S3 reported an error for key %q not in the request: %s: %s", key, code, aws.ToString(e.Message))
		}
		itemErr := &itemError{code: code, message: aws.ToString(e.Message)}
		be.Failed[i] = wrap(opRead, fmt.Sprintf("delete payload %q", key), itemErr)
	}
	if len(be.Failed) == 0 {
		return nil
	}
	return be
}

// Close makes later calls fail with ErrClosed. It does not close the client.
func (p *PayloadStore) Close() error { return p.s.close() }

// itemError is one failed key of a DeleteObjects answer, as a smithy.APIError
// so that it goes through the same error table.
type itemError struct{ code, message string }

func (e *itemError) Error() string        { return fmt.Sprintf("%s: %s", e.code, e.message) }
func (e *itemError) ErrorCode() string    { return e.code }
func (e *itemError) ErrorMessage() string { return e.message }
func (e *itemError) ErrorFault() smithy.ErrorFault {
	return smithy.FaultUnknown
}
