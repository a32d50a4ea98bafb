// Package yamlpos locates the syntax errors of go.yaml.in/yaml/v3.
//
// The decoder's syntax errors ("yaml: line 2: did not find expected key")
// name the line where the construct being parsed began — for parser errors
// counted from 0 — rather than the line of the problem: a misindented key on
// line 5 of a list that starts on line 3 is reported on "line 2". Locate
// finds the problem's line, and its column when it can, by asking the same
// decoder about prefixes of the document: the first prefix that fails with
// the same message ends at the problem.
package yamlpos

import (
	"bytes"
	"regexp"
	"strconv"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxLines bounds the documents Locate searches (each line costs one parse
// of the prefix); for a longer one it returns the decoder's line.
const MaxLines = 2000

var syntaxRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Locate returns the line (1-based) and column (1-based, in characters; 0
// when unknown) of the syntax error err that yaml.Unmarshal returned for
// data, and the decoder's message without its line. ok is false when err is
// not a syntax error (a *yaml.TypeError, an alias limit, ...).
func Locate(data []byte, err error) (line, col int, msg string, ok bool) {
	if err == nil {
		return 0, 0, "", false
	}
	sub := syntaxRe.FindStringSubmatch(err.Error())
	if sub == nil {
		return 0, 0, "", false
	}
	reported, _ := strconv.Atoi(sub[1])
	msg = sub[2]
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > MaxLines {
		return reported, 0, msg, true
	}
	fails := func(doc []byte) bool {
		var n yaml.Node
		e := yaml.Unmarshal(doc, &n)
		if e == nil {
			return false
		}
		s := syntaxRe.FindStringSubmatch(e.Error())
		return s != nil && s[2] == msg
	}
	// The problem is at or after the reported line (where its construct
	// began), so earlier prefixes — which may fail for a reason of their
	// own, such as a flow list cut before its end — are not asked.
	line = 0
	for k := max(1, reported-1); k <= len(lines); k++ {
		if fails(bytes.Join(lines[:k], nil)) {
			line = k
			break
		}
	}
	if line == 0 {
		return reported, 0, msg, true
	}
	prefix := bytes.Join(lines[:line-1], nil)
	text := bytes.TrimRight(lines[line-1], "\r\n")
	doc := make([]byte, 0, len(prefix)+len(text))
	doc = append(doc, prefix...)
	for i, c := 0, 1; i < len(text); c++ {
		_, size := utf8.DecodeRune(text[i:])
		i += size
		if fails(append(doc[:len(prefix)], text[:i]...)) {
			return line, c, msg, true
		}
	}
	return line, 0, msg, true
}

// Position formats line and col as "line:col", or "line" without a column.
func Position(line, col int) string {
	if col > 0 {
		return strconv.Itoa(line) + ":" + strconv.Itoa(col)
	}
	return strconv.Itoa(line)
}
