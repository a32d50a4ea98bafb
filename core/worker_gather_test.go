package core_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// receiveSpy records the batch size asked by every Receive and when.
type receiveSpy struct {
	ports.Broker
	mu    sync.Mutex
	calls []receiveCall
}

type receiveCall struct {
	n  int
	at time.Time
}

func (s *receiveSpy) Receive(ctx context.Context, n int, lease time.Duration) ([]ports.Delivery, error) {
	s.mu.Lock()
	s.calls = append(s.calls, receiveCall{n: n, at: time.Now()})
	s.mu.Unlock()
	return s.Broker.Receive(ctx, n, lease)
}

func (s *receiveSpy) all() []receiveCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]receiveCall(nil), s.calls...)
}

// An idle worker receives at once with every free slot; a busy one (slots
// still held) waits up to core.ReceiveGather for more slots to free up
// before it receives, then goes with what it has.
func TestWorker_ReceiveGathersSlotsWhenBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newWmWorld(t)
		release := make(chan struct{})
		var releaseOnce sync.Once
		free := func() { releaseOnce.Do(func() { close(release) }) }
		reg := core.NewRegistry()
		require.NoError(t, reg.HandleFunc("hold", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
			<-release
			return json.RawMessage(`"ok"`), nil
		}))
		spy := &receiveSpy{Broker: m.tr.Broker(wmQueue)}
		start := time.Now()
		m.submit(wkEnv("h1", "hold"), wkEnv("h2", "hold"), wkEnv("h3", "hold"))
		w := m.startWorker(reg, func(o *core.WorkerOptions) {
			o.Ports.Broker = spy
			o.Concurrency = 4 // gather target: 2 slots
			o.Prefetch = -1   // the gather is the no-prefetch receive policy
		})
		t.Cleanup(free) // after the worker's: a failed assertion must not leave handlers blocked
		synctest.Wait() // h1..h3 run; one slot is free; the loop gathers
		time.Sleep(core.ReceiveGather)
		synctest.Wait()

		calls := spy.all()
		require.GreaterOrEqual(t, len(calls), 2, "%v", calls)
		assert.Equal(t, 4, calls[0].n, "idle: every slot")
		assert.Equal(t, start, calls[0].at, "idle: no wait")
		assert.Equal(t, 1, calls[1].n, "busy: what was free after the gather")
		assert.Equal(t, core.ReceiveGather, calls[1].at.Sub(start), "busy: waited ReceiveGather for more slots")

		free()
		for _, id := range []string{"h1", "h2", "h3"} {
			assert.Equal(t, ports.StateSucceeded, m.result(id).State)
		}
		require.NoError(t, w.stop())
	})
}
