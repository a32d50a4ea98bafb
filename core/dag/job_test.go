package dag_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
)

func step(name, task string, upstream ...string) dag.Step {
	return dag.Step{Name: name, Task: task, Upstream: upstream}
}

func knownTasks(names ...string) func(string) bool {
	return func(task string) bool {
		for _, n := range names {
			if n == task {
				return true
			}
		}
		return false
	}
}

func TestJobValidate(t *testing.T) {
	tests := []struct {
		name  string
		job   dag.Job
		known func(string) bool
		// want lists one substring per expected problem, in order.
		want []string
	}{
		{name: "valid", job: dag.Job{Name: "j", Steps: []dag.Step{step("a", "t"), step("b", "t", "a")}}},
		{name: "valid with known tasks", known: knownTasks("t"),
			job: dag.Job{Name: "j", Steps: []dag.Step{step("a", "t"), step("b-2_X", "t", "a")}}},
		{name: "no name", job: dag.Job{Steps: []dag.Step{step("a", "t")}},
			want: []string{`invalid job: the job has no name`}},
		{name: "no steps", job: dag.Job{Name: "j"},
			want: []string{`invalid job "j": the job has no steps`}},
		{name: "empty step name", job: dag.Job{Name: "j", Steps: []dag.Step{step("a", "t"), step("", "t")}},
			want: []string{`invalid job "j": step 2 (of 2) has no name`}},
		{name: "bad step name", job: dag.Job{Name: "j", Steps: []dag.Step{step("a.b", "t"), step("a b", "t")}},
			want: []string{
				`step "a.b": the name has '.' at byte 1; step names use only A-Z, a-z, 0-9, '_' and '-'`,
				`step "a b": the name has ' ' at byte 1`,
			}},
		{name: "step name too long", job: dag.Job{Name: "j", Steps: []dag.Step{step(strings.Repeat("s", 64), "t")}},
			want: []string{`the name is 64 bytes long; the limit is 63`}},
		{name: "duplicate step", job: dag.Job{Name: "j", Steps: []dag.Step{step("a", "t"), step("b", "t"), step("a", "t")}},
			want: []string{`invalid job "j": step "a": duplicate step name: steps 1 and 3 are both named "a"`}},
		{name: "no task", job: dag.Job{Name: "j", Steps: []dag.Step{step("a", "")}},
			want: []string{`step "a": no task: set the name of a registered task`}},
		{name: "unknown task", known: knownTasks("t"), job: dag.Job{Name: "j", Steps: []dag.Step{step("a", "t"), step("b", "resise")}},
			want: []string{`step "b": unknown task "resise": no handler is registered under that name`}},
		{name: "unknown task unchecked without known", job: dag.Job{Name: "j", Steps: []dag.Step{step("b", "resise")}}},
		{name: "unknown upstream", job: dag.Job{Name: "j", Steps: []dag.Step{step("a", "t"), step("b", "t", "a", "nope")}},
			want: []string{`invalid job "j": step "b": unknown upstream "nope": the job has no step of that name`}},
		{name: "self dependency", job: dag.Job{Name: "j", Steps: []dag.Step{step("a", "t", "a")}},
			want: []string{`step "a": the step depends on itself`}},
		{name: "upstream twice", job: dag.Job{Name: "j", Steps: []dag.Step{step("a", "t"), step("b", "t", "a", "a")}},
			want: []string{`step "b": upstream "a" is listed twice`}},
		{name: "two-step cycle", job: dag.Job{Name: "j", Steps: []dag.Step{step("a", "t", "b"), step("b", "t", "a")}},
			want: []string{`step "a": cycle: a → b → a`}},
		{name: "three-step cycle in flow order", job: dag.Job{Name: "j", Steps: []dag.Step{
			step("start", "t"),
			step("a", "t", "start", "c"), step("b", "t", "a"), step("c", "t", "b"),
			step("after", "t", "c"),
		}}, want: []string{`invalid job "j": step "a": cycle: a → b → c → a`}},
		{name: "two separate cycles", job: dag.Job{Name: "j", Steps: []dag.Step{
			step("x", "t", "y"), step("y", "t", "x"),
			step("p", "t", "r"), step("q", "t", "p"), step("r", "t", "q"),
		}}, want: []string{`cycle: x → y → x`, `cycle: p → q → r → p`}},
		{name: "shortest cycle of a component", job: dag.Job{Name: "j", Steps: []dag.Step{
			step("a", "t", "d", "b"), step("b", "t", "a"), step("c", "t", "b"), step("d", "t", "c"),
		}}, want: []string{`cycle: a → b → a`}},
		{name: "invalid args", job: dag.Job{Name: "j", Steps: []dag.Step{{Name: "a", Task: "t", Args: []byte(`{nope`)}}},
			want: []string{`step "a": args are not valid JSON`}},
		{name: "invalid retry", job: dag.Job{Name: "j", Steps: []dag.Step{{Name: "a", Task: "t", Retry: &core.RetryPolicy{}}}},
			want: []string{`step "a": retry max_attempts is 0; it must be at least 1`}},
		{name: "negative timeout", job: dag.Job{Name: "j", Steps: []dag.Step{{Name: "a", Task: "t", Timeout: -1}}},
			want: []string{`step "a": timeout is -1ns; it must be 0 (none) or positive`}},
		{name: "all problems reported", known: knownTasks("t"), job: dag.Job{Steps: []dag.Step{
			step("a", "t", "ghost"), step("a", "t"), step("b", "nope", "c"), step("c", "t", "b"), step("bad name", ""),
		}}, want: []string{
			`the job has no name`,
			`step "a": duplicate step name`,
			`step "bad name": the name has ' '`,
			`step "a": unknown upstream "ghost"`,
			`step "b": unknown task "nope"`,
			`step "bad name": no task`,
			`step "b": cycle: b → c → b`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.job.Validate(tc.known)
			if len(tc.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.ErrorIs(t, err, dag.ErrInvalidJob)
			joined, ok := err.(interface{ Unwrap() []error })
			require.True(t, ok, "errors.Join")
			errs := joined.Unwrap()
			var msgs []string
			for _, e := range errs {
				require.ErrorIs(t, e, dag.ErrInvalidJob)
				var je *dag.JobError
				require.True(t, errors.As(e, &je))
				msgs = append(msgs, e.Error())
			}
			require.Len(t, msgs, len(tc.want), "problems: %q", msgs)
			for i, w := range tc.want {
				assert.Contains(t, msgs[i], w)
			}
		})
	}
}

func TestJobErrorFields(t *testing.T) {
	err := dag.Job{Name: "etl", Steps: []dag.Step{step("load", "t", "extract")}}.Validate(nil)
	var je *dag.JobError
	require.ErrorAs(t, err, &je)
	assert.Equal(t, "etl", je.Job)
	assert.Equal(t, "load", je.Step)
	assert.Equal(t, `invalid job "etl": step "load": unknown upstream "extract": the job has no step of that name`, err.Error())
}

func TestJobOrder(t *testing.T) {
	tests := []struct {
		name  string
		steps []dag.Step
		want  []string
	}{
		{"chain declared backwards", []dag.Step{step("c", "t", "b"), step("b", "t", "a"), step("a", "t")}, []string{"a", "b", "c"}},
		{"diamond", []dag.Step{step("a", "t"), step("b", "t", "a"), step("c", "t", "a"), step("d", "t", "b", "c")},
			[]string{"a", "b", "c", "d"}},
		{"ties by declaration order", []dag.Step{
			step("z", "t"), step("y", "t", "x"), step("x", "t"), step("w", "t", "z"),
		}, []string{"z", "x", "y", "w"}},
		{"independent steps keep their order", []dag.Step{step("b", "t"), step("a", "t"), step("c", "t")}, []string{"b", "a", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dag.Job{Name: "j", Steps: tc.steps}.Order()
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}

	_, err := dag.Job{Name: "j", Steps: []dag.Step{step("a", "t", "b"), step("b", "t", "a")}}.Order()
	require.ErrorIs(t, err, dag.ErrInvalidJob)
	assert.Contains(t, err.Error(), "cycle: a → b → a")
}

func TestJobOrderLarge(t *testing.T) {
	// A long chain declared in reverse, plus fan-out: linear enough.
	const n = 5000
	steps := make([]dag.Step, 0, n)
	for i := n - 1; i >= 0; i-- {
		s := dag.Step{Name: "s" + strconv.Itoa(i), Task: "t"}
		if i > 0 {
			s.Upstream = []string{"s" + strconv.Itoa(i-1)}
		}
		steps = append(steps, s)
	}
	got, err := dag.Job{Name: "j", Steps: steps}.Order()
	require.NoError(t, err)
	require.Len(t, got, n)
	assert.Equal(t, "s0", got[0])
	assert.Equal(t, "s"+strconv.Itoa(n-1), got[n-1])
}
