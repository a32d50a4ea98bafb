package core

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/dagq/dagq/internal/wire"
)

// Message signing.
//
// A Client with Ports.Signer signs the encoded envelope of every task
// it sends with HMAC-SHA256 and puts the signature in the message attribute
// "dagq-sig" as "<key ID>:<MAC>", the MAC in unpadded base64url (RFC 4648
// §5). The MAC covers the full envelope bytes: for a claim-check message
// (attribute "dagq-payload") it is the stored envelope, not the short
// placeholder body, so the worker verifies after fetching it.
//
// A Worker with Ports.Verifier checks the signature of every delivery
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

// MinSigningKeyBytes is the shortest signing key NewSigner and NewVerifier
// accept: 32 bytes, the output size of SHA-256.
const MinSigningKeyBytes = wire.MinKeyBytes

// MaxSigningKeyIDLen is the longest key ID: 32 bytes.
const MaxSigningKeyIDLen = wire.MaxKeyIDLen

// ErrSignature is matched (errors.Is) by every error of Verifier.Verify: the
// signature is missing, malformed, by an unknown key, or does not match.
var ErrSignature = wire.ErrSignature

// ValidSigningKeyID reports whether id can name a signing key: 1 to
// MaxSigningKeyIDLen characters of [A-Za-z0-9_.-].
func ValidSigningKeyID(id string) bool { return wire.ValidKeyID(id) }

// Signer signs envelopes with one key (see Ports.Signer). It never
// prints its key: String, GoString and LogValue show the key ID only.
type Signer struct {
	s wire.Signer
}

// NewSigner returns a Signer for key, named id (1 to MaxSigningKeyIDLen of
// [A-Za-z0-9_.-]; it travels in clear in every message). The key must be at
// least MinSigningKeyBytes long; it is copied.
func NewSigner(id string, key []byte) (*Signer, error) {
	s, err := wire.NewSigner(id, key)
	if err != nil {
		return nil, fmt.Errorf("dagq: signer: %w", err)
	}
	return &Signer{s: s}, nil
}

// KeyID returns the ID of the signing key.
func (s *Signer) KeyID() string { return s.s.KeyID() }

// Sign returns the signature (the "dagq-sig" attribute's value) of an
// encoded envelope.
func (s *Signer) Sign(envelope []byte) string { return s.s.Sign(envelope) }

// String shows the key ID only.
func (s *Signer) String() string { return "core.Signer{key " + s.s.KeyID() + "}" }

// GoString shows the key ID only.
func (s *Signer) GoString() string { return s.String() }

// LogValue shows the key ID only.
func (s *Signer) LogValue() slog.Value { return slog.StringValue(s.String()) }

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

// Verifier checks the signatures of deliveries (see Ports.Verifier)
// against a set of keys. It never prints its keys.
type Verifier struct {
	v wire.Verifier
}

// NewVerifier validates opts and returns a Verifier. Errors name the key ID,
// never the key.
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	v, err := wire.NewVerifier(opts.Keys, opts.AcceptUnsigned)
	if err != nil {
		return nil, fmt.Errorf("dagq: verifier: %w", err)
	}
	return &Verifier{v: v}, nil
}

// KeyIDs returns the IDs of the accepted keys, sorted.
func (v *Verifier) KeyIDs() []string { return v.v.KeyIDs() }

// Verify checks sig (the "dagq-sig" attribute's value, "" when absent)
// against the encoded envelope. The MAC comparison is constant-time. Errors
// match ErrSignature and say what is wrong without echoing the attribute.
func (v *Verifier) Verify(envelope []byte, sig string) error { return v.v.Verify(envelope, sig) }

// String shows the key IDs only.
func (v *Verifier) String() string {
	return "core.Verifier{keys " + strings.Join(v.v.KeyIDs(), ", ") + "}"
}

// GoString shows the key IDs only.
func (v *Verifier) GoString() string { return v.String() }

// LogValue shows the key IDs only.
func (v *Verifier) LogValue() slog.Value { return slog.StringValue(v.String()) }
