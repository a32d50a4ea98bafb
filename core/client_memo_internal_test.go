package core

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/ports"
)

func TestMemoCacheBounds(t *testing.T) {
	t.Run("entries: least recently used goes first", func(t *testing.T) {
		m := newMemoCache(3, 1<<20)
		m.submitted("a", true)
		m.submitted("b", true)
		m.submitted("c", true)
		m.finished("a", nil) // a is now the most recent
		m.submitted("d", false)
		assert.Nil(t, m.get("b"))
		for _, id := range []string{"a", "c", "d"} {
			assert.NotNil(t, m.get(id), id)
		}
		assert.True(t, m.get("a").finished)
		assert.True(t, m.get("a").viaInbox)
	})
	t.Run("output bytes", func(t *testing.T) {
		m := newMemoCache(100, 250)
		for i := range 3 {
			id := fmt.Sprint(i)
			m.putResult(id, ports.Result{TaskID: id, State: ports.StateSucceeded, Output: make([]byte, 100)})
		}
		assert.Nil(t, m.get("0"), "over the byte budget")
		require.NotNil(t, m.result("2"))
		assert.Equal(t, 200, m.bytes)
	})
	t.Run("large outputs are not kept", func(t *testing.T) {
		m := newMemoCache(100, memoOutputBudget)
		m.putResult("big", ports.Result{TaskID: "big", State: ports.StateSucceeded, Output: make([]byte, memoMaxOutput+1)})
		it := m.get("big")
		require.NotNil(t, it)
		assert.True(t, it.finished)
		assert.Nil(t, it.res)
		assert.Zero(t, m.bytes)
	})
	t.Run("results are copies", func(t *testing.T) {
		m := newMemoCache(10, 1<<20)
		out := []byte("abc")
		m.putResult("a", ports.Result{TaskID: "a", State: ports.StateSucceeded, Output: out})
		out[0] = 'X'
		r := m.result("a")
		assert.Equal(t, "abc", string(r.Output))
		r.Output[1] = 'Y'
		assert.Equal(t, "abc", string(m.result("a").Output))
	})
}
