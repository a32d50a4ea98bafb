package sqs

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Reserved message attributes. User attribute names starting with
// reservedPrefix are refused.
const (
	reservedPrefix = "dagq-"
	// attrID carries ports.Message.ID.
	attrID = "dagq-id"
	// attrEncoding says how the SQS body encodes ports.Message.Body.
	attrEncoding = "dagq-enc"

	// encBase64: the body is the standard base64 encoding of a non-empty body.
	encBase64 = "base64"
	// encEmpty: the body was empty; the SQS body is emptyPlaceholder (SQS
	// refuses empty bodies).
	encEmpty         = "empty"
	emptyPlaceholder = "-"
)

// encodeBody returns the SQS body and the value of attrEncoding for body.
// SQS bodies must be non-empty and consist of valid XML characters, so any
// bytes are base64-encoded (4/3 of their size).
func encodeBody(body []byte) (string, string) {
	if len(body) == 0 {
		return emptyPlaceholder, encEmpty
	}
	return base64.StdEncoding.EncodeToString(body), encBase64
}

// decodeBody reverses encodeBody. A message without attrEncoding (sent by
// something other than dagq) is delivered as its raw text.
func decodeBody(body, enc string) ([]byte, error) {
	switch enc {
	case encEmpty:
		return []byte{}, nil
	case encBase64:
		b, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return nil, fmt.Errorf("decode base64 body: %w", err)
		}
		return b, nil
	case "":
		return []byte(body), nil
	default:
		return nil, fmt.Errorf("unknown body encoding %q", enc)
	}
}

// fifoToken returns s when it is valid as a MessageDeduplicationId or
// MessageGroupId (1 to 128 characters of [A-Za-z0-9] and ASCII
// punctuation), and otherwise "sha256-" followed by the hex SHA-256 of s
// (71 characters), which is valid and stable.
func fifoToken(s string) string {
	if validToken(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + hex.EncodeToString(sum[:])
}

func validToken(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c > ' ' && c < 0x7f: // ASCII punctuation
		default:
			return false
		}
	}
	return true
}

// validAttrName applies the ports.Message rules for attribute names plus
// the reserved prefix.
func validAttrName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("attribute name %q: must be 1 to 128 bytes", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("attribute name %q: only [A-Za-z0-9_.-] allowed", name)
		}
	}
	lower := strings.ToLower(name)
	if strings.HasPrefix(lower, "aws.") || strings.HasPrefix(lower, "amazon.") {
		return fmt.Errorf("attribute name %q: aws. and amazon. prefixes are reserved", name)
	}
	if strings.HasPrefix(name, reservedPrefix) {
		return fmt.Errorf("attribute name %q: the %s prefix is reserved by the adapter", name, reservedPrefix)
	}
	return nil
}
