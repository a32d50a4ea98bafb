package core

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/ports"
)

func resultOf(id string) *ports.Result {
	return &ports.Result{TaskID: id, State: ports.StateSucceeded, Output: []byte(id)}
}

func TestMemoCacheBounds(t *testing.T) {
	t.Run("finished: least recently used goes first", func(t *testing.T) {
		m := newMemoCache(3, 100, 1<<20)
		for _, id := range []string{"a", "b", "c"} {
			m.finished(id, nil, false)
		}
		m.finished("a", nil, false) // a is now the most recent
		m.finished("d", nil, false)
		assert.Nil(t, m.get("b"))
		for _, id := range []string{"a", "c", "d"} {
			assert.NotNil(t, m.get(id), id)
		}
	})
	t.Run("submitted tasks are not evicted by finished ones", func(t *testing.T) {
		m := newMemoCache(2, 100, 1<<20)
		for i := range 10 {
			m.submitted(fmt.Sprint("s", i), true)
		}
		for i := range 10 {
			m.finished(fmt.Sprint("f", i), nil, false)
		}
		for i := range 10 {
			it := m.get(fmt.Sprint("s", i))
			require.NotNil(t, it, i)
			assert.True(t, it.viaInbox)
			assert.False(t, it.finished)
		}
		assert.Equal(t, 2, m.lists[onLRU].Len())
	})
	t.Run("pending: the oldest are forgotten beyond the limit", func(t *testing.T) {
		m := newMemoCache(100, 3, 1<<20)
		for _, id := range []string{"a", "b", "c", "d"} {
			m.submitted(id, true)
		}
		assert.Nil(t, m.get("a"))
		assert.Equal(t, 3, m.lists[onPending].Len())
		// A completion of a forgotten task is remembered as a foreign one.
		m.finished("a", resultOf("a"), false)
		require.NotNil(t, m.result("a"))
		assert.Equal(t, onLRU, m.get("a").list)
	})
	t.Run("held until taken, whatever the LRU size", func(t *testing.T) {
		m := newMemoCache(1, 100, 1<<20)
		for _, id := range []string{"a", "b", "c"} {
			m.submitted(id, true)
			m.finished(id, resultOf(id), false)
		}
		assert.Equal(t, 3, m.lists[onHeld].Len())
		assert.Zero(t, m.lists[onPending].Len())
		r, ok := m.take("a")
		require.True(t, ok)
		assert.Equal(t, "a", string(r.Output))
		assert.Equal(t, onLRU, m.get("a").list)
		// Taken results go to the LRU, which keeps one.
		_, ok = m.take("b")
		require.True(t, ok)
		assert.Nil(t, m.get("a"))
		r, ok = m.take("b")
		require.True(t, ok, "still remembered after it was taken")
		assert.Equal(t, "b", string(r.Output))
		assert.Equal(t, onHeld, m.get("c").list)
	})
	t.Run("a result taken by a waiter goes to the LRU", func(t *testing.T) {
		m := newMemoCache(10, 100, 1<<20)
		m.submitted("a", true)
		m.finished("a", resultOf("a"), true)
		assert.Equal(t, onLRU, m.get("a").list)
		assert.Zero(t, m.lists[onHeld].Len())
		assert.Equal(t, 1, m.bytes)
	})
	t.Run("a completion without result is not held", func(t *testing.T) {
		m := newMemoCache(10, 100, 1<<20)
		m.submitted("a", true)
		m.finished("a", nil, false)
		it := m.get("a")
		require.NotNil(t, it)
		assert.True(t, it.finished)
		assert.Equal(t, onLRU, it.list)
	})
	t.Run("held budget: the oldest move to the LRU", func(t *testing.T) {
		m := newMemoCache(1, 100, 1<<20)
		m.heldBudget = 2*memoHeldOverhead + 100
		for _, id := range []string{"a", "b", "c"} {
			m.submitted(id, true)
			m.finished(id, resultOf(id), false)
		}
		assert.Equal(t, 2, m.lists[onHeld].Len())
		assert.Equal(t, onLRU, m.get("a").list, "moved to the LRU")
		m.submitted("d", true)
		m.finished("d", resultOf("d"), false)
		assert.Nil(t, m.get("a"), "then evicted from the LRU")
		assert.Equal(t, onLRU, m.get("b").list)
		assert.Equal(t, 2*heldCost(resultOf("c")), m.held)
		for _, id := range []string{"c", "d"} {
			_, ok := m.take(id)
			assert.True(t, ok)
		}
		assert.Zero(t, m.held)
	})
	t.Run("output bytes", func(t *testing.T) {
		m := newMemoCache(100, 100, 250)
		for i := range 3 {
			id := fmt.Sprint(i)
			m.putResult(id, ports.Result{TaskID: id, State: ports.StateSucceeded, Output: make([]byte, 100)}, false)
		}
		assert.Nil(t, m.get("0"), "over the byte budget")
		require.NotNil(t, m.result("2"))
		assert.Equal(t, 200, m.bytes)
	})
	t.Run("large outputs are not kept", func(t *testing.T) {
		m := newMemoCache(100, 100, memoOutputBudget)
		m.submitted("big", true)
		m.putResult("big", ports.Result{TaskID: "big", State: ports.StateSucceeded, Output: make([]byte, memoMaxOutput+1)}, false)
		it := m.get("big")
		require.NotNil(t, it)
		assert.True(t, it.finished)
		assert.Nil(t, it.res)
		assert.Zero(t, m.bytes)
		assert.Zero(t, m.held)
	})
	t.Run("results are copies", func(t *testing.T) {
		m := newMemoCache(10, 10, 1<<20)
		out := []byte("abc")
		m.putResult("a", ports.Result{TaskID: "a", State: ports.StateSucceeded, Output: out}, false)
		out[0] = 'X'
		r := m.result("a")
		assert.Equal(t, "abc", string(r.Output))
		r.Output[1] = 'Y'
		assert.Equal(t, "abc", string(m.result("a").Output))
		r2, _ := m.take("a")
		r2.Output[2] = 'Z'
		assert.Equal(t, "abc", string(m.result("a").Output))
	})
}
