package porttest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/ports"
)

// TestPayloadStore runs the PayloadStore conformance suite against the
// stores of h.
func TestPayloadStore(t *testing.T, h PayloadHarness) {
	e := newEnv(h.Features())
	tests := []struct {
		name string
		fn   func(*testing.T, env, PayloadHarness)
	}{
		{"PutGetOverwriteDelete", testPayloadPutGetOverwriteDelete},
		{"GetMissing", testPayloadGetMissing},
		{"DeleteMissing", testPayloadDeleteMissing},
		{"BinaryData", testPayloadBinaryData},
		{"DataIsCopied", testPayloadDataIsCopied},
		{"VisibleAcrossStores", testPayloadVisibleAcrossStores},
		{"Validation", testPayloadValidation},
		{"Closed", testPayloadClosed},
	}
	for _, tc := range tests {
		e.run(t, tc.name, needNothing, func(t *testing.T) { tc.fn(t, e, h) })
	}
}

func testPayloadPutGetOverwriteDelete(t *testing.T, e env, h PayloadHarness) {
	ctx := e.ctx(t)
	s := h.NewStore(t, 1)[0]
	k1, k2 := "runs/run-1/steps/a/payload", "runs/run-1/steps/b/payload"
	require.NoError(t, s.Put(ctx, k1, []byte("v1")))
	got, err := s.Get(ctx, k1)
	require.NoError(t, err)
	requireBytes(t, []byte("v1"), got)

	require.NoError(t, s.Put(ctx, k1, []byte("version two")), "overwrite")
	got, err = s.Get(ctx, k1)
	require.NoError(t, err)
	requireBytes(t, []byte("version two"), got)

	require.NoError(t, s.Put(ctx, k2, []byte("v2")))
	require.NoError(t, s.Delete(ctx, k1, k2))
	for _, k := range []string{k1, k2} {
		_, err = s.Get(ctx, k)
		require.ErrorIs(t, err, ports.ErrNotFound, "Get of deleted %s", k)
	}
}

func testPayloadGetMissing(t *testing.T, e env, h PayloadHarness) {
	ctx := e.ctx(t)
	s := h.NewStore(t, 1)[0]
	_, err := s.Get(ctx, "no/such/key")
	require.ErrorIs(t, err, ports.ErrNotFound)
}

func testPayloadDeleteMissing(t *testing.T, e env, h PayloadHarness) {
	ctx := e.ctx(t)
	s := h.NewStore(t, 1)[0]
	require.NoError(t, s.Delete(ctx, "no/such/key"))
	require.NoError(t, s.Put(ctx, "present", []byte("x")))
	require.NoError(t, s.Delete(ctx, "missing-1", "present", "missing-2"))
	require.NoError(t, s.Delete(ctx, "present"), "second Delete")
	_, err := s.Get(ctx, "present")
	require.ErrorIs(t, err, ports.ErrNotFound)
}

func testPayloadBinaryData(t *testing.T, e env, h PayloadHarness) {
	ctx := e.ctx(t)
	s := h.NewStore(t, 1)[0]
	cases := map[string][]byte{
		"all-bytes":    allBytes(),
		"invalid-utf8": {0xff, 0xfe, 0xc3, 0x28, 0x80},
		"nul":          {0, 0, 0},
		"one-mebibyte": pattern(1 << 20),
		"empty":        {},
	}
	for k, data := range cases {
		require.NoError(t, s.Put(ctx, k, data), "Put %s", k)
	}
	for k, data := range cases {
		got, err := s.Get(ctx, k)
		require.NoError(t, err, "Get %s", k)
		requireBytes(t, data, got, "data of %s", k)
	}
}

func testPayloadDataIsCopied(t *testing.T, e env, h PayloadHarness) {
	ctx := e.ctx(t)
	s := h.NewStore(t, 1)[0]
	data := []byte("original")
	require.NoError(t, s.Put(ctx, "k", data))
	data[0] = 'X'
	got, err := s.Get(ctx, "k")
	require.NoError(t, err)
	requireBytes(t, []byte("original"), got, "after mutating the stored slice")
	got[0] = 'Y'
	got, err = s.Get(ctx, "k")
	require.NoError(t, err)
	requireBytes(t, []byte("original"), got, "after mutating a returned slice")
}

func testPayloadVisibleAcrossStores(t *testing.T, e env, h PayloadHarness) {
	ctx := e.ctx(t)
	ss := h.NewStore(t, 3)
	require.NoError(t, ss[0].Put(ctx, "k", []byte("shared")))
	got, err := ss[1].Get(ctx, "k")
	require.NoError(t, err)
	requireBytes(t, []byte("shared"), got)
	require.NoError(t, ss[2].Delete(ctx, "k"))
	_, err = ss[0].Get(ctx, "k")
	require.ErrorIs(t, err, ports.ErrNotFound)
}

func testPayloadValidation(t *testing.T, e env, h PayloadHarness) {
	ctx := e.ctx(t)
	s := h.NewStore(t, 1)[0]
	eleven := make([]string, ports.MaxBatch+1)
	for i := range eleven {
		eleven[i] = fmt.Sprintf("k-%d", i)
	}
	require.ErrorIs(t, s.Put(ctx, "", []byte("x")), ports.ErrInvalidArgument, "Put with an empty key")
	require.ErrorIs(t, s.Delete(ctx), ports.ErrInvalidArgument, "Delete of no keys")
	require.ErrorIs(t, s.Delete(ctx, eleven...), ports.ErrInvalidArgument, "Delete of more than MaxBatch keys")
}

func testPayloadClosed(t *testing.T, e env, h PayloadHarness) {
	ctx := e.ctx(t)
	ss := h.NewStore(t, 2)
	require.NoError(t, ss[0].Put(ctx, "k", []byte("v")))
	require.NoError(t, ss[0].Close())
	require.ErrorIs(t, ss[0].Put(ctx, "k2", []byte("v")), ports.ErrClosed, "Put")
	_, err := ss[0].Get(ctx, "k")
	require.ErrorIs(t, err, ports.ErrClosed, "Get")
	require.ErrorIs(t, ss[0].Delete(ctx, "k"), ports.ErrClosed, "Delete")
	require.NoError(t, ss[0].Close(), "second Close")

	got, err := ss[1].Get(ctx, "k")
	require.NoError(t, err, "another store is unaffected")
	requireBytes(t, []byte("v"), got)
}
