package core

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRecentSet_ForgetsOldestFirst(t *testing.T) {
	r := newRecentSet(3)
	for i := range 3 {
		r.add(fmt.Sprint(i))
	}
	r.add("1") // already there: no change
	require.True(t, r.has("0"))
	r.add("3") // evicts "0"
	require.False(t, r.has("0"))
	for _, id := range []string{"1", "2", "3"} {
		require.True(t, r.has(id), id)
	}
	r.add("4") // evicts "1"
	require.False(t, r.has("1"))
	require.Len(t, r.ids, 3, "bounded")
	require.Len(t, r.ring, 3)
}
