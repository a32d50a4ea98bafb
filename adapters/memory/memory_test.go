package memory_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/ports"
	"github.com/dagq/dagq/ports/porttest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// harness runs the conformance suite on the synctest clock, or in real time
// with short steps (realTime) to exercise the suite's real-time paths.
type harness struct {
	realTime bool
}

func (h harness) Features() porttest.Features {
	if h.realTime {
		return porttest.Features{FIFO: true, Requeue: true, DeadLetters: true, ResultDelete: true, ListKeys: true, LeaseGranularity: 100 * time.Millisecond, PollBound: 400 * time.Millisecond}
	}
	return porttest.Features{FIFO: true, Requeue: true, DeadLetters: true, ResultDelete: true, ListKeys: true, Synctest: true, PollBound: memory.DefaultPollWait}
}

func (h harness) transport() *memory.Transport {
	if h.realTime {
		return memory.NewTransport(memory.WithPollWait(h.Features().PollBound))
	}
	return memory.NewTransport()
}

func (h harness) NewQueue(t *testing.T, fifo bool, n int) []ports.Broker {
	tr := h.transport()
	name := "tasks"
	if fifo {
		name = "tasks.fifo"
	}
	require.NoError(t, tr.CreateQueue(name, memory.QueueOptions{FIFO: fifo}))
	return handles(t, n, func() ports.Broker { return tr.Broker(name) })
}

func (h harness) NewDeadLetteredQueue(t *testing.T, maxReceives int) ports.Broker {
	tr := h.transport()
	require.NoError(t, tr.CreateQueue("tasks-dlq", memory.QueueOptions{}))
	require.NoError(t, tr.CreateQueue("tasks", memory.QueueOptions{MaxReceives: maxReceives, DeadLetterQueue: "tasks-dlq"}))
	return handles(t, 1, func() ports.Broker { return tr.Broker("tasks") })[0]
}

func (h harness) MissingQueue(t *testing.T) ports.Broker {
	b := h.transport().Broker("missing")
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func (h harness) NewBackend(t *testing.T, n int) []ports.ResultBackend {
	return handles(t, n, h.transport().ResultBackend)
}

func (h harness) NewChannel(t *testing.T, n int) []ports.CancelChannel {
	return handles(t, n, h.transport().CancelChannel)
}

func (h harness) NewBus(t *testing.T, n int) []ports.CompletionBus {
	return handles(t, n, h.transport().CompletionBus)
}

func (h harness) NewStore(t *testing.T, n int) []ports.PayloadStore {
	return handles(t, n, h.transport().PayloadStore)
}

func (h harness) NewStateStore(t *testing.T, n int) []ports.StateStore {
	return handles(t, n, h.transport().StateStore)
}

func handles[T interface{ Close() error }](t *testing.T, n int, open func() T) []T {
	hs := make([]T, n)
	for i := range hs {
		hs[i] = open()
		t.Cleanup(func() { require.NoError(t, hs[i].Close()) })
	}
	return hs
}

func TestBroker(t *testing.T)        { porttest.TestBroker(t, harness{}) }
func TestResultBackend(t *testing.T) { porttest.TestResultBackend(t, harness{}) }
func TestCancelChannel(t *testing.T) { porttest.TestCancelChannel(t, harness{}) }
func TestCompletionBus(t *testing.T) { porttest.TestCompletionBus(t, harness{}) }
func TestPayloadStore(t *testing.T)  { porttest.TestPayloadStore(t, harness{}) }
func TestStateStore(t *testing.T)    { porttest.TestStateStore(t, harness{}) }

// TestRealTime runs the suite on the real clock, as adapters over a network
// do, so that the suite's real-time paths stay correct.
func TestRealTime(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time conformance run skipped in -short mode")
	}
	h := harness{realTime: true}
	t.Run("Broker", func(t *testing.T) { porttest.TestBroker(t, h) })
	t.Run("ResultBackend", func(t *testing.T) { porttest.TestResultBackend(t, h) })
	t.Run("CancelChannel", func(t *testing.T) { porttest.TestCancelChannel(t, h) })
	t.Run("CompletionBus", func(t *testing.T) { porttest.TestCompletionBus(t, h) })
	t.Run("PayloadStore", func(t *testing.T) { porttest.TestPayloadStore(t, h) })
	t.Run("StateStore", func(t *testing.T) { porttest.TestStateStore(t, h) })
}
