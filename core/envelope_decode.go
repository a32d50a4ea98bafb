package core

import (
	"encoding/json"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeEnvelopeFast is the fast path of DecodeEnvelope: a hand-written
// parser for the JSON object Encode writes (its fields in any order, with any
// whitespace and escapes). When it reports ok, the envelope is exactly what
// json.Unmarshal would have produced (before checked), body is valid JSON and
// so are Args and every Inputs value. It reports !ok, without a word about
// why, for anything it does not handle — an unknown, duplicate or
// differently cased field name, a null, a number that is not a small integer,
// invalid JSON — and DecodeEnvelope then decodes body with encoding/json,
// which decides and words the error. It never panics.
//
// The envelope's strings share one allocation, and its raw JSON values
// (copied out of body, which the caller may reuse) another.
func decodeEnvelopeFast(body []byte) (e Envelope, ok bool) {
	p := envelopeParser{jsonScanner: jsonScanner{body: body}}
	if !p.envelope(&e) {
		return Envelope{}, false
	}
	p.skipSpace()
	if p.pos != len(body) {
		return Envelope{}, false
	}
	p.finish(&e)
	return e, true
}

// envelope fields, as bits of envelopeParser.seen.
const (
	fieldVersion uint32 = 1 << iota
	fieldID
	fieldTask
	fieldAttempt
	fieldArgs
	fieldLabels
	fieldMeta
	fieldRun
	fieldStep
	fieldInputs
	fieldParams
	fieldDeadline
	fieldReplyTo
	fieldProgress
	fieldRetry
	fieldSentAt
)

// span is a range of bytes: of the body while parsing (for a string, its
// contents without the quotes), of the envelope's strings once finished.
type span struct {
	start, end int
	// unquote is set for a string with escapes or non-ASCII bytes, which
	// must be decoded rather than copied.
	unquote bool
}

// mapEntry is one key/value of a map field, kept until finish builds the
// maps; for fieldInputs the value is the raw JSON value.
type mapEntry struct {
	field    uint32
	key, val span
}

// envelopeParser holds the state of decodeEnvelopeFast. It lives on the
// stack (so it keeps no pointers into itself): the first map entries are in
// an array, the rest (rare) in a slice.
type envelopeParser struct {
	jsonScanner
	seen uint32
	// the string and args fields, as spans of body
	id, task, run, step, replyTo, args span
	// the map entries: entryBuf[:nEntries], then moreEntries
	entryBuf    [16]mapEntry
	nEntries    int
	moreEntries []mapEntry
}

// envelope parses the top-level object into e, leaving the string, map and
// raw fields to finish.
func (p *envelopeParser) envelope(e *Envelope) bool {
	p.skipSpace()
	if !p.consume('{') {
		return false
	}
	p.skipSpace()
	if p.consume('}') {
		return true
	}
	for {
		key, ok := p.plainKey()
		if !ok {
			return false
		}
		p.skipSpace()
		if !p.consume(':') {
			return false
		}
		p.skipSpace()
		var field uint32
		switch string(key) {
		case "v":
			field = fieldVersion
			e.Version, ok = p.smallInt()
		case "id":
			field = fieldID
			p.id, ok = p.str()
		case "task":
			field = fieldTask
			p.task, ok = p.str()
		case "attempt":
			field = fieldAttempt
			e.Attempt, ok = p.smallInt()
		case "args":
			field = fieldArgs
			p.args, ok = p.rawValue()
		case "labels":
			field = fieldLabels
			ok = p.mapObject(fieldLabels)
		case "meta":
			field = fieldMeta
			ok = p.mapObject(fieldMeta)
		case "run":
			field = fieldRun
			p.run, ok = p.str()
		case "step":
			field = fieldStep
			p.step, ok = p.str()
		case "inputs":
			field = fieldInputs
			ok = p.mapObject(fieldInputs)
		case "params":
			field = fieldParams
			ok = p.mapObject(fieldParams)
		case "deadline":
			field = fieldDeadline
			e.Deadline, ok = p.time()
		case "reply_to":
			field = fieldReplyTo
			p.replyTo, ok = p.str()
		case "progress":
			field = fieldProgress
			e.Progress, ok = p.boolean()
		case "retry":
			field = fieldRetry
			e.Retry, ok = p.retry()
		case "sent_at":
			field = fieldSentAt
			e.SentAt, ok = p.time()
		}
		if !ok || field == 0 || p.seen&field != 0 {
			return false
		}
		p.seen |= field
		p.skipSpace()
		if p.consume('}') {
			return true
		}
		if !p.consume(',') {
			return false
		}
		p.skipSpace()
	}
}

// finish sets the string, map and raw fields of e from the spans the parser
// collected: all strings are substrings of one, all raw values slices of one
// copied buffer.
func (p *envelopeParser) finish(e *Envelope) {
	entries, more := p.entryBuf[:p.nEntries], p.moreEntries

	// Gather the strings, decoded, into one.
	strFields := [...]struct {
		field uint32
		s     *span
	}{{fieldID, &p.id}, {fieldTask, &p.task}, {fieldRun, &p.run}, {fieldStep, &p.step}, {fieldReplyTo, &p.replyTo}}
	size, rawSize := 0, 0
	for _, f := range strFields {
		size += f.s.end - f.s.start
	}
	if p.seen&fieldArgs != 0 {
		rawSize += p.args.end - p.args.start
	}
	var nLabels, nMeta, nParams, nInputs int
	for _, list := range [2][]mapEntry{entries, more} {
		for _, en := range list {
			size += en.key.end - en.key.start
			switch en.field {
			case fieldLabels:
				nLabels++
			case fieldMeta:
				nMeta++
			case fieldParams:
				nParams++
			case fieldInputs:
				nInputs++
				rawSize += en.val.end - en.val.start
				continue
			}
			size += en.val.end - en.val.start
		}
	}
	var sb strings.Builder
	sb.Grow(size) // enough, unless invalid UTF-8 grows into U+FFFD
	for _, f := range strFields {
		*f.s = p.decodeString(&sb, *f.s)
	}
	for _, list := range [2][]mapEntry{entries, more} {
		for i := range list {
			list[i].key = p.decodeString(&sb, list[i].key)
			if list[i].field != fieldInputs {
				list[i].val = p.decodeString(&sb, list[i].val)
			}
		}
	}
	strs := sb.String()
	e.TaskID = strs[p.id.start:p.id.end]
	e.Task = strs[p.task.start:p.task.end]
	e.RunID = strs[p.run.start:p.run.end]
	e.StepID = strs[p.step.start:p.step.end]
	e.ReplyTo = strs[p.replyTo.start:p.replyTo.end]

	// Copy the raw values into one buffer.
	raw := make([]byte, 0, rawSize)
	copyRaw := func(s span) json.RawMessage {
		n := len(raw)
		raw = append(raw, p.body[s.start:s.end]...)
		return raw[n:len(raw):len(raw)] // capped: appending to it copies
	}
	if p.seen&fieldArgs != 0 {
		e.Args = copyRaw(p.args)
	}

	if p.seen&fieldLabels != 0 {
		e.Labels = make(map[string]string, nLabels)
	}
	if p.seen&fieldMeta != 0 {
		e.Meta = make(map[string]string, nMeta)
	}
	if p.seen&fieldParams != 0 {
		e.Params = make(map[string]string, nParams)
	}
	if p.seen&fieldInputs != 0 {
		e.Inputs = make(map[string]json.RawMessage, nInputs)
	}
	// In entry order, so that a repeated key keeps its last value, as with
	// json.Unmarshal.
	for _, list := range [2][]mapEntry{entries, more} {
		for _, en := range list {
			key := strs[en.key.start:en.key.end]
			switch en.field {
			case fieldLabels:
				e.Labels[key] = strs[en.val.start:en.val.end]
			case fieldMeta:
				e.Meta[key] = strs[en.val.start:en.val.end]
			case fieldParams:
				e.Params[key] = strs[en.val.start:en.val.end]
			case fieldInputs:
				e.Inputs[key] = copyRaw(en.val) // a span of body
			}
		}
	}
}

// decodeString writes the contents of the string at s (a span of body,
// checked by str) to sb, decoded as json.Unmarshal decodes them: escapes
// resolved, each byte of invalid UTF-8 and each \u escape of a lone UTF-16
// surrogate turned into U+FFFD. It returns where they are in sb.
func (p *envelopeParser) decodeString(sb *strings.Builder, s span) span {
	start := sb.Len()
	b := p.body[s.start:s.end]
	if !s.unquote {
		sb.Write(b)
		return span{start: start, end: sb.Len()}
	}
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == '\\' && i+1 < len(b):
			switch b[i+1] {
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'u':
				r := hex4(b, i+2)
				i += 6
				if utf16.IsSurrogate(r) {
					// A high surrogate followed by an escaped low one is one
					// rune; any other surrogate is U+FFFD (and what follows
					// is decoded next).
					r2 := rune(-1)
					if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
						r2 = hex4(b, i+2)
					}
					if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
						r = dec
						i += 6
					} else {
						r = unicode.ReplacementChar
					}
				}
				if r < 0 { // not after str's checks
					r = unicode.ReplacementChar
				}
				sb.WriteRune(r)
				continue
			default: // ", \\ and /
				c = b[i+1]
			}
			sb.WriteByte(c)
			i += 2
		case c < utf8.RuneSelf:
			sb.WriteByte(c)
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				sb.WriteRune(utf8.RuneError)
			} else {
				sb.Write(b[i : i+size])
			}
			i += size
		}
	}
	return span{start: start, end: sb.Len()}
}

// mapObject parses a JSON object of strings (or, for fieldInputs, of any
// JSON values) into the parser's map entries.
func (p *envelopeParser) mapObject(field uint32) bool {
	if !p.consume('{') {
		return false
	}
	p.skipSpace()
	if p.consume('}') {
		return true
	}
	for {
		key, ok := p.str()
		if !ok {
			return false
		}
		p.skipSpace()
		if !p.consume(':') {
			return false
		}
		p.skipSpace()
		var val span
		if field == fieldInputs {
			val, ok = p.rawValue()
		} else {
			val, ok = p.str()
		}
		if !ok {
			return false
		}
		en := mapEntry{field: field, key: key, val: val}
		if p.nEntries < len(p.entryBuf) {
			p.entryBuf[p.nEntries] = en
			p.nEntries++
		} else {
			p.moreEntries = append(p.moreEntries, en)
		}
		p.skipSpace()
		if p.consume('}') {
			return true
		}
		if !p.consume(',') {
			return false
		}
		p.skipSpace()
	}
}

// plainKey parses a field name made of printable ASCII without escapes (all
// of the envelope's are) and returns it as a slice of body.
func (p *envelopeParser) plainKey() ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	for i := p.pos; i < len(p.body); i++ {
		switch c := p.body[i]; {
		case c == '"':
			key := p.body[p.pos:i]
			p.pos = i + 1
			return key, true
		case c < 0x20 || c == '\\' || c >= utf8.RuneSelf:
			return nil, false
		}
	}
	return nil, false
}

// smallInt parses an integer of at most 18 digits, which fits an int on
// 64-bit platforms (on 32-bit ones, a value beyond int32 is refused). A
// fraction or exponent, which json.Unmarshal refuses for an int, is refused.
func (p *envelopeParser) smallInt() (int, bool) {
	neg := p.consume('-')
	start := p.pos
	var n int64
	for p.pos < len(p.body) && p.pos-start < 19 {
		c := p.body[p.pos]
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
		p.pos++
	}
	digits := p.pos - start
	if digits == 0 || digits > 18 || digits > 1 && p.body[start] == '0' {
		return 0, false
	}
	if p.pos < len(p.body) {
		if c := p.body[p.pos]; c == '.' || c == 'e' || c == 'E' || c >= '0' && c <= '9' {
			return 0, false
		}
	}
	if neg {
		n = -n
	}
	if int64(int(n)) != n {
		return 0, false
	}
	return int(n), true
}

// boolean parses true or false.
func (p *envelopeParser) boolean() (bool, bool) {
	switch {
	case p.consumeLiteral("true"):
		return true, true
	case p.consumeLiteral("false"):
		return false, true
	}
	return false, false
}

// time parses a time the way json.Unmarshal does: the literal string,
// quotes included, is given to time.Time.UnmarshalJSON.
func (p *envelopeParser) time() (time.Time, bool) {
	start := p.pos
	if p.pos >= len(p.body) || p.body[p.pos] != '"' || !p.skipString() {
		return time.Time{}, false
	}
	var t time.Time
	if err := t.UnmarshalJSON(p.body[start:p.pos]); err != nil {
		return time.Time{}, false
	}
	return t, true
}

// retry parses the (rare) retry policy object with encoding/json.
func (p *envelopeParser) retry() (*RetryPolicy, bool) {
	if p.pos >= len(p.body) || p.body[p.pos] != '{' {
		return nil, false
	}
	s, ok := p.rawValue()
	if !ok {
		return nil, false
	}
	r := new(RetryPolicy)
	if err := json.Unmarshal(p.body[s.start:s.end], r); err != nil {
		return nil, false
	}
	return r, true
}
