package wire_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/dagq/dagq/internal/wire"
)

// benchEnvelope is a typical step's envelope.
func benchEnvelope() wire.Envelope {
	return wire.Envelope{TaskID: "0123456789abcdef0123456789abcdef", Task: "resize",
		Args:   json.RawMessage(`{"w":640,"h":480,"src":"s3://bucket/key.png"}`),
		Labels: map[string]string{"team": "img"}, RunID: "run-1", StepID: "step-1", ReplyTo: "inbox-1", SentAt: time.Now()}
}

func BenchmarkEnvelopeEncode(b *testing.B) {
	e := benchEnvelope()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnvelopeDecode(b *testing.B) {
	body, err := benchEnvelope().Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}
