// Package builtin holds tasks that job files can use without writing Go:
// echo, sleep, fail, hash, concat and transform. Register adds them to a
// registry; the dagq command registers them by default.
//
// Upstream outputs reach a task through core.Task.Inputs (by step name).
// Tasks that combine them (hash, concat, transform) take them in the order of
// their "inputs" argument, or sorted by step name without it. An input that is
// a JSON string counts as the string itself; any other JSON value counts as
// its compact JSON text.
//
// Arguments that cannot be decoded fail the step at once (no retry).
package builtin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dagq/dagq/core"
)

// Task names.
const (
	Echo      = "echo"
	Sleep     = "sleep"
	Fail      = "fail"
	Hash      = "hash"
	Concat    = "concat"
	Transform = "transform"
)

// Names lists the built-in tasks.
func Names() []string { return []string{Echo, Sleep, Fail, Hash, Concat, Transform} }

// Register adds every built-in task to reg. It fails when one of the names is
// already registered.
func Register(reg *core.Registry) error {
	handlers := map[string]core.HandlerFunc{
		Echo:      echo,
		Sleep:     sleep,
		Fail:      fail,
		Hash:      hash,
		Concat:    concat,
		Transform: transform,
	}
	var errs []error
	for _, name := range Names() {
		if err := reg.Handle(name, handlers[name]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// MustRegister is Register that panics on error, for program initialisation.
func MustRegister(reg *core.Registry) {
	if err := Register(reg); err != nil {
		panic(err)
	}
}

// Describe returns a one-line description of each built-in task, for help
// texts.
func Describe() map[string]string {
	return map[string]string{
		Echo:      `returns its args; "${name}" in strings is replaced by the run parameter name`,
		Sleep:     `waits for a duration ("2s" or {duration: 2s}); stops early when cancelled`,
		Fail:      `fails with a message ("boom" or {message: boom, times: n, when: "${p}"}: fail n times, then succeed; only when "when" is true)`,
		Hash:      `sha256 (hex) of its inputs concatenated ({inputs: [b, c]} sets the order)`,
		Concat:    `joins its inputs as text ({sep: " ", inputs: [b, c]})`,
		Transform: `applies op (upper, lower, reverse, trim) to its text arg or its inputs joined ({op: upper, sep: ""})`,
	}
}

// badArgs fails a task without retry.
func badArgs(task string, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", task, fmt.Sprintf(format, args...), core.ErrSkipRetry)
}

// decodeArgs decodes t.Args into dst; a JSON string is offered to str first
// (the short form: sleep "2s", fail "boom").
func decodeArgs(t *core.Task, dst any, str *string) error {
	raw := bytes.TrimSpace(t.Args)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	if raw[0] == '"' && str != nil {
		if err := json.Unmarshal(raw, str); err != nil {
			return badArgs(t.Name, "args: %v", err)
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return badArgs(t.Name, "args %s: %v", raw, err)
	}
	return nil
}

func output(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode output: %v: %w", err, core.ErrSkipRetry)
	}
	return b, nil
}

// echo returns its args, with ${param} expanded in every string.
func echo(_ context.Context, t *core.Task) (json.RawMessage, error) {
	raw := bytes.TrimSpace(t.Args)
	if len(raw) == 0 {
		return json.RawMessage("null"), nil
	}
	if len(t.Params) == 0 || !bytes.Contains(raw, []byte("${")) {
		return append(json.RawMessage(nil), raw...), nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, badArgs(t.Name, "args: %v", err)
	}
	return output(expand(v, t.Params))
}

// expand replaces ${name} in every string of v by params[name]; unknown names
// are left as they are.
func expand(v any, params map[string]string) any {
	switch x := v.(type) {
	case string:
		return os.Expand(x, func(name string) string {
			if p, ok := params[name]; ok {
				return p
			}
			return "${" + name + "}"
		})
	case []any:
		for i := range x {
			x[i] = expand(x[i], params)
		}
		return x
	case map[string]any:
		for k := range x {
			x[k] = expand(x[k], params)
		}
		return x
	default:
		return v
	}
}

// SleepArgs is the long form of sleep's argument.
type SleepArgs struct {
	Duration string `json:"duration"`
}

func sleep(ctx context.Context, t *core.Task) (json.RawMessage, error) {
	var a SleepArgs
	if err := decodeArgs(t, &a, &a.Duration); err != nil {
		return nil, err
	}
	d, err := time.ParseDuration(a.Duration)
	if err != nil || d < 0 {
		return nil, badArgs(t.Name, "duration %q: want a non-negative duration such as 500ms or 2s", a.Duration)
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return output(map[string]string{"slept": d.String()})
	case <-ctx.Done():
		return nil, fmt.Errorf("sleep interrupted: %w", context.Cause(ctx))
	}
}

// FailArgs is the long form of fail's argument.
type FailArgs struct {
	Message string `json:"message"`
	// Times, when positive, makes the task fail on attempts 1..Times and
	// succeed afterwards; zero fails every attempt. Attempts are counted per
	// task: a re-execution of the step is a new task, whose attempts start
	// at 1 again.
	Times int `json:"times"`
	// When, if set, decides whether the task fails at all: after ${name}
	// is replaced by the run parameter name, it must be a boolean ("true",
	// "false", as strconv.ParseBool reads it); false makes the task succeed
	// at once. A run parameter can so switch a failure off, e.g. for the
	// re-execution of a run that failed (dagq reexecute -p name=false).
	When string `json:"when"`
}

func fail(_ context.Context, t *core.Task) (json.RawMessage, error) {
	var a FailArgs
	if err := decodeArgs(t, &a, &a.Message); err != nil {
		return nil, err
	}
	if a.Times < 0 {
		return nil, badArgs(t.Name, "times is %d; want 0 (always fail) or more", a.Times)
	}
	if a.Message == "" {
		a.Message = "failed on purpose"
	}
	if a.When != "" {
		when, _ := expand(a.When, t.Params).(string)
		on, err := strconv.ParseBool(when)
		if err != nil {
			return nil, badArgs(t.Name, "when is %q (from %q); want true or false, e.g. \"${param}\" with the run parameter param set to one of them",
				when, a.When)
		}
		if !on {
			return output(fmt.Sprintf("succeeded on attempt %d (when: %s)", t.Attempt, when))
		}
	}
	if a.Times == 0 || t.Attempt <= a.Times {
		return nil, fmt.Errorf("%s (attempt %d)", a.Message, t.Attempt)
	}
	return output(fmt.Sprintf("succeeded on attempt %d after %d failure(s)", t.Attempt, a.Times))
}

// CombineArgs is the argument of hash and concat.
type CombineArgs struct {
	// Inputs names the upstream steps to use, in order (default: all,
	// sorted by name).
	Inputs []string `json:"inputs"`
	// Sep separates inputs (concat; default " ").
	Sep *string `json:"sep"`
}

func hash(_ context.Context, t *core.Task) (json.RawMessage, error) {
	var a CombineArgs
	if err := decodeArgs(t, &a, nil); err != nil {
		return nil, err
	}
	texts, err := inputs(t, a.Inputs)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, s := range texts {
		h.Write([]byte(s))
	}
	return output(hex.EncodeToString(h.Sum(nil)))
}

func concat(_ context.Context, t *core.Task) (json.RawMessage, error) {
	var a CombineArgs
	if err := decodeArgs(t, &a, nil); err != nil {
		return nil, err
	}
	texts, err := inputs(t, a.Inputs)
	if err != nil {
		return nil, err
	}
	sep := " "
	if a.Sep != nil {
		sep = *a.Sep
	}
	return output(strings.Join(texts, sep))
}

// TransformArgs is transform's argument.
type TransformArgs struct {
	// Op is upper, lower, reverse or trim.
	Op string `json:"op"`
	// Text, when set, is transformed instead of the inputs.
	Text *string `json:"text"`
	// Inputs and Sep select and join the inputs, as for concat (default
	// separator "").
	Inputs []string `json:"inputs"`
	Sep    string   `json:"sep"`
}

// TransformOps lists the operations of transform.
var TransformOps = []string{"upper", "lower", "reverse", "trim"}

func transform(_ context.Context, t *core.Task) (json.RawMessage, error) {
	var a TransformArgs
	if err := decodeArgs(t, &a, &a.Op); err != nil {
		return nil, err
	}
	var text string
	if a.Text != nil {
		text = *a.Text
	} else {
		texts, err := inputs(t, a.Inputs)
		if err != nil {
			return nil, err
		}
		text = strings.Join(texts, a.Sep)
	}
	switch a.Op {
	case "upper":
		text = strings.ToUpper(text)
	case "lower":
		text = strings.ToLower(text)
	case "reverse":
		r := []rune(text)
		slices.Reverse(r)
		text = string(r)
	case "trim":
		text = strings.TrimSpace(text)
	default:
		return nil, badArgs(t.Name, "op %q: valid ops: %s", a.Op, strings.Join(TransformOps, ", "))
	}
	return output(text)
}

// inputs returns the text of the upstream outputs named (all, sorted by step
// name, when names is empty).
func inputs(t *core.Task, names []string) ([]string, error) {
	if len(names) == 0 {
		for n := range t.Inputs {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	texts := make([]string, 0, len(names))
	for _, n := range names {
		raw, ok := t.Inputs[n]
		if !ok {
			have := make([]string, 0, len(t.Inputs))
			for h := range t.Inputs {
				have = append(have, h)
			}
			sort.Strings(have)
			return nil, badArgs(t.Name, "input %q: no such upstream step (upstreams: %s)", n, strings.Join(have, ", "))
		}
		texts = append(texts, Text(raw))
	}
	return texts, nil
}

// Text is the text of a JSON value: a string's content, or the compact JSON
// of anything else.
func Text(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	var s string
	if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}
