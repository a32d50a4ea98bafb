package sqs_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/sqs"
	"github.com/dagq/dagq/ports"
)

// moveSQS fakes the two calls of Broker.MoveBack: GetQueueAttributes
// (QueueArn) and StartMessageMoveTask, which it answers with a task handle,
// or with the error code of a server that lacks the API.
type moveSQS struct {
	unknown string // error code for StartMessageMoveTask; "" answers a task
	mu      sync.Mutex
	source  string // the SourceArn StartMessageMoveTask got
	dest    any
}

func (f *moveSQS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var in map[string]any
	_ = json.Unmarshal(raw, &in)
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	switch strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.") {
	case "GetQueueAttributes":
		_ = json.NewEncoder(w).Encode(map[string]any{"Attributes": map[string]string{"QueueArn": "arn:aws:sqs:us-east-1:000000000000:tasks-dlq"}})
	case "StartMessageMoveTask":
		if f.unknown != "" {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"__type": f.unknown, "message": "Unknown action: StartMessageMoveTask"})
			return
		}
		f.mu.Lock()
		f.source, _ = in["SourceArn"].(string)
		f.dest = in["DestinationArn"]
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{"TaskHandle": "task-handle-1"})
	default:
		w.WriteHeader(http.StatusBadRequest)
	}
}

func moveBroker(t *testing.T, f *moveSQS) *sqs.Broker {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	client := awssqs.New(awssqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), Credentials: testCredentials()})
	b, err := sqs.New(client, srv.URL+"/000000000000/tasks-dlq", nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// MoveBack starts SQS's message-move task with the DLQ as the source and no
// destination (back to where each message came from).
func TestMoveBack_StartsAMessageMoveTask(t *testing.T) {
	f := &moveSQS{}
	handle, err := moveBroker(t, f).MoveBack(t.Context())
	require.NoError(t, err)
	require.Equal(t, "task-handle-1", handle)
	require.Equal(t, "arn:aws:sqs:us-east-1:000000000000:tasks-dlq", f.source)
	require.Nil(t, f.dest, "no destination: each message goes back to its source queue")
}

// A server without the API (fauxqs answers InvalidAction) is
// ports.ErrUnsupported, so the caller falls back to receive/send/delete.
func TestMoveBack_UnsupportedServer(t *testing.T) {
	for _, code := range []string{"InvalidAction", "UnsupportedOperation"} {
		_, err := moveBroker(t, &moveSQS{unknown: code}).MoveBack(t.Context())
		require.ErrorIs(t, err, ports.ErrUnsupported, code)
	}
}
