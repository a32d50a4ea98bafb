package sqs

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Reserved message attributes: the adapter's own two names are refused as
// user attribute names. Other "dagq-" names belong to core (such as its
// claim-check attribute "dagq-payload") and travel like any attribute.
const (
	// attrID carries ports.Message.ID.
	attrID = "dagq-id"
	// attrEncoding says how the SQS body encodes ports.Message.Body.
	attrEncoding = "dagq-enc"

	// encText: the body is the message body itself, valid UTF-8 made only
	// of the characters SQS accepts (see validSQSText).
	encText = "text"
	// encBase64: the body is the standard base64 encoding of a non-empty body
	// that is not such text.
	encBase64 = "base64"
	// encEmpty: the body was empty; the SQS body is emptyPlaceholder (SQS
	// refuses empty bodies).
	encEmpty         = "empty"
	emptyPlaceholder = "-"
)

// encodeBody returns the SQS body and the value of attrEncoding for body.
// SQS bodies must be non-empty and consist of valid XML characters: a body
// that is such text travels as it is (encText, its own size), any other
// non-empty body base64-encoded (encBase64, 4/3 of its size).
func encodeBody(body []byte) (string, string) {
	if len(body) == 0 {
		return emptyPlaceholder, encEmpty
	}
	if validSQSText(body) {
		return string(body), encText
	}
	return base64.StdEncoding.EncodeToString(body), encBase64
}

// decodeBody reverses encodeBody, for every encoding dagq ever sent. A
// message without attrEncoding (sent by something other than dagq, or a
// completion or cancel request in text) is delivered as its raw text.
func decodeBody(body, enc string) ([]byte, error) {
	switch enc {
	case encEmpty:
		return []byte{}, nil
	case encText:
		return []byte(body), nil
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

// plainEntry is a batch entry carrying body (non-empty) as text when SQS
// accepts it as it is, without attributes (so it reads as raw text), and
// otherwise base64-encoded with the attrEncoding attribute. Completions and
// cancel requests travel this way; the caller sets the Id.
func plainEntry(body []byte) types.SendMessageBatchRequestEntry {
	wire, enc := encodeBody(body)
	e := types.SendMessageBatchRequestEntry{MessageBody: aws.String(wire)}
	if enc != encText {
		e.MessageAttributes = map[string]types.MessageAttributeValue{attrEncoding: stringAttr(enc)}
	}
	return e
}

// validSQSText reports whether b is valid UTF-8 made only of the characters
// SQS accepts in a message body (#x9, #xA, #xD, #x20–#xD7FF, #xE000–#xFFFD,
// #x10000–#x10FFFF).
func validSQSText(b []byte) bool {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		switch {
		case r == 0x9, r == 0xA, r == 0xD:
		case r >= 0x20 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
		b = b[n:]
	}
	return true
}

func stringAttr(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
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
// the adapter's reserved names.
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
	if name == attrID || name == attrEncoding {
		return fmt.Errorf("attribute name %q is reserved by the adapter (it carries the message ID and the body encoding)", name)
	}
	return nil
}
