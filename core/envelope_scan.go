package core

import (
	"encoding/json"
	"unicode/utf8"
)

// jsonScanner checks and skips JSON syntax in body from pos on, accepting
// exactly what encoding/json accepts (FuzzEnvelopeCodec checks it), except
// that it gives up on values nested deeper than maxRawDepth. It is the
// lexer of the fast envelope decoder, and validJSON.
type jsonScanner struct {
	body []byte
	pos  int
}

// maxRawDepth bounds the nesting of the values jsonScanner checks itself;
// deeper ones are left to encoding/json (which allows 10000).
const maxRawDepth = 256

// validJSON reports whether b is valid JSON, as json.Valid does (and in the
// rare cases jsonScanner cannot tell, by calling it).
func validJSON(b []byte) bool {
	p := jsonScanner{body: b}
	p.skipSpace()
	if p.skipValue(0) {
		p.skipSpace()
		if p.pos == len(b) {
			return true
		}
	}
	return json.Valid(b) // decides on anything the scanner refuses
}

// skipSpace skips JSON whitespace.
func (p *jsonScanner) skipSpace() {
	for p.pos < len(p.body) {
		switch p.body[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// consume skips the byte c if it is next.
func (p *jsonScanner) consume(c byte) bool {
	if p.pos < len(p.body) && p.body[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

// consumeLiteral skips lit if it is next.
func (p *jsonScanner) consumeLiteral(lit string) bool {
	if len(p.body)-p.pos >= len(lit) && string(p.body[p.pos:p.pos+len(lit)]) == lit {
		p.pos += len(lit)
		return true
	}
	return false
}

// str checks the JSON string at p.pos, skips it and returns where its
// contents are in body, noting whether they need decoding.
func (p *jsonScanner) str() (span, bool) {
	if !p.consume('"') {
		return span{}, false
	}
	s := span{start: p.pos}
	b := p.body
	for i := p.pos; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			s.end, p.pos = i, i+1
			return s, true
		case c < 0x20:
			return span{}, false
		case c == '\\':
			s.unquote = true
			if i+1 >= len(b) {
				return span{}, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if hex4(b, i+2) < 0 {
					return span{}, false
				}
				i += 5
			default:
				return span{}, false
			}
		case c >= utf8.RuneSelf:
			s.unquote = true
		}
	}
	return span{}, false
}

// rawValue checks that a valid JSON value is next, skips it and returns where
// it is in body.
func (p *jsonScanner) rawValue() (span, bool) {
	start := p.pos
	if !p.skipValue(0) {
		return span{}, false
	}
	return span{start: start, end: p.pos}, true
}

// skipValue skips a JSON value, checking its syntax as json.Valid does, at
// nesting depth depth.
func (p *jsonScanner) skipValue(depth int) bool {
	if p.pos >= len(p.body) {
		return false
	}
	switch c := p.body[p.pos]; {
	case c == '"':
		return p.skipString()
	case c == '{' || c == '[':
		if depth >= maxRawDepth {
			return false
		}
		return p.skipContainer(depth)
	case c == '-' || '0' <= c && c <= '9':
		return p.skipNumber()
	case c == 't':
		return p.consumeLiteral("true")
	case c == 'f':
		return p.consumeLiteral("false")
	case c == 'n':
		return p.consumeLiteral("null")
	}
	return false
}

// skipContainer skips the object or array at p.pos.
func (p *jsonScanner) skipContainer(depth int) bool {
	object := p.body[p.pos] == '{'
	end := byte(']')
	if object {
		end = '}'
	}
	p.pos++
	p.skipSpace()
	if p.consume(end) {
		return true
	}
	for {
		if object {
			if p.pos >= len(p.body) || p.body[p.pos] != '"' || !p.skipString() {
				return false
			}
			p.skipSpace()
			if !p.consume(':') {
				return false
			}
			p.skipSpace()
		}
		if !p.skipValue(depth + 1) {
			return false
		}
		p.skipSpace()
		if p.consume(end) {
			return true
		}
		if !p.consume(',') {
			return false
		}
		p.skipSpace()
	}
}

// skipString skips the string at p.pos (which must be at its opening quote),
// checking its escapes; like encoding/json, it accepts any bytes from 0x20 on,
// including invalid UTF-8.
func (p *jsonScanner) skipString() bool {
	_, ok := p.str()
	return ok
}

// skipNumber skips the number at p.pos, checking the JSON number grammar.
func (p *jsonScanner) skipNumber() bool {
	p.consume('-')
	switch {
	case p.consume('0'):
	case p.pos < len(p.body) && '1' <= p.body[p.pos] && p.body[p.pos] <= '9':
		p.skipDigits()
	default:
		return false
	}
	if p.consume('.') && !p.skipDigits() {
		return false
	}
	if p.consume('e') || p.consume('E') {
		if !p.consume('+') {
			p.consume('-')
		}
		if !p.skipDigits() {
			return false
		}
	}
	return true
}

// skipDigits skips decimal digits and reports whether there was at least one.
func (p *jsonScanner) skipDigits() bool {
	start := p.pos
	for p.pos < len(p.body) && '0' <= p.body[p.pos] && p.body[p.pos] <= '9' {
		p.pos++
	}
	return p.pos > start
}

// hex4 returns the value of the four hex digits at b[i:], or -1.
func hex4(b []byte, i int) rune {
	if i < 0 || len(b)-i < 4 {
		return -1
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
