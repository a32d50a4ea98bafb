package mocktest_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/examples/mocktest"
	"github.com/dagq/dagq/ports"
	"github.com/dagq/dagq/ports/portsmock"
)

// mocked is a core.Client over mocked ports; sent collects every message
// the Client sends.
type mocked struct {
	client  *core.Client
	results *portsmock.MockResultBackend
	mu      sync.Mutex
	sent    []ports.Message
	asked   []string // the task IDs of the Gets
}

func newMocked(t *testing.T) *mocked {
	ctrl := gomock.NewController(t)
	broker := portsmock.NewMockBroker(ctrl)
	m := &mocked{results: portsmock.NewMockResultBackend(ctrl)}
	// Every Send succeeds and its messages are captured (Submit sends one
	// task as one Send of one message; SubmitBatch, several in one Send).
	broker.EXPECT().Send(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, msgs ...ports.Message) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.sent = append(m.sent, msgs...)
		return nil
	}).AnyTimes()
	c, err := core.NewClient(core.ClientOptions{Ports: core.Ports{Broker: broker, Results: m.results, NoCancel: true}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	m.client = c
	return m
}

// finish makes the ResultBackend answer every Get with the final result of
// the task asked for: state, its output (JSON) and error.
func (m *mocked) finish(state ports.State, output, errMsg string) {
	m.results.EXPECT().Get(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, id string) (ports.Result, error) {
		m.mu.Lock()
		m.asked = append(m.asked, id)
		m.mu.Unlock()
		r := ports.Result{TaskID: id, State: state, Error: errMsg, Attempts: 1}
		if output != "" {
			r.Output = []byte(output)
		}
		return r, nil
	}).MinTimes(1)
}

func (m *mocked) messages() []ports.Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]ports.Message(nil), m.sent...)
}

// The Client's first result read comes after a short backoff: synctest's
// fake clock makes it instant.
func TestMake(t *testing.T) { synctest.Test(t, testMake) }

func testMake(t *testing.T) {
	m := newMocked(t)
	m.finish(ports.StateSucceeded, `{"url": "s3://thumbs/cat-128.png"}`, "")

	got, err := mocktest.Thumbnails{Client: m.client, Width: 128}.Make(context.Background(), "s3://images/cat.png")
	require.NoError(t, err)
	require.Equal(t, "s3://thumbs/cat-128.png", got)

	sent := m.messages()
	require.Len(t, sent, 1, "exactly one task was sent")
	require.NotEmpty(t, sent[0].ID)
	for _, id := range m.asked {
		require.Equal(t, sent[0].ID, id, "the result read is the sent task's")
	}
}

// A task that failed on the worker is an error of Make, carrying the
// worker's reason (a *core.TaskError).
func TestMake_TaskFailed(t *testing.T) { synctest.Test(t, testMakeTaskFailed) }

func testMakeTaskFailed(t *testing.T) {
	m := newMocked(t)
	m.finish(ports.StateFailed, "", "image not found")
	_, err := mocktest.Thumbnails{Client: m.client, Width: 128}.Make(context.Background(), "s3://images/gone.png")
	var te *core.TaskError
	require.ErrorAs(t, err, &te)
	require.Equal(t, ports.StateFailed, te.Result.State)
	require.ErrorContains(t, err, "thumbnail of s3://images/gone.png: ")
	require.ErrorContains(t, err, "image not found")
	require.Len(t, m.messages(), 1)
}

// A Send that fails is returned by Make, and nothing is waited for.
func TestMake_SendFails(t *testing.T) {
	ctrl := gomock.NewController(t)
	broker := portsmock.NewMockBroker(ctrl)
	broker.EXPECT().Send(gomock.Any(), gomock.Any()).Return(ports.ErrUnavailable).MinTimes(1)
	c, err := core.NewClient(core.ClientOptions{Ports: core.Ports{Broker: broker, Results: portsmock.NewMockResultBackend(ctrl), NoCancel: true}})
	require.NoError(t, err)
	defer c.Close()
	_, err = mocktest.Thumbnails{Client: c}.Make(context.Background(), "s3://images/cat.png")
	require.ErrorIs(t, err, ports.ErrUnavailable)
}
