package dag

import (
	"container/heap"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// ErrInvalidJob is matched (errors.Is) by every problem Job.Validate reports.
var ErrInvalidJob = errors.New("invalid job")

// MaxStepNameLen is the longest step name. A step's task ID is
// RunID + "." + step name, and IDs are at most 128 bytes (the SQS
// deduplication-ID limit), so run IDs are limited to the rest (see
// RunOptions.RunID).
const MaxStepNameLen = 63

// Job is a named DAG of steps: each step runs one registered task once its
// upstream steps have succeeded, and receives their outputs as inputs.
// Jobs are plain values: build them in Go or decode them from a job file,
// check them with Validate, and run them with an Executor.
type Job struct {
	// Name names the job in logs, events and run records (non-empty).
	Name  string
	Steps []Step
	// MaxConcurrent, when positive, is the most steps of one run in flight
	// at once (submitted and not finished); the steps ready beyond it wait,
	// in declaration order. 0 means no limit. RunOptions.MaxConcurrent and
	// LaunchOptions.MaxConcurrent override it for one run.
	MaxConcurrent int
}

// Step is one node of a Job.
type Step struct {
	// Name is unique in the job: 1 to MaxStepNameLen characters of
	// [A-Za-z0-9_-]. It is the key of the step's output in its downstream
	// steps' inputs (Task.Inputs, Input) and the suffix of its task ID.
	Name string
	// Task is the registered task name that runs the step.
	Task string
	// Args is the task's static argument, JSON; empty means none.
	Args json.RawMessage
	// Upstream names the steps that must succeed before this one runs.
	Upstream []string
	// Retry is the step's retry policy; nil means the worker's default.
	Retry *core.RetryPolicy
	// Timeout, when positive, bounds the step from its submission: it
	// becomes the task's deadline (submission time + Timeout), which covers
	// every attempt and the time spent queued. Zero means none.
	Timeout time.Duration
	// Pool names the fleet-wide concurrency pool the step's task runs in
	// (core.Request.Pool); empty means none.
	Pool string
}

// JobError is one problem of a Job found by Validate. It matches
// ErrInvalidJob with errors.Is.
type JobError struct {
	// Job is the job's name; Step the step concerned ("" for the job as a
	// whole).
	Job, Step string
	// Msg says what is wrong and what would be valid.
	Msg string
}

func (e *JobError) Error() string {
	var b strings.Builder
	b.WriteString("invalid job")
	if e.Job != "" {
		fmt.Fprintf(&b, " %q", e.Job)
	}
	if e.Step != "" {
		fmt.Fprintf(&b, ": step %q", e.Step)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Is makes errors.Is(err, ErrInvalidJob) true.
func (e *JobError) Is(target error) bool { return target == ErrInvalidJob }

// Validate checks the job and returns every problem found, joined
// (errors.Join), each a *JobError naming the step and matching
// ErrInvalidJob: an empty job name, no steps, an empty, invalid or duplicate
// step name, an empty task name, an unknown task (when known is not nil:
// known reports whether a task name is registered, e.g. a Registry's
// Lookup), args that are not JSON, an unknown or repeated upstream, a step
// depending on itself, a cycle (naming the steps on it in flow order,
// "cycle: a → b → c → a", where x → y means y depends on x), an invalid
// retry policy, a negative timeout and a negative MaxConcurrent. It returns
// nil for a valid job.
func (j Job) Validate(known func(task string) bool) error {
	var errs []error
	bad := func(step, format string, args ...any) {
		errs = append(errs, &JobError{Job: j.Name, Step: step, Msg: fmt.Sprintf(format, args...)})
	}
	if j.Name == "" {
		bad("", "the job has no name")
	}
	if len(j.Steps) == 0 {
		bad("", "the job has no steps")
	}
	if j.MaxConcurrent < 0 {
		bad("", "max_concurrent is %d; it must be 0 (no limit) or positive", j.MaxConcurrent)
	}
	index := make(map[string]int, len(j.Steps)) // first declaration of each name
	for i, s := range j.Steps {
		if s.Name == "" {
			bad("", "step %d (of %d) has no name", i+1, len(j.Steps))
		} else if msg := stepNameProblem(s.Name); msg != "" {
			bad(s.Name, "%s", msg)
		}
		if first, dup := index[s.Name]; dup && s.Name != "" {
			bad(s.Name, "duplicate step name: steps %d and %d are both named %q", first+1, i+1, s.Name)
		} else if !dup {
			index[s.Name] = i
		}
	}
	for i, s := range j.Steps {
		label := s.Name
		if label == "" {
			label = fmt.Sprintf("#%d", i+1)
		}
		switch {
		case s.Task == "":
			bad(label, "no task: set the name of a registered task")
		case known != nil && !known(s.Task):
			bad(label, "unknown task %q: no handler is registered under that name", s.Task)
		}
		if len(s.Args) > 0 && !json.Valid(s.Args) {
			bad(label, "args are not valid JSON")
		}
		if s.Retry != nil {
			if err := s.Retry.Validate(); err != nil {
				bad(label, "%v", err)
			}
		}
		if s.Timeout < 0 {
			bad(label, "timeout is %v; it must be 0 (none) or positive", s.Timeout)
		}
		if s.Pool != "" {
			if err := core.ValidatePoolName(s.Pool); err != nil {
				bad(label, "%v", err)
			}
		}
		seen := make(map[string]bool, len(s.Upstream))
		for _, up := range s.Upstream {
			switch _, ok := index[up]; {
			case up == "":
				bad(label, "an upstream name is empty")
			case seen[up]:
				bad(label, "upstream %q is listed twice", up)
			case up == s.Name:
				bad(label, "the step depends on itself")
			case !ok:
				bad(label, "unknown upstream %q: the job has no step of that name", up)
			}
			seen[up] = true
		}
	}
	for _, cycle := range j.cycles(index) {
		bad(cycle[0], "cycle: %s", strings.Join(cycle, " → "))
	}
	return errors.Join(errs...)
}

// stepNameProblem describes what is wrong with a non-empty step name, or
// returns "".
func stepNameProblem(name string) string {
	if len(name) > MaxStepNameLen {
		return fmt.Sprintf("the name is %d bytes long; the limit is %d", len(name), MaxStepNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !stepNameByte(name[i]) {
			return fmt.Sprintf("the name has %q at byte %d; step names use only A-Z, a-z, 0-9, '_' and '-'", name[i], i)
		}
	}
	return ""
}

func stepNameByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-'
}

// downstream returns, for each step (by index of first declaration), the
// indexes of the steps that depend on it, in declaration order. Unknown,
// self and repeated upstreams, and duplicate steps, are left out.
// CheckRunID reports whether runID can name a run of j: it must be a valid
// task ID (printable ASCII without spaces), short enough that every step's
// task ID, StepTaskID(runID, step), stays within the task-ID limit. Run and
// Launch check the same; a caller can check first, before starting workers.
// The error wraps ports.ErrInvalidArgument.
func (j Job) CheckRunID(runID string) error {
	if err := core.ValidateTaskID(runID); err != nil {
		return fmt.Errorf("RunID: %w", err)
	}
	longest := 0
	for _, s := range j.Steps {
		longest = max(longest, len(s.Name))
	}
	if limit := core.MaxTaskIDLen - 1 - longest; len(runID) > limit {
		return fmt.Errorf("%w: RunID %q is %d bytes; with the job's longest step name (%d bytes) the limit is %d",
			ports.ErrInvalidArgument, runID, len(runID), longest, limit)
	}
	return nil
}

func (j Job) downstream(index map[string]int) [][]int {
	down := make([][]int, len(j.Steps))
	for i, s := range j.Steps {
		if index[s.Name] != i {
			continue // a duplicate
		}
		seen := make(map[int]bool, len(s.Upstream))
		for _, up := range s.Upstream {
			u, ok := index[up]
			if !ok || u == i || seen[u] {
				continue
			}
			seen[u] = true
			down[u] = append(down[u], i)
		}
	}
	return down
}

// cycles returns one cycle per strongly connected component of more than
// one step, each as step names in flow order, starting and ending with the
// component's first declared step; components in declaration order.
func (j Job) cycles(index map[string]int) [][]string {
	down := j.downstream(index)
	n := len(j.Steps)
	// Tarjan's algorithm, iterative.
	const unvisited = -1
	num, low := make([]int, n), make([]int, n)
	comp := make([]int, n)
	for i := range num {
		num[i], comp[i] = unvisited, unvisited
	}
	onStack := make([]bool, n)
	var stack []int
	next, ncomp := 0, 0
	type frame struct{ v, edge int }
	for root := range n {
		if num[root] != unvisited || index[j.Steps[root].Name] != root {
			continue
		}
		call := []frame{{root, 0}}
		num[root], low[root] = next, next
		next++
		stack = append(stack, root)
		onStack[root] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			if f.edge < len(down[f.v]) {
				w := down[f.v][f.edge]
				f.edge++
				switch {
				case num[w] == unvisited:
					num[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					call = append(call, frame{w, 0})
				case onStack[w]:
					low[f.v] = min(low[f.v], num[w])
				}
				continue
			}
			v := f.v
			call = call[:len(call)-1]
			if len(call) > 0 {
				p := call[len(call)-1].v
				low[p] = min(low[p], low[v])
			}
			if low[v] == num[v] {
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp[w] = ncomp
					if w == v {
						break
					}
				}
				ncomp++
			}
		}
	}
	size := make([]int, ncomp)
	for i := range n {
		if comp[i] != unvisited {
			size[comp[i]]++
		}
	}
	var out [][]string
	done := make([]bool, ncomp)
	for start := range n { // declaration order
		c := comp[start]
		if c == unvisited || size[c] < 2 || done[c] {
			continue
		}
		done[c] = true
		// Shortest path from start back to start inside the component
		// (breadth-first, edges in declaration order).
		prev := make(map[int]int)
		queue := []int{start}
		var last = -1
		for len(queue) > 0 && last < 0 {
			v := queue[0]
			queue = queue[1:]
			for _, w := range down[v] {
				if comp[w] != c {
					continue
				}
				if w == start {
					last = v
					break
				}
				if _, seen := prev[w]; !seen {
					prev[w] = v
					queue = append(queue, w)
				}
			}
		}
		path := []string{j.Steps[start].Name}
		for v := last; v != start; v = prev[v] {
			path = append(path, j.Steps[v].Name)
		}
		path = append(path, j.Steps[start].Name)
		// path is start ← … ← last ← start backwards: reverse the middle.
		for a, b := 1, len(path)-2; a < b; a, b = a+1, b-1 {
			path[a], path[b] = path[b], path[a]
		}
		out = append(out, path)
	}
	return out
}

// Order returns the step names in a topological order: every step after
// all its upstreams; among steps that could come next, the one declared
// first. An invalid job fails with Validate's error (task names are not
// checked).
func (j Job) Order() ([]string, error) {
	if err := j.Validate(nil); err != nil {
		return nil, err
	}
	order := j.order()
	names := make([]string, len(order))
	for i, idx := range order {
		names[i] = j.Steps[idx].Name
	}
	return names, nil
}

// order is Order's algorithm on a valid job, by step index.
func (j Job) order() []int {
	index := make(map[string]int, len(j.Steps))
	for i, s := range j.Steps {
		index[s.Name] = i
	}
	down := j.downstream(index)
	pending := make([]int, len(j.Steps))
	for _, ds := range down {
		for _, d := range ds {
			pending[d]++
		}
	}
	ready := &intHeap{}
	for i, p := range pending {
		if p == 0 {
			ready.ints = append(ready.ints, i)
		}
	}
	heap.Init(ready)
	out := make([]int, 0, len(j.Steps))
	for ready.Len() > 0 {
		v := heap.Pop(ready).(int)
		out = append(out, v)
		for _, d := range down[v] {
			if pending[d]--; pending[d] == 0 {
				heap.Push(ready, d)
			}
		}
	}
	return out
}

// intHeap is a min-heap of ints (container/heap).
type intHeap struct{ ints []int }

func (h *intHeap) Len() int           { return len(h.ints) }
func (h *intHeap) Less(a, b int) bool { return h.ints[a] < h.ints[b] }
func (h *intHeap) Swap(a, b int)      { h.ints[a], h.ints[b] = h.ints[b], h.ints[a] }
func (h *intHeap) Push(x any)         { h.ints = append(h.ints, x.(int)) }
func (h *intHeap) Pop() any {
	x := h.ints[len(h.ints)-1]
	h.ints = h.ints[:len(h.ints)-1]
	return x
}
