package wire_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/internal/wire"
)

func TestEnvelope_RoundTrip(t *testing.T) {
	in := wire.Envelope{
		TaskID:   "t1",
		Task:     "resize",
		Args:     json.RawMessage(`{"w":10}`),
		Labels:   map[string]string{"team": "img"},
		Meta:     map[string]string{"traceparent": "00-abc"},
		RunID:    "r1",
		StepID:   "s1",
		Inputs:   map[string]json.RawMessage{"a": json.RawMessage(`{"n":1}`), "b": json.RawMessage(`null`)},
		Params:   map[string]string{"date": "2026-11-25"},
		Deadline: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
		ReplyTo:  "inbox-1",
		Progress: true,
		Retry:    &wire.Retry{MaxAttempts: 5, InitialBackoff: time.Second, MaxBackoff: time.Minute, Multiplier: 2, Jitter: 0.1},
		SentAt:   time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC),
	}
	b, err := in.Encode()
	require.NoError(t, err)
	out, err := wire.Decode(b)
	require.NoError(t, err)
	require.Equal(t, 1, out.Version, "zero version is written as the lowest that carries the fields")
	require.Equal(t, 1, out.Attempt, "zero attempt is written as 1")
	in.Version, in.Attempt = 1, 1
	require.True(t, in.Deadline.Equal(out.Deadline))
	require.True(t, in.SentAt.Equal(out.SentAt))
	out.Deadline, out.SentAt, in.Deadline, in.SentAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	require.Equal(t, in, out)
}

func TestEnvelope_WireNames(t *testing.T) {
	b, err := wire.Envelope{TaskID: "t1", Task: "x", RunID: "r"}.Encode()
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	require.Equal(t, map[string]any{"v": float64(1), "id": "t1", "task": "x", "attempt": float64(1), "run": "r"}, m,
		"optional fields are omitted and names are the documented short ones")
}

func TestEnvelope_DAGWireNames(t *testing.T) {
	b, err := wire.Envelope{TaskID: "r.s", Task: "x", RunID: "r", StepID: "s",
		Inputs: map[string]json.RawMessage{"up": json.RawMessage(`1`)}, Params: map[string]string{"k": "v"}, Progress: true}.Encode()
	require.NoError(t, err)
	require.JSONEq(t, `{"v":1,"id":"r.s","task":"x","attempt":1,"run":"r","step":"s",
		"inputs":{"up":1},"params":{"k":"v"},"progress":true}`, string(b))

	_, err = wire.Decode([]byte(`{"v":1,"id":"a","task":"x","inputs":{"up":"not json`))
	require.ErrorIs(t, err, wire.ErrMalformed)
	_, err = wire.Envelope{TaskID: "a", Task: "x", Inputs: map[string]json.RawMessage{"up": json.RawMessage(`{`)}}.Encode()
	require.ErrorIs(t, err, wire.ErrMalformed)
	require.Contains(t, err.Error(), `input "up" that is not valid JSON`)
}

func TestDecode_Errors(t *testing.T) {
	cases := []struct {
		name, body string
		is         error
		mention    string
	}{
		{"garbage", "\x00\xffnot json", wire.ErrMalformed, "invalid character"},
		{"empty", "", wire.ErrMalformed, "unexpected end of JSON input"},
		{"array", `[1,2]`, wire.ErrMalformed, "cannot unmarshal"},
		{"wrong field type", `{"v":1,"id":7,"task":"x"}`, wire.ErrMalformed, "cannot unmarshal"},
		{"missing version", `{"id":"a","task":"x"}`, wire.ErrMalformed, "version 0"},
		{"future version", `{"v":99,"id":"a","task":"x"}`, wire.ErrVersion, "version 99"},
		{"missing id", `{"v":1,"task":"x"}`, wire.ErrMalformed, `"id"`},
		{"missing task", `{"v":1,"id":"a"}`, wire.ErrMalformed, `"task"`},
		{"negative attempt", `{"v":1,"id":"a","task":"x","attempt":-2}`, wire.ErrMalformed, "attempt -2"},
		{"trailing data", `{"v":1,"id":"a","task":"x"} {}`, wire.ErrMalformed, "after top-level value"},
		{"bad retry", `{"v":1,"id":"a","task":"x","retry":{"max_attempts":0}}`, wire.ErrMalformed, "max_attempts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wire.Decode([]byte(tc.body))
			require.ErrorIs(t, err, tc.is)
			require.Contains(t, err.Error(), tc.mention)
		})
	}
}

func TestEnvelope_EncodeRefusesInvalid(t *testing.T) {
	_, err := wire.Envelope{Task: "x"}.Encode()
	require.ErrorIs(t, err, wire.ErrMalformed)
	_, err = wire.Envelope{TaskID: "a", Task: "x", Args: json.RawMessage("{nope")}.Encode()
	require.ErrorIs(t, err, wire.ErrMalformed)
}

// decodeCases are bodies that are hard to decode, and what decoding them
// gives: nil (a valid envelope), wire.ErrMalformed or wire.ErrVersion. They
// are also FuzzDecodeEnvelope's seeds.
var decodeCases = []struct {
	name, body string
	want       error
}{
	{"minimal", `{"v":1,"id":"a","task":"b"}`, nil},
	{"empty object", `{}`, wire.ErrMalformed},
	{"whitespace", " \n{ \"v\" : 1 ,\t\"id\":\"a\" , \"task\" : \"b\" , \"args\" : { \"a\" : [ 1 , -2.5E+3 , true , false , null , \"s\" , { } , [ ] ] } }\r\n", nil},
	{"any order", `{"task":"b","sent_at":"2026-11-25T09:00:00Z","id":"a","attempt":2,"v":1}`, nil},
	{"escapes", `{"v":1,"id":"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\u0000","task":"x"}`, nil},
	{"lone high surrogate", `{"v":1,"id":"\ud800","task":"x"}`, nil},
	{"lone low surrogate", `{"v":1,"id":"\udc00\ud800x","task":"x"}`, nil},
	{"surrogate then other escape", `{"v":1,"id":"\ud800\u0041","task":"x"}`, nil},
	{"surrogate then pair", `{"v":1,"id":"\ud800\ud800\udc00","task":"x"}`, nil},
	{"surrogate then bad escape", `{"v":1,"id":"\ud800\u00zz","task":"x"}`, wire.ErrMalformed},
	{"uppercase hex", `{"v":1,"id":"\u00E9\uD83D\uDE00","task":"x"}`, nil},
	{"invalid utf-8", "{\"v\":1,\"id\":\"a\xff\xfeb\",\"task\":\"\xed\xa0\x80\",\"labels\":{\"\xe2\x82\":\"\xc0\xaf\"}}", nil},
	{"valid utf-8", `{"v":1,"id":"é€😀 ","task":"日本"}`, nil},
	{"html and line separators", "{\"v\":1,\"id\":\"<a&b>\",\"task\":\"\u2028\u2029\",\"args\":{\"h\":\"<&>\u2028\\u2029\"}}", nil},
	{"all fields", goldenFull, nil},
	{"tricky strings", goldenTricky, nil},
	{"float version", `{"v":1.0,"id":"a","task":"b"}`, wire.ErrMalformed},
	{"exponent version", `{"v":1e0,"id":"a","task":"b"}`, wire.ErrMalformed},
	{"max int version", `{"v":9223372036854775807,"id":"a","task":"b"}`, wire.ErrVersion},
	{"huge version", `{"v":99999999999999999999,"id":"a","task":"b"}`, wire.ErrMalformed},
	{"18 digit attempt", `{"v":1,"id":"a","task":"b","attempt":999999999999999999}`, nil},
	{"negative zero attempt", `{"v":1,"id":"a","task":"b","attempt":-0}`, nil},
	{"negative attempt", `{"v":1,"id":"a","task":"b","attempt":-7}`, wire.ErrMalformed},
	{"leading zero", `{"v":01,"id":"a","task":"b"}`, wire.ErrMalformed},
	{"bare minus", `{"v":-,"id":"a","task":"b"}`, wire.ErrMalformed},
	{"null args", `{"v":1,"id":"a","task":"b","args":null}`, nil},
	{"null input", `{"v":1,"id":"a","task":"b","inputs":{"up":null,"x":[]}}`, nil},
	{"null id", `{"v":1,"id":null,"task":"b"}`, wire.ErrMalformed},
	{"null labels", `{"v":1,"id":"a","task":"b","labels":null}`, nil},
	{"null label", `{"v":1,"id":"a","task":"b","labels":{"a":null}}`, nil},
	{"null retry", `{"v":1,"id":"a","task":"b","retry":null}`, nil},
	{"null deadline", `{"v":1,"id":"a","task":"b","deadline":null}`, nil},
	{"empty maps", `{"v":1,"id":"a","task":"b","labels":{},"meta":{ },"inputs":{},"params":{}}`, nil},
	{"duplicate field", `{"v":1,"id":"a","task":"b","id":"c"}`, nil},
	{"duplicate labels", `{"v":1,"id":"a","task":"b","labels":{"x":"1"},"labels":{"y":"2"}}`, nil},
	{"duplicate map key", `{"v":1,"id":"a","task":"b","labels":{"x":"1","x":"2"},"inputs":{"a":1,"a":2}}`, nil},
	{"deep args", `{"v":1,"id":"a","task":"b","args":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`, nil},
	{"too deep args", `{"v":1,"id":"a","task":"b","args":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`, wire.ErrMalformed},
	{"nested args", `{"v":1,"id":"a","task":"b","args":{"a":{"b":[{"c":"\u00e9\"}"}]}}}`, nil},
	{"other case", `{"V":1,"ID":"a","Task":"b"}`, nil},
	{"escaped field name", `{"\u0076":1,"id":"a","task":"b"}`, nil},
	{"unknown field", `{"v":1,"id":"a","task":"b","x":1}`, nil},
	{"trailing object", `{"v":1,"id":"a","task":"b"} {}`, wire.ErrMalformed},
	// (Accepted before encoding/json decoded the envelope by itself.)
	{"trailing bracket", `{"v":1,"id":"a","task":"b"}]`, wire.ErrMalformed},
	{"trailing garbage", `{"v":1,"id":"a","task":"b"}x`, wire.ErrMalformed},
	{"trailing comma", `{"v":1,"id":"a","task":"b",}`, wire.ErrMalformed},
	{"unterminated", `{"v":1,"id":"a","task":"b"`, wire.ErrMalformed},
	{"unterminated string", `{"v":1,"id":"a`, wire.ErrMalformed},
	{"null", `null`, wire.ErrMalformed},
	{"array", `[]`, wire.ErrMalformed},
	{"empty", ``, wire.ErrMalformed},
	{"time with offset and nanoseconds", `{"v":1,"id":"a","task":"b","deadline":"2026-11-25T10:00:00.123456789+05:30"}`, nil},
	{"bad time", `{"v":1,"id":"a","task":"b","deadline":"2026-13-01T00:00:00Z"}`, wire.ErrMalformed},
	{"escaped time", `{"v":1,"id":"a","task":"b","sent_at":"\u0032026-11-25T10:00:00Z"}`, wire.ErrMalformed},
	{"empty strings", `{"v":1,"id":"","task":"","run":"","step":"","reply_to":""}`, wire.ErrMalformed},
	{"raw values", `{"v":1,"id":"a","task":"b","args":-1.5E+10,"inputs":{"a":"s","b":0,"c":true,"d":-0.0e-0}}`, nil},
	{"bad numbers", `{"v":1,"id":"a","task":"b","args":1.}`, wire.ErrMalformed},
	{"bad number exponent", `{"v":1,"id":"a","task":"b","args":1e}`, wire.ErrMalformed},
	{"bad fraction", `{"v":1,"id":"a","task":"b","args":.5}`, wire.ErrMalformed},
	{"bad literal", `{"v":1,"id":"a","task":"b","args":tru}`, wire.ErrMalformed},
	{"retry", `{"v":1,"id":"a","task":"b","retry":{"max_attempts":2,"multiplier":1.5,"jitter":0.1}}`, nil},
	{"retry other case", `{"v":1,"id":"a","task":"b","retry":{"Max_Attempts":2}}`, nil},
	{"bad retry", `{"v":1,"id":"a","task":"b","retry":{"max_attempts":0}}`, wire.ErrMalformed},
	{"retry type error", `{"v":1,"id":"a","task":"b","retry":{"max_attempts":"2"}}`, wire.ErrMalformed},
	{"control character", "{\"v\":1,\"id\":\"a\x01\",\"task\":\"b\"}", wire.ErrMalformed},
	{"delete character", "{\"v\":1,\"id\":\"a\x7f\",\"task\":\"b\"}", nil},
	{"bad escape", `{"v":1,"id":"a\'","task":"b"}`, wire.ErrMalformed},
	{"short unicode escape", `{"v":1,"id":"a\u12","task":"b"}`, wire.ErrMalformed},
	{"label not a string", `{"v":1,"id":"a","task":"b","labels":{"a":1}}`, wire.ErrMalformed},
	{"progress", `{"v":1,"id":"a","task":"b","progress":false}`, nil},
	{"progress string", `{"v":1,"id":"a","task":"b","progress":"true"}`, wire.ErrMalformed},
	{"future version", `{"v":3,"id":"a","task":"b"}`, wire.ErrVersion},
	{"version 2", `{"v":2,"id":"a","task":"b","not_before":"2026-11-25T09:00:00.5Z"}`, nil},
	{"bad not_before", `{"v":2,"id":"a","task":"b","not_before":"tomorrow"}`, wire.ErrMalformed},
	{"bad args string", `{"v":1,"id":"a","task":"b","args":"\x00"}`, wire.ErrMalformed},
	{"many entries", `{"v":1,"id":"a","task":"b","labels":{` + manyEntries(20) + `},"inputs":{` + manyEntries(5) + `}}`, nil},
}

// manyEntries returns n JSON object members "kI":"vI".
func manyEntries(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":"v\u00e9%d"`, i, i)
	}
	return b.String()
}

func TestDecode_Cases(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := wire.Decode([]byte(tc.body))
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				for _, other := range []error{wire.ErrMalformed, wire.ErrVersion} {
					if other != tc.want {
						require.NotErrorIs(t, err, other)
					}
				}
				require.Equal(t, wire.Envelope{}, e)
				return
			}
			require.NoError(t, err)
			checkReencodes(t, e)
		})
	}
}

// checkReencodes checks that a decoded envelope encodes, decodes to the
// same envelope and encodes to the same bytes again.
func checkReencodes(t testing.TB, e wire.Envelope) {
	t.Helper()
	b, err := e.Encode()
	if err != nil {
		t.Fatalf("decoded envelope does not re-encode: %v", err)
	}
	e2, err := wire.Decode(b)
	if err != nil {
		t.Fatalf("re-encoded envelope does not decode: %v\n%s", err, b)
	}
	b2, err := e2.Encode()
	if err != nil {
		t.Fatalf("decoded envelope does not re-encode: %v", err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("encoding is not stable:\n%s\n%s", b, b2)
	}
	if e2.TaskID != e.TaskID || e2.Task != e.Task || e2.Attempt != e.Attempt || e2.Version != e.Version ||
		!e2.Deadline.Equal(e.Deadline) || !e2.SentAt.Equal(e.SentAt) {
		t.Fatalf("round trip changed the envelope: %+v vs %+v", e, e2)
	}
}

// The wire form is what the encoder of earlier releases wrote, byte for byte
// (goldenFull and goldenTricky are its output), and decodes to what was
// encoded: old and new clients and workers can share a queue.
func TestEnvelope_WireCompat(t *testing.T) {
	b, err := fullEnvelope().Encode()
	require.NoError(t, err)
	require.Equal(t, goldenFull, string(b))
	b, err = trickyEnvelope().Encode()
	require.NoError(t, err)
	require.Equal(t, goldenTricky, string(b))

	e, err := wire.Decode([]byte(goldenFull))
	require.NoError(t, err)
	want := fullEnvelope()
	require.True(t, want.Deadline.Equal(e.Deadline), e.Deadline)
	_, off := e.Deadline.Zone()
	require.Equal(t, 5*3600+1800, off)
	require.True(t, want.SentAt.Equal(e.SentAt), e.SentAt)
	e.Deadline, e.SentAt, want.Deadline, want.SentAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	want.Args = json.RawMessage(`{"w":640,"h":[1,2.5e-3,true,null],"s":"a \u003cb\u003e \u0026 \u2028 \" x"}`) // compacted
	require.Equal(t, want, e)

	e, err = wire.Decode([]byte(goldenTricky))
	require.NoError(t, err)
	valid := trickyString[:len(trickyString)-6] + strings.Repeat("\uFFFD", 6) // each invalid byte
	require.Equal(t, wire.Envelope{
		Version: 1, TaskID: valid, Task: valid, Attempt: 1, RunID: valid, StepID: valid, ReplyTo: valid,
		Args:   json.RawMessage(`{"a\"\u003c":[1,2],"\u2028\\":" \u2029 "}`),
		Labels: map[string]string{valid: valid, "a": "1", "b": "2"}, Params: map[string]string{"": ""},
		Inputs: map[string]json.RawMessage{"x": json.RawMessage(`1`), "n": json.RawMessage(`null`)},
	}, e)
}

// fullEnvelope has every field set, with values that need escaping.
func fullEnvelope() wire.Envelope {
	return wire.Envelope{
		Version: 1, TaskID: "t-1", Task: "resize<img>&co", Attempt: 3,
		Args:   json.RawMessage(`{ "w": 640, "h": [1, 2.5e-3, true, null], "s": "a <b> & \u2028 \" x" }`),
		Labels: map[string]string{"team": "img", "zone": "é\u2029", "": "empty key"},
		Meta:   map[string]string{"traceparent": "00-abc-def-01"},
		RunID:  "run-1", StepID: "step\t1",
		Inputs:   map[string]json.RawMessage{"fetch": json.RawMessage(`{"n":1}`), "none": json.RawMessage(`null`), "s": json.RawMessage(`"x"`)},
		Params:   map[string]string{"date": "2026-11-25"},
		Deadline: time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.FixedZone("", 5*3600+1800)),
		ReplyTo:  "inbox-1", Progress: true,
		Retry:  &wire.Retry{MaxAttempts: 5, InitialBackoff: time.Second, MaxBackoff: time.Minute, Multiplier: 1e21, Jitter: 1e-7},
		SentAt: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC),
	}
}

// trickyString needs every kind of escape, and ends in 6 bytes of invalid
// UTF-8.
const trickyString = "a\"b\\c\b\f\n\r\t\x00\x1f\x7f<>&\u2028\u2029é😀\xff\xe2\x80\xed\xa0\x80"

// trickyEnvelope has trickyString in every string field and raw JSON with
// insignificant whitespace.
func trickyEnvelope() wire.Envelope {
	s := trickyString
	return wire.Envelope{TaskID: s, Task: s, RunID: s, StepID: s, ReplyTo: s,
		Labels: map[string]string{s: s, "b": "2", "a": "1"}, Params: map[string]string{"": ""},
		Args:   json.RawMessage(" {\n\t\"a\\\"<\" : [ 1 ,\r\n2 ] , \"\u2028\\\\\" : \" \u2029 \" } "),
		Inputs: map[string]json.RawMessage{"x": json.RawMessage(" 1 "), "n": nil}}
}

// goldenFull and goldenTricky are fullEnvelope and trickyEnvelope as the
// hand-written encoder of earlier releases wrote them.
const (
	goldenFull   = "{\"v\":1,\"id\":\"t-1\",\"task\":\"resize\\u003cimg\\u003e\\u0026co\",\"attempt\":3,\"args\":{\"w\":640,\"h\":[1,2.5e-3,true,null],\"s\":\"a \\u003cb\\u003e \\u0026 \\u2028 \\\" x\"},\"labels\":{\"\":\"empty key\",\"team\":\"img\",\"zone\":\"é\\u2029\"},\"meta\":{\"traceparent\":\"00-abc-def-01\"},\"run\":\"run-1\",\"step\":\"step\\t1\",\"inputs\":{\"fetch\":{\"n\":1},\"none\":null,\"s\":\"x\"},\"params\":{\"date\":\"2026-11-25\"},\"deadline\":\"2026-11-25T10:00:00.123456789+05:30\",\"reply_to\":\"inbox-1\",\"progress\":true,\"retry\":{\"max_attempts\":5,\"initial_backoff\":1000000000,\"max_backoff\":60000000000,\"multiplier\":1e+21,\"jitter\":1e-7},\"sent_at\":\"2026-11-25T09:00:00Z\"}"
	goldenTricky = "{\"v\":1,\"id\":\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0000\\u001f\x7f\\u003c\\u003e\\u0026\\u2028\\u2029é😀\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\",\"task\":\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0000\\u001f\x7f\\u003c\\u003e\\u0026\\u2028\\u2029é😀\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\",\"attempt\":1,\"args\":{\"a\\\"\\u003c\":[1,2],\"\\u2028\\\\\":\" \\u2029 \"},\"labels\":{\"a\":\"1\",\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0000\\u001f\x7f\\u003c\\u003e\\u0026\\u2028\\u2029é😀\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\":\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0000\\u001f\x7f\\u003c\\u003e\\u0026\\u2028\\u2029é😀\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\",\"b\":\"2\"},\"run\":\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0000\\u001f\x7f\\u003c\\u003e\\u0026\\u2028\\u2029é😀\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\",\"step\":\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0000\\u001f\x7f\\u003c\\u003e\\u0026\\u2028\\u2029é😀\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\",\"inputs\":{\"n\":null,\"x\":1},\"params\":{\"\":\"\"},\"reply_to\":\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0000\\u001f\x7f\\u003c\\u003e\\u0026\\u2028\\u2029é😀\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"}"
)

// limitCases put each limited field at its limit (accepted) and one over it
// (refused with ErrLimit naming the field). They are also
// FuzzDecodeEnvelope's seeds.
func limitCases() []struct {
	name, body, mention string
} {
	s := func(n int) string { return strings.Repeat("x", n) }
	entries := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(`"k%d":"v"`, i)
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	env := func(fields string) string { return `{"v":1,"id":"a","task":"b",` + fields + `}` }
	type lc = struct{ name, body, mention string }
	var out []lc
	for _, f := range []struct {
		name    string
		body    func(n int) string
		limit   int
		mention string // of the over-limit case
	}{
		{"id", func(n int) string { return `{"v":1,"id":"` + s(n) + `","task":"b"}` }, wire.MaxTaskIDLen,
			`task ID (field "id") is 129 bytes; the limit is 128`},
		{"task", func(n int) string { return `{"v":1,"id":"a","task":"` + s(n) + `"}` }, wire.MaxTaskNameLen,
			`task name (field "task") is 129 bytes; the limit is 128`},
		{"run", func(n int) string { return env(`"run":"` + s(n) + `"`) }, wire.MaxRunIDLen,
			`run ID (field "run") is 129 bytes; the limit is 128`},
		{"step", func(n int) string { return env(`"step":"` + s(n) + `"`) }, wire.MaxStepIDLen,
			`step ID (field "step") is 129 bytes; the limit is 128`},
		{"reply_to", func(n int) string { return env(`"reply_to":"` + s(n) + `"`) }, wire.MaxReplyToLen,
			`reply-to address (field "reply_to") is 1025 bytes; the limit is 1024`},
		{"result", func(n int) string { return env(`"result":"` + s(n) + `"`) }, wire.MaxResultPolicyLen,
			`result policy (field "result") is 33 bytes; the limit is 32`},
		{"labels", func(n int) string { return env(`"labels":` + entries(n)) }, wire.MaxLabels,
			`labels (field "labels") has 65 entries; the limit is 64`},
		{"meta", func(n int) string { return env(`"meta":` + entries(n)) }, wire.MaxLabels,
			`meta (field "meta") has 65 entries; the limit is 64`},
		{"label key", func(n int) string { return env(`"labels":{"` + s(n) + `":"v"}`) }, wire.MaxKeyLen,
			`label key (field "labels") is 129 bytes; the limit is 128`},
		{"label value", func(n int) string { return env(`"labels":{"k":"` + s(n) + `"}`) }, wire.MaxLabelValueLen,
			`label "k" (field "labels") is 1025 bytes; the limit is 1024`},
		{"meta key", func(n int) string { return env(`"meta":{"` + s(n) + `":"v"}`) }, wire.MaxKeyLen,
			`meta key (field "meta") is 129 bytes; the limit is 128`},
		{"meta value", func(n int) string { return env(`"meta":{"k":"` + s(n) + `"}`) }, wire.MaxLabelValueLen,
			`meta "k" (field "meta") is 1025 bytes; the limit is 1024`},
		{"param name", func(n int) string { return env(`"params":{"` + s(n) + `":"v"}`) }, wire.MaxKeyLen,
			`param name (field "params") is 129 bytes; the limit is 128`},
		{"input name", func(n int) string { return env(`"inputs":{"` + s(n) + `":1}`) }, wire.MaxKeyLen,
			`input name (field "inputs") is 129 bytes; the limit is 128`},
	} {
		out = append(out, lc{f.name + " at the limit", f.body(f.limit), ""},
			lc{f.name + " over the limit", f.body(f.limit + 1), f.mention})
	}
	// Escapes count as the bytes they decode to: 128 "é" (two bytes each)
	// written as \u00e9 are 256 bytes.
	out = append(out, lc{"escaped id over the limit", `{"v":1,"id":"` + strings.Repeat(`\u00e9`, 65) + `","task":"b"}`,
		`task ID (field "id") is 130 bytes; the limit is 128`})
	// The 1,509-byte ID of issue 13.
	out = append(out, lc{"1509-byte id", `{"v":1,"id":"` + s(1509) + `","task":"b","args":{}}`,
		`task ID (field "id") is 1509 bytes; the limit is 128`})
	return out
}

func TestDecode_Limits(t *testing.T) {
	for _, tc := range limitCases() {
		t.Run(tc.name, func(t *testing.T) {
			e, err := wire.Decode([]byte(tc.body))
			if tc.mention == "" {
				require.NoError(t, err)
				checkReencodes(t, e)
				return
			}
			require.ErrorIs(t, err, wire.ErrLimit)
			require.ErrorIs(t, err, wire.ErrMalformed)
			require.NotErrorIs(t, err, wire.ErrVersion)
			require.ErrorContains(t, err, tc.mention)
			var le *wire.LimitError
			require.ErrorAs(t, err, &le)
			require.Greater(t, le.Size, le.Limit)
			require.Less(t, len(err.Error()), 400, "an over-long value is not copied into the error")
		})
	}
	// A newer version is handed back for a newer worker, whose limits may
	// differ: no limit applies to it.
	_, err := wire.Decode([]byte(`{"v":3,"id":"` + strings.Repeat("x", 2000) + `","task":"b"}`))
	require.ErrorIs(t, err, wire.ErrVersion)
	require.NotErrorIs(t, err, wire.ErrLimit)

	// Encode refuses the same, so that no client sends what no worker runs.
	_, err = wire.Envelope{TaskID: "a", Task: "b", Labels: map[string]string{"k": strings.Repeat("v", 1025)}}.Encode()
	require.ErrorIs(t, err, wire.ErrLimit)
	require.ErrorContains(t, err, `task "a": envelope field over its limit: label "k" (field "labels") is 1025 bytes; the limit is 1024`)
}

func FuzzDecodeEnvelope(f *testing.F) {
	good, _ := wire.Envelope{TaskID: "t", Task: "x", Args: json.RawMessage(`[1]`)}.Encode()
	for _, s := range []string{string(good), "", "{}", "null", `{"v":3,"id":"a","task":"b"}`, `{"v":1,"id":"a","task":"b","retry":{"max_attempts":1,"multiplier":1}}`, strings.Repeat("[", 1000)} {
		f.Add([]byte(s))
	}
	for _, tc := range decodeCases {
		f.Add([]byte(tc.body))
	}
	for _, tc := range limitCases() {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := wire.Decode(body)
		if err != nil {
			if !errors.Is(err, wire.ErrMalformed) && !errors.Is(err, wire.ErrVersion) {
				t.Fatalf("error %v matches neither sentinel", err)
			}
			var le *wire.LimitError
			if errors.Is(err, wire.ErrLimit) != errors.As(err, &le) || le != nil && (le.Field == "" || le.Size <= le.Limit) {
				t.Fatalf("limit error %v does not name the field, its size and the limit", err)
			}
			return
		}
		if err := e.CheckLimits(); err != nil {
			t.Fatalf("accepted an envelope over a limit: %v", err)
		}
		// Anything accepted must re-encode and decode to the same envelope.
		checkReencodes(t, e)
	})
}

// A claim-check placeholder has no "v": a worker that does not resolve it
// fails it instead of running the task without its arguments.
func TestClaimCheck_DoesNotDecode(t *testing.T) {
	b, err := json.Marshal(wire.ClaimCheck{TaskID: "t1", Task: "x", Payload: "t1/k", ReplyTo: "inbox"})
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"t1","task":"x","payload":"t1/k","reply_to":"inbox"}`, string(b))
	_, err = wire.Decode(b)
	require.ErrorIs(t, err, wire.ErrMalformed)
	require.ErrorContains(t, err, "version 0")
}

// An envelope is written in the lowest version that carries its fields: a
// due time or a retry max_backoff over 12h make it version 2, which a
// version-1 worker hands back for a newer one instead of running the task
// early (it ignores not_before) or refusing it as malformed (max_backoff).
func TestEnvelope_MinVersion(t *testing.T) {
	due := time.Date(2026, 11, 25, 9, 0, 0, 500_000_000, time.UTC)
	for _, tc := range []struct {
		name string
		env  wire.Envelope
		want int
	}{
		{"plain", wire.Envelope{TaskID: "a", Task: "b"}, 1},
		{"retry within 12h", wire.Envelope{TaskID: "a", Task: "b", Retry: &wire.Retry{MaxAttempts: 2, MaxBackoff: 12 * time.Hour}}, 1},
		{"due time", wire.Envelope{TaskID: "a", Task: "b", NotBefore: due}, 2},
		{"retry over 12h", wire.Envelope{TaskID: "a", Task: "b", Retry: &wire.Retry{MaxAttempts: 2, MaxBackoff: 13 * time.Hour}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.env.MinVersion())
			b, err := tc.env.Encode()
			require.NoError(t, err)
			out, err := wire.Decode(b)
			require.NoError(t, err)
			require.Equal(t, tc.want, out.Version)
			require.True(t, tc.env.NotBefore.Equal(out.NotBefore))
			if tc.want == 2 {
				v1 := tc.env
				v1.Version = 1
				_, err := v1.Encode()
				require.ErrorIs(t, err, wire.ErrMalformed, "a version-1 envelope cannot carry it")
				require.ErrorContains(t, err, "needs version 2")
			}
		})
	}
	b, err := wire.Envelope{TaskID: "a", Task: "b", NotBefore: due}.Encode()
	require.NoError(t, err)
	require.JSONEq(t, `{"v":2,"id":"a","task":"b","attempt":1,"not_before":"2026-11-25T09:00:00.5Z"}`, string(b))

	_, err = wire.Envelope{TaskID: "a", Task: "b", Retry: &wire.Retry{MaxAttempts: 2, MaxBackoff: wire.MaxTaskDelay + 1}}.Encode()
	require.ErrorIs(t, err, wire.ErrMalformed)
	require.ErrorContains(t, err, "retry max_backoff is 8760h0m0.000000001s; it must be between 0 (a cap of 12h0m0s) and 8760h0m0s")
}

func TestNotBeforeAttribute(t *testing.T) {
	due := time.Date(2026, 11, 25, 9, 0, 0, 123_000_000, time.FixedZone("x", 3600))
	v := wire.FormatNotBefore(due)
	require.Equal(t, "2026-11-25T08:00:00.123Z", v)
	got, err := wire.ParseNotBefore(v)
	require.NoError(t, err)
	require.True(t, due.Equal(got))
	_, err = wire.ParseNotBefore("1764000000")
	require.ErrorContains(t, err, `attribute dagq-not-before is "1764000000"; want a time in RFC 3339`)
}
