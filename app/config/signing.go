package config

import (
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"

	"github.com/dagq/dagq/core"
)

// SigningConfig configures message signing (core.Signer, core.Verifier).
// Empty keys: signing is off. With keys, every worker of the process checks
// the signature of every task it receives (a task without a valid signature
// is never run) and every client signs with key_id.
//
// Errors about these keys never contain a key: they name the entry's
// position or its key ID.
type SigningConfig struct {
	KeyID    string `yaml:"key_id" doc:"ID of the key this process signs tasks with, one of signing.keys (required with them); empty only when signing is off"`
	Keys     string `yaml:"keys" secret:"true" doc:"signing keys workers accept: <key ID>=<base64 key>, separated by commas; each key at least 32 bytes; empty: signing off"`
	Required bool   `yaml:"required" doc:"with signing.keys set, workers refuse unsigned tasks; false accepts them (turning signing on across a fleet), but still refuses bad signatures"`
}

// Enabled reports whether signing is on (signing.keys is set).
func (s SigningConfig) Enabled() bool { return strings.TrimSpace(s.Keys) != "" }

// keyRing parses signing.keys: entries "<key ID>=<base64 key>" separated by
// commas or white space. The base64 may be standard or URL-safe, padded or
// not. Problems name the entry by position and, once it is known to be one,
// by key ID; they never quote the key or an unparsed entry (which may be a
// key).
func keyRing(s string) (map[string][]byte, []string) {
	entries := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	keys := make(map[string][]byte, len(entries))
	at := make(map[string]int, len(entries))
	var problems []string
	for i, e := range entries {
		n := i + 1
		id, b64, ok := strings.Cut(e, "=")
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("entry %d is not <key ID>=<base64 key>; valid: entries such as k1=<base64>, separated by commas", n))
			continue
		case !core.ValidSigningKeyID(id):
			problems = append(problems, fmt.Sprintf("entry %d: the key ID before \"=\" is not valid; valid: 1 to %d of [A-Za-z0-9_.-]", n, core.MaxSigningKeyIDLen))
			continue
		}
		if prev, dup := at[id]; dup {
			problems = append(problems, fmt.Sprintf("key ID %q appears twice (entries %d and %d); valid: one entry per key ID", id, prev, n))
			continue
		}
		at[id] = n
		key, err := decodeKey(b64)
		if err != nil {
			problems = append(problems, fmt.Sprintf("entry %d (key %q) is not base64; valid: the key in standard or URL-safe base64, e.g. from \"openssl rand -base64 32\"", n, id))
			continue
		}
		if len(key) < core.MinSigningKeyBytes {
			problems = append(problems, fmt.Sprintf("key %q is %d bytes; valid: at least %d bytes, e.g. from \"openssl rand -base64 32\"", id, len(key), core.MinSigningKeyBytes))
			continue
		}
		keys[id] = key
	}
	return keys, problems
}

func decodeKey(s string) ([]byte, error) {
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		var b []byte
		if b, err = enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, err
}

// validate reports the problems of the signing keys.
func (s SigningConfig) validate(bad func(key, format string, args ...any)) {
	keys, problems := keyRing(s.Keys)
	for _, p := range problems {
		bad("signing.keys", "%s", p)
	}
	ids := strings.Join(slices.Sorted(maps.Keys(keys)), ", ")
	switch {
	case s.KeyID != "" && !core.ValidSigningKeyID(s.KeyID):
		bad("signing.key_id", "%s; valid: empty (signing off) or the ID of one of signing.keys", showKeyID(s.KeyID))
	case !s.Enabled() && s.KeyID != "":
		bad("signing.key_id", "%q is set but signing.keys is empty; valid: empty (signing off), or the ID of one of signing.keys", s.KeyID)
	case !s.Enabled():
	case s.KeyID == "":
		bad("signing.key_id", "is required when signing.keys is set: the ID of the key this process signs tasks with; valid: one of %s", ids)
	case len(problems) == 0 && keys[s.KeyID] == nil:
		bad("signing.key_id", "%q is not in signing.keys; valid: one of %s", s.KeyID, ids)
	}
}

// showKeyID quotes a key ID for a message, unless it is not a valid ID (then
// it may be a key put in the wrong place).
func showKeyID(id string) string {
	if core.ValidSigningKeyID(id) {
		return fmt.Sprintf("%q", id)
	}
	return fmt.Sprintf("the value is not a key ID (1 to %d of [A-Za-z0-9_.-]; not quoted: it may be a key)", core.MaxSigningKeyIDLen)
}

// Signer returns the signer of signing.key_id, or nil when signing is off.
// The configuration must be valid (Validate).
func (s SigningConfig) Signer() (*core.Signer, error) {
	if !s.Enabled() {
		return nil, nil
	}
	keys, problems := keyRing(s.Keys)
	if len(problems) > 0 {
		return nil, fmt.Errorf("signing.keys: %s", problems[0])
	}
	key, ok := keys[s.KeyID]
	if !ok {
		return nil, fmt.Errorf("signing.key_id: %s is not in signing.keys", showKeyID(s.KeyID))
	}
	return core.NewSigner(s.KeyID, key)
}

// Verifier returns the verifier of signing.keys (accepting unsigned tasks
// unless signing.required), or nil when signing is off. The configuration
// must be valid (Validate).
func (s SigningConfig) Verifier() (*core.Verifier, error) {
	if !s.Enabled() {
		return nil, nil
	}
	keys, problems := keyRing(s.Keys)
	if len(problems) > 0 {
		return nil, fmt.Errorf("signing.keys: %s", problems[0])
	}
	return core.NewVerifier(core.VerifierOptions{Keys: keys, AcceptUnsigned: !s.Required})
}
