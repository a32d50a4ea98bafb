package porttest

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/ports"
)

// TestStateStore runs the StateStore conformance suite against the stores of
// h.
func TestStateStore(t *testing.T, h StateHarness) {
	e := newEnv(h.Features())
	tests := []struct {
		name string
		fn   func(*testing.T, env, StateHarness)
	}{
		{"PutGet", testStatePutGet},
		{"GetMissing", testStateGetMissing},
		{"UnconditionalOverwrite", testStateOverwrite},
		{"MustNotExist", testStateMustNotExist},
		{"MatchVersion", testStateMatchVersion},
		{"RacingConditionalWrites", testStateRacing},
		{"DataIsCopied", testStateDataIsCopied},
		{"Delete", testStateDelete},
		{"VisibleAcrossStores", testStateVisibleAcrossStores},
		{"Validation", testStateValidation},
		{"Closed", testStateClosed},
	}
	for _, tc := range tests {
		e.run(t, tc.name, needNothing, func(t *testing.T) { tc.fn(t, e, h) })
	}
	e.run(t, "ListKeys", needListKeys, func(t *testing.T) { testStateListKeys(t, e, h) })
}

// ListKeys (the optional ports.KeyLister) pages through the keys under a
// prefix in byte order, on any store of the key space, and sees deletes.
func testStateListKeys(t *testing.T, e env, h StateHarness) {
	ctx := e.ctx(t)
	ss := h.NewStateStore(t, 2)
	l, ok := ss[1].(ports.KeyLister)
	require.Truef(t, ok, "Features.ListKeys is declared but %T does not implement ports.KeyLister", ss[1])
	want := []string{"idx/0001/b", "idx/0001/c", "idx/0002/a", "idx/01", "idx/1"}
	for _, k := range []string{"idx/1", "other/x", "idx/0002/a", "idx/01", "idx/0001/c", "idx/0001/b", "idw"} {
		_, err := ss[0].Put(ctx, k, []byte("v"), ports.WriteCondition{})
		require.NoError(t, err)
	}
	keys, more, err := l.ListKeys(ctx, "idx/", "", 100)
	require.NoError(t, err)
	require.Equal(t, want, keys, "byte order, only under the prefix")
	require.False(t, more)

	var paged []string
	after := ""
	for range 10 {
		keys, more, err = l.ListKeys(ctx, "idx/", after, 2)
		require.NoError(t, err)
		require.LessOrEqual(t, len(keys), 2)
		paged = append(paged, keys...)
		if !more {
			break
		}
		after = keys[len(keys)-1]
	}
	require.Equal(t, want, paged, "pages of 2, each after the last key of the one before")

	require.NoError(t, ss[0].Delete(ctx, "idx/0002/a"))
	keys, _, err = l.ListKeys(ctx, "idx/0", "idx/0001/b", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"idx/0001/c", "idx/01"}, keys, "after a key, without the deleted one")
	keys, more, err = l.ListKeys(ctx, "none/", "", 10)
	require.NoError(t, err)
	require.Empty(t, keys)
	require.False(t, more)
	for _, limit := range []int{0, ports.MaxListKeys + 1} {
		_, _, err = l.ListKeys(ctx, "idx/", "", limit)
		require.ErrorIs(t, err, ports.ErrInvalidArgument, "limit %d", limit)
	}
}

func testStatePutGet(t *testing.T, e env, h StateHarness) {
	ctx := e.ctx(t)
	s := h.NewStateStore(t, 1)[0]
	data := []byte("{\"state\":\"running\"}\x00\xff")
	v, err := s.Put(ctx, "runs/r1/record", data, ports.WriteCondition{})
	require.NoError(t, err)
	require.NotEmpty(t, v, "Put returns the new version")
	got, err := s.Get(ctx, "runs/r1/record")
	require.NoError(t, err)
	require.Equal(t, "runs/r1/record", got.Key)
	requireBytes(t, data, got.Data)
	require.Equal(t, v, got.Version, "Get reports the version Put returned")
	require.False(t, got.UpdatedAt.IsZero(), "UpdatedAt is set")
}

func testStateGetMissing(t *testing.T, e env, h StateHarness) {
	_, err := h.NewStateStore(t, 1)[0].Get(e.ctx(t), "runs/none")
	require.ErrorIs(t, err, ports.ErrNotFound)
}

func testStateOverwrite(t *testing.T, e env, h StateHarness) {
	ctx := e.ctx(t)
	s := h.NewStateStore(t, 1)[0]
	v1, err := s.Put(ctx, "k", []byte("one"), ports.WriteCondition{})
	require.NoError(t, err)
	v2, err := s.Put(ctx, "k", []byte("two"), ports.WriteCondition{})
	require.NoError(t, err)
	require.NotEqual(t, v1, v2, "every write changes the version")
	got, err := s.Get(ctx, "k")
	require.NoError(t, err)
	requireBytes(t, []byte("two"), got.Data)
	require.Equal(t, v2, got.Version)
}

func testStateMustNotExist(t *testing.T, e env, h StateHarness) {
	ctx := e.ctx(t)
	s := h.NewStateStore(t, 1)[0]
	_, err := s.Put(ctx, "k", []byte("first"), ports.WriteCondition{MustNotExist: true})
	require.NoError(t, err)
	_, err = s.Put(ctx, "k", []byte("second"), ports.WriteCondition{MustNotExist: true})
	require.ErrorIs(t, err, ports.ErrAlreadyExists)
	got, err := s.Get(ctx, "k")
	require.NoError(t, err)
	requireBytes(t, []byte("first"), got.Data, "the losing create changes nothing")
}

func testStateMatchVersion(t *testing.T, e env, h StateHarness) {
	ctx := e.ctx(t)
	s := h.NewStateStore(t, 1)[0]
	v1, err := s.Put(ctx, "k", []byte("one"), ports.WriteCondition{})
	require.NoError(t, err)
	v2, err := s.Put(ctx, "k", []byte("two"), ports.WriteCondition{MatchVersion: v1})
	require.NoError(t, err, "write on the current version")
	_, err = s.Put(ctx, "k", []byte("stale"), ports.WriteCondition{MatchVersion: v1})
	require.ErrorIs(t, err, ports.ErrConflict, "write on a stale version")
	got, err := s.Get(ctx, "k")
	require.NoError(t, err)
	requireBytes(t, []byte("two"), got.Data)
	require.Equal(t, v2, got.Version)

	_, err = s.Put(ctx, "gone", []byte("x"), ports.WriteCondition{MatchVersion: v2})
	require.ErrorIs(t, err, ports.ErrNotFound, "conditional write on a missing key")
}

// Of several writers racing on one version, exactly one wins.
func testStateRacing(t *testing.T, e env, h StateHarness) {
	ctx := e.ctx(t)
	const n = 5
	ss := h.NewStateStore(t, n)
	v0, err := ss[0].Put(ctx, "k", []byte("base"), ports.WriteCondition{})
	require.NoError(t, err)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  []int
		errs []error
	)
	for i := range n {
		wg.Go(func() {
			_, err := ss[i].Put(ctx, "k", []byte{byte('a' + i)}, ports.WriteCondition{MatchVersion: v0})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				won = append(won, i)
			} else {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	require.Len(t, won, 1, "exactly one conditional write wins")
	for _, err := range errs {
		require.ErrorIs(t, err, ports.ErrConflict)
	}
	got, err := ss[0].Get(ctx, "k")
	require.NoError(t, err)
	requireBytes(t, []byte{byte('a' + won[0])}, got.Data)
}

func testStateDataIsCopied(t *testing.T, e env, h StateHarness) {
	ctx := e.ctx(t)
	s := h.NewStateStore(t, 1)[0]
	data := []byte("abc")
	_, err := s.Put(ctx, "k", data, ports.WriteCondition{})
	require.NoError(t, err)
	data[0] = 'X'
	got, err := s.Get(ctx, "k")
	require.NoError(t, err)
	requireBytes(t, []byte("abc"), got.Data, "mutating the written slice changes nothing")
	got.Data[0] = 'Y'
	again, err := s.Get(ctx, "k")
	require.NoError(t, err)
	requireBytes(t, []byte("abc"), again.Data, "mutating a read slice changes nothing")
}

func testStateDelete(t *testing.T, e env, h StateHarness) {
	ctx := e.ctx(t)
	s := h.NewStateStore(t, 1)[0]
	_, err := s.Put(ctx, "k", []byte("v"), ports.WriteCondition{})
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, "k"))
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, ports.ErrNotFound)
	require.NoError(t, s.Delete(ctx, "k"), "deleting a missing key is not an error")
	_, err = s.Put(ctx, "k", []byte("again"), ports.WriteCondition{MustNotExist: true})
	require.NoError(t, err, "a deleted key can be created again")
}

func testStateVisibleAcrossStores(t *testing.T, e env, h StateHarness) {
	ctx := e.ctx(t)
	ss := h.NewStateStore(t, 2)
	v, err := ss[0].Put(ctx, "k", []byte("v"), ports.WriteCondition{})
	require.NoError(t, err)
	got, err := ss[1].Get(ctx, "k")
	require.NoError(t, err)
	requireBytes(t, []byte("v"), got.Data)
	_, err = ss[1].Put(ctx, "k", []byte("w"), ports.WriteCondition{MatchVersion: v})
	require.NoError(t, err, "versions are valid across stores")
}

func testStateValidation(t *testing.T, e env, h StateHarness) {
	ctx := e.ctx(t)
	s := h.NewStateStore(t, 1)[0]
	for _, key := range []string{"", "has space", "tab\tkey", "ünï", strings.Repeat("k", ports.MaxKeyLen+1)} {
		_, err := s.Put(ctx, key, []byte("v"), ports.WriteCondition{})
		require.ErrorIs(t, err, ports.ErrInvalidArgument, "Put key %q", key)
		_, err = s.Get(ctx, key)
		require.ErrorIs(t, err, ports.ErrInvalidArgument, "Get key %q", key)
	}
	_, err := s.Put(ctx, "k", []byte("v"), ports.WriteCondition{MustNotExist: true, MatchVersion: "v1"})
	require.ErrorIs(t, err, ports.ErrInvalidArgument, "both conditions")
}

func testStateClosed(t *testing.T, e env, h StateHarness) {
	ctx := e.ctx(t)
	ss := h.NewStateStore(t, 2)
	_, err := ss[0].Put(ctx, "k", []byte("v"), ports.WriteCondition{})
	require.NoError(t, err)
	require.NoError(t, ss[0].Close())
	_, err = ss[0].Put(ctx, "k", []byte("w"), ports.WriteCondition{})
	require.ErrorIs(t, err, ports.ErrClosed, "Put")
	_, err = ss[0].Get(ctx, "k")
	require.ErrorIs(t, err, ports.ErrClosed, "Get")
	require.ErrorIs(t, ss[0].Delete(ctx, "k"), ports.ErrClosed, "Delete")
	require.NoError(t, ss[0].Close(), "second Close")
	got, err := ss[1].Get(ctx, "k")
	require.NoError(t, err, "another store is unaffected")
	requireBytes(t, []byte("v"), got.Data)
}
