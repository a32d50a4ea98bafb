package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
)

// The soak's pure parts; the soak itself is "make soak" (not make test).

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// Executions beyond the first per task ID are duplicates, attributed to the
// fate of the worker of the execution before: killed, stopped or alive.
func TestCountDuplicates(t *testing.T) {
	execs := []execLine{
		{"a", "w1.1", at(0)},
		{"b", "w1.1", at(1)},
		{"c", "w2.1", at(2)},
		{"a", "w2.1", at(9000)}, // after w1.1's kill -9
		{"c", "w3.1", at(5000)}, // after w2.1's SIGTERM
		{"c", "w3.1", at(7000)}, // after w3.1 lost the lease
		{"d", "w3.1", at(3)},
	}
	fates := map[string]string{"w1.1": fateKilled, "w2.1": fateStopped}
	got := countDuplicates(execs, fates)
	assert.Equal(t, dupCount{executions: 7, tasks: 4, duplicates: 3, afterKill: 1, afterStop: 1, other: 1, maxPerTask: 3}, got)

	assert.Equal(t, dupCount{}, countDuplicates(nil, nil))
	once := countDuplicates([]execLine{{"a", "w1.1", at(0)}, {"b", "w1.1", at(0)}}, fates)
	assert.Equal(t, dupCount{executions: 2, tasks: 2, maxPerTask: 1}, once)
}

// The longest stall is the longest time work was outstanding with no
// completion; idle time (nothing outstanding) is none.
func TestLongestStall(t *testing.T) {
	for _, tc := range []struct {
		name            string
		submitted, done []int // ms
		end             int
		want, wantFrom  int
	}{
		{name: "nothing", end: 1000},
		{name: "one task", submitted: []int{100}, done: []int{300}, end: 1000, want: 200, wantFrom: 100},
		{name: "idle gap is no stall", submitted: []int{0, 5000}, done: []int{10, 5020}, end: 9000, want: 20, wantFrom: 5000},
		{name: "a completion ends the stall, the next begins there",
			submitted: []int{0, 0, 0}, done: []int{100, 2100, 2200}, end: 3000, want: 2000, wantFrom: 100},
		{name: "submissions do not end a stall",
			submitted: []int{0, 500, 1000, 1500}, done: []int{1800, 1900, 1950, 2000}, end: 3000, want: 1800, wantFrom: 0},
		{name: "outstanding at the end", submitted: []int{0, 100}, done: []int{50}, end: 4050, want: 3950, wantFrom: 100},
		{name: "outstanding at the end, busy before", submitted: []int{0, 0}, done: []int{50}, end: 4050, want: 4000, wantFrom: 50},
		{name: "a submission and a completion at once", submitted: []int{0, 100}, done: []int{100, 150}, end: 1000, want: 100, wantFrom: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sub, done []time.Time
			for _, ms := range tc.submitted {
				sub = append(sub, at(ms))
			}
			for _, ms := range tc.done {
				done = append(done, at(ms))
			}
			got, from := longestStall(sub, done, at(tc.end))
			assert.Equal(t, time.Duration(tc.want)*time.Millisecond, got)
			if tc.want > 0 {
				assert.Equal(t, at(tc.wantFrom), from)
			}
		})
	}
}

// percentile is nearest-rank.
func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	assert.Equal(t, 50*time.Millisecond, percentile(ds, 0.5))
	assert.Equal(t, 99*time.Millisecond, percentile(ds, 0.99))
	assert.Equal(t, 100*time.Millisecond, percentile(ds, 1))
	assert.Equal(t, time.Millisecond, percentile(ds, 0.001))
	assert.Equal(t, 100*time.Millisecond, ds[0], "the input is left unsorted")
	assert.Zero(t, percentile(nil, 0.99))
	assert.Equal(t, 7*time.Second, percentile([]time.Duration{7 * time.Second}, 0.99))
}

// 30 minutes: a SIGTERM restart every 2 minutes (14) and a kill -9 every 5
// (5), none at 0 or at the end; both at 10m and 20m, the SIGTERM first.
func TestChaosSchedule(t *testing.T) {
	s := chaosSchedule(30*time.Minute, 2*time.Minute, 5*time.Minute)
	var terms, kills int
	for i, a := range s {
		if a.kill {
			kills++
		} else {
			terms++
		}
		assert.Positive(t, a.at)
		assert.Less(t, a.at, 30*time.Minute)
		if i > 0 {
			assert.GreaterOrEqual(t, a.at, s[i-1].at, "in time order")
		}
	}
	assert.Equal(t, 14, terms)
	assert.Equal(t, 5, kills)
	assert.Equal(t, []chaosAction{{at: 8 * time.Minute}, {at: 10 * time.Minute}, {at: 10 * time.Minute, kill: true}, {at: 12 * time.Minute}}, s[4:8])

	assert.Equal(t, []chaosAction{{at: time.Minute}, {at: 2 * time.Minute}, {at: 2 * time.Minute, kill: true}, {at: 3 * time.Minute}},
		chaosSchedule(4*time.Minute, time.Minute, 2*time.Minute))
	assert.Empty(t, chaosSchedule(30*time.Minute, -1, -1))
	assert.Len(t, chaosSchedule(30*time.Minute, -1, 5*time.Minute), 5)
}

// Faults go round robin over the slots, SIGTERMs from the first, kills
// from the second; a kill at the instant of a restart spares the slot just
// restarted.
func TestFaultVictims(t *testing.T) {
	slots := func(vs []victim) (stops, kills []int) {
		for _, v := range vs {
			if v.kill {
				kills = append(kills, v.slot)
			} else {
				stops = append(stops, v.slot)
			}
		}
		return stops, kills
	}
	stops, kills := slots(faultVictims(chaosSchedule(30*time.Minute, 2*time.Minute, 5*time.Minute), 3))
	assert.Equal(t, []int{0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1}, stops)
	assert.Equal(t, []int{1, 2, 0, 1, 2}, kills) // at 10m: restart of 1, kill of 2; at 20m: 0 and 1

	// 4m, SIGTERM every 1m, kill every 2m: at 2m the restart hits slot 1,
	// so the kill takes slot 2.
	vs := faultVictims(chaosSchedule(4*time.Minute, time.Minute, 2*time.Minute), 3)
	assert.Equal(t, []victim{
		{chaosAction{at: time.Minute}, 0},
		{chaosAction{at: 2 * time.Minute}, 1},
		{chaosAction{at: 2 * time.Minute, kill: true}, 2},
		{chaosAction{at: 3 * time.Minute}, 2},
	}, vs)
}

// The counts scale with the duration: 50,000 tasks and 200 runs in 30
// minutes, at least one of each.
func TestScaledCount(t *testing.T) {
	assert.Equal(t, 50_000, scaledCount(SoakDefaultTasks, 30*time.Minute))
	assert.Equal(t, 200, scaledCount(SoakDefaultRuns, 30*time.Minute))
	assert.Equal(t, 6667, scaledCount(SoakDefaultTasks, 4*time.Minute))
	assert.Equal(t, 27, scaledCount(SoakDefaultRuns, 4*time.Minute))
	assert.Equal(t, 1, scaledCount(SoakDefaultRuns, time.Second))
	assert.Equal(t, 100_000, scaledCount(SoakDefaultTasks, time.Hour))
}

// The soak task's sleeps stay within 2 ms to 1 s, mostly short.
func TestSoakSleep(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 13))
	var sum, long int
	const n = 20000
	for range n {
		ms := soakSleepMS(r)
		require.GreaterOrEqual(t, ms, 2)
		require.LessOrEqual(t, ms, 1000)
		sum += ms
		if ms >= 300 {
			long++
		}
	}
	assert.InDelta(t, 80, float64(sum)/n, 10, "mean ms")
	assert.InDelta(t, 0.05, float64(long)/n, 0.01, "share of 300 ms or more")
}

// The soak task prints its exec line first, sleeps its ms, returns its
// output; a cancelled one returns the context's cause; bad args skip retry.
func TestSoakTask(t *testing.T) {
	var out bytes.Buffer
	reg, err := Registry(&out)
	require.NoError(t, err)
	h, ok := reg.Lookup(TaskSoak)
	require.True(t, ok)

	start := time.Now()
	res, err := h.ProcessTask(context.Background(), &core.Task{ID: "t-1", Name: TaskSoak, Attempt: 2, Args: json.RawMessage(`{"ms":30}`)})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
	assert.JSONEq(t, `{"slept_ms":30,"attempt":2}`, string(res))
	f := strings.Fields(out.String())
	require.Len(t, f, 3, out.String())
	assert.Equal(t, []string{lineExec, "t-1"}, f[:2])

	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(core.ErrTaskCanceled)
	_, err = h.ProcessTask(ctx, &core.Task{ID: "t-2", Name: TaskSoak, Args: json.RawMessage(`{"ms":60000}`)})
	require.ErrorIs(t, err, core.ErrTaskCanceled)

	_, err = h.ProcessTask(context.Background(), &core.Task{ID: "t-3", Name: TaskSoak, Args: json.RawMessage(`"x"`)})
	require.ErrorIs(t, err, core.ErrSkipRetry)
}

// Bad soak settings are refused before anything starts.
func TestSoakUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 2, Main(context.Background(), []string{"-soak", "-1s"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "-soak -1s: valid: a positive duration")

	stderr.Reset()
	t.Setenv("SOAK_KILL_EVERY", "5")
	assert.Equal(t, 2, Main(context.Background(), []string{"-soak", "1m"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), `SOAK_KILL_EVERY="5": not a duration`)

	t.Setenv("SOAK_KILL_EVERY", "")
	t.Setenv("DAGQ_TEST_SQS_ENDPOINT", "")
	t.Setenv("DAGQ_TEST_S3_ENDPOINT", "")
	err := Soak(context.Background(), SoakOptions{Duration: time.Minute, Stdout: &stdout, Stderr: &stderr})
	require.ErrorContains(t, err, "the soak needs the emulators")
	err = Soak(context.Background(), SoakOptions{Duration: time.Minute, Workers: 1, SQSEndpoint: "http://x", S3Endpoint: "http://y"})
	require.ErrorContains(t, err, "1 worker process: the faults need 2 or more")
}
