package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of loggers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type result struct {
	code           int
	stdout, stderr string
}

// dagq runs the command in process with the built-in tasks.
func dagq(t *testing.T, args ...string) result {
	t.Helper()
	return dagqCtx(t, context.Background(), builtins(t), args...)
}

func dagqCtx(t *testing.T, ctx context.Context, reg *core.Registry, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	code := cli.Execute(ctx, reg, args, &out, &errb)
	r := result{code: code, stdout: out.String(), stderr: errb.String()}
	t.Logf("dagq %s → %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, r.stdout, r.stderr)
	// Errors are clean lines, never panics or stack traces.
	assert.NotContains(t, r.stderr, "goroutine ")
	assert.NotContains(t, r.stderr, "panic")
	return r
}

func writeJob(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "job.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

const examples = "../../examples/jobs/"

func TestRun_Diamond(t *testing.T) {
	r := dagq(t, "run", examples+"diamond.yaml")
	require.Equal(t, cli.ExitOK, r.code)
	// Plain progress lines (stdout is not a terminal).
	require.Regexp(t, regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d step b succeeded \(attempt 1, [0-9.]+[µmn]?s\)$`), r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d run \w+ succeeded in `), r.stdout)
	// The final table, with the data that flowed from a to d.
	require.Regexp(t, regexp.MustCompile(`(?m)^STEP\s+TASK\s+STATE\s+ATTEMPTS\s+DURATION\s+OUTPUT / ERROR$`), r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^a\s+echo\s+succeeded\s+1\s+\S+\s+"hello, dagq"$`), r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^d\s+concat\s+succeeded\s+1\s+\S+\s+"HELLO, DAGQ \| qgad ,olleh"$`), r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^run \w+ of job diamond succeeded in \S+: 4 succeeded$`), r.stdout)
	require.Empty(t, r.stderr)
}

func TestRun_FailingExitsNonZero(t *testing.T) {
	r := dagq(t, "run", examples+"failing.yaml", "--progress", "none")
	require.Equal(t, cli.ExitFailed, r.code)
	require.Regexp(t, regexp.MustCompile(`(?m)^load\s+fail\s+failed\s+3\s+\S+\s+database is read-only \(attempt 3\)$`), r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^report\s+concat\s+skipped\s+0\s+-\s+upstream "load" failed$`), r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^flaky\s+fail\s+succeeded\s+3\s`), r.stdout, "retried, then succeeded")
	require.Regexp(t, regexp.MustCompile(`(?m)^audit\s+hash\s+succeeded\s+1\s`), r.stdout, "independent branch ran")
	require.NotContains(t, r.stdout, "queued", "--progress none prints no progress")
	require.Regexp(t, regexp.MustCompile(`(?m)^dagq: run \w+ failed; failed steps: load$`), r.stderr)
}

func TestRun_JSONOutput(t *testing.T) {
	r := dagq(t, "run", examples+"diamond.yaml", "--output", "json", "--run-id", "run-42", "--param", "who=world")
	require.Equal(t, cli.ExitOK, r.code)
	var res struct {
		RunID string `json:"run_id"`
		Job   string `json:"job"`
		State string `json:"state"`
		Steps []struct {
			Name     string          `json:"name"`
			TaskID   string          `json:"task_id"`
			State    string          `json:"state"`
			Attempts int             `json:"attempts"`
			Output   json.RawMessage `json:"output"`
		} `json:"steps"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), "stdout holds only the JSON result")
	require.Equal(t, "run-42", res.RunID)
	require.Equal(t, "diamond", res.Job)
	require.Equal(t, "succeeded", res.State)
	require.Len(t, res.Steps, 4)
	require.Equal(t, "run-42.a", res.Steps[0].TaskID)
	require.JSONEq(t, `"hello, world"`, string(res.Steps[0].Output), "--param overrides the file's params")
	require.JSONEq(t, `"HELLO, WORLD | dlrow ,olleh"`, string(res.Steps[3].Output))
	require.Contains(t, r.stderr, "step d succeeded", "progress goes to stderr with --output json")
}

func TestRun_InterruptCancels(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	job := writeJob(t, `name: slow
steps:
  - {name: a, task: echo, args: go}
  - {name: b, task: sleep, upstream: [a], args: 1m}
  - {name: c, task: sleep, upstream: [a], args: 1m}
  - {name: d, task: hash, upstream: [b, c]}
`)
	var out, errb syncBuffer
	done := make(chan int, 1)
	start := time.Now()
	go func() { done <- cli.Execute(ctx, builtins(t), []string{"run", job, "--output", "json"}, &out, &errb) }()
	// Interrupt once both sleeps are submitted (and most likely running).
	require.Eventually(t, func() bool {
		return strings.Contains(errb.String(), "step b queued") && strings.Contains(errb.String(), "step c queued")
	}, 10*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	cancel()
	var code int
	select {
	case code = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop after the interrupt")
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	require.Equal(t, cli.ExitCancelled, code)
	require.Less(t, time.Since(start), 15*time.Second, "running steps were cancelled, not waited for")
	var res struct {
		State string `json:"state"`
		Steps []struct {
			Name, State string
		} `json:"steps"`
	}
	require.NoError(t, json.Unmarshal([]byte(out.String()), &res))
	require.Equal(t, "cancelled", res.State)
	states := map[string]string{}
	for _, s := range res.Steps {
		states[s.Name] = s.State
	}
	require.Equal(t, map[string]string{"a": "succeeded", "b": "cancelled", "c": "cancelled", "d": "skipped"}, states)
	require.Contains(t, errb.String(), "cancelled steps: b, c (interrupted)")
	require.Regexp(t, `run \S+ finished in \S+: interrupted: the command was stopped\n`, errb.String())
	require.NotContains(t, errb.String()+out.String(), "context canceled", "the cause in words, not Go's")
}

// A step that fails without retry says so, in the progress, the table and
// the JSON result, without the sentinel's text.
func TestRun_SkipRetryWording(t *testing.T) {
	job := writeJob(t, `name: bad
steps:
  - {name: a, task: fail, args: {times: -1}}
`)
	r := dagq(t, "run", job, "--progress", "plain")
	require.Equal(t, cli.ExitFailed, r.code, r.stderr)
	require.Regexp(t, `(?m)^a\s+fail\s+failed\s+1\s+\S+\s+failed without retry: fail: times is -1`, r.stdout)
	require.Contains(t, r.stdout, "step a failed (attempt 1, ")
	require.NotContains(t, r.stdout+r.stderr, "skip retry")

	r = dagq(t, "run", job, "-o", "json")
	require.Equal(t, cli.ExitFailed, r.code, r.stderr)
	require.Contains(t, r.stdout, `"error": "failed without retry: fail: times is -1`)
	require.NotContains(t, r.stdout+r.stderr, "skip retry")
}

func TestRun_FailFastFlag(t *testing.T) {
	job := writeJob(t, `name: ff
steps:
  - {name: boom, task: fail, args: boom, retry: {max_attempts: 1}}
  - {name: slow, task: sleep, args: 1m}
`)
	start := time.Now()
	r := dagq(t, "run", job, "--fail-fast", "--progress", "none")
	require.Equal(t, cli.ExitFailed, r.code)
	require.Less(t, time.Since(start), 15*time.Second)
	require.Regexp(t, regexp.MustCompile(`(?m)^boom\s+fail\s+failed\s`), r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^slow\s+sleep\s+(cancelled|skipped)\s`), r.stdout)
}

func TestRun_Errors(t *testing.T) {
	unknownTask := writeJob(t, "name: j\nsteps:\n  - name: a\n    task: nope\n  - name: b\n    task: echo\n    upstream: [zz]\n")
	badField := writeJob(t, "name: j\nsteps:\n  - name: a\n    task: echo\n    timeout: forever\n")
	unknownField := writeJob(t, "name: j\nsteps:\n  - name: a\n    task: nope\n    upsteam: [x]\n  - name: b\n    task: echo\n    upstream: [zz]\n")
	cases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"no job file", []string{"run"}, cli.ExitUsage, []string{"dagq: dagq run takes 1 argument(s) (the job file), got 0"}},
		{"unknown flag", []string{"run", "x.yaml", "--bogus"}, cli.ExitUsage, []string{"dagq: unknown flag: --bogus"}},
		{"bad output", []string{"run", "x.yaml", "--output", "xml"}, cli.ExitUsage, []string{`dagq: --output "xml": valid values: text, json`}},
		{"bad progress", []string{"run", "x.yaml", "--progress", "fancy"}, cli.ExitUsage, []string{`--progress "fancy"`}},
		{"bad param", []string{"run", "x.yaml", "-p", "novalue"}, cli.ExitUsage, []string{`--param "novalue": want NAME=VALUE`}},
		{"unknown param", []string{"run", examples + "diamond.yaml", "-p", "whoo=x"}, cli.ExitUsage, []string{
			`unknown parameter "whoo"`, "who", // the declared parameter
		}},
		{"missing file", []string{"run", "nope.yaml"}, cli.ExitFailed, []string{"dagq: job file: open nope.yaml: no such file or directory"}},
		{"invalid job", []string{"run", unknownTask}, cli.ExitFailed, []string{
			"dagq: " + unknownTask + `:3: invalid job "j": step "a": unknown task "nope"`,
			"  " + unknownTask + `:5: invalid job "j": step "b": unknown upstream "zz"`,
		}},
		{"bad field", []string{"run", badField}, cli.ExitFailed, []string{"dagq: " + badField + `:5: step "a": "forever" is not a duration`}},
		{"unknown field and job errors", []string{"run", unknownField}, cli.ExitFailed, []string{
			"dagq: " + unknownField + `:3: invalid job "j": step "a": unknown task "nope"`,
			"  " + unknownField + `:5: step "a": unknown field "upsteam"`,
			"  " + unknownField + `:6: invalid job "j": step "b": unknown upstream "zz"`,
		}},
		{"bad config", []string{"run", examples + "diamond.yaml", "--concurrency", "0", "--transport", "sqs"}, cli.ExitFailed, []string{
			"dagq: invalid configuration:",
			`  sqs.queue_url: is required with transport "sqs"`,
			"  worker.concurrency (flag --concurrency): 0 is out of range; valid: 1 to 10000",
		}},
		{"bad run ID", []string{"run", examples + "diamond.yaml", "--run-id", "a b"}, cli.ExitFailed, []string{
			"dagq: run: RunID: invalid argument: task ID \"a b\" has byte 0x20",
		}},
		{"unknown command", []string{"lanuch"}, cli.ExitUsage, []string{`dagq: unknown command "lanuch" for "dagq"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dagq(t, tc.args...)
			require.Equal(t, tc.code, r.code)
			for _, w := range tc.want {
				require.Contains(t, r.stderr, w)
			}
			require.True(t, strings.HasPrefix(r.stderr, "dagq: "), "one clean error line first")
		})
	}
}

// An embedding program registers its own task and reuses the CLI.
func TestRun_EmbedderTasks(t *testing.T) {
	reg := builtins(t)
	greet := core.NewTaskType[string, string]("greet")
	greet.MustRegister(reg, func(ctx context.Context, name string) (string, error) {
		up, err := core.Input[string](ctx, "who")
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s, %s", name, up), nil
	})
	job := writeJob(t, `name: custom
steps:
  - {name: who, task: echo, args: embedder}
  - {name: hi, task: greet, args: hello, upstream: [who]}
`)
	r := dagqCtx(t, context.Background(), reg, "run", job, "--progress", "none")
	require.Equal(t, cli.ExitOK, r.code)
	require.Regexp(t, regexp.MustCompile(`(?m)^hi\s+greet\s+succeeded\s+1\s+\S+\s+"hello, embedder"$`), r.stdout)
}

func TestGraph(t *testing.T) {
	r := dagq(t, "graph", examples+"diamond.yaml")
	require.Equal(t, cli.ExitOK, r.code)
	require.Equal(t, `graph TD
  a["a<br/><i>echo</i>"]
  b["b<br/><i>transform</i>"]
  c["c<br/><i>transform</i>"]
  d["d<br/><i>concat</i>"]
  a --> b
  a --> c
  b --> d
  c --> d
`, r.stdout)

	r = dagq(t, "graph", examples+"diamond.yaml", "--format", "dot")
	require.Equal(t, cli.ExitOK, r.code)
	require.True(t, strings.HasPrefix(r.stdout, `digraph "diamond" {`))
	require.Contains(t, r.stdout, `"b" -> "d";`)

	r = dagq(t, "graph", examples+"diamond.yaml", "--format", "png")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Equal(t, "dagq: --format \"png\": valid values: mermaid, dot\n", r.stderr)

	cyclic := writeJob(t, "name: c\nsteps:\n  - {name: a, task: x, upstream: [b]}\n  - {name: b, task: y, upstream: [a]}\n")
	r = dagq(t, "graph", cyclic)
	require.Equal(t, cli.ExitFailed, r.code)
	require.Contains(t, r.stderr, `cycle: a → b → a`)
	require.NotContains(t, r.stderr, "unknown task", "graph does not need the tasks registered")
}

func TestConfigShow(t *testing.T) {
	r := dagq(t, "config", "show")
	require.Equal(t, cli.ExitOK, r.code)
	want, err := config.Render(config.Default())
	require.NoError(t, err)
	require.Equal(t, string(want), r.stdout)

	t.Setenv("DAGQ_WORKER_CONCURRENCY", "3")
	r = dagq(t, "config", "show", "--log-level", "debug")
	require.Equal(t, cli.ExitOK, r.code)
	require.Contains(t, r.stdout, "  concurrency: 3\n")
	require.Contains(t, r.stdout, "  level: debug\n")

	r = dagq(t, "config", "show", "-o", "json")
	require.Equal(t, cli.ExitOK, r.code)
	var m struct {
		Transport string
		Worker    map[string]any
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &m))
	require.Equal(t, "memory", m.Transport)
	require.Equal(t, 3.0, m.Worker["concurrency"])
	require.Equal(t, "30s", m.Worker["lease"])

	r = dagq(t, "config", "show", "--sources", "--config", "../../examples/dagq.yaml")
	require.Equal(t, cli.ExitOK, r.code)
	require.Regexp(t, regexp.MustCompile(`(?m)^worker\.concurrency\s+3\s+env DAGQ_WORKER_CONCURRENCY$`), r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^worker\.lease\s+30s\s+file \.\./\.\./examples/dagq\.yaml$`), r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^executor\.fail_fast\s+false\s+file`), r.stdout)
}

func TestConfigValidate(t *testing.T) {
	r := dagq(t, "config", "validate")
	require.Equal(t, cli.ExitOK, r.code)
	require.Equal(t, "configuration is valid (defaults, environment and flags only (no config file))\n", r.stdout)

	r = dagq(t, "config", "validate", "--config", "../../examples/dagq.yaml")
	require.Equal(t, cli.ExitOK, r.code)
	require.Equal(t, "configuration is valid (../../examples/dagq.yaml)\n", r.stdout)

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("transport: sqs\nworker:\n  concurency: 4\n  lease: 0s\nlog:\n  level: loud\n"), 0o600))
	r = dagq(t, "config", "validate", "--config", bad)
	require.Equal(t, cli.ExitFailed, r.code)
	require.Empty(t, r.stdout)
	for _, w := range []string{
		"dagq: warning: " + bad + `:3: unknown key "worker.concurency" is ignored (did you mean "worker.concurrency"?)`,
		"dagq: invalid configuration:",
		`  s3.bucket: is required with transport "sqs": the S3 bucket for results, large payloads and run state, e.g. my-dagq-bucket`,
		"  worker.lease (file " + bad + ":4): 0s is out of range; valid: more than 0s, at most 12h",
		"  log.level (file " + bad + `:6): "loud" is not a level; valid values: debug, info, warn, error`,
	} {
		require.Contains(t, r.stderr, w+"\n")
	}

	// A wrong type hides no other problem.
	require.NoError(t, os.WriteFile(bad, []byte("transport: sqs3\nworker:\n  lease: 0s\nretry:\n  max_attempts: many\n"), 0o600))
	r = dagq(t, "config", "validate", "--config", bad)
	require.Equal(t, cli.ExitFailed, r.code)
	for _, w := range []string{
		"  retry.max_attempts (file " + bad + `:5): "many" is not an integer`,
		"  transport (file " + bad + `:1): "sqs3" is not a transport`,
		"  worker.lease (file " + bad + ":3): 0s is out of range",
	} {
		require.Contains(t, r.stderr, w)
	}

	r = dagq(t, "config", "validate", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	require.Equal(t, cli.ExitFailed, r.code)
	require.Contains(t, r.stderr, "does not exist")

	t.Setenv("DAGQ_RETRY_MAX_ATTEMPTS", "lots")
	r = dagq(t, "config", "validate")
	require.Equal(t, cli.ExitFailed, r.code)
	require.Contains(t, r.stderr, "dagq: configuration:\n  retry.max_attempts (env DAGQ_RETRY_MAX_ATTEMPTS): \"lots\" is not an integer; valid: a whole number such as 4\n")
}

func TestVersion(t *testing.T) {
	r := dagq(t, "version")
	require.Equal(t, cli.ExitOK, r.code)
	require.Regexp(t, `^dagq \S+ \(go1\.\d+`, r.stdout)
}

func TestWorker_ServesUntilInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- cli.Execute(ctx, builtins(t), []string{"worker", "--concurrency", "2"}, &out, &errb) }()
	require.Eventually(t, func() bool { return strings.Contains(errb.String(), "serving queue dagq-tasks") }, 5*time.Second, 10*time.Millisecond)
	cancel()
	select {
	case code := <-done:
		require.Equal(t, cli.ExitOK, code)
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not stop")
	}
	require.Contains(t, errb.String(), `dagq: note: transport "memory" keeps its queues in this process`)
	require.Contains(t, errb.String(), "serving run queue dagq-runs (concurrency 4)")
	require.Contains(t, errb.String(), "concurrency 2")
	require.Contains(t, errb.String(), "tasks: concat, echo, fail, hash, sleep, transform")
	require.Contains(t, errb.String(), "dagq: worker stopped\n")
}

func TestHelpListsCommands(t *testing.T) {
	r := dagq(t, "--help")
	require.Equal(t, cli.ExitOK, r.code)
	for _, c := range []string{"run", "launch", "reexecute", "status", "health", "terminate", "worker", "graph", "config", "version"} {
		require.Regexp(t, regexp.MustCompile(`(?m)^  `+c+`\s`), r.stdout)
	}
	r = dagq(t, "run", "--help")
	require.Equal(t, cli.ExitOK, r.code)
	require.Contains(t, r.stdout, "--concurrency int")
	require.Contains(t, r.stdout, "(default 10)")
	require.Contains(t, r.stdout, "--cancellation")
	require.Contains(t, r.stdout, "--launcher-queue string")

	r = dagq(t, "launch", "--help")
	require.Equal(t, cli.ExitOK, r.code)
	require.Contains(t, r.stdout, "--launcher-concurrency int")
	require.Contains(t, r.stdout, `--launcher-stale-after duration`)
	require.Contains(t, r.stdout, "(default 15s)")
	r = dagq(t, "health", "--help")
	require.Contains(t, r.stdout, "3 for NOT_FOUND; 4 for UNKNOWN")
}

// A job whose steps name a pool the configuration does not declare is
// refused before anything runs (the in-process workers would fail every
// step of it), naming each step's line and the fix; with the pool
// configured it runs.
func TestRun_UnconfiguredPoolRefused(t *testing.T) {
	job := writeJob(t, `name: pooled
steps:
  - name: a
    task: echo
    args: x
    pool: db
  - name: b
    task: echo
    args: y
  - name: c
    task: echo
    args: z
    pool: gpu
`)
	r := dagq(t, "run", job, "--progress", "none")
	require.Equal(t, cli.ExitFailed, r.code)
	assert.Contains(t, r.stderr, job+`:3: step "a": pool "db" is not configured: the workers would fail the step; add pools: {db: N} to the configuration (or DAGQ_POOLS=db=N)`)
	assert.Contains(t, r.stderr, job+`:10: step "c": pool "gpu" is not configured`)
	assert.NotContains(t, r.stdout, "succeeded", "nothing ran")

	t.Setenv("DAGQ_POOLS", "db=1,gpu=2")
	r = dagq(t, "run", job, "--progress", "none")
	require.Equal(t, cli.ExitOK, r.code)
	require.Regexp(t, regexp.MustCompile(`(?m)^c\s+echo\s+succeeded\s+1\s`), r.stdout)
}
