package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Message signatures: HMAC-SHA256 over the encoded envelope, in the message
// attribute SignatureAttribute. core.Signer and core.Verifier are the API
// over Signer and Verifier, and document the scheme and key rotation.

// SignatureAttribute is the message attribute that carries a task's
// signature: "<key ID>:<unpadded base64url HMAC-SHA256 of the envelope>"
// (RFC 4648 §5). For a claim-check message the MAC covers the stored
// envelope, not the placeholder body.
const SignatureAttribute = "dagq-sig"

// MinKeyBytes is the shortest signing key: 32 bytes, the output size of
// SHA-256.
const MinKeyBytes = 32

// MaxKeyIDLen is the longest key ID.
const MaxKeyIDLen = 32

// ErrSignature is matched (errors.Is) by every error of Verifier.Verify: the
// signature is missing, malformed, by an unknown key, or does not match.
var ErrSignature = errors.New("message signature check failed")

// ValidKeyID reports whether id can name a signing key: 1 to MaxKeyIDLen
// characters of [A-Za-z0-9_.-].
func ValidKeyID(id string) bool {
	if id == "" || len(id) > MaxKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// checkKey validates one key; its errors name the key ID, never the key.
func checkKey(id string, key []byte) error {
	if !ValidKeyID(id) {
		// Not quoted: a key passed as its ID must not end up in a log.
		return fmt.Errorf("a signing key ID (%d bytes) is not valid: use 1 to %d of [A-Za-z0-9_.-]", len(id), MaxKeyIDLen)
	}
	if len(key) < MinKeyBytes {
		return fmt.Errorf("signing key %q is %d bytes; it must be at least %d", id, len(key), MinKeyBytes)
	}
	return nil
}

// Signer signs envelopes with one key.
type Signer struct {
	id  string
	key []byte
}

// NewSigner returns a Signer for key, named id. The key is copied. Errors
// name the key ID, never the key.
func NewSigner(id string, key []byte) (Signer, error) {
	if err := checkKey(id, key); err != nil {
		return Signer{}, err
	}
	return Signer{id: id, key: slices.Clone(key)}, nil
}

// KeyID returns the ID of the signing key.
func (s Signer) KeyID() string { return s.id }

// Sign returns the SignatureAttribute value of an encoded envelope.
func (s Signer) Sign(envelope []byte) string {
	return s.id + ":" + base64.RawURLEncoding.EncodeToString(mac(s.key, envelope))
}

func mac(key, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(body)
	return h.Sum(nil)
}

// Verifier checks signatures against a set of keys.
type Verifier struct {
	keys           map[string][]byte
	ids            string // known key IDs, sorted, for messages
	acceptUnsigned bool
}

// NewVerifier returns a Verifier for keys (by key ID; copied) that, if
// acceptUnsigned, lets messages without a signature through. Errors name
// the key IDs, never the keys.
func NewVerifier(keys map[string][]byte, acceptUnsigned bool) (Verifier, error) {
	if len(keys) == 0 {
		return Verifier{}, errors.New("no keys")
	}
	v := Verifier{keys: make(map[string][]byte, len(keys)), acceptUnsigned: acceptUnsigned}
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(keys)) {
		if err := checkKey(id, keys[id]); err != nil {
			errs = append(errs, err)
			continue
		}
		v.keys[id] = slices.Clone(keys[id])
	}
	if len(errs) > 0 {
		return Verifier{}, errors.Join(errs...)
	}
	v.ids = strings.Join(v.KeyIDs(), ", ")
	return v, nil
}

// KeyIDs returns the IDs of the accepted keys, sorted.
func (v Verifier) KeyIDs() []string { return slices.Sorted(maps.Keys(v.keys)) }

// Verify checks sig (the SignatureAttribute value, "" when absent) against
// the encoded envelope. The MAC comparison is constant-time. Errors match
// ErrSignature and say what is wrong without echoing the attribute.
func (v Verifier) Verify(envelope []byte, sig string) error {
	if sig == "" {
		if v.acceptUnsigned {
			return nil
		}
		return fmt.Errorf("%w: signature missing (no %q attribute); this worker only runs messages signed "+
			"with one of its keys (%s)", ErrSignature, SignatureAttribute, v.ids)
	}
	id, enc, ok := strings.Cut(sig, ":")
	if !ok || !ValidKeyID(id) {
		return fmt.Errorf("%w: malformed %q attribute; want \"<key ID>:<base64url HMAC-SHA256>\"",
			ErrSignature, SignatureAttribute)
	}
	key, known := v.keys[id]
	if !known {
		return fmt.Errorf("%w: unknown signing key %q; known: %s", ErrSignature, id, v.ids)
	}
	got, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: malformed %q attribute (key %q): the MAC is not %d bytes of unpadded base64url",
			ErrSignature, SignatureAttribute, id, sha256.Size)
	}
	if !hmac.Equal(got, mac(key, envelope)) {
		return fmt.Errorf("%w: signature does not match (key %q): the message was altered, "+
			"or signed with another key under that ID", ErrSignature, id)
	}
	return nil
}
