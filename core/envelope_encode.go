package core

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The envelope encoder below writes, byte for byte, what json.Marshal writes
// for an Envelope (FuzzEnvelopeCodec checks it), without reflection and with
// a single allocation for the output in the common case. The few inputs it
// does not handle itself (a time that RFC 3339 cannot represent, an empty
// non-nil input value) are left to json.Marshal, which words their errors.

// AppendEncode appends the envelope's wire form, exactly what Encode returns,
// to dst and returns the extended buffer. Like Encode, it writes a zero
// Version as EnvelopeVersion and a zero Attempt as 1, and refuses an invalid
// envelope (leaving dst as it was).
func (e Envelope) AppendEncode(dst []byte) ([]byte, error) {
	if e.Version == 0 {
		e.Version = EnvelopeVersion
	}
	if e.Attempt == 0 {
		e.Attempt = 1
	}
	if err := e.validate(); err != nil {
		return dst, err
	}
	if out, ok := e.appendJSON(dst); ok {
		return out, nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// encodedSizeHint estimates the length of the envelope's wire form, so that
// Encode allocates its buffer once.
func (e Envelope) encodedSizeHint() int {
	n := 160 + len(e.TaskID) + len(e.Task) + len(e.Args) + len(e.RunID) + len(e.StepID) + len(e.ReplyTo)
	for _, m := range [...]map[string]string{e.Labels, e.Meta, e.Params} {
		if len(m) > 0 { // (ranging over an empty map is not free)
			for k, v := range m {
				n += len(k) + len(v) + 6
			}
		}
	}
	if len(e.Inputs) > 0 {
		for k, v := range e.Inputs {
			n += len(k) + len(v) + 4
		}
	}
	if e.Retry != nil {
		n += 128
	}
	return n
}

// appendJSON appends the json.Marshal encoding of a validated envelope to
// dst. It reports false, with dst unusable, when it meets a value that
// json.Marshal refuses: the caller then lets json.Marshal produce the error.
func (e *Envelope) appendJSON(dst []byte) ([]byte, bool) {
	b := append(dst, `{"v":`...)
	b = strconv.AppendInt(b, int64(e.Version), 10)
	b = append(b, `,"id":`...)
	b = appendJSONString(b, e.TaskID)
	b = append(b, `,"task":`...)
	b = appendJSONString(b, e.Task)
	if e.Attempt != 0 {
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(e.Attempt), 10)
	}
	if len(e.Args) > 0 {
		b = append(b, `,"args":`...)
		b = appendCompactJSON(b, e.Args)
	}
	if len(e.Labels) > 0 {
		b = append(b, `,"labels":`...)
		b = appendStringMap(b, e.Labels)
	}
	if len(e.Meta) > 0 {
		b = append(b, `,"meta":`...)
		b = appendStringMap(b, e.Meta)
	}
	if e.RunID != "" {
		b = append(b, `,"run":`...)
		b = appendJSONString(b, e.RunID)
	}
	if e.StepID != "" {
		b = append(b, `,"step":`...)
		b = appendJSONString(b, e.StepID)
	}
	if len(e.Inputs) > 0 {
		b = append(b, `,"inputs":{`...)
		var buf [8]string
		for i, k := range sortedKeys(e.Inputs, buf[:0]) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			switch v := e.Inputs[k]; {
			case v == nil: // json.RawMessage.MarshalJSON writes a nil message as null
				b = append(b, "null"...)
			case len(v) == 0: // json.Marshal fails on it
				return nil, false
			default:
				b = appendCompactJSON(b, v)
			}
		}
		b = append(b, '}')
	}
	if len(e.Params) > 0 {
		b = append(b, `,"params":`...)
		b = appendStringMap(b, e.Params)
	}
	if !e.Deadline.IsZero() {
		var ok bool
		if b, ok = appendJSONTime(append(b, `,"deadline":`...), e.Deadline); !ok {
			return nil, false
		}
	}
	if e.ReplyTo != "" {
		b = append(b, `,"reply_to":`...)
		b = appendJSONString(b, e.ReplyTo)
	}
	if e.Progress {
		b = append(b, `,"progress":true`...)
	}
	if e.Retry != nil {
		// Rare, and its floats are best left to encoding/json.
		r, err := json.Marshal(e.Retry)
		if err != nil {
			return nil, false
		}
		b = append(append(b, `,"retry":`...), r...)
	}
	if !e.SentAt.IsZero() {
		var ok bool
		if b, ok = appendJSONTime(append(b, `,"sent_at":`...), e.SentAt); !ok {
			return nil, false
		}
	}
	return append(b, '}'), true
}

// appendJSONTime appends t as time.Time.MarshalJSON writes it (a quoted
// RFC 3339 time with nanoseconds), or reports false for a time that
// MarshalJSON refuses.
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	b, err := t.AppendText(append(b, '"'))
	if err != nil {
		return nil, false
	}
	return append(b, '"'), true
}

// appendStringMap appends m as a JSON object with sorted keys, as json.Marshal
// writes a map[string]string.
func appendStringMap(b []byte, m map[string]string) []byte {
	b = append(b, '{')
	var buf [8]string
	for i, k := range sortedKeys(m, buf[:0]) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return append(b, '}')
}

// sortedKeys appends the keys of m to keys (an empty slice, typically of a
// caller's array, so small maps sort without allocating) in ascending order.
func sortedKeys[V any](m map[string]V, keys []string) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

const hexDigits = "0123456789abcdef"

// htmlSafe[c] reports whether encoding/json writes the ASCII byte c unchanged
// inside a string (with HTML escaping on, as json.Marshal has it).
var htmlSafe = func() (t [utf8.RuneSelf]bool) {
	for c := range t {
		t[c] = c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString appends s as a quoted JSON string with the escaping of
// json.Marshal: ", \ and control characters escaped (\b, \f, \n, \r and \t by
// name, others as \u00XX), <, > and & as \u003c, \u003e and \u0026, U+2028 and
// U+2029 as \u2028 and \u2029, and each byte of invalid UTF-8 as \ufffd.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if htmlSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// compactSpecial marks the bytes appendCompactJSON must look at; all others
// are copied as they are.
var compactSpecial = func() (t [256]bool) {
	for _, c := range []byte(" \t\r\n\"\\<>&\xe2") {
		t[c] = true
	}
	return t
}()

// appendCompactJSON appends the valid JSON value src as json.Marshal writes a
// json.RawMessage: without insignificant whitespace, with <, > and & escaped
// as \u003c, \u003e and \u0026, and U+2028 and U+2029 as \u2028 and \u2029
// (all of which can only occur inside strings). src must be valid JSON.
func appendCompactJSON(b, src []byte) []byte {
	start := 0
	inString := false
	for i := 0; i < len(src); i++ {
		c := src[i]
		if !compactSpecial[c] {
			continue
		}
		switch {
		case c == '\\': // only inside a string: skip the escaped byte
			i++
		case c == '"':
			inString = !inString
		case c == '<' || c == '>' || c == '&':
			b = append(b, src[start:i]...)
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			start = i + 1
		case c == 0xe2:
			if i+2 < len(src) && src[i+1] == 0x80 && src[i+2]&^1 == 0xa8 {
				b = append(b, src[start:i]...)
				b = append(b, '\\', 'u', '2', '0', '2', hexDigits[src[i+2]&0xF])
				i += 2
				start = i + 1
			}
		case !inString: // whitespace between tokens
			b = append(b, src[start:i]...)
			start = i + 1
		}
	}
	return append(b, src[start:]...)
}
