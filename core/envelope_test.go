package core_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
)

func TestEnvelope_RoundTrip(t *testing.T) {
	in := core.Envelope{
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
		Retry:    &core.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Second, MaxBackoff: time.Minute, Multiplier: 2, Jitter: 0.1},
		SentAt:   time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC),
	}
	b, err := in.Encode()
	require.NoError(t, err)
	out, err := core.DecodeEnvelope(b)
	require.NoError(t, err)
	require.Equal(t, core.EnvelopeVersion, out.Version, "zero version is written as the current one")
	require.Equal(t, 1, out.Attempt, "zero attempt is written as 1")
	in.Version, in.Attempt = core.EnvelopeVersion, 1
	require.True(t, in.Deadline.Equal(out.Deadline))
	require.True(t, in.SentAt.Equal(out.SentAt))
	out.Deadline, out.SentAt, in.Deadline, in.SentAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	require.Equal(t, in, out)
}

func TestEnvelope_WireNames(t *testing.T) {
	b, err := core.Envelope{TaskID: "t1", Task: "x", RunID: "r"}.Encode()
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	require.Equal(t, map[string]any{"v": float64(1), "id": "t1", "task": "x", "attempt": float64(1), "run": "r"}, m,
		"optional fields are omitted and names are the documented short ones")
}

func TestEnvelope_DAGWireNames(t *testing.T) {
	b, err := core.Envelope{TaskID: "r.s", Task: "x", RunID: "r", StepID: "s",
		Inputs: map[string]json.RawMessage{"up": json.RawMessage(`1`)}, Params: map[string]string{"k": "v"}, Progress: true}.Encode()
	require.NoError(t, err)
	require.JSONEq(t, `{"v":1,"id":"r.s","task":"x","attempt":1,"run":"r","step":"s",
		"inputs":{"up":1},"params":{"k":"v"},"progress":true}`, string(b))

	_, err = core.DecodeEnvelope([]byte(`{"v":1,"id":"a","task":"x","inputs":{"up":"not json`))
	require.ErrorIs(t, err, core.ErrMalformedEnvelope)
	_, err = core.Envelope{TaskID: "a", Task: "x", Inputs: map[string]json.RawMessage{"up": json.RawMessage(`{`)}}.Encode()
	require.ErrorIs(t, err, core.ErrMalformedEnvelope)
	require.Contains(t, err.Error(), `input "up" that is not valid JSON`)
}

func TestDecodeEnvelope_Errors(t *testing.T) {
	cases := []struct {
		name, body string
		is         error
		mention    string
	}{
		{"garbage", "\x00\xffnot json", core.ErrMalformedEnvelope, "invalid character"},
		{"empty", "", core.ErrMalformedEnvelope, "EOF"},
		{"array", `[1,2]`, core.ErrMalformedEnvelope, "cannot unmarshal"},
		{"wrong field type", `{"v":1,"id":7,"task":"x"}`, core.ErrMalformedEnvelope, "cannot unmarshal"},
		{"missing version", `{"id":"a","task":"x"}`, core.ErrMalformedEnvelope, "version 0"},
		{"future version", `{"v":99,"id":"a","task":"x"}`, core.ErrEnvelopeVersion, "version 99"},
		{"missing id", `{"v":1,"task":"x"}`, core.ErrMalformedEnvelope, `"id"`},
		{"missing task", `{"v":1,"id":"a"}`, core.ErrMalformedEnvelope, `"task"`},
		{"negative attempt", `{"v":1,"id":"a","task":"x","attempt":-2}`, core.ErrMalformedEnvelope, "attempt -2"},
		{"trailing data", `{"v":1,"id":"a","task":"x"} {}`, core.ErrMalformedEnvelope, "trailing"},
		{"bad retry", `{"v":1,"id":"a","task":"x","retry":{"max_attempts":0}}`, core.ErrMalformedEnvelope, "max_attempts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := core.DecodeEnvelope([]byte(tc.body))
			require.ErrorIs(t, err, tc.is)
			require.Contains(t, err.Error(), tc.mention)
		})
	}
}

func TestEnvelope_EncodeRefusesInvalid(t *testing.T) {
	_, err := core.Envelope{Task: "x"}.Encode()
	require.ErrorIs(t, err, core.ErrMalformedEnvelope)
	_, err = core.Envelope{TaskID: "a", Task: "x", Args: json.RawMessage("{nope")}.Encode()
	require.ErrorIs(t, err, core.ErrMalformedEnvelope)
}

func FuzzDecodeEnvelope(f *testing.F) {
	good, _ := core.Envelope{TaskID: "t", Task: "x", Args: json.RawMessage(`[1]`)}.Encode()
	for _, s := range []string{string(good), "", "{}", "null", `{"v":2,"id":"a","task":"b"}`, `{"v":1,"id":"a","task":"b","retry":{"max_attempts":1,"multiplier":1}}`, strings.Repeat("[", 1000)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := core.DecodeEnvelope(body)
		if err != nil {
			return
		}
		// Anything accepted must re-encode and decode to the same envelope.
		b, err := e.Encode()
		if err != nil {
			t.Fatalf("decoded envelope does not re-encode: %v", err)
		}
		e2, err := core.DecodeEnvelope(b)
		if err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v", err)
		}
		if e2.TaskID != e.TaskID || e2.Task != e.Task || e2.Attempt != e.Attempt {
			t.Fatalf("round trip changed the envelope: %+v vs %+v", e, e2)
		}
	})
}
