package sqs_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/testutil"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// compatSQS is a fake SQS endpoint (the JSON protocol) standing for the
// SQS-compatible servers teams test against. It serves one message once
// (receive count 3, as after two earlier deliveries) and then nothing.
//
// legacy: it reads only the older AttributeNames parameter of
// ReceiveMessage, as ElasticMQ, LocalStack and local-aws-sqs do; otherwise
// it reports no system attributes at all.
type compatSQS struct {
	legacy bool
	body   string
	id     string

	mu      sync.Mutex
	served  bool
	deleted []string
	gone    chan struct{} // closed on the first deletion
}

const compatSent = 1_700_000_000_000 // SentTimestamp, ms

func newCompatSQS(t *testing.T, legacy bool, id, body string) (*compatSQS, *awssqs.Client, string) {
	f := &compatSQS{legacy: legacy, id: id, body: body, gone: make(chan struct{})}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	client := awssqs.New(awssqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  testCredentials(),
		// The fake sends no MD5 digests.
		DisableMessageChecksumValidation: true,
	})
	return f, client, srv.URL + "/000000000000/compat"
}

func (f *compatSQS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var in map[string]any
	_ = json.Unmarshal(raw, &in)
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")
	switch op {
	case "ReceiveMessage":
		f.mu.Lock()
		first := !f.served
		f.served = true
		f.mu.Unlock()
		if !first {
			select { // an empty long poll, short
			case <-time.After(200 * time.Millisecond):
			case <-r.Context().Done():
			}
			_, _ = io.WriteString(w, `{}`)
			return
		}
		m := map[string]any{
			"MessageId":     "m-1",
			"ReceiptHandle": "rh-1",
			"Body":          f.body,
			"MessageAttributes": map[string]any{
				"dagq-id":  map[string]string{"DataType": "String", "StringValue": f.id},
				"dagq-enc": map[string]string{"DataType": "String", "StringValue": "text"},
			},
		}
		if names, ok := in["AttributeNames"].([]any); ok && f.legacy {
			attrs := map[string]string{}
			for _, n := range names {
				switch n {
				case "ApproximateReceiveCount", "All":
					attrs["ApproximateReceiveCount"] = "3"
				}
				switch n {
				case "SentTimestamp", "All":
					attrs["SentTimestamp"] = strconv.Itoa(compatSent)
				}
			}
			m["Attributes"] = attrs
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"Messages": []any{m}})
	case "DeleteMessageBatch":
		entries, _ := in["Entries"].([]any)
		var ok []map[string]any
		f.mu.Lock()
		for _, e := range entries {
			e, _ := e.(map[string]any)
			rh, _ := e["ReceiptHandle"].(string)
			if len(f.deleted) == 0 {
				close(f.gone)
			}
			f.deleted = append(f.deleted, rh)
			ok = append(ok, map[string]any{"Id": e["Id"]})
		}
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"Successful": ok, "Failed": []any{}})
	case "ChangeMessageVisibility":
		_, _ = io.WriteString(w, `{}`)
	default:
		w.Header().Set("X-Amzn-Query-Error", "InvalidAction;Sender")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"__type":"com.amazonaws.sqs#InvalidAction","message":"not faked: `+op+`"}`)
	}
}

// A server that reads only AttributeNames reports the receive count (and
// send time) to the adapter, which asks in both parameters. (dagq asked only
// in MessageSystemAttributeNames: every delivery came as Attempt 0.)
func TestReceive_LegacyAttributeNamesServer(t *testing.T) {
	_, client, url := newCompatSQS(t, true, "t1", "hello")
	b, err := sqs.New(client, url, &sqs.Options{WaitTime: time.Second})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	ds, err := b.Receive(t.Context(), 1, 30*time.Second)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Equal(t, "t1", ds[0].ID)
	require.Equal(t, 3, ds[0].Attempt)
	require.Equal(t, time.UnixMilli(compatSent), ds[0].SentAt)
}

// A server that reports no receive count gives deliveries an unknown
// attempt (0, never a made-up 1), and the adapter warns once.
func TestReceive_NoReceiveCountIsUnknown(t *testing.T) {
	_, client, url := newCompatSQS(t, false, "t1", "hello")
	logger, logs := testutil.NewLogger(t)
	b, err := sqs.New(client, url, &sqs.Options{WaitTime: time.Second, Logger: logger})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	ds, err := b.Receive(t.Context(), 1, 30*time.Second)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Equal(t, 0, ds[0].Attempt, "unknown")
	require.True(t, ds[0].SentAt.IsZero())
	warns := logs.Where(func(r testutil.LogRecord) bool { return r.Level == slog.LevelWarn && r.Attrs["queue"] == url })
	require.Len(t, warns, 1)
}

// A worker on such a server does not run again a task that already has a
// result: an unknown attempt may be a redelivery. (It ran it again: Attempt
// 0 skipped the redelivered-result check.)
func TestWorker_NoReceiveCountChecksResult(t *testing.T) {
	body, err := wire.Envelope{TaskID: "t1", Task: "mark"}.Encode()
	require.NoError(t, err)
	f, client, url := newCompatSQS(t, false, "t1", string(body))
	b, err := sqs.New(client, url, &sqs.Options{WaitTime: time.Second})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()

	results := memory.NewTransport().ResultBackend()
	require.NoError(t, results.Put(t.Context(), ports.Result{TaskID: "t1", State: ports.StateSucceeded,
		Output: json.RawMessage(`"before"`), Attempts: 1, Worker: "w0", FinishedAt: time.Now()}))
	var mu sync.Mutex
	runs := 0
	reg := core.NewRegistry()
	require.NoError(t, reg.HandleFunc("mark", func(context.Context, *core.Task) (json.RawMessage, error) {
		mu.Lock()
		runs++
		mu.Unlock()
		return json.RawMessage(`"again"`), nil
	}))
	w, err := core.NewWorker(core.WorkerOptions{
		Ports:    core.Ports{Broker: b, Results: results, NoCancel: true},
		Registry: reg,
		Logger:   testutil.QuietLogger(),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-f.gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the message was never deleted")
	}
	cancel()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	require.Zero(t, runs, "the finished task ran again")
	require.Equal(t, []string{"rh-1"}, f.deleted)
}
