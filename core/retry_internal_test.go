package core

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFailedWithoutRetry(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("bad input: %w", ErrSkipRetry), "failed without retry: bad input"},
		{ErrSkipRetry, "failed without retry"},
		{fmt.Errorf("%w: bad input", ErrSkipRetry), "failed without retry: bad input"},
		{fmt.Errorf("run task x: %w: %w", errors.New("no job"), ErrSkipRetry), "failed without retry: run task x: no job"},
		{fmt.Errorf("decode: %w: at offset 3", ErrSkipRetry), "failed without retry: decode: at offset 3"},
	} {
		require.Equal(t, tc.want, failedWithoutRetry(tc.err), tc.err.Error())
	}
}
