package dag

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// Errors of Reexecute and StoredJob (errors.Is).
var (
	// ErrRunNotFinished: the run to re-execute is queued or running.
	ErrRunNotFinished = errors.New("run not finished")
	// ErrNoStoredJob: the run has no job stored with it (it was launched
	// before Launch stored jobs).
	ErrNoStoredJob = errors.New("no job stored with the run")
	// ErrJobMismatch: the job given to Reexecute is not the one the run ran.
	ErrJobMismatch = errors.New("job differs from the run's")
	// ErrResultGone: a stored step result to reuse is gone (results expire).
	ErrResultGone = errors.New("stored result gone")
)

// runJobKey returns the StateStore key of the job stored with run runID.
func runJobKey(runID string) string { return "runjobs/" + runID }

// storedJob is the record under runJobKey: the job as the run task gets it.
type storedJob struct {
	Job           string        `json:"job"`
	Steps         []runTaskStep `json:"steps"`
	MaxConcurrent int           `json:"max_concurrent,omitempty"`
}

func newStoredJob(job Job) storedJob {
	sj := storedJob{Job: job.Name, MaxConcurrent: job.MaxConcurrent, Steps: make([]runTaskStep, len(job.Steps))}
	for i, s := range job.Steps {
		sj.Steps[i] = runTaskStep(s)
	}
	return sj
}

func (sj storedJob) job() Job {
	j := Job{Name: sj.Job, MaxConcurrent: sj.MaxConcurrent, Steps: make([]Step, len(sj.Steps))}
	for i, s := range sj.Steps {
		j.Steps[i] = Step(s)
	}
	return j
}

// storeJob writes job under runJobKey(runID), create-only. When the key
// exists, the run ID is taken if it has a record (ports.ErrAlreadyExists);
// without one, an earlier launch under that ID failed between the two
// writes, and its job is replaced.
func (l *Launcher) storeJob(ctx context.Context, runID string, job Job) error {
	data, err := json.Marshal(newStoredJob(job))
	if err != nil {
		return fmt.Errorf("dagq: launch: encode the job: %w", err)
	}
	key := runJobKey(runID)
	_, err = l.state.Put(ctx, key, data, ports.WriteCondition{MustNotExist: true})
	if err == nil {
		return nil
	}
	if !errors.Is(err, ports.ErrAlreadyExists) {
		return fmt.Errorf("dagq: launch: write the job of run %s: %w", runID, err)
	}
	switch _, rerr := l.read(ctx, runID); {
	case rerr == nil:
		return l.runExists(ctx, runID, err)
	case !errors.Is(rerr, ErrRunNotFound):
		return fmt.Errorf("dagq: launch: %w", rerr)
	}
	cur, err := l.state.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("dagq: launch: read the job stored under run ID %s: %w", runID, err)
	}
	if bytes.Equal(cur.Data, data) {
		return nil
	}
	l.log.Warn("launch: replacing the job left under this run ID by a launch that failed before writing its record", "run_id", runID)
	if _, err := l.state.Put(ctx, key, data, ports.WriteCondition{MatchVersion: cur.Version}); err != nil {
		return fmt.Errorf("dagq: launch: write the job of run %s: %w", runID, err)
	}
	return nil
}

// StoredJob returns the job run runID runs or ran, as Launch stored it
// with the run (under "runjobs/<runID>"): its steps with their tasks,
// arguments, upstreams, retry policies and timeouts, and its
// max_concurrent. It fails with ErrRunNotFound for an unknown run, and with
// ErrNoStoredJob for a run launched before Launch stored jobs.
func (l *Launcher) StoredJob(ctx context.Context, runID string) (Job, error) {
	if err := core.ValidateTaskID(runID); err != nil {
		return Job{}, fmt.Errorf("dagq: stored job: run ID: %w", err)
	}
	r, err := l.state.Get(ctx, runJobKey(runID))
	switch {
	case errors.Is(err, ports.ErrNotFound):
		if _, rerr := l.read(ctx, runID); rerr != nil {
			return Job{}, fmt.Errorf("dagq: stored job: %w", rerr)
		}
		return Job{}, fmt.Errorf("dagq: run %s: %w: it was launched before dagq stored the job with each run", runID, ErrNoStoredJob)
	case err != nil:
		return Job{}, fmt.Errorf("dagq: read the job of run %s: %w", runID, err)
	}
	var sj storedJob
	if err := json.Unmarshal(r.Data, &sj); err != nil {
		return Job{}, fmt.Errorf("dagq: the job stored with run %s is not a job: %v", runID, err)
	}
	return sj.job(), nil
}

// ReexecuteFrom says which steps of a run a re-execution runs again.
type ReexecuteFrom string

// What Reexecute runs again.
const (
	// ReexecuteFromFailure: the steps that did not succeed (failed,
	// cancelled, skipped) and every step downstream of them.
	ReexecuteFromFailure ReexecuteFrom = "failure"
	// ReexecuteSteps: the steps ReexecuteOptions.Steps names; a name with a
	// trailing "+" adds every step downstream of it.
	ReexecuteSteps ReexecuteFrom = "steps"
	// ReexecuteAll: every step (nothing is reused).
	ReexecuteAll ReexecuteFrom = "all"
)

// Reexecution is what a re-execution was asked to run again (RunRecord).
type Reexecution struct {
	From ReexecuteFrom `json:"from"`
	// Steps are ReexecuteOptions.Steps as given (ReexecuteSteps).
	Steps []string `json:"steps,omitempty"`
}

// String says it in words: "from failure", "steps b+, c", "all steps".
func (r Reexecution) String() string {
	switch r.From {
	case ReexecuteFromFailure:
		return "from failure"
	case ReexecuteSteps:
		return "steps " + strings.Join(r.Steps, ", ")
	case ReexecuteAll:
		return "all steps"
	}
	return string(r.From)
}

// ReexecuteOptions configures one Reexecute.
type ReexecuteOptions struct {
	// RunID identifies the new run (LaunchOptions.RunID); default
	// NewTaskID().
	RunID string
	// From says which steps run again (required).
	From ReexecuteFrom
	// Steps names the steps to run again with ReexecuteSteps (and only
	// then): "b" runs b, "b+" runs b and every step downstream of it.
	Steps []string
	// Params are merged over the parent run's params: the new run has the
	// parent's, with these added or replacing them.
	Params map[string]string
	// Job, when set, must be the job the parent run ran: Reexecute fails
	// with ErrJobMismatch, naming the differences, when it is not. For a
	// run launched before jobs were stored with runs (ErrNoStoredJob), it
	// is the job to use; its steps must match the run record's.
	Job *Job
	// FailFast, CancelWait, MaxConcurrent and Retry are the new run's, as
	// for Launch: they are not taken from the parent run (MaxConcurrent 0
	// keeps the job's max_concurrent).
	FailFast      bool
	CancelWait    time.Duration
	MaxConcurrent int
	Retry         *core.RetryPolicy
}

// Reexecute launches a new run of the job run parentRunID ran (the job
// stored with it; see StoredJob), which runs again the steps opts.From
// selects and reuses the stored results of the others: a reused step is
// not submitted and no handler runs for it; its stored output reaches its
// downstream steps byte for byte, as in the parent run. The new run's
// record has ParentRun (parentRunID), RootRun (the parent's RootRun, or
// the parent) and Reexecution, and each reused step ReusedFrom (the run
// whose step produced the result: a result the parent itself reused is
// followed back to its run). It returns the new run's ID without waiting,
// as Launch; the new run is a run like any other (Status, Wait, Terminate,
// the run index).
//
// Before it launches anything, Reexecute checks, and fails:
//
//   - with ErrRunNotFound for an unknown parent, and ErrRunNotFinished for a
//     queued or running one (Wait for it or Terminate it first);
//   - with ErrNoStoredJob when the parent has no stored job and opts.Job is
//     nil, and ErrJobMismatch when opts.Job is not the parent's job;
//   - with ports.ErrInvalidArgument for a selection that cannot be run:
//     From missing or unknown; Steps naming a step the job does not have
//     (listing its steps); a parent that succeeded, re-executed from
//     failure (nothing to re-execute); a step to run whose upstream step
//     is not selected and did not succeed in the parent (its output is
//     missing: select that step too);
//   - with ErrResultGone when the stored result of a step to reuse is gone
//     (results expire): re-execute that step too.
//
// Every step not selected must be reused, so it must have succeeded in the
// parent. One that did not, and that no selected step needs (e.g. with
// ReexecuteSteps, a failed branch not named), is skipped in the new run
// with the error "not selected for re-execution"; a skipped step does not
// fail a run.
//
// Costs: one run record and one job read, one Client.Status when the
// parent's record is not final, one result read per reused step (eight at
// a time), then Launch's writes; the run task reads the reused results once
// more when it starts.
func (l *Launcher) Reexecute(ctx context.Context, parentRunID string, opts ReexecuteOptions) (string, error) {
	if l.c.Tracer() == nil {
		return l.reexecute(ctx, parentRunID, opts)
	}
	if opts.RunID == "" {
		opts.RunID = core.NewTaskID()
	}
	ctx, end := l.c.Tracer().Start(ctx, core.SpanStart{Kind: core.SpanLaunch, Name: "reexecute " + parentRunID, RunID: opts.RunID})
	runID, err := l.reexecute(ctx, parentRunID, opts)
	end(err)
	return runID, err
}

func (l *Launcher) reexecute(ctx context.Context, parentRunID string, opts ReexecuteOptions) (string, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("dagq: reexecute: %w: "+format, append([]any{ports.ErrInvalidArgument}, args...)...)
	}
	switch opts.From {
	case ReexecuteFromFailure, ReexecuteAll:
		if len(opts.Steps) > 0 {
			return "", bad("Steps is set with From %q; name steps with From %q", opts.From, ReexecuteSteps)
		}
	case ReexecuteSteps:
		if len(opts.Steps) == 0 {
			return "", bad("From %q needs Steps: the names of the steps to run again", ReexecuteSteps)
		}
	case "":
		return "", bad("From is required: %q, %q or %q", ReexecuteFromFailure, ReexecuteSteps, ReexecuteAll)
	default:
		return "", bad("From %q: valid values: %q, %q, %q", opts.From, ReexecuteFromFailure, ReexecuteSteps, ReexecuteAll)
	}
	parent, err := l.Status(ctx, parentRunID)
	if err != nil {
		return "", fmt.Errorf("dagq: reexecute: %w", err)
	}
	if !parent.State.Final() {
		return "", fmt.Errorf("dagq: reexecute: %w: run %s is %s; re-execute it once it has finished (wait for it, or terminate it)",
			ErrRunNotFinished, parentRunID, parent.State)
	}
	job, err := l.reexecutedJob(ctx, parent, opts.Job)
	if err != nil {
		return "", err
	}
	plan, err := planReexecution(parent, job, opts)
	if err != nil {
		return "", err
	}
	if err := l.checkReused(ctx, plan); err != nil {
		return "", err
	}
	params := maps.Clone(parent.Params)
	if len(opts.Params) > 0 {
		if params == nil {
			params = make(map[string]string, len(opts.Params))
		}
		maps.Copy(params, opts.Params)
	}
	runID, err := l.launchRun(ctx, job, LaunchOptions{
		RunID: opts.RunID, Params: params, FailFast: opts.FailFast, CancelWait: opts.CancelWait,
		Retry: opts.Retry, MaxConcurrent: opts.MaxConcurrent,
	}, plan)
	if err != nil {
		return runID, err
	}
	l.log.Info("run re-executed", "run_id", runID, "parent_run", parent.RunID, "root_run", plan.root,
		"reexecution", plan.sel.String(), "reused", len(plan.reuse), "skipped", len(plan.skip))
	return runID, nil
}

// reexecutedJob returns the job a re-execution of parent runs: the one
// stored with it, which given (when not nil) must equal; or, for a run
// without one, given, checked against the record.
func (l *Launcher) reexecutedJob(ctx context.Context, parent RunRecord, given *Job) (Job, error) {
	stored, err := l.StoredJob(ctx, parent.RunID)
	switch {
	case err == nil:
		if given != nil {
			if diffs := diffJobs(stored, *given); len(diffs) > 0 {
				return Job{}, mismatch(parent.RunID, "the job stored with it", diffs)
			}
		}
		return stored, nil
	case !errors.Is(err, ErrNoStoredJob):
		return Job{}, fmt.Errorf("dagq: reexecute: %w", err)
	case given == nil:
		return Job{}, fmt.Errorf("dagq: reexecute: %w; pass the job it ran (ReexecuteOptions.Job, dagq reexecute --job FILE)", err)
	}
	if err := given.Validate(nil); err != nil {
		return Job{}, fmt.Errorf("dagq: reexecute: %w", err)
	}
	if diffs := diffRecord(parent, *given); len(diffs) > 0 {
		return Job{}, mismatch(parent.RunID, "its record", diffs)
	}
	return *given, nil
}

// mismatch is ErrJobMismatch with the differences found (at most five).
func mismatch(runID, what string, diffs []string) error {
	const most = 5
	if len(diffs) > most {
		diffs = append(diffs[:most:most], fmt.Sprintf("and %d more", len(diffs)-most))
	}
	return fmt.Errorf("dagq: reexecute: %w: the job given is not the one run %s ran (%s): %s",
		ErrJobMismatch, runID, what, strings.Join(diffs, "; "))
}

// diffJobs lists the differences between the job a run ran and a job
// given for it: name, max_concurrent, steps added and removed, and per step
// its task, args (compared as JSON), upstreams (as a set), retry policy and
// timeout. The order of the steps does not count.
func diffJobs(stored, given Job) []string {
	var d []string
	if stored.Name != given.Name {
		d = append(d, fmt.Sprintf("name differs (stored %q, given %q)", stored.Name, given.Name))
	}
	if stored.MaxConcurrent != given.MaxConcurrent {
		d = append(d, fmt.Sprintf("max_concurrent differs (stored %d, given %d)", stored.MaxConcurrent, given.MaxConcurrent))
	}
	byName := make(map[string]Step, len(given.Steps))
	for _, s := range given.Steps {
		byName[s.Name] = s
	}
	seen := make(map[string]bool, len(stored.Steps))
	for _, a := range stored.Steps {
		seen[a.Name] = true
		b, ok := byName[a.Name]
		if !ok {
			d = append(d, fmt.Sprintf("step %q removed", a.Name))
			continue
		}
		step := func(format string, args ...any) {
			d = append(d, fmt.Sprintf("step %q: ", a.Name)+fmt.Sprintf(format, args...))
		}
		if a.Task != b.Task {
			step("task differs (stored %q, given %q)", a.Task, b.Task)
		}
		if !sameJSON(a.Args, b.Args) {
			step("args differ (stored %s, given %s)", showJSON(a.Args), showJSON(b.Args))
		}
		if !sameSet(a.Upstream, b.Upstream) {
			step("upstream differs (stored [%s], given [%s])", strings.Join(a.Upstream, ", "), strings.Join(b.Upstream, ", "))
		}
		if !reflect.DeepEqual(a.Retry, b.Retry) {
			step("retry differs (stored %s, given %s)", showRetry(a.Retry), showRetry(b.Retry))
		}
		if a.Timeout != b.Timeout {
			step("timeout differs (stored %v, given %v)", a.Timeout, b.Timeout)
		}
		if a.Pool != b.Pool {
			step("pool differs (stored %q, given %q)", a.Pool, b.Pool)
		}
	}
	for _, b := range given.Steps {
		if !seen[b.Name] {
			d = append(d, fmt.Sprintf("step %q added", b.Name))
		}
	}
	return d
}

// diffRecord lists the differences between a run's record and a job given
// for it (a run without a stored job): steps added and removed, tasks and
// upstreams — what the record knows.
func diffRecord(rec RunRecord, given Job) []string {
	var d []string
	if rec.Job != given.Name {
		d = append(d, fmt.Sprintf("name differs (the run's %q, given %q)", rec.Job, given.Name))
	}
	byName := make(map[string]Step, len(given.Steps))
	for _, s := range given.Steps {
		byName[s.Name] = s
	}
	seen := make(map[string]bool, len(rec.Steps))
	for _, a := range rec.Steps {
		seen[a.Name] = true
		b, ok := byName[a.Name]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("step %q removed", a.Name))
		case a.Task != b.Task:
			d = append(d, fmt.Sprintf("step %q: task differs (the run's %q, given %q)", a.Name, a.Task, b.Task))
		case !sameSet(a.Upstream, b.Upstream):
			d = append(d, fmt.Sprintf("step %q: upstream differs (the run's [%s], given [%s])", a.Name,
				strings.Join(a.Upstream, ", "), strings.Join(b.Upstream, ", ")))
		}
	}
	for _, b := range given.Steps {
		if !seen[b.Name] {
			d = append(d, fmt.Sprintf("step %q added", b.Name))
		}
	}
	return d
}

// sameJSON compares two JSON arguments by value (empty counts as null).
func sameJSON(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if len(bytes.TrimSpace(a)) > 0 && json.Unmarshal(a, &va) != nil {
		return false
	}
	if len(bytes.TrimSpace(b)) > 0 && json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// showJSON is a JSON argument for a message: compact, at most 80 bytes.
func showJSON(a json.RawMessage) string {
	if len(bytes.TrimSpace(a)) == 0 {
		return "none"
	}
	var b bytes.Buffer
	if json.Compact(&b, a) != nil {
		b.Reset()
		b.Write(a)
	}
	s := b.String()
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func showRetry(p *core.RetryPolicy) string {
	if p == nil {
		return "the worker's default"
	}
	return fmt.Sprintf("{max_attempts %d, initial_backoff %v, max_backoff %v, multiplier %g, jitter %g}",
		p.MaxAttempts, p.InitialBackoff, p.MaxBackoff, p.Multiplier, p.Jitter)
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// reexecPlan is what a re-execution runs, reuses and skips.
type reexecPlan struct {
	parent, root string
	sel          Reexecution
	reuse        map[string]string // step → task ID of the result to reuse
	from         map[string]string // step → the run of that result
	skip         map[string]string // step → why it is skipped
	run          []string          // the steps run again, in declaration order
}

// apply writes the plan into a new run's record.
func (p *reexecPlan) apply(rec *RunRecord) {
	rec.ParentRun, rec.RootRun = p.parent, p.root
	sel := p.sel
	sel.Steps = slices.Clone(sel.Steps)
	rec.Reexecution = &sel
	for i := range rec.Steps {
		st := &rec.Steps[i]
		if id, ok := p.reuse[st.Name]; ok {
			st.State, st.TaskID, st.ReusedFrom = StepSucceeded, id, p.from[st.Name]
		} else if why, ok := p.skip[st.Name]; ok {
			st.State, st.Error = StepSkipped, why
		}
	}
}

// planReexecution selects the steps to run again and finds the results of
// the others in the parent's record.
func planReexecution(parent RunRecord, job Job, opts ReexecuteOptions) (*reexecPlan, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("dagq: reexecute: %w: "+format, append([]any{ports.ErrInvalidArgument}, args...)...)
	}
	index := make(map[string]int, len(job.Steps))
	names := make([]string, len(job.Steps))
	for i, s := range job.Steps {
		index[s.Name] = i
		names[i] = s.Name
	}
	down := job.downstream(index)
	selected := make([]bool, len(job.Steps))
	reached := make([]bool, len(job.Steps)) // by withDown
	withDown := func(i int) {
		stack := []int{i}
		for len(stack) > 0 {
			v := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if reached[v] {
				continue
			}
			reached[v], selected[v] = true, true
			stack = append(stack, down[v]...)
		}
	}
	prev := make(map[string]StepRecord, len(parent.Steps))
	for _, s := range parent.Steps {
		prev[s.Name] = s
	}
	succeeded := func(name string) bool {
		p, ok := prev[name]
		return ok && p.State == StepSucceeded
	}
	switch opts.From {
	case ReexecuteAll:
		for i := range selected {
			selected[i] = true
		}
	case ReexecuteFromFailure:
		for i, s := range job.Steps {
			if !succeeded(s.Name) {
				withDown(i)
			}
		}
		if !slices.Contains(selected, true) {
			return nil, bad("every step of run %s succeeded: nothing to re-execute from failure (re-execute all steps, or name the steps)", parent.RunID)
		}
	case ReexecuteSteps:
		var unknown []string
		for _, n := range opts.Steps {
			name, plus := strings.CutSuffix(strings.TrimSpace(n), "+")
			i, ok := index[name]
			switch {
			case !ok:
				unknown = append(unknown, fmt.Sprintf("%q", n))
			case plus:
				withDown(i)
			default:
				selected[i] = true
			}
		}
		if len(unknown) > 0 {
			return nil, bad("no step %s in job %q of run %s; its steps: %s", strings.Join(unknown, ", "), job.Name, parent.RunID,
				strings.Join(names, ", "))
		}
	}
	plan := &reexecPlan{
		parent: parent.RunID, root: cmp.Or(parent.RootRun, parent.RunID),
		sel:   Reexecution{From: opts.From, Steps: slices.Clone(opts.Steps)},
		reuse: map[string]string{}, from: map[string]string{}, skip: map[string]string{},
	}
	for i, s := range job.Steps {
		switch p := prev[s.Name]; {
		case selected[i]:
			plan.run = append(plan.run, s.Name)
		case succeeded(s.Name):
			id := cmp.Or(p.TaskID, StepTaskID(parent.RunID, s.Name))
			plan.reuse[s.Name] = id
			plan.from[s.Name] = cmp.Or(p.ReusedFrom, reusedRun(id, s.Name))
		default:
			state := cmp.Or(string(p.State), "unknown")
			plan.skip[s.Name] = fmt.Sprintf("not selected for re-execution (%s in run %s)", state, parent.RunID)
		}
	}
	// A step that runs needs the outputs of its upstream steps.
	var missing []string
	for i, s := range job.Steps {
		if !selected[i] {
			continue
		}
		for _, up := range s.Upstream {
			if _, skipped := plan.skip[up]; skipped {
				state := cmp.Or(string(prev[up].State), "unknown")
				missing = append(missing, fmt.Sprintf("step %q needs the output of step %q, which is not selected and was %s in run %s: select it too (steps %s,%s)",
					s.Name, up, state, parent.RunID, up, s.Name))
			}
		}
	}
	if len(missing) > 0 {
		return nil, bad("%s", strings.Join(missing, "; "))
	}
	return plan, nil
}

// checkReused fails with ErrResultGone when a result to reuse is gone.
func (l *Launcher) checkReused(ctx context.Context, plan *reexecPlan) error {
	if len(plan.reuse) == 0 {
		return nil
	}
	ids := slices.Collect(maps.Values(plan.reuse))
	found, failed := l.c.StoredResults(ctx, ids)
	if failed > 0 {
		return fmt.Errorf("dagq: reexecute: reading the stored results to reuse failed (%d of %d reads); try again", failed, len(ids))
	}
	var gone []string
	for _, name := range slices.Sorted(maps.Keys(plan.reuse)) {
		id := plan.reuse[name]
		res, ok := found[id]
		switch {
		case !ok:
			gone = append(gone, fmt.Sprintf("step %q (task %s of run %s)", name, id, plan.from[name]))
		case res.State != ports.StateSucceeded:
			gone = append(gone, fmt.Sprintf("step %q (task %s of run %s, stored as %s)", name, id, plan.from[name], res.State))
		}
	}
	if len(gone) > 0 {
		return fmt.Errorf("dagq: reexecute: %w: the stored result of %s is gone (results expire): re-execute those steps too, or all steps",
			ErrResultGone, strings.Join(gone, ", "))
	}
	return nil
}
