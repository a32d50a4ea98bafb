package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The hand-written envelope codec (envelope_encode.go, envelope_decode.go)
// must behave exactly like the encoding/json code it replaced. These tests
// compare the two on tricky inputs, and FuzzEnvelopeCodec on any input.

// referenceDecode is DecodeEnvelope as it was before the fast path: the
// behaviour the fast path must keep.
func referenceDecode(body []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(body, &e); err == nil {
		return e.checked()
	}
	e = Envelope{}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&e); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrMalformedEnvelope, err)
	}
	if dec.More() {
		return Envelope{}, fmt.Errorf("%w: trailing data after the JSON object", ErrMalformedEnvelope)
	}
	return e.checked()
}

// referenceEncode is Encode as it was before the hand-written encoder.
func referenceEncode(e Envelope) ([]byte, error) {
	if e.Version == 0 {
		e.Version = EnvelopeVersion
	}
	if e.Attempt == 0 {
		e.Attempt = 1
	}
	if err := e.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(e)
}

// checkEnvelopeCodec checks, for one body, that the fast decoder agrees with
// json.Unmarshal whenever it answers, that DecodeEnvelope agrees with
// referenceDecode, and that Encode agrees with referenceEncode on what was
// decoded and on envelopes with the body in every string and raw field.
func checkEnvelopeCodec(t *testing.T, body []byte) {
	t.Helper()
	if got, want := validJSON(body), json.Valid(body); got != want {
		t.Fatalf("validJSON(%q) = %v, json.Valid says %v", body, got, want)
	}
	if p := (jsonScanner{body: body}); p.skipValue(0) && p.pos == len(body) && !json.Valid(body) {
		t.Fatalf("jsonScanner accepts %q, json.Valid does not", body)
	}
	if fast, ok := decodeEnvelopeFast(body); ok {
		var want Envelope
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("fast decoder accepts %q, json.Unmarshal refuses it: %v", body, err)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("fast decoder and json.Unmarshal differ on %q:\nfast %#v\njson %#v", body, fast, want)
		}
		// DecodeEnvelope skips json.Valid for what the fast decoder accepted.
		if len(fast.Args) > 0 && !json.Valid(fast.Args) {
			t.Fatalf("fast decoder accepts invalid args %q", fast.Args)
		}
		for k, v := range fast.Inputs {
			if len(v) > 0 && !json.Valid(v) {
				t.Fatalf("fast decoder accepts invalid input %q: %q", k, v)
			}
		}
	}

	got, gotErr := DecodeEnvelope(body)
	want, wantErr := referenceDecode(body)
	switch {
	case (gotErr == nil) != (wantErr == nil):
		t.Fatalf("DecodeEnvelope(%q): error %v, want %v", body, gotErr, wantErr)
	case gotErr != nil && gotErr.Error() != wantErr.Error():
		t.Fatalf("DecodeEnvelope(%q): error %q, want %q", body, gotErr, wantErr)
	case gotErr != nil && (errors.Is(gotErr, ErrMalformedEnvelope) != errors.Is(wantErr, ErrMalformedEnvelope) ||
		errors.Is(gotErr, ErrEnvelopeVersion) != errors.Is(wantErr, ErrEnvelopeVersion)):
		t.Fatalf("DecodeEnvelope(%q): error %v is not the sentinel of %v", body, gotErr, wantErr)
	case !reflect.DeepEqual(got, want):
		t.Fatalf("DecodeEnvelope(%q):\n got %#v\nwant %#v", body, got, want)
	}
	if gotErr == nil {
		checkEncode(t, got)
	}

	s := string(body)
	e := Envelope{TaskID: s + "id", Task: "task" + s, RunID: s, StepID: s, ReplyTo: s,
		Labels: map[string]string{s: s, "k": s}, Meta: map[string]string{s: "m"}, Params: map[string]string{"p": s}}
	if json.Valid(body) {
		e.Args = body
		e.Inputs = map[string]json.RawMessage{s: body, "nil": nil}
	}
	checkEncode(t, e)
}

// checkEncode checks that Encode and AppendEncode write what json.Marshal
// writes for e, or fail as it fails.
func checkEncode(t *testing.T, e Envelope) {
	t.Helper()
	got, gotErr := e.Encode()
	want, wantErr := referenceEncode(e)
	switch {
	case (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error():
		t.Fatalf("Encode(%#v): error %v, want %v", e, gotErr, wantErr)
	case !bytes.Equal(got, want):
		t.Fatalf("Encode(%#v):\n got %s\nwant %s", e, got, want)
	}
	prefix := []byte("prefix")
	appended, err := e.AppendEncode(prefix)
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("AppendEncode(%#v): error %v, want %v", e, err, wantErr)
	case err != nil && string(appended) != "prefix":
		t.Fatalf("AppendEncode(%#v) failed but changed dst to %q", e, appended)
	case err == nil && string(appended) != "prefix"+string(want):
		t.Fatalf("AppendEncode(%#v):\n got %s\nwant prefix%s", e, appended, want)
	}
}

// fullEnvelope has every field set, with values that need escaping.
func fullEnvelope() Envelope {
	return Envelope{
		Version: 1, TaskID: "t-1", Task: "resize<img>&co", Attempt: 3,
		Args:   json.RawMessage(`{ "w": 640, "h": [1, 2.5e-3, true, null], "s": "a <b> & \u2028 \" x" }`),
		Labels: map[string]string{"team": "img", "zone": "é\u2029", "": "empty key"},
		Meta:   map[string]string{"traceparent": "00-abc-def-01"},
		RunID:  "run-1", StepID: "step\t1",
		Inputs:   map[string]json.RawMessage{"fetch": json.RawMessage(`{"n":1}`), "none": json.RawMessage(`null`), "s": json.RawMessage(`"x"`)},
		Params:   map[string]string{"date": "2026-11-25"},
		Deadline: time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.FixedZone("", 5*3600+1800)),
		ReplyTo:  "inbox-1", Progress: true,
		Retry:  &RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Second, MaxBackoff: time.Minute, Multiplier: 1e21, Jitter: 1e-7},
		SentAt: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC),
	}
}

// codecCases are bodies the fast decoder must handle (fast) or must leave to
// encoding/json; either way the result must be encoding/json's.
var codecCases = []struct {
	name, body string
	fast       bool
}{
	{"minimal", `{"v":1,"id":"a","task":"b"}`, true},
	{"empty object", `{}`, true},
	{"whitespace", " \n{ \"v\" : 1 ,\t\"id\":\"a\" , \"task\" : \"b\" , \"args\" : { \"a\" : [ 1 , -2.5E+3 , true , false , null , \"s\" , { } , [ ] ] } }\r\n", true},
	{"any order", `{"task":"b","sent_at":"2026-11-25T09:00:00Z","id":"a","attempt":2,"v":1}`, true},
	{"escapes", `{"v":1,"id":"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\u0000","task":"x"}`, true},
	{"lone high surrogate", `{"v":1,"id":"\ud800","task":"x"}`, true},
	{"lone low surrogate", `{"v":1,"id":"\udc00\ud800x","task":"x"}`, true},
	{"surrogate then other escape", `{"v":1,"id":"\ud800\u0041","task":"x"}`, true},
	{"surrogate then pair", `{"v":1,"id":"\ud800\ud800\udc00","task":"x"}`, true},
	{"surrogate then bad escape", `{"v":1,"id":"\ud800\u00zz","task":"x"}`, false},
	{"uppercase hex", `{"v":1,"id":"\u00E9\uD83D\uDE00","task":"x"}`, true},
	{"invalid utf-8", "{\"v\":1,\"id\":\"a\xff\xfeb\",\"task\":\"\xed\xa0\x80\",\"labels\":{\"\xe2\x82\":\"\xc0\xaf\"}}", true},
	{"valid utf-8", `{"v":1,"id":"é€😀 ","task":"日本"}`, true},
	{"html and line separators", "{\"v\":1,\"id\":\"<a&b>\",\"task\":\"\u2028\u2029\",\"args\":{\"h\":\"<&>\u2028\\u2029\"}}", true},
	{"all fields", fullEnvelopeBody, true},
	{"float version", `{"v":1.0,"id":"a","task":"b"}`, false},
	{"exponent version", `{"v":1e0,"id":"a","task":"b"}`, false},
	{"max int version", `{"v":9223372036854775807,"id":"a","task":"b"}`, false},
	{"huge version", `{"v":99999999999999999999,"id":"a","task":"b"}`, false},
	{"18 digit attempt", `{"v":1,"id":"a","task":"b","attempt":999999999999999999}`, true},
	{"negative zero attempt", `{"v":1,"id":"a","task":"b","attempt":-0}`, true},
	{"negative attempt", `{"v":1,"id":"a","task":"b","attempt":-7}`, true},
	{"leading zero", `{"v":01,"id":"a","task":"b"}`, false},
	{"bare minus", `{"v":-,"id":"a","task":"b"}`, false},
	{"null args", `{"v":1,"id":"a","task":"b","args":null}`, true},
	{"null input", `{"v":1,"id":"a","task":"b","inputs":{"up":null,"x":[]}}`, true},
	{"null id", `{"v":1,"id":null,"task":"b"}`, false},
	{"null labels", `{"v":1,"id":"a","task":"b","labels":null}`, false},
	{"null label", `{"v":1,"id":"a","task":"b","labels":{"a":null}}`, false},
	{"null retry", `{"v":1,"id":"a","task":"b","retry":null}`, false},
	{"null deadline", `{"v":1,"id":"a","task":"b","deadline":null}`, false},
	{"empty maps", `{"v":1,"id":"a","task":"b","labels":{},"meta":{ },"inputs":{},"params":{}}`, true},
	{"duplicate field", `{"v":1,"id":"a","task":"b","id":"c"}`, false},
	{"duplicate labels", `{"v":1,"id":"a","task":"b","labels":{"x":"1"},"labels":{"y":"2"}}`, false},
	{"duplicate map key", `{"v":1,"id":"a","task":"b","labels":{"x":"1","x":"2"},"inputs":{"a":1,"a":2}}`, true},
	{"deep args", `{"v":1,"id":"a","task":"b","args":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`, false},
	{"too deep args", `{"v":1,"id":"a","task":"b","args":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`, false},
	{"nested args", `{"v":1,"id":"a","task":"b","args":{"a":{"b":[{"c":"\u00e9\"}"}]}}}`, true},
	{"other case", `{"V":1,"ID":"a","Task":"b"}`, false},
	{"escaped field name", `{"\u0076":1,"id":"a","task":"b"}`, false},
	{"unknown field", `{"v":1,"id":"a","task":"b","x":1}`, false},
	{"trailing object", `{"v":1,"id":"a","task":"b"} {}`, false},
	{"trailing bracket", `{"v":1,"id":"a","task":"b"}]`, false},
	{"trailing garbage", `{"v":1,"id":"a","task":"b"}x`, false},
	{"trailing comma", `{"v":1,"id":"a","task":"b",}`, false},
	{"unterminated", `{"v":1,"id":"a","task":"b"`, false},
	{"unterminated string", `{"v":1,"id":"a`, false},
	{"null", `null`, false},
	{"array", `[]`, false},
	{"empty", ``, false},
	{"time with offset and nanoseconds", `{"v":1,"id":"a","task":"b","deadline":"2026-11-25T10:00:00.123456789+05:30"}`, true},
	{"bad time", `{"v":1,"id":"a","task":"b","deadline":"2026-13-01T00:00:00Z"}`, false},
	{"escaped time", `{"v":1,"id":"a","task":"b","sent_at":"\u0032026-11-25T10:00:00Z"}`, false},
	{"empty strings", `{"v":1,"id":"","task":"","run":"","step":"","reply_to":""}`, true},
	{"raw values", `{"v":1,"id":"a","task":"b","args":-1.5E+10,"inputs":{"a":"s","b":0,"c":true,"d":-0.0e-0}}`, true},
	{"bad numbers", `{"v":1,"id":"a","task":"b","args":1.}`, false},
	{"bad number exponent", `{"v":1,"id":"a","task":"b","args":1e}`, false},
	{"bad fraction", `{"v":1,"id":"a","task":"b","args":.5}`, false},
	{"bad literal", `{"v":1,"id":"a","task":"b","args":tru}`, false},
	{"retry", `{"v":1,"id":"a","task":"b","retry":{"max_attempts":2,"multiplier":1.5,"jitter":0.1}}`, true},
	{"retry other case", `{"v":1,"id":"a","task":"b","retry":{"Max_Attempts":2}}`, true},
	{"bad retry", `{"v":1,"id":"a","task":"b","retry":{"max_attempts":0}}`, true},
	{"retry type error", `{"v":1,"id":"a","task":"b","retry":{"max_attempts":"2"}}`, false},
	{"control character", "{\"v\":1,\"id\":\"a\x01\",\"task\":\"b\"}", false},
	{"delete character", "{\"v\":1,\"id\":\"a\x7f\",\"task\":\"b\"}", true},
	{"bad escape", `{"v":1,"id":"a\'","task":"b"}`, false},
	{"short unicode escape", `{"v":1,"id":"a\u12","task":"b"}`, false},
	{"label not a string", `{"v":1,"id":"a","task":"b","labels":{"a":1}}`, false},
	{"progress", `{"v":1,"id":"a","task":"b","progress":false}`, true},
	{"progress string", `{"v":1,"id":"a","task":"b","progress":"true"}`, false},
	{"future version", `{"v":2,"id":"a","task":"b"}`, true},
	{"bad args string", `{"v":1,"id":"a","task":"b","args":"\x00"}`, false},
	{"many entries", `{"v":1,"id":"a","task":"b","labels":{` + manyEntries(20) + `},"inputs":{` + manyEntries(5) + `}}`, true},
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

// fullEnvelopeBody stands in codecCases for the encoded fullEnvelope.
const fullEnvelopeBody = "<fullEnvelope>"

// codecCaseBody returns the body of a codecCases entry.
func codecCaseBody(t testing.TB, body string) []byte {
	if body != fullEnvelopeBody {
		return []byte(body)
	}
	b, err := fullEnvelope().Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeEnvelopeFast_MatchesEncodingJSON(t *testing.T) {
	for _, tc := range codecCases {
		t.Run(tc.name, func(t *testing.T) {
			body := codecCaseBody(t, tc.body)
			if _, ok := decodeEnvelopeFast(body); ok != tc.fast {
				t.Errorf("fast decoder handles it: %v, want %v", ok, tc.fast)
			}
			checkEnvelopeCodec(t, body)
		})
	}
}

func TestDecodeEnvelopeFast_CopiesBody(t *testing.T) {
	body := codecCaseBody(t, fullEnvelopeBody)
	e, err := DecodeEnvelope(body)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := referenceDecode(body)
	for i := range body {
		body[i] = 'x'
	}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("envelope changed with its body:\n got %#v\nwant %#v", e, want)
	}
	// Raw values do not share capacity: appending to one leaves the next.
	in := e.Inputs["fetch"]
	_ = append(e.Args, "garbage"...)
	_ = append(in, "garbage"...)
	if !reflect.DeepEqual(e, want) {
		t.Fatal("appending to a raw value changed another")
	}
}

func TestEnvelopeEncode_MatchesEncodingJSON(t *testing.T) {
	tricky := "a\"b\\c\b\f\n\r\t\x00\x1f\x7f<>&\u2028\u2029é😀\xff\xe2\x80\xed\xa0\x80"
	many := map[string]string{}
	for i := range 20 {
		many[fmt.Sprintf("k%02d%s", 20-i, tricky)] = tricky
	}
	cases := map[string]Envelope{
		"all fields":       fullEnvelope(),
		"zero":             {},
		"minimal":          {TaskID: "a", Task: "b"},
		"tricky strings":   {TaskID: tricky, Task: tricky, RunID: tricky, StepID: tricky, ReplyTo: tricky, Labels: map[string]string{tricky: tricky}, Meta: many, Params: map[string]string{"": ""}},
		"raw whitespace":   {TaskID: "a", Task: "b", Args: json.RawMessage(" {\n\t\"a\\\"<\" : [ 1 ,\r\n2 ] , \"\u2028\\\\\" : \" \u2029 \" } "), Inputs: map[string]json.RawMessage{"x": json.RawMessage(" 1 ")}},
		"raw escaped":      {TaskID: "a", Task: "b", Args: json.RawMessage(`"\\" <"`)},
		"nil input":        {TaskID: "a", Task: "b", Inputs: map[string]json.RawMessage{"x": nil, "y": json.RawMessage("2")}},
		"empty input":      {TaskID: "a", Task: "b", Inputs: map[string]json.RawMessage{"x": {}}},
		"empty args":       {TaskID: "a", Task: "b", Args: json.RawMessage{}, Labels: map[string]string{}, Inputs: map[string]json.RawMessage{}},
		"invalid args":     {TaskID: "a", Task: "b", Args: json.RawMessage("{")},
		"invalid input":    {TaskID: "a", Task: "b", Inputs: map[string]json.RawMessage{"x": json.RawMessage("[")}},
		"year 10000":       {TaskID: "a", Task: "b", Deadline: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"year -1":          {TaskID: "a", Task: "b", SentAt: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		"zone hour 24":     {TaskID: "a", Task: "b", SentAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600))},
		"local time":       {TaskID: "a", Task: "b", SentAt: time.Date(2026, 1, 1, 0, 0, 0, 1, time.Local)},
		"negative attempt": {TaskID: "a", Task: "b", Attempt: -1},
		"future version":   {Version: 2, TaskID: "a", Task: "b"},
		"bad retry":        {TaskID: "a", Task: "b", Retry: &RetryPolicy{}},
		"big numbers":      {Version: 1, TaskID: "a", Task: "b", Attempt: 1 << 62},
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) { checkEncode(t, e) })
	}
}

func FuzzEnvelopeCodec(f *testing.F) {
	for _, tc := range codecCases {
		f.Add(codecCaseBody(f, tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkEnvelopeCodec(t, body)
	})
}
