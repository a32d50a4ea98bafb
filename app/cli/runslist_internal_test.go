package cli

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core/dag"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 7, 21, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"90m":                       now.Add(-90 * time.Minute),
		"24h":                       now.Add(-24 * time.Hour),
		"7d":                        now.AddDate(0, 0, -7),
		"0s":                        now,
		"2026-12-01T08:30:00Z":      time.Date(2026, 12, 1, 8, 30, 0, 0, time.UTC),
		"2026-12-01T08:30:00+02:00": time.Date(2026, 12, 1, 6, 30, 0, 0, time.UTC),
		"2026-12-01":                time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		require.NoError(t, err, in)
		require.True(t, want.Equal(got), "%s: %v, want %v", in, got, want)
	}
	for _, in := range []string{"", "yesterday", "-1h", "7 d", "1w", "2026-13-01", "999999999d"} {
		_, err := parseSince(in, now)
		require.Error(t, err, in)
	}
}

func TestFormatAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond:                        "850ms",
		42*time.Second + 400*time.Millisecond:         "42s",
		5*time.Minute + 10*time.Second:                "5m10s",
		3*time.Hour + 20*time.Minute + 29*time.Second: "3h20m",
		2 * time.Hour:                                 "2h0m",
		52*time.Hour + 10*time.Minute:                 "2d4h",
	} {
		require.Equal(t, want, formatAge(d), d.String())
	}
}

func TestNextCommand(t *testing.T) {
	since := time.Date(2026, 12, 7, 20, 0, 0, 0, time.FixedZone("x", 3600))
	require.Equal(t, "dagq runs list --cursor 7426703236854775807.d-1",
		nextCommand(dag.ListRunsOptions{Limit: dag.DefaultListRunsLimit}, "7426703236854775807.d-1"))
	require.Equal(t, `dagq runs list --state failed --job 'etl v2 '\''prod'\''' --since 2026-12-07T19:00:00Z --limit 10 --cursor 7426703236854775807.r%2F1`,
		nextCommand(dag.ListRunsOptions{State: dag.RunFailed, Job: "etl v2 'prod'", Since: since, Limit: 10}, "7426703236854775807.r%2F1"))
}

// The table: newest first as given, ages from now, the duration from
// launch to finish, "-" while running; the next page's command last.
func TestWriteRunsList(t *testing.T) {
	now := time.Date(2026, 12, 7, 21, 40, 0, 0, time.UTC)
	runs := []dag.RunSummary{
		{RunID: "nightly-9", Job: "nightly", State: dag.RunQueued, CreatedAt: now.Add(-15 * time.Second)},
		{RunID: "long-2", Job: "long", State: dag.RunRunning, CreatedAt: now.Add(-36 * time.Second)},
		{RunID: "f-1", Job: "failing", State: dag.RunFailed, CreatedAt: now.Add(-78 * time.Second),
			FinishedAt: now.Add(-78*time.Second + 2080*time.Millisecond)},
		{RunID: "d-1", Job: "diamond\twith a long name that does not fit in the column", State: dag.RunSucceeded,
			CreatedAt: now.Add(-3 * time.Hour), FinishedAt: now.Add(-3*time.Hour + 66*time.Millisecond)},
	}
	var b bytes.Buffer
	require.NoError(t, writeRunsList(&b, runs, "7426703236854775807.d-1", dag.ListRunsOptions{Limit: 4}, now))
	t.Logf("\n%s", b.String())
	lines := strings.Split(b.String(), "\n")
	require.Len(t, lines, 8)
	for i, re := range []string{
		`^RUN  +JOB  +STATE  +CREATED  +DURATION$`,
		`^nightly-9  +nightly  +queued  +\S+ \(15s ago\)  +-$`,
		`^long-2  +long  +running  +\S+ \(36s ago\)  +-$`,
		`^f-1  +failing  +failed  +\S+ \(1m18s ago\)  +2\.08s$`,
		`^d-1  +diamond with a long name that does not …  +succeeded  +\S+ \(3h0m ago\)  +66ms$`,
		`^$`,
		`^more: dagq runs list --limit 4 --cursor 7426703236854775807\.d-1$`,
		`^$`,
	} {
		require.Regexp(t, regexp.MustCompile(re), lines[i])
	}

	b.Reset()
	require.NoError(t, writeRunsList(&b, nil, "", dag.ListRunsOptions{}, now))
	require.Equal(t, "no runs\n", b.String())
	b.Reset()
	require.NoError(t, writeRunsList(&b, nil, "7426703236854775807.d-1", dag.ListRunsOptions{State: dag.RunFailed, Limit: 50}, now))
	require.Equal(t, "no runs in this part of the index; more: dagq runs list --state failed --cursor 7426703236854775807.d-1\n", b.String())
}
