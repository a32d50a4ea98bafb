package s3_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/s3"
	"github.com/dagq/dagq/ports"
	"github.com/dagq/dagq/ports/porttest"
)

// The suite runs against versitygw started by `make emulators-up`
// (scripts/emulators.sh), which exports DAGQ_TEST_S3_ENDPOINT and the
// credentials. It never skips: a missing emulator is a failure.

var (
	clientOnce sync.Once
	client     *awss3.Client
	clientErr  error
)

func testClient(t *testing.T) *awss3.Client {
	t.Helper()
	endpoint := os.Getenv("DAGQ_TEST_S3_ENDPOINT")
	if endpoint == "" {
		t.Fatal("DAGQ_TEST_S3_ENDPOINT not set: run `make emulators-up` (make test does it) and export `scripts/emulators.sh env`")
	}
	clientOnce.Do(func() {
		cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion("us-east-1"))
		if err != nil {
			clientErr = err
			return
		}
		client = awss3.NewFromConfig(cfg, func(o *awss3.Options) {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		})
	})
	require.NoError(t, clientErr, "loading the AWS config")
	return client
}

// newBucket creates a fresh bucket for one subtest and removes it afterwards.
func newBucket(t *testing.T) (*awss3.Client, string) {
	t.Helper()
	c := testClient(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "dagq-test-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: &name})
	require.NoErrorf(t, err, "creating bucket %s at %s (is versitygw running? `make emulators-up`)", name, os.Getenv("DAGQ_TEST_S3_ENDPOINT"))
	t.Cleanup(func() { emptyAndDelete(t, c, name) })
	return c, name
}

func emptyAndDelete(t *testing.T, c *awss3.Client, bucket string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := awss3.NewListObjectsV2Paginator(c, &awss3.ListObjectsV2Input{Bucket: &bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Errorf("listing bucket %s for cleanup: %v", bucket, err)
			return
		}
		for _, o := range page.Contents {
			if _, err := c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &bucket, Key: o.Key}); err != nil {
				t.Errorf("cleanup: deleting %s/%s: %v", bucket, aws.ToString(o.Key), err)
			}
		}
	}
	if _, err := c.DeleteBucket(ctx, &awss3.DeleteBucketInput{Bucket: &bucket}); err != nil {
		t.Errorf("cleanup: deleting bucket %s: %v", bucket, err)
	}
}

type harness struct{}

func (harness) Features() porttest.Features {
	return porttest.Features{LeaseGranularity: time.Second, PollBound: time.Second, ResultDelete: true, ListKeys: true}
}

var opts = &s3.Options{Prefix: "dagq/test/"}

func (harness) NewBackend(t *testing.T, n int) []ports.ResultBackend {
	c, bucket := newBucket(t)
	return handles(t, n, func() (ports.ResultBackend, error) { return s3.NewResultBackend(c, bucket, opts) })
}

func (harness) NewStore(t *testing.T, n int) []ports.PayloadStore {
	c, bucket := newBucket(t)
	return handles(t, n, func() (ports.PayloadStore, error) { return s3.NewPayloadStore(c, bucket, opts) })
}

func (harness) NewStateStore(t *testing.T, n int) []ports.StateStore {
	c, bucket := newBucket(t)
	return handles(t, n, func() (ports.StateStore, error) { return s3.NewStateStore(c, bucket, opts) })
}

func handles[T interface{ Close() error }](t *testing.T, n int, open func() (T, error)) []T {
	hs := make([]T, n)
	for i := range hs {
		h, err := open()
		require.NoError(t, err)
		hs[i] = h
		t.Cleanup(func() { require.NoError(t, h.Close()) })
	}
	return hs
}

func TestResultBackend(t *testing.T) { porttest.TestResultBackend(t, harness{}) }
func TestPayloadStore(t *testing.T)  { porttest.TestPayloadStore(t, harness{}) }
func TestStateStore(t *testing.T)    { porttest.TestStateStore(t, harness{}) }

func TestConstructorValidation(t *testing.T) {
	_, err := s3.NewResultBackend(nil, "b", nil)
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	_, err = s3.NewPayloadStore(&awss3.Client{}, "", nil)
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
}

// Keys never leave the configured prefix and key space.
func TestKeyLayout(t *testing.T) {
	c, bucket := newBucket(t)
	ctx := t.Context()
	rb, err := s3.NewResultBackend(c, bucket, &s3.Options{Prefix: "p/"})
	require.NoError(t, err)
	ps, err := s3.NewPayloadStore(c, bucket, &s3.Options{Prefix: "p/"})
	require.NoError(t, err)
	ss, err := s3.NewStateStore(c, bucket, nil)
	require.NoError(t, err)
	require.NoError(t, rb.Put(ctx, ports.Result{TaskID: "t1", State: ports.StateSucceeded}))
	require.NoError(t, ps.Put(ctx, "k1", []byte("x")))
	_, err = ss.Put(ctx, "s1", []byte("y"), ports.WriteCondition{})
	require.NoError(t, err)
	out, err := c.ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: &bucket})
	require.NoError(t, err)
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	require.ElementsMatch(t, []string{"p/results/t1", "p/payloads/k1", "state/s1"}, keys, strings.Join(keys, ","))
}

// The stores declare their key limit (ports.KeyLimiter): S3's 1,024 bytes
// minus the prefix and key space. A key at the limit is stored; one byte more
// is refused with ErrInvalidArgument before any request.
func TestKeyLimit(t *testing.T) {
	c, bucket := newBucket(t)
	ctx := t.Context()
	rb, err := s3.NewResultBackend(c, bucket, &s3.Options{Prefix: "dagq/"})
	require.NoError(t, err)
	ps, err := s3.NewPayloadStore(c, bucket, &s3.Options{Prefix: "dagq/"})
	require.NoError(t, err)
	require.Equal(t, 1024-len("dagq/results/"), rb.MaxKeyLen())
	require.Equal(t, 1024-len("dagq/payloads/"), ps.MaxKeyLen())

	// In segments: the emulator (versitygw) keeps objects as files, whose
	// names are at most 255 bytes.
	long := func(c string, n int) string {
		k := []byte(strings.Repeat(strings.Repeat(c, 99)+"/", n/100+1)[:n])
		k[n-1] = c[0]
		return string(k)
	}
	at := long("r", rb.MaxKeyLen())
	require.NoError(t, rb.Put(ctx, ports.Result{TaskID: at, State: ports.StateSucceeded}))
	got, err := rb.Get(ctx, at)
	require.NoError(t, err)
	require.Equal(t, at, got.TaskID)
	over := at + "r"
	err = rb.Put(ctx, ports.Result{TaskID: over, State: ports.StateSucceeded})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	require.ErrorContains(t, err, "S3 allows 1024")
	_, err = rb.Get(ctx, over)
	require.ErrorIs(t, err, ports.ErrInvalidArgument)

	pat := long("p", ps.MaxKeyLen())
	require.NoError(t, ps.Put(ctx, pat, []byte("x")))
	require.ErrorIs(t, ps.Put(ctx, pat+"p", []byte("x")), ports.ErrInvalidArgument)
}

// A missing bucket is ErrNotFound, with the SDK error still reachable.
func TestMissingBucket(t *testing.T) {
	c := testClient(t)
	rb, err := s3.NewResultBackend(c, "dagq-no-such-bucket", nil)
	require.NoError(t, err)
	_, err = rb.Get(t.Context(), "t1")
	require.ErrorIs(t, err, ports.ErrNotFound)
	require.Contains(t, err.Error(), "dagq-no-such-bucket")
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, "NoSuchBucket", apiErr.ErrorCode())
}

// The error table: errors.Is finds the sentinel, errors.As the SDK error.
func TestErrorsWrapSDKErrors(t *testing.T) {
	c, bucket := newBucket(t)
	ctx := t.Context()
	rb, err := s3.NewResultBackend(c, bucket, nil)
	require.NoError(t, err)
	_, err = rb.Get(ctx, "missing")
	require.ErrorIs(t, err, ports.ErrNotFound)
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, "NoSuchKey", apiErr.ErrorCode())

	require.NoError(t, rb.Put(ctx, ports.Result{TaskID: "t", State: ports.StateFailed}))
	err = rb.Put(ctx, ports.Result{TaskID: "t", State: ports.StateFailed})
	require.ErrorIs(t, err, ports.ErrAlreadyExists)
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, "PreconditionFailed", apiErr.ErrorCode())

	// Wrong credentials are not mapped to a sentinel: the SDK error as is.
	bad := awss3.New(c.Options(), func(o *awss3.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider("nobody", "wrong", "")
	})
	rb2, err := s3.NewResultBackend(bad, bucket, nil)
	require.NoError(t, err)
	_, err = rb2.Get(ctx, "t")
	require.Error(t, err)
	for _, s := range []error{ports.ErrNotFound, ports.ErrUnavailable, ports.ErrConflict, ports.ErrAlreadyExists} {
		require.NotErrorIs(t, err, s)
	}
	require.ErrorAs(t, err, &apiErr)

	// Nothing listening: ErrUnavailable.
	down := awss3.New(c.Options(), func(o *awss3.Options) {
		o.BaseEndpoint = aws.String("http://127.0.0.1:1")
		o.RetryMaxAttempts = 1
	})
	rb3, err := s3.NewResultBackend(down, bucket, nil)
	require.NoError(t, err)
	_, err = rb3.Get(ctx, "t")
	require.ErrorIs(t, err, ports.ErrUnavailable)
}

// List returns the keys under a prefix, in order, across pages, and only
// its own store's.
func TestStateStoreList(t *testing.T) {
	c, bucket := newBucket(t)
	ctx := t.Context()
	ss, err := s3.NewStateStore(c, bucket, opts)
	require.NoError(t, err)
	other, err := s3.NewStateStore(c, bucket, &s3.Options{Prefix: "elsewhere/"})
	require.NoError(t, err)
	for _, k := range []string{"cancels/b", "cancels/a", "cancelsx", "runs/r1"} {
		_, err := ss.Put(ctx, k, []byte("x"), ports.WriteCondition{})
		require.NoError(t, err)
	}
	_, err = other.Put(ctx, "cancels/z", []byte("x"), ports.WriteCondition{})
	require.NoError(t, err)

	keys, err := ss.List(ctx, "cancels/")
	require.NoError(t, err)
	require.Equal(t, []string{"cancels/a", "cancels/b"}, keys)
	keys, err = ss.List(ctx, "")
	require.NoError(t, err)
	require.Equal(t, []string{"cancels/a", "cancels/b", "cancelsx", "runs/r1"}, keys)
	keys, err = ss.List(ctx, "nothing/")
	require.NoError(t, err)
	require.Empty(t, keys)

	// More than one page (ListObjectsV2 returns at most 1000 keys a page).
	const n = 1005
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, err := ss.Put(ctx, fmt.Sprintf("many/%04d", i), nil, ports.WriteCondition{})
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	keys, err = ss.List(ctx, "many/")
	require.NoError(t, err)
	require.Len(t, keys, n)
	require.Equal(t, "many/0000", keys[0])
	require.Equal(t, fmt.Sprintf("many/%04d", n-1), keys[n-1])

	missing, err := s3.NewStateStore(c, "dagq-no-such-bucket", nil)
	require.NoError(t, err)
	_, err = missing.List(ctx, "")
	require.ErrorIs(t, err, ports.ErrNotFound)
	require.NoError(t, ss.Close())
	_, err = ss.List(ctx, "")
	require.ErrorIs(t, err, ports.ErrClosed)
}
