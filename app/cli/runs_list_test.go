package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
)

// runsListOut is dagq runs list --output json.
type runsListOut struct {
	Runs []dag.RunSummary `json:"runs"`
	Next string           `json:"next"`
}

// listJSON runs dagq runs list -o json with args against rt.
func listJSON(t *testing.T, ctx context.Context, rt *app.Runtime, args ...string) runsListOut {
	t.Helper()
	r := inCtx(t, ctx, rt, append([]string{"runs", "list", "-o", "json"}, args...)...)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	var out runsListOut
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	require.NotNil(t, out.Runs, `"runs" is a list, [] when empty`)
	return out
}

func summaryIDs(runs []dag.RunSummary) []string {
	ids := []string{}
	for _, r := range runs {
		ids = append(ids, r.RunID)
	}
	return ids
}

// nextCursorRE finds the next-page line of the table.
var nextCursorRE = regexp.MustCompile(`(?m)^more: dagq runs list (.*)--cursor (\S+)$`)

// dagq runs list on one shared memory runtime: the table, filters, pages,
// JSON, and the flag errors.
func TestRunsList_SharedRuntime(t *testing.T) {
	rt := sharedRuntime(t)
	ctx := context.Background()
	slow := writeJob(t, slowJob)

	r := in(t, rt, "launch", examples+"diamond.yaml", "--wait", "--run-id", "d-1")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	r = in(t, rt, "launch", examples+"failing.yaml", "--wait", "--run-id", "f-1")
	require.Equal(t, cli.ExitFailed, r.code, r.stderr)
	r = in(t, rt, "launch", slow, "--run-id", "long-1")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Eventually(t, func() bool { return record(t, rt, "long-1").State == dag.RunRunning }, 10*time.Second, 20*time.Millisecond)

	r = in(t, rt, "runs", "list")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 4, r.stdout)
	require.Regexp(t, `^RUN\s+JOB\s+STATE\s+CREATED\s+DURATION$`, lines[0])
	require.Regexp(t, `^long-1\s+slow\s+running\s+\S+ \(\S+ ago\)\s+-$`, lines[1])
	require.Regexp(t, `^f-1\s+failing\s+failed\s+\S+ \(\S+ ago\)\s+[0-9.]+[µmn]?s$`, lines[2])
	require.Regexp(t, `^d-1\s+diamond\s+succeeded\s+\S+ \(\S+ ago\)\s+[0-9.]+[µmn]?s$`, lines[3])

	out := listJSON(t, ctx, rt)
	require.Equal(t, []string{"long-1", "f-1", "d-1"}, summaryIDs(out.Runs))
	require.Empty(t, out.Next)
	for _, s := range out.Runs {
		rec := record(t, rt, s.RunID)
		require.Equal(t, dag.RunSummary{RunID: rec.RunID, Job: rec.Job, State: rec.State, CreatedAt: rec.CreatedAt, FinishedAt: rec.FinishedAt}, s)
	}
	r = in(t, rt, "runs", "list", "-o", "json", "--limit", "1")
	require.Regexp(t, `^\{\n  "runs": \[\n    \{\n      "run_id": "long-1",\n      "job": "slow",\n      "state": "running",\n      "created_at": "[^"]+"\n    \}\n  \],\n  "next": "[^"]+"\n\}\n$`, r.stdout,
		"no finished_at while running")

	require.Equal(t, []string{"f-1"}, summaryIDs(listJSON(t, ctx, rt, "--state", "failed").Runs))
	require.Equal(t, []string{"d-1"}, summaryIDs(listJSON(t, ctx, rt, "--job", "diamond").Runs))
	require.Empty(t, listJSON(t, ctx, rt, "--job", "diamond", "--state", "failed").Runs)
	require.Equal(t, []string{"long-1", "f-1", "d-1"}, summaryIDs(listJSON(t, ctx, rt, "--since", "1h").Runs))
	require.Equal(t, []string{"long-1", "f-1", "d-1"}, summaryIDs(listJSON(t, ctx, rt, "--since", "1d").Runs))
	since := record(t, rt, "f-1").CreatedAt.Format(time.RFC3339Nano)
	require.Equal(t, []string{"long-1", "f-1"}, summaryIDs(listJSON(t, ctx, rt, "--since", since).Runs))
	require.Empty(t, listJSON(t, ctx, rt, "--since", time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)).Runs)
	r = in(t, rt, "runs", "list", "--state", "queued")
	require.Equal(t, cli.ExitOK, r.code)
	require.Equal(t, "no runs\n", r.stdout)

	// Pages: the last line says how to list the next one.
	var ids []string
	args := []string{"runs", "list", "--limit", "1", "--since", "1h"}
	for {
		r := in(t, rt, args...)
		require.Equal(t, cli.ExitOK, r.code, r.stderr)
		for _, l := range strings.Split(r.stdout, "\n")[1:] {
			if f := strings.Fields(l); len(f) > 0 && f[0] != "more:" {
				ids = append(ids, f[0])
			}
		}
		m := nextCursorRE.FindStringSubmatch(r.stdout)
		if m == nil {
			break
		}
		require.Regexp(t, `^--since \S+Z --limit 1 $`, m[1], "the same filters, --since as a time")
		require.Less(t, len(ids), 5, "paging does not end")
		args = append(append([]string{"runs", "list"}, strings.Fields(m[1])...), "--cursor", m[2])
	}
	require.Equal(t, []string{"long-1", "f-1", "d-1"}, ids)
	page := listJSON(t, ctx, rt, "--limit", "2")
	require.Equal(t, []string{"long-1", "f-1"}, summaryIDs(page.Runs))
	page = listJSON(t, ctx, rt, "--limit", "2", "--cursor", page.Next)
	require.Equal(t, []string{"d-1"}, summaryIDs(page.Runs))
	require.Empty(t, page.Next)

	r = in(t, rt, "terminate", "long-1", "--wait")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Equal(t, []string{"long-1"}, summaryIDs(listJSON(t, ctx, rt, "--state", "cancelled").Runs))

	for _, c := range []struct {
		args []string
		err  string
	}{
		{[]string{"--state", "done"}, `--state "done": valid values: queued, running, succeeded, failed, cancelled`},
		{[]string{"--limit", "0"}, "--limit 0: valid: 1 to 1000"},
		{[]string{"--limit", "1001"}, "--limit 1001: valid: 1 to 1000"},
		{[]string{"--since", "yesterday"}, `--since "yesterday": valid: a duration back from now`},
		{[]string{"--since", "-1h"}, "a negative duration"},
		{[]string{"--cursor", "nope"}, "Cursor"},
		{[]string{"-o", "yaml"}, `--output "yaml"`},
		{[]string{"extra"}, "takes 0 argument(s)"},
	} {
		r := in(t, rt, append([]string{"runs", "list"}, c.args...)...)
		require.Equal(t, cli.ExitUsage, r.code, c.args)
		require.Contains(t, r.stderr, c.err, c.args)
	}
}

// Without a runtime, on the memory transport, there is nothing to list.
func TestRunsList_NeedsASharedTransport(t *testing.T) {
	r := dagq(t, "runs", "list")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, "dagq: runs list needs a shared transport")
}

// dagq runs list on the sqs transport (the emulators): runs launched and
// finished through SQS and S3, listed from the index; an unfiltered page
// is one ListObjectsV2 and reads no object.
func TestSQS_RunsList(t *testing.T) {
	cfg, flags := sqsEnv(t)
	require.Equal(t, cli.ExitOK, dagq(t, append([]string{"queue", "init"}, flags...)...).code)
	rt, err := app.New(cfg, builtins(t), app.WithLogger(quiet()))
	require.NoError(t, err)
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, err := rt.StartWorkers(ctx, 2)
	require.NoError(t, err)
	runPool, err := rt.StartRunWorkers(ctx, 1)
	require.NoError(t, err)

	prefix := "l" + strings.TrimPrefix(cfg.S3.Bucket, "dagq-app-")
	for i, job := range []string{"diamond", "failing", "diamond"} {
		id := fmt.Sprintf("%s-%d", prefix, i+1)
		r := inCtx(t, ctx, rt, "launch", examples+job+".yaml", "--wait", "--run-id", id)
		require.Contains(t, []int{cli.ExitOK, cli.ExitFailed}, r.code, r.stderr)
	}
	require.NoError(t, runPool.Stop())
	require.NoError(t, pool.Stop())
	queued := prefix + "-4"
	r := inCtx(t, ctx, rt, "launch", examples+"diamond.yaml", "--run-id", queued) // no run worker any more
	require.Equal(t, cli.ExitOK, r.code, r.stderr)

	// A runtime of its own, counting its requests (no cancel channel: no
	// background LIST of cancel marks).
	counter := cli.NewAWSCounter()
	lcfg := cfg
	lcfg.Cancellation.Enabled = false
	lrt, err := app.New(lcfg, builtins(t), app.WithLogger(quiet()), cli.WithAWSCounter(counter))
	require.NoError(t, err)
	defer lrt.Close()

	r = inCtx(t, ctx, lrt, "runs", "list")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	got := counter.Snapshot()
	t.Logf("requests: %+v", got)
	require.Equal(t, int64(1), got.Get("S3", "ListObjectsV2"))
	require.Equal(t, int64(1), got.Service("S3"), "no record read")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 5, r.stdout)
	require.Regexp(t, `^`+queued+`\s+diamond\s+queued\s+\S+ \(\S+ ago\)\s+-$`, lines[1])
	require.Regexp(t, `^`+prefix+`-3\s+diamond\s+succeeded\s+\S+ \(\S+ ago\)\s+\S+s$`, lines[2])
	require.Regexp(t, `^`+prefix+`-2\s+failing\s+failed\s`, lines[3])
	require.Regexp(t, `^`+prefix+`-1\s+diamond\s+succeeded\s`, lines[4])

	out := listJSON(t, ctx, lrt, "--state", "succeeded")
	require.Equal(t, []string{prefix + "-3", prefix + "-1"}, summaryIDs(out.Runs))
	for _, s := range out.Runs {
		rec, err := lrt.Launcher.Status(ctx, s.RunID)
		require.NoError(t, err)
		require.Equal(t, dag.RunSummary{RunID: rec.RunID, Job: rec.Job, State: rec.State, CreatedAt: rec.CreatedAt, FinishedAt: rec.FinishedAt}, s)
	}
	out = listJSON(t, ctx, lrt, "--job", "failing")
	require.Equal(t, []string{prefix + "-2"}, summaryIDs(out.Runs))
	out = listJSON(t, ctx, lrt, "--limit", "3")
	require.Equal(t, []string{queued, prefix + "-3", prefix + "-2"}, summaryIDs(out.Runs))
	out = listJSON(t, ctx, lrt, "--limit", "3", "--cursor", out.Next)
	require.Equal(t, []string{prefix + "-1"}, summaryIDs(out.Runs))
	require.Empty(t, out.Next)

	// The queued run ends cancelled: its key moves.
	r = inCtx(t, ctx, lrt, "terminate", queued)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	out = listJSON(t, ctx, lrt, "--state", "cancelled")
	require.Equal(t, []string{queued}, summaryIDs(out.Runs))
	require.Empty(t, listJSON(t, ctx, lrt, "--state", "queued").Runs)
}

// BenchmarkListRuns_S3 lists 1,000 runs stored on the emulators (launched
// with Launch, so their records and index keys are there) through the
// Launcher: a page of 50 and of 1,000, and filters that scan every key. It
// reports the S3 requests per call. make emulators-up; eval "$(scripts/
// emulators.sh env)"; go test ./app/cli -run '^$' -bench ListRuns_S3.
func BenchmarkListRuns_S3(b *testing.B) {
	cfg, flags := sqsEnv(b)
	reg := core.NewRegistry()
	if err := builtin.Register(reg); err != nil {
		b.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := cli.Execute(context.Background(), reg, append([]string{"queue", "init"}, flags...), &out, &errb); code != cli.ExitOK {
		b.Fatalf("queue init: %d %s", code, errb.String())
	}
	counter := cli.NewAWSCounter()
	cfg.Cancellation.Enabled = false
	rt, err := app.New(cfg, reg, app.WithLogger(quiet()), cli.WithAWSCounter(counter))
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	ctx := context.Background()
	job := dag.Job{Name: "nightly", Steps: []dag.Step{{Name: "a", Task: builtin.Echo}}}
	const runs = 1000
	var wg sync.WaitGroup
	errs := make(chan error, runs)
	sem := make(chan struct{}, 32)
	for i := range runs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := rt.Launcher.Launch(ctx, job, dag.LaunchOptions{RunID: fmt.Sprintf("bench-%04d", i)}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		opts dag.ListRunsOptions
		want int
	}{
		{"page50", dag.ListRunsOptions{}, 50},
		{"page1000", dag.ListRunsOptions{Limit: 1000}, 1000},
		{"state_scan_all", dag.ListRunsOptions{State: dag.RunFailed}, 0},
		{"job_scan_all", dag.ListRunsOptions{Job: "weekly"}, 0},
		{"job_match_page50", dag.ListRunsOptions{Job: "nightly"}, 50},
	} {
		b.Run(c.name, func(b *testing.B) {
			counter.Reset()
			for b.Loop() {
				got, _, err := rt.Launcher.ListRuns(ctx, c.opts)
				if err != nil {
					b.Fatal(err)
				}
				if len(got) != c.want {
					b.Fatalf("%d runs listed, want %d", len(got), c.want)
				}
			}
			s := counter.Snapshot()
			b.ReportMetric(float64(s.Get("S3", "ListObjectsV2"))/float64(b.N), "lists/op")
			b.ReportMetric(float64(s.Service("S3")-s.Get("S3", "ListObjectsV2"))/float64(b.N), "other-s3/op")
		})
	}
}
