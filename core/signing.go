package core

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
)

// Message signing.
//
// A Client with ClientOptions.Signer signs the encoded envelope of every task
// it sends with HMAC-SHA256 and puts the signature in the message attribute
// SignatureAttribute as "<key ID>:<MAC>", the MAC in unpadded base64url
// (RFC 4648 §5). The MAC covers the full envelope bytes: for a claim-check
// message (see PayloadAttribute) it is the stored envelope, not the short
// placeholder body, so the worker verifies after fetching it.
//
// A Worker with WorkerOptions.Verifier checks the signature of every delivery
// before decoding it. A delivery without a valid signature by a key the
// Verifier knows is never decoded or executed: it is recorded as a failed
// result under its message ID, with the reason (an error matching
// ErrSignature), and acked, like any other poison message. A claim-check
// object of such a delivery is not deleted (the reference is not trusted);
// the payload store's lifecycle rule removes it.
//
// Rotation: workers accept every key of their Verifier, clients sign with one
// key ID. To rotate, (1) add the new key to every worker's set, (2) switch
// the clients to the new key ID, (3) once no message signed with the old key
// can still be queued, remove it from the workers.

// SignatureAttribute is the message attribute that carries a task's
// signature: "<key ID>:<unpadded base64url HMAC-SHA256 of the envelope>".
const SignatureAttribute = "dagq-sig"

// MinSigningKeyBytes is the shortest signing key NewSigner and NewVerifier
// accept: 32 bytes, the output size of SHA-256.
const MinSigningKeyBytes = 32

// MaxSigningKeyIDLen is the longest key ID.
const MaxSigningKeyIDLen = 32

// ErrSignature is matched (errors.Is) by every error of Verifier.Verify: the
// signature is missing, malformed, by an unknown key, or does not match.
var ErrSignature = errors.New("message signature check failed")

// ValidSigningKeyID reports whether id can name a signing key: 1 to
// MaxSigningKeyIDLen characters of [A-Za-z0-9_.-].
func ValidSigningKeyID(id string) bool {
	if id == "" || len(id) > MaxSigningKeyIDLen {
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

// checkSigningKey validates one key; its errors name the key ID, never the
// key.
func checkSigningKey(id string, key []byte) error {
	if !ValidSigningKeyID(id) {
		// Not quoted: a key passed as its ID must not end up in a log.
		return fmt.Errorf("a signing key ID (%d bytes) is not valid: use 1 to %d of [A-Za-z0-9_.-]", len(id), MaxSigningKeyIDLen)
	}
	if len(key) < MinSigningKeyBytes {
		return fmt.Errorf("signing key %q is %d bytes; it must be at least %d", id, len(key), MinSigningKeyBytes)
	}
	return nil
}

// Signer signs envelopes with one key (see ClientOptions.Signer). It never
// prints its key: String, GoString and LogValue show the key ID only.
type Signer struct {
	id  string
	key []byte
}

// NewSigner returns a Signer for key, named id (1 to MaxSigningKeyIDLen of
// [A-Za-z0-9_.-]; it travels in clear in every message). The key must be at
// least MinSigningKeyBytes long; it is copied.
func NewSigner(id string, key []byte) (*Signer, error) {
	if err := checkSigningKey(id, key); err != nil {
		return nil, fmt.Errorf("dagq: signer: %w", err)
	}
	return &Signer{id: id, key: slices.Clone(key)}, nil
}

// KeyID returns the ID of the signing key.
func (s *Signer) KeyID() string { return s.id }

// Sign returns the SignatureAttribute value of an encoded envelope.
func (s *Signer) Sign(envelope []byte) string {
	return s.id + ":" + base64.RawURLEncoding.EncodeToString(mac(s.key, envelope))
}

// String shows the key ID only.
func (s *Signer) String() string { return "core.Signer{key " + s.id + "}" }

// GoString shows the key ID only.
func (s *Signer) GoString() string { return s.String() }

// LogValue shows the key ID only.
func (s *Signer) LogValue() slog.Value { return slog.StringValue(s.String()) }

func mac(key, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(body)
	return h.Sum(nil)
}

// VerifierOptions configures a Verifier.
type VerifierOptions struct {
	// Keys are the accepted signing keys by key ID. At least one; each at
	// least MinSigningKeyBytes long. They are copied.
	Keys map[string][]byte
	// AcceptUnsigned lets messages without a signature through unchecked (a
	// fleet turning signing on: workers first, then the clients). A message
	// that has a signature is still refused unless it is valid. Default
	// false: unsigned messages are refused.
	AcceptUnsigned bool
}

// Verifier checks the signatures of deliveries (see WorkerOptions.Verifier)
// against a set of keys. It never prints its keys.
type Verifier struct {
	keys           map[string][]byte
	ids            string // known key IDs, sorted, for messages
	acceptUnsigned bool
}

// NewVerifier validates opts and returns a Verifier. Errors name the key ID,
// never the key.
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	if len(opts.Keys) == 0 {
		return nil, errors.New("dagq: verifier: no keys")
	}
	keys := make(map[string][]byte, len(opts.Keys))
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(opts.Keys)) {
		if err := checkSigningKey(id, opts.Keys[id]); err != nil {
			errs = append(errs, err)
			continue
		}
		keys[id] = slices.Clone(opts.Keys[id])
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("dagq: verifier: %w", errors.Join(errs...))
	}
	return &Verifier{
		keys:           keys,
		ids:            strings.Join(slices.Sorted(maps.Keys(keys)), ", "),
		acceptUnsigned: opts.AcceptUnsigned,
	}, nil
}

// KeyIDs returns the IDs of the accepted keys, sorted.
func (v *Verifier) KeyIDs() []string { return slices.Sorted(maps.Keys(v.keys)) }

// Verify checks sig (the SignatureAttribute value, "" when absent) against
// the encoded envelope. The MAC comparison is constant-time. Errors match
// ErrSignature and say what is wrong without echoing the attribute.
func (v *Verifier) Verify(envelope []byte, sig string) error {
	if sig == "" {
		if v.acceptUnsigned {
			return nil
		}
		return fmt.Errorf("%w: signature missing (no %q attribute); this worker only runs messages signed "+
			"with one of its keys (%s)", ErrSignature, SignatureAttribute, v.ids)
	}
	id, enc, ok := strings.Cut(sig, ":")
	if !ok || !ValidSigningKeyID(id) {
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

// String shows the key IDs only.
func (v *Verifier) String() string { return "core.Verifier{keys " + v.ids + "}" }

// GoString shows the key IDs only.
func (v *Verifier) GoString() string { return v.String() }

// LogValue shows the key IDs only.
func (v *Verifier) LogValue() slog.Value { return slog.StringValue(v.String()) }
