package jobfile_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/app/jobfile"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
)

func parse(t *testing.T, body string) (*jobfile.File, error) {
	t.Helper()
	return jobfile.Parse("job.yaml", []byte(body), jobfile.Options{})
}

func builtins(t *testing.T) func(string) bool {
	reg := core.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	return func(task string) bool { _, ok := reg.Lookup(task); return ok }
}

func TestParse_Full(t *testing.T) {
	f, err := parse(t, `
name: full
params:
  who: world
  n: 3
steps:
  - name: a
    task: echo
    args:
      text: hi
      list: [1, 2.5, true, null, "x"]
      nested: {k: v}
      when: 2024-01-02
  - name: b
    task: sleep
    upstream: [a]
    args: 10ms
    retry: {max_attempts: 5, initial_backoff: 100ms}
    timeout: 1m30s
  - name: c
    task: hash
    upstream:
      - a
      - b
    retry:
      max_attempts: 2
      initial_backoff: 1s
      max_backoff: 4s
      multiplier: 3
      jitter: 0
`)
	require.NoError(t, err)
	require.NoError(t, f.Validate(builtins(t)))
	require.Equal(t, "full", f.Job.Name)
	require.Equal(t, map[string]string{"who": "world", "n": "3"}, f.Params)
	require.Len(t, f.Job.Steps, 3)

	a := f.Job.Steps[0]
	require.Equal(t, "echo", a.Task)
	require.JSONEq(t, `{"text":"hi","list":[1,2.5,true,null,"x"],"nested":{"k":"v"},"when":"2024-01-02"}`, string(a.Args))
	require.Nil(t, a.Retry, "no retry block: the worker's default")
	require.Zero(t, a.Timeout)

	b := f.Job.Steps[1]
	require.Equal(t, `"10ms"`, string(b.Args))
	require.Equal(t, []string{"a"}, b.Upstream)
	require.Equal(t, 90*time.Second, b.Timeout)
	want := core.DefaultRetryPolicy
	want.MaxAttempts, want.InitialBackoff = 5, 100*time.Millisecond
	require.Equal(t, &want, b.Retry, "missing retry fields keep the default policy")

	c := f.Job.Steps[2]
	require.Nil(t, c.Args)
	require.Equal(t, []string{"a", "b"}, c.Upstream)
	require.Equal(t, &core.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Second, MaxBackoff: 4 * time.Second, Multiplier: 3}, c.Retry)

	require.Equal(t, 7, f.StepLine("a"))
	require.Equal(t, 14, f.StepLine("b"))
}

func TestParse_DefaultRetryFromOptions(t *testing.T) {
	base := core.RetryPolicy{MaxAttempts: 9, InitialBackoff: time.Millisecond, Multiplier: 1}
	f, err := jobfile.Parse("j.yaml", []byte("name: j\nsteps:\n  - {name: a, task: echo, retry: {jitter: 0.5}}\n"),
		jobfile.Options{DefaultRetry: &base})
	require.NoError(t, err)
	want := base
	want.Jitter = 0.5
	require.Equal(t, &want, f.Job.Steps[0].Retry)
}

func TestExamplesAreValid(t *testing.T) {
	paths, err := filepath.Glob("../../examples/jobs/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(paths), 3)
	for _, p := range paths {
		f, err := jobfile.Load(p, jobfile.Options{})
		require.NoError(t, err, p)
		require.NoError(t, f.Validate(builtins(t)), p)
	}
	f, err := jobfile.Load("../../examples/jobs/diamond.yaml", jobfile.Options{})
	require.NoError(t, err)
	order, err := f.Job.Order()
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c", "d"}, order)
}

func TestParse_Errors(t *testing.T) {
	cases := []struct {
		name string
		body string
		want []string
	}{
		{
			name: "unknown step field",
			body: "name: j\nsteps:\n  - name: a\n    task: echo\n    upsteam: [x]\n",
			want: []string{`job.yaml:5: step "a": unknown field "upsteam" (valid fields: name, task, args, upstream, retry, timeout, pool)`},
		},
		{
			name: "unknown top-level field",
			body: "name: j\nparameters: {}\nsteps:\n  - {name: a, task: echo}\n",
			want: []string{`job.yaml:2: unknown field "parameters" (valid fields: name, params, max_concurrent, steps)`},
		},
		{
			name: "unknown retry field",
			body: "name: j\nsteps:\n  - name: a\n    task: echo\n  - name: b\n    task: echo\n    retry: {attempts: 3}\n",
			want: []string{`job.yaml:7: step "b": unknown field "attempts" (valid fields: max_attempts, initial_backoff, max_backoff, multiplier, jitter)`},
		},
		{
			name: "bad durations, all reported",
			body: "name: j\nsteps:\n  - name: a\n    task: sleep\n    timeout: 30\n  - name: b\n    task: echo\n    retry:\n      initial_backoff: soon\n",
			want: []string{
				`job.yaml:5: step "a": "30" is not a duration; write a number with a unit, e.g. 500ms, 30s, 5m`,
				`job.yaml:9: step "b": "soon" is not a duration`,
			},
		},
		{
			name: "wrong type",
			body: "name: j\nsteps:\n  - name: a\n    task: echo\n    upstream: b\n",
			want: []string{`job.yaml:5: step "a": "b" is a string, expected a list of strings`},
		},
		{
			name: "steps not a list",
			body: "name: j\nsteps: {a: 1}\n",
			want: []string{`job.yaml:2: a mapping, expected a list of steps`},
		},
		{
			name: "syntax error",
			body: "name: j\nsteps:\n  - name: a\n   task: echo\n",
			want: []string{`job.yaml:4:4: did not find expected '-' indicator`},
		},
		{
			name: "syntax error deep in a step",
			body: "name: j\nsteps:\n  - name: a\n    task: echo\n   upstream: [x]\n",
			want: []string{`job.yaml:5:4: did not find expected '-' indicator`},
		},
		{
			name: "max_concurrent not a number",
			body: "name: j\nmax_concurrent: many\nsteps:\n  - {name: a, task: echo}\n",
			want: []string{`job.yaml:2: "many" is a string, expected an integer`},
		},
		{
			name: "empty file",
			body: "# nothing\n",
			want: []string{`job.yaml: the job file is empty`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.body)
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestValidate_NamesFileLineAndStep(t *testing.T) {
	f, err := parse(t, `name: broken
steps:
  - name: a
    task: echo
  - name: b
    task: nope
    upstream: [a, ghost]
  - name: c
    task: echo
    upstream: [d]
  - name: d
    task: echo
    upstream: [c]
    retry: {max_attempts: 0}
  - name: a
    task: echo
`)
	require.NoError(t, err, "the shape is fine; the job is not")
	err = f.Validate(builtins(t))
	require.Error(t, err)
	require.True(t, errors.Is(err, dag.ErrInvalidJob))
	msg := err.Error()
	for _, want := range []string{
		`job.yaml:5: invalid job "broken": step "b": unknown task "nope"`,
		`job.yaml:5: invalid job "broken": step "b": unknown upstream "ghost"`,
		`job.yaml:11: invalid job "broken": step "d": retry max_attempts is 0`,
		`step "a": duplicate step name`,
		`cycle: c → d → c`,
	} {
		assert.Contains(t, msg, want)
	}
	// Without a registry, task names are not checked.
	err = f.Validate(nil)
	require.NotContains(t, err.Error(), "unknown task")
}

func TestLoad_MissingFile(t *testing.T) {
	_, err := jobfile.Load(filepath.Join(t.TempDir(), "none.yaml"), jobfile.Options{})
	require.ErrorIs(t, err, os.ErrNotExist)
	require.ErrorContains(t, err, "none.yaml")
}

func TestParse_ArgsAreJSON(t *testing.T) {
	f, err := parse(t, `name: j
steps:
  - name: a
    task: echo
    args: &base {"1": one, ok: true, big: 12345678901234, s: '007', y: 2}
  - name: b
    task: echo
    args: {<<: *base, y: 3}
`)
	require.NoError(t, err)
	var a, b map[string]any
	require.NoError(t, json.Unmarshal(f.Job.Steps[0].Args, &a))
	require.Equal(t, map[string]any{"1": "one", "ok": true, "big": 12345678901234.0, "s": "007", "y": 2.0}, a)
	require.Contains(t, string(f.Job.Steps[0].Args), "12345678901234", "integers stay exact")
	require.NoError(t, json.Unmarshal(f.Job.Steps[1].Args, &b))
	require.Equal(t, map[string]any{"1": "one", "ok": true, "big": 12345678901234.0, "s": "007", "y": 3.0}, b, "merge keys work")
}

// -p overrides only the parameters the file declares: an unknown name is
// refused, listing the declared ones.
func TestRunParams(t *testing.T) {
	f, err := parse(t, "name: j\nparams: {who: dagq, day: mon}\nsteps:\n  - {name: a, task: echo}\n")
	require.NoError(t, err)
	p, err := f.RunParams(map[string]string{"who": "world"})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"who": "world", "day": "mon"}, p)
	require.Equal(t, map[string]string{"who": "dagq", "day": "mon"}, f.Params, "the file's params are not changed")

	_, err = f.RunParams(map[string]string{"whoo": "x", "who": "y", "zz": "z"})
	require.ErrorIs(t, err, jobfile.ErrUnknownParam)
	require.ErrorContains(t, err, `unknown parameter "whoo"`)
	require.ErrorContains(t, err, `unknown parameter "zz"`, "every unknown name at once")
	require.ErrorContains(t, err, "day, who", "the declared parameters")

	none, err := parse(t, "name: j\nsteps:\n  - {name: a, task: echo}\n")
	require.NoError(t, err)
	p, err = none.RunParams(nil)
	require.NoError(t, err)
	require.Nil(t, p)
	_, err = none.RunParams(map[string]string{"who": "x"})
	require.ErrorIs(t, err, jobfile.ErrUnknownParam)
	require.ErrorContains(t, err, "declares no parameters")
}

// An unknown field (or another shape error) does not hide the job's other
// problems: Parse reports them all at once, in line order.
func TestParse_ShapeErrorsDoNotHideJobErrors(t *testing.T) {
	body := `name: j
steps:
  - name: a
    task: echo
    upsteam: [x]
  - name: b
    task: nope
    upstream: [zz]
    timeout: forever
  - name: c
    task: echo
    args: .inf
    upstream: [a]
`
	_, err := jobfile.Parse("job.yaml", []byte(body), jobfile.Options{KnownTask: builtins(t)})
	require.Error(t, err)
	require.ErrorIs(t, err, dag.ErrInvalidJob)
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		`job.yaml:5: step "a": unknown field "upsteam"`,
		`job.yaml:6: invalid job "j": step "b": unknown task "nope"`,
		`job.yaml:6: invalid job "j": step "b": unknown upstream "zz"`,
		`job.yaml:9: step "b": "forever" is not a duration`,
		`job.yaml:12: step "c": args: +Inf cannot be passed as JSON`,
	}
	require.Len(t, lines, len(want), err.Error())
	for i, w := range want {
		require.Contains(t, lines[i], w)
	}

	// Without KnownTask, task names are not checked.
	_, err = parse(t, body)
	require.NotContains(t, err.Error(), "unknown task")
	require.Contains(t, err.Error(), `unknown upstream "zz"`)
}

// max_concurrent: the most steps of a run in flight; 0 (or absent) is no
// limit, a negative value is invalid.
func TestParse_MaxConcurrent(t *testing.T) {
	f, err := parse(t, "name: j\nmax_concurrent: 3\nsteps:\n  - {name: a, task: echo}\n")
	require.NoError(t, err)
	require.NoError(t, f.Validate(nil))
	require.Equal(t, 3, f.Job.MaxConcurrent)

	f, err = parse(t, "name: j\nsteps:\n  - {name: a, task: echo}\n")
	require.NoError(t, err)
	require.Zero(t, f.Job.MaxConcurrent, "no limit")

	f, err = parse(t, "name: j\nmax_concurrent: -1\nsteps:\n  - {name: a, task: echo}\n")
	require.NoError(t, err, "a valid shape")
	err = f.Validate(nil)
	require.ErrorIs(t, err, dag.ErrInvalidJob)
	require.EqualError(t, err, `job.yaml: invalid job "j": max_concurrent is -1; it must be 0 (no limit) or positive`)
}
