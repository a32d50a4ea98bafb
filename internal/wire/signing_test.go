package wire_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/internal/wire"
)

func TestSignature_Format(t *testing.T) {
	key := bytes.Repeat([]byte{1}, wire.MinKeyBytes)
	s, err := wire.NewSigner("k1", key)
	require.NoError(t, err)
	body := []byte(`{"v":1,"id":"x","task":"t"}`)
	sig := s.Sign(body)
	// The key ID, then HMAC-SHA256 of body under 32 bytes of 0x01 in
	// unpadded base64url (computed independently, with Python's hmac):
	// signers and verifiers of every release agree.
	require.Equal(t, "k1:wjr1z8051Fuf1qzOAxb9pfkIMb33h2ci7QmWFbnuX_k", sig)

	key[0] = 2 // the signer has its own copy
	require.Equal(t, sig, s.Sign(body))
}

func TestVerifier_Errors(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 48)
	v, err := wire.NewVerifier(map[string][]byte{"k2": k2, "k1": k1}, false)
	require.NoError(t, err)
	require.Equal(t, []string{"k1", "k2"}, v.KeyIDs())
	s1, err := wire.NewSigner("k1", k1)
	require.NoError(t, err)
	other, err := wire.NewSigner("k1", k2)
	require.NoError(t, err)
	body := []byte(`{"v":1,"id":"x","task":"t"}`)
	require.NoError(t, v.Verify(body, s1.Sign(body)))

	for name, tc := range map[string]struct{ sig, want string }{
		"missing":       {"", `signature missing (no "dagq-sig" attribute); this worker only runs messages signed with one of its keys (k1, k2)`},
		"no colon":      {"k1", `malformed "dagq-sig" attribute`},
		"bad key ID":    {"k 1:AAAA", `malformed "dagq-sig" attribute`},
		"unknown key":   {"k9:AAAA", `unknown signing key "k9"; known: k1, k2`},
		"not base64url": {"k1:***", `malformed "dagq-sig" attribute (key "k1"): the MAC is not 32 bytes`},
		"short MAC":     {"k1:AAAA", `malformed "dagq-sig" attribute (key "k1"): the MAC is not 32 bytes`},
		"other key":     {other.Sign(body), `signature does not match (key "k1")`},
		"altered body":  {s1.Sign(append([]byte{' '}, body...)), `signature does not match (key "k1")`},
	} {
		t.Run(name, func(t *testing.T) {
			err := v.Verify(body, tc.sig)
			require.ErrorIs(t, err, wire.ErrSignature)
			require.ErrorContains(t, err, tc.want)
		})
	}

	lax, err := wire.NewVerifier(map[string][]byte{"k1": k1}, true)
	require.NoError(t, err)
	require.NoError(t, lax.Verify(body, ""), "accept unsigned")
	require.ErrorIs(t, lax.Verify(body, other.Sign(body)), wire.ErrSignature, "but not a bad signature")
}

func TestKeys_Validated(t *testing.T) {
	require.True(t, wire.ValidKeyID("Mixed.Case_name-1"))
	require.True(t, wire.ValidKeyID(strings.Repeat("k", wire.MaxKeyIDLen)))
	for _, id := range []string{"", "k:1", "k 1", "é", strings.Repeat("k", wire.MaxKeyIDLen+1)} {
		require.False(t, wire.ValidKeyID(id), id)
	}
	_, err := wire.NewSigner("k1", make([]byte, wire.MinKeyBytes-1))
	require.EqualError(t, err, `signing key "k1" is 31 bytes; it must be at least 32`)
	_, err = wire.NewVerifier(nil, false)
	require.EqualError(t, err, "no keys")
	_, err = wire.NewVerifier(map[string][]byte{"a b": make([]byte, 32), "b": []byte("short")}, false)
	require.ErrorContains(t, err, "a signing key ID (3 bytes) is not valid")
	require.ErrorContains(t, err, `signing key "b" is 5 bytes`)
	require.NotContains(t, err.Error(), "short")
}
