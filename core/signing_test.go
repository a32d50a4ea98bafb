package core_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// Message signing over the memory adapters: signed tasks run, unsigned,
// tampered and unknown-key tasks are never executed and end as a failed
// result with the reason, and their message is acked.

var (
	sigKey1 = bytes.Repeat([]byte{1}, 32)
	sigKey2 = bytes.Repeat([]byte{2}, 48)
	sigKey9 = bytes.Repeat([]byte{9}, 32)
)

func mustSigner(t *testing.T, id string, key []byte) *core.Signer {
	t.Helper()
	s, err := core.NewSigner(id, key)
	require.NoError(t, err)
	return s
}

func mustVerifier(t *testing.T, opts core.VerifierOptions) *core.Verifier {
	t.Helper()
	v, err := core.NewVerifier(opts)
	require.NoError(t, err)
	return v
}

// sigWorld is a worker with a verifier over {k1, k2} whose "count" handler
// counts its runs.
type sigWorld struct {
	*wmWorld
	runs atomic.Int32
	w    *wmRunning
}

func newSigWorld(t *testing.T, mod func(*core.WorkerOptions)) *sigWorld {
	t.Helper()
	s := &sigWorld{wmWorld: newWmWorld(t)}
	reg := core.NewRegistry()
	require.NoError(t, reg.HandleFunc("count", func(_ context.Context, task *core.Task) (json.RawMessage, error) {
		s.runs.Add(1)
		return task.Args, nil
	}))
	s.w = s.startWorker(reg, func(o *core.WorkerOptions) {
		o.Ports.Verifier = mustVerifier(t, core.VerifierOptions{Keys: map[string][]byte{"k1": sigKey1, "k2": sigKey2}})
		o.Ports.Payloads = s.tr.PayloadStore()
		if mod != nil {
			mod(o)
		}
	})
	return s
}

func (s *sigWorld) client(signer *core.Signer) *core.Client {
	s.t.Helper()
	c, err := core.NewClient(core.ClientOptions{
		Ports: core.Ports{
			Broker:           s.tr.Broker(wmQueue),
			Results:          s.tr.ResultBackend(),
			Completions:      s.tr.CompletionBus(),
			Payloads:         s.tr.PayloadStore(),
			PayloadThreshold: 1024,
			Signer:           signer,
			NoCancel:         true,
		},
		Logger: quietLogger(),
	})
	require.NoError(s.t, err)
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// run submits one "count" task with args through c and waits for its result.
func (s *sigWorld) run(c *core.Client, args any) ports.Result {
	s.t.Helper()
	ctx := context.Background()
	id, err := c.Submit(ctx, core.Request{Task: "count", Args: args})
	require.NoError(s.t, err)
	res, err := c.Wait(ctx, id)
	require.NoError(s.t, err)
	return res
}

// refused asserts that the handler never ran, that res is the failed result
// of a refused message with reason, and that every message was acked.
func (s *sigWorld) refused(res ports.Result, reason string) {
	s.t.Helper()
	require.Equal(s.t, ports.StateFailed, res.State)
	require.Contains(s.t, res.Error, "message refused, not run: message signature check failed: ")
	require.Contains(s.t, res.Error, reason)
	require.Zero(s.t, s.runs.Load(), "the handler never ran")
	require.NoError(s.t, s.w.stop())
	require.Zero(s.t, s.stats(), "the refused message was acked")
}

func TestSigning_SignedTaskRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSigWorld(t, nil)
		res := s.run(s.client(mustSigner(t, "k1", sigKey1)), "hi")
		require.Equal(t, ports.StateSucceeded, res.State, res.Error)
		require.JSONEq(t, `"hi"`, string(res.Output))
		require.EqualValues(t, 1, s.runs.Load())
	})
}

func TestSigning_UnsignedRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSigWorld(t, nil)
		res := s.run(s.client(nil), "hi")
		s.refused(res, `signature missing (no "dagq-sig" attribute); this worker only runs messages signed with one of its keys (k1, k2)`)
	})
}

func TestSigning_UnknownKeyRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSigWorld(t, nil)
		res := s.run(s.client(mustSigner(t, "k9", sigKey9)), "hi")
		s.refused(res, `unknown signing key "k9"; known: k1, k2`)
	})
}

func TestSigning_WrongKeyUnderKnownIDRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSigWorld(t, nil)
		res := s.run(s.client(mustSigner(t, "k1", sigKey9)), "hi")
		s.refused(res, `signature does not match (key "k1")`)
	})
}

// tamper sends env signed by signer, with its body changed after signing.
func (s *sigWorld) sendTampered(env wire.Envelope, signer *core.Signer, change func([]byte) []byte) {
	s.t.Helper()
	body, err := env.Encode()
	require.NoError(s.t, err)
	sig := signer.Sign(body)
	require.NoError(s.t, s.producer.Send(context.Background(), ports.Message{
		ID: env.TaskID, Body: change(body), Attributes: map[string]string{wire.SignatureAttribute: sig},
	}))
}

func TestSigning_TamperedBodyRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSigWorld(t, nil)
		env := wire.Envelope{TaskID: "t1", Task: "count", Args: json.RawMessage(`"rm -rf /tmp/x"`)}
		s.sendTampered(env, mustSigner(t, "k1", sigKey1), func(b []byte) []byte {
			return bytes.Replace(b, []byte("/tmp/x"), []byte("/     "), 1)
		})
		s.refused(s.result("t1"), `signature does not match (key "k1"): the message was altered`)
	})
}

func TestSigning_MalformedSignatureRefused(t *testing.T) {
	for name, sig := range map[string]string{
		"no colon":      "k1",
		"bad key ID":    "k 1:AAAA",
		"not base64url": "k1:***",
		"short MAC":     "k1:AAAA",
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newSigWorld(t, nil)
				body, err := wire.Envelope{TaskID: "t1", Task: "count"}.Encode()
				require.NoError(t, err)
				require.NoError(t, s.producer.Send(context.Background(), ports.Message{
					ID: "t1", Body: body, Attributes: map[string]string{wire.SignatureAttribute: sig}}))
				s.refused(s.result("t1"), `malformed "dagq-sig" attribute`)
			})
		})
	}
}

func TestSigning_RotationWorkerAcceptsEveryKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSigWorld(t, nil)
		// Step 2 of a rotation: clients move from k1 to k2 while the workers
		// know both.
		old := s.run(s.client(mustSigner(t, "k1", sigKey1)), "old")
		cur := s.run(s.client(mustSigner(t, "k2", sigKey2)), "new")
		require.Equal(t, ports.StateSucceeded, old.State, old.Error)
		require.Equal(t, ports.StateSucceeded, cur.State, cur.Error)
		require.EqualValues(t, 2, s.runs.Load())
	})
}

func TestSigning_AcceptUnsignedStillRefusesBadSignatures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSigWorld(t, func(o *core.WorkerOptions) {
			o.Ports.Verifier = mustVerifier(t, core.VerifierOptions{Keys: map[string][]byte{"k1": sigKey1}, AcceptUnsigned: true})
		})
		res := s.run(s.client(nil), "unsigned")
		require.Equal(t, ports.StateSucceeded, res.State, res.Error)
		res = s.run(s.client(mustSigner(t, "k1", sigKey1)), "signed")
		require.Equal(t, ports.StateSucceeded, res.State, res.Error)
		s.runs.Store(0)
		res = s.run(s.client(mustSigner(t, "k1", sigKey9)), "forged")
		s.refused(res, `signature does not match (key "k1")`)
	})
}

// The signature covers the stored envelope of a claim-check message.
func TestSigning_ClaimCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSigWorld(t, nil)
		store := &keyStore{PayloadStore: s.tr.PayloadStore()}
		c, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:           s.tr.Broker(wmQueue),
				Results:          s.tr.ResultBackend(),
				Completions:      s.tr.CompletionBus(),
				Payloads:         store,
				PayloadThreshold: 1024,
				Signer:           mustSigner(t, "k2", sigKey2),
				NoCancel:         true,
			},
			Logger: quietLogger(),
		})
		require.NoError(t, err)
		defer func() { _ = c.Close() }()
		ctx := context.Background()
		big := strings.Repeat("x", 4096)
		id, err := c.Submit(ctx, core.Request{Task: "count", Args: big})
		require.NoError(t, err)
		res, err := c.Wait(ctx, id)
		require.NoError(t, err)
		require.Equal(t, ports.StateSucceeded, res.State, res.Error)
		require.EqualValues(t, 1, s.runs.Load())

		// A claim-check message whose stored envelope was replaced after
		// signing is refused, and the object it names is kept.
		env := wire.Envelope{TaskID: "t2", Task: "count", Args: json.RawMessage(fmt.Sprintf("%q", big))}
		body, err := env.Encode()
		require.NoError(t, err)
		sig := mustSigner(t, "k2", sigKey2).Sign(body)
		forged, err := wire.Envelope{TaskID: "t2", Task: "count", Args: json.RawMessage(`"evil"`)}.Encode()
		require.NoError(t, err)
		require.NoError(t, store.Put(ctx, "t2/obj", forged))
		require.NoError(t, s.producer.Send(ctx, ports.Message{ID: "t2", Body: []byte(`{"id":"t2","task":"count","payload":"t2/obj"}`),
			Attributes: map[string]string{wire.SignatureAttribute: sig, wire.PayloadAttribute: "t2/obj"}}))
		s.runs.Store(0)
		s.refused(s.result("t2"), `signature does not match (key "k2")`)
		got, err := store.Get(ctx, "t2/obj")
		require.NoError(t, err, "the object of an unverified message is not deleted")
		require.Equal(t, forged, got)
	})
}

func TestSigning_KeysValidatedAndNeverPrinted(t *testing.T) {
	_, err := core.NewSigner("k1", sigKey1[:31])
	require.ErrorContains(t, err, `signing key "k1" is 31 bytes; it must be at least 32`)
	_, err = core.NewSigner("k:1", sigKey1)
	require.ErrorContains(t, err, `a signing key ID (3 bytes) is not valid`)
	_, err = core.NewVerifier(core.VerifierOptions{})
	require.ErrorContains(t, err, "no keys")
	_, err = core.NewVerifier(core.VerifierOptions{Keys: map[string][]byte{"a": sigKey1, "b": []byte("short")}})
	require.ErrorContains(t, err, `signing key "b" is 5 bytes`)
	require.NotContains(t, err.Error(), "short")

	secret := []byte("0123456789abcdef0123456789abcdef-very-secret")
	signer := mustSigner(t, "k1", secret)
	verifier := mustVerifier(t, core.VerifierOptions{Keys: map[string][]byte{"k1": secret}})
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%v %+v %#v %s %v %+v %#v %s", signer, signer, signer, signer, verifier, verifier, verifier, verifier)
	fmt.Fprintf(&buf, "%+v", core.ClientOptions{
		Ports: core.Ports{
			Signer:   signer,
			NoCancel: true,
		},
	})
	fmt.Fprintf(&buf, "%+v", core.WorkerOptions{
		Ports: core.Ports{
			Verifier: verifier,
			NoCancel: true,
		},
	})
	require.NotContains(t, buf.String(), "very-secret")
	require.Contains(t, buf.String(), "core.Signer{key k1}")

	// Signatures are deterministic, per key, and verify.
	body := []byte(`{"v":1,"id":"x","task":"t"}`)
	sig := signer.Sign(body)
	require.True(t, strings.HasPrefix(sig, "k1:"))
	require.Len(t, strings.TrimPrefix(sig, "k1:"), 43, "unpadded base64url of 32 bytes")
	require.NoError(t, verifier.Verify(body, sig))
	require.ErrorIs(t, verifier.Verify(append(body, ' '), sig), core.ErrSignature)
	require.ErrorIs(t, verifier.Verify(body, ""), core.ErrSignature)
}
