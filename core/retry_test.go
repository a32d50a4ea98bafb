package core_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
)

func TestRetryPolicy_Backoff(t *testing.T) {
	p := core.RetryPolicy{MaxAttempts: 10, InitialBackoff: time.Second, MaxBackoff: 10 * time.Second, Multiplier: 2}
	require.Equal(t, time.Second, p.Backoff(1))
	require.Equal(t, 2*time.Second, p.Backoff(2))
	require.Equal(t, 8*time.Second, p.Backoff(4))
	require.Equal(t, 10*time.Second, p.Backoff(5), "capped")
	require.Equal(t, 10*time.Second, p.Backoff(5000), "no overflow")

	p.Jitter = 0.5
	for range 1000 {
		d := p.Backoff(2)
		require.GreaterOrEqual(t, d, time.Second)
		require.LessOrEqual(t, d, 2*time.Second)
	}
}

func TestRetryPolicy_Validate(t *testing.T) {
	require.NoError(t, core.DefaultRetryPolicy.Validate())
	bad := []struct {
		p       core.RetryPolicy
		mention string
	}{
		{core.RetryPolicy{}, "max_attempts"},
		{core.RetryPolicy{MaxAttempts: 1, InitialBackoff: -1}, "initial_backoff"},
		{core.RetryPolicy{MaxAttempts: 1, InitialBackoff: 2, MaxBackoff: 1, Multiplier: 1}, "max_backoff"},
		{core.RetryPolicy{MaxAttempts: 1, MaxBackoff: -1}, "max_backoff"},
		{core.RetryPolicy{MaxAttempts: 1, Multiplier: 0.5}, "multiplier"},
		{core.RetryPolicy{MaxAttempts: 1, Multiplier: 1, Jitter: 2}, "jitter"},
	}
	// Partial policies are valid: zero multiplier is constant, zero max_backoff no cap.
	partial := core.RetryPolicy{MaxAttempts: 4, InitialBackoff: 3 * time.Second}
	require.NoError(t, partial.Validate())
	require.Equal(t, 3*time.Second, partial.Backoff(1))
	require.Equal(t, 3*time.Second, partial.Backoff(9))
	require.Equal(t, 12*time.Hour, core.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Hour, Multiplier: 10}.Backoff(5), "capped at ports.MaxLease")
	for _, b := range bad {
		require.ErrorContains(t, b.p.Validate(), b.mention)
	}
}
