package sqs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/ports"
)

func TestErrorTable(t *testing.T) {
	api := func(code, msg string) error {
		return &smithy.OperationError{ServiceID: "SQS", OperationName: "Op", Err: &smithy.GenericAPIError{Code: code, Message: msg}}
	}
	httpErr := func(status int) error {
		return &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err:      errors.New("boom"),
		}
	}
	cases := []struct {
		name    string
		err     error
		receipt bool
		want    error // nil: no sentinel
		isAPI   bool
	}{
		{"QueueDoesNotExist", api("QueueDoesNotExist", ""), false, ports.ErrNotFound, true},
		{"legacy NonExistentQueue", api("AWS.SimpleQueueService.NonExistentQueue", ""), false, ports.ErrNotFound, true},
		{"throttled", api("RequestThrottled", ""), false, ports.ErrUnavailable, true},
		{"internal error", api("InternalError", ""), false, ports.ErrUnavailable, true},
		{"invalid parameter", api("InvalidParameterValue", "bad"), false, ports.ErrInvalidArgument, true},
		{"invalid parameter naming the receipt, on a receipt op", api("InvalidParameterValue", "Value x for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired."), true, ports.ErrLeaseLost, true},
		{"invalid parameter naming the receipt, on send", api("InvalidParameterValue", "receipt"), false, ports.ErrInvalidArgument, true},
		{"receipt handle invalid", api("ReceiptHandleIsInvalid", ""), true, ports.ErrLeaseLost, true},
		{"message not in flight", api("MessageNotInflight", ""), true, ports.ErrLeaseLost, true},
		{"legacy message not in flight", api("AWS.SimpleQueueService.MessageNotInflight", ""), true, ports.ErrLeaseLost, true},
		{"batch entry ids", api("BatchEntryIdsNotDistinct", ""), false, ports.ErrInvalidArgument, true},
		{"unsupported", api("AWS.SimpleQueueService.UnsupportedOperation", ""), false, ports.ErrUnsupported, true},
		{"access denied", api("AccessDenied", ""), false, ports.ErrPermissionDenied, true},
		{"bad credentials", api("InvalidClientTokenId", ""), false, ports.ErrUnauthenticated, true},
		{"unknown code", api("KMS.DisabledException", ""), false, nil, true},
		{"HTTP 503 without code", httpErr(503), false, ports.ErrUnavailable, false},
		{"HTTP 400 without code", httpErr(400), false, nil, false},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, false, ports.ErrUnavailable, false},
	}
	sentinels := []error{ports.ErrNotFound, ports.ErrLeaseLost, ports.ErrUnavailable, ports.ErrInvalidArgument, ports.ErrUnsupported,
		ports.ErrPermissionDenied, ports.ErrUnauthenticated}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := wrap("op", c.err, c.receipt)
			require.True(t, strings.HasPrefix(err.Error(), "sqs: op: "), err.Error())
			require.ErrorIs(t, err, c.err, "the SDK error stays in the chain")
			for _, s := range sentinels {
				require.Equalf(t, s == c.want, errors.Is(err, s), "errors.Is(%v, %v)", err, s)
			}
			var apiErr smithy.APIError
			require.Equal(t, c.isAPI, errors.As(err, &apiErr), "errors.As smithy.APIError")
		})
	}
}

func TestWrapContext(t *testing.T) {
	err := wrap("receive", fmt.Errorf("operation error: %w", context.Canceled), false)
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ports.ErrUnavailable)
}

func TestEntryError(t *testing.T) {
	err := entryError("extend", types.BatchResultErrorEntry{Id: aws.String("1"), Code: aws.String("ReceiptHandleIsInvalid"), SenderFault: true}, true)
	require.ErrorIs(t, err, ports.ErrLeaseLost)
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, "ReceiptHandleIsInvalid", apiErr.ErrorCode())
	require.Equal(t, smithy.FaultClient, apiErr.ErrorFault())
	require.True(t, ignoredOnAck(entryError("ack", types.BatchResultErrorEntry{Code: aws.String("ReceiptHandleIsInvalid")}, true)))
	require.False(t, ignoredOnAck(entryError("ack", types.BatchResultErrorEntry{Code: aws.String("InternalError")}, true)))
}

func TestBodyEncoding(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for _, body := range [][]byte{nil, {}, {0}, all, []byte("plain <xml> & ünïcødé"), []byte(`{"a":[1,"\u0000"]}` + "\t\r\n\U0001F600"), {0xff, 0xfe, 0xed, 0xa0, 0x80}, []byte("\uFFFE")} {
		wire, enc := encodeBody(body)
		require.NotEmpty(t, wire, "SQS refuses empty bodies")
		require.True(t, validSQSText([]byte(wire)), "SQS accepts the wire body %q", wire)
		switch {
		case len(body) == 0:
			require.Equal(t, encEmpty, enc)
		case validSQSText(body):
			require.Equal(t, encText, enc, "text travels as it is")
			require.Equal(t, string(body), wire)
		default:
			require.Equal(t, encBase64, enc)
			for _, r := range wire {
				require.True(t, r >= 0x20 && r < 0x7f, "base64 wire body is printable ASCII: %q", wire)
			}
		}
		got, err := decodeBody(wire, enc)
		require.NoError(t, err)
		require.Equal(t, len(body), len(got))
		require.Equal(t, string(body), string(got))
	}
	got, err := decodeBody("aGVsbG8=", encBase64)
	require.NoError(t, err, "base64 bodies of older senders still decode")
	require.Equal(t, "hello", string(got))
	got, err = decodeBody("raw text from elsewhere", "")
	require.NoError(t, err)
	require.Equal(t, "raw text from elsewhere", string(got))
	_, err = decodeBody("!!!", encBase64)
	require.Error(t, err)
	_, err = decodeBody("x", "zstd")
	require.Error(t, err)
}

func TestFIFOToken(t *testing.T) {
	for _, s := range []string{"m-1", "run/123:step#4", strings.Repeat("a", 128), "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"} {
		require.Equal(t, s, fifoToken(s), "valid tokens pass unchanged")
	}
	for _, s := range []string{strings.Repeat("a", 129), "with space", "ünï", "tab\t"} {
		tok := fifoToken(s)
		require.True(t, validToken(tok), tok)
		require.True(t, strings.HasPrefix(tok, "sha256-"), tok)
		require.Len(t, tok, 71)
		require.Equal(t, tok, fifoToken(s), "stable")
	}
	require.NotEqual(t, fifoToken("a b"), fifoToken("a  b"))
}

func TestAttrNames(t *testing.T) {
	for _, n := range []string{"a", "Mixed.Case_name-1", strings.Repeat("n", 128), "dagq-payload"} {
		require.NoError(t, validAttrName(n), n)
	}
	for _, n := range []string{"", "a b", "a/b", strings.Repeat("n", 129), "naïve", "aws.x", "AMAZON.x", "dagq-id", "dagq-enc"} {
		require.Error(t, validAttrName(n), n)
	}
}

func TestNewNilClient(t *testing.T) {
	_, err := New(nil, "http://q", nil)
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
}

// TestValidationBeforeRequest checks refusals that need no service: the
// client points nowhere, so any request would fail with ErrUnavailable.
func TestValidationBeforeRequest(t *testing.T) {
	client := awssqs.New(awssqs.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), RetryMaxAttempts: 1})
	for _, o := range []*Options{{WaitTime: 21 * time.Second}, {WaitTime: -time.Second}, {MaxBodyBytes: 1<<20 + 1}, {MaxBodyBytes: -1}} {
		_, err := New(client, "http://q/1/tasks", o)
		require.ErrorIs(t, err, ports.ErrInvalidArgument, "%+v", *o)
	}
	std, err := New(client, "http://q/1/tasks", &Options{MaxBodyBytes: 4})
	require.NoError(t, err)
	require.False(t, std.FIFO())
	fifo, err := New(client, "http://q/1/tasks.fifo", nil)
	require.NoError(t, err)
	require.True(t, fifo.FIFO())

	ctx := t.Context()
	require.ErrorIs(t, std.Send(ctx, ports.Message{ID: "m", Body: []byte("12345")}), ports.ErrInvalidArgument, "body over MaxBodyBytes")
	require.ErrorIs(t, std.Send(ctx, ports.Message{ID: "m", Attributes: map[string]string{"dagq-id": "x"}}), ports.ErrInvalidArgument, "reserved attribute")
	require.ErrorIs(t, std.Send(ctx, ports.Message{ID: "m", Attributes: map[string]string{"dagq-enc": "x"}}), ports.ErrInvalidArgument, "reserved attribute")
	require.ErrorIs(t, std.Send(ctx, ports.Message{ID: "m", Attributes: map[string]string{"dagq-payload": "k"}}), ports.ErrUnavailable,
		"core's claim-check attribute is not reserved: the send reaches the (unreachable) service")
	require.ErrorIs(t, fifo.Send(ctx, ports.Message{ID: "m", Delay: time.Second}), ports.ErrInvalidArgument, "delay on FIFO")
	require.ErrorIs(t, std.Send(ctx, ports.Message{ID: "m"}), ports.ErrUnavailable, "unreachable service")

	require.NoError(t, std.Close())
	require.NoError(t, std.Close())
	require.ErrorIs(t, std.Send(ctx, ports.Message{ID: "m"}), ports.ErrClosed)
	_, err = std.Receive(ctx, 1, time.Second)
	require.ErrorIs(t, err, ports.ErrClosed)
}

func TestValidSQSText(t *testing.T) {
	for s, want := range map[string]bool{
		"":                               true,
		`{"task_id":"ünï ✓"}`:            true,
		"tab\tnl\ncr\r":                  true,
		"\U0001F600":                     true,
		"\x00":                           false,
		"\x1f":                           false,
		"\uFFFE":                         false,
		"\uFFFF":                         false,
		"\xff":                           false,
		string([]byte{0xed, 0xa0, 0x80}): false, // a surrogate, invalid UTF-8
	} {
		if got := validSQSText([]byte(s)); got != want {
			t.Errorf("validSQSText(%q) = %v, want %v", s, got, want)
		}
	}
}
