package ui

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
)

// Tuning of the run store.
const (
	// maxKnownRuns bounds the runs the console remembers (the recent list).
	maxKnownRuns = 1000
	// healthEvery is how often the console checks an unfinished launched
	// run's heartbeat (Launcher.Health) besides reading its record.
	healthEvery = 30 * time.Second
	// listStale is how old the record of an unfinished run in the recent
	// list may be before a refresh of the runs page reads it again.
	listStale = 10 * time.Second
	// maxTimeline bounds the timeline entries of one run.
	maxTimeline = 1000
	// outputPreview bounds an output preview (runes).
	outputPreview = 200
	// outputsGrace is how long after a run finished the console looks again
	// for its run task's result (with its outputs) when a view found none.
	outputsGrace = 30 * time.Second
)

// runStore holds the runs the console knows: launched runs it opened (their
// records cached) and runs this process drives (LocalRun).
type runStore struct {
	s  *Server
	mu sync.Mutex
	m  map[string]*runEntry
}

func newRunStore(s *Server) *runStore { return &runStore{s: s, m: map[string]*runEntry{}} }

// runEntry is one known run. Its mutex is held while its record is read,
// so that viewers of one run share each read.
type runEntry struct {
	id    string
	local *LocalRun // nil for a launched run
	added time.Time

	mu       sync.Mutex
	rec      dag.RunRecord
	readAt   time.Time
	health   *dag.Health
	healthAt time.Time
	outputs  map[string]json.RawMessage // by step; final runs, and shown on demand
	outRead  bool                       // the final run's outputs were read
}

// entry returns the known run id, or nil.
func (st *runStore) entry(id string) *runEntry {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.m[id]
}

// add remembers e, forgetting the oldest run beyond maxKnownRuns.
func (st *runStore) add(e *runEntry) *runEntry {
	st.mu.Lock()
	defer st.mu.Unlock()
	if cur, ok := st.m[e.id]; ok {
		return cur
	}
	st.m[e.id] = e
	if len(st.m) > maxKnownRuns {
		var oldest *runEntry
		for _, x := range st.m {
			if x.local == nil && (oldest == nil || x.added.Before(oldest.added)) {
				oldest = x
			}
		}
		if oldest != nil {
			delete(st.m, oldest.id)
		}
	}
	return e
}

// all returns the known runs, newest first.
func (st *runStore) all() []*runEntry {
	st.mu.Lock()
	out := make([]*runEntry, 0, len(st.m))
	for _, e := range st.m {
		out = append(out, e)
	}
	st.mu.Unlock()
	slices.SortFunc(out, func(a, b *runEntry) int {
		return cmp.Or(b.added.Compare(a.added), strings.Compare(a.id, b.id))
	})
	return out
}

// errUnknownRun: neither known nor in the state store.
var errUnknownRun = errors.New("no such run")

// Track makes the console remember run runID (a launched run) in its list
// of recent runs, as if it had been opened.
func (s *Server) Track(ctx context.Context, runID string) error {
	_, err := s.view(ctx, runID, false)
	return err
}

// view returns what the console shows of run id: a LocalRun's state, or a
// launched run's record, read at most once per three quarters of the
// refresh interval (any number of viewers), with a heartbeat check every
// healthEvery; finished runs once more for their outputs, then never again.
// force reads an unfinished launched run's record again now.
func (s *Server) view(ctx context.Context, id string, force bool) (runView, error) {
	if e := s.runs.entry(id); e != nil && e.local != nil {
		return e.local.view(), nil
	}
	if err := core.ValidateTaskID(id); err != nil {
		return runView{}, errUnknownRun
	}
	e := s.runs.entry(id)
	if e == nil {
		e = &runEntry{id: id, added: s.now()}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := s.now()
	fresh := !e.readAt.IsZero() && (e.rec.State.Final() || (!force && now.Sub(e.readAt) < s.refresh*3/4))
	if !fresh {
		rec, err := s.rt.Launcher.Record(ctx, id)
		switch {
		case errors.Is(err, dag.ErrRunNotFound):
			return runView{}, errUnknownRun
		case err != nil && e.readAt.IsZero():
			return runView{}, err
		case err != nil:
			s.log.Warn("reading a run record failed; showing the last one read", "run_id", id, "err", err)
		default:
			e.rec, e.readAt = rec, now
			if !rec.CreatedAt.IsZero() && e.added.IsZero() {
				e.added = rec.CreatedAt
			}
		}
		if !e.rec.State.Final() && now.Sub(e.healthAt) >= healthEvery {
			s.checkHealth(ctx, e, now)
		}
		s.runs.add(e)
	}
	if e.rec.State.Final() && !e.outRead {
		s.readOutputs(ctx, e)
	}
	return e.launchedView(), nil
}

// checkHealth asks the Launcher whether e's unfinished run is alive. When
// the answer is final although the record is not (the run task ended
// without writing it, or the worker died and the run was ended), the
// record as Status reconciles it replaces the stored one.
func (s *Server) checkHealth(ctx context.Context, e *runEntry, now time.Time) {
	e.healthAt = now
	h, err := s.rt.Launcher.Health(ctx, e.id)
	if err != nil {
		s.log.Debug("run health unknown", "run_id", e.id, "err", err)
	}
	e.health = &h
	switch h.Status {
	case dag.HealthSuccess, dag.HealthFailed, dag.HealthCancelled:
		if rec, err := s.rt.Launcher.Status(ctx, e.id); err == nil {
			e.rec = rec
		}
	}
}

// readOutputs reads a finished run's step outputs from its run task's
// result (one read), once. The run task stores its result just after it
// wrote the final record: a view in between finds none, and the next views
// read again, for up to outputsGrace after the run finished.
func (s *Server) readOutputs(ctx context.Context, e *runEntry) {
	taskID := cmp.Or(e.rec.TaskID, dag.RunTaskID(e.id))
	found, _ := s.rt.Client.StoredResults(ctx, []string{taskID})
	res, ok := found[taskID]
	if !ok {
		e.outRead = s.now().Sub(e.rec.FinishedAt) > outputsGrace
		return
	}
	e.outRead = true
	var rr dag.RunResult
	if json.Unmarshal(res.Output, &rr) != nil {
		return
	}
	for _, step := range rr.Steps {
		if len(step.Output) > 0 {
			if e.outputs == nil {
				e.outputs = map[string]json.RawMessage{}
			}
			e.outputs[step.Name] = step.Output
		}
	}
}

// stepOutput returns the output of a succeeded step of run id: from what
// the console knows, else from the step's stored result (one read, kept).
func (s *Server) stepOutput(ctx context.Context, id, step string) (json.RawMessage, bool, error) {
	v, err := s.view(ctx, id, false)
	if err != nil {
		return nil, false, err
	}
	sr, ok := v.Rec.Step(step)
	if !ok {
		return nil, false, errUnknownRun
	}
	if out, ok := v.Outputs[step]; ok {
		return out, true, nil
	}
	if sr.State != dag.StepSucceeded {
		return nil, false, nil
	}
	taskID := sr.TaskID
	if taskID == "" {
		taskID = dag.StepTaskID(id, step)
	}
	found, _ := s.rt.Client.StoredResults(ctx, []string{taskID})
	res, ok := found[taskID]
	if !ok {
		return nil, false, nil
	}
	e := s.runs.entry(id)
	if e != nil && e.local != nil {
		e.local.setOutput(step, res.Output)
	} else if e != nil {
		e.mu.Lock()
		if e.outputs == nil {
			e.outputs = map[string]json.RawMessage{}
		}
		e.outputs[step] = res.Output
		e.mu.Unlock()
	}
	return res.Output, true, nil
}

// runView is a run as the pages show it.
type runView struct {
	Rec      dag.RunRecord
	Local    bool
	Health   *dag.Health
	Outputs  map[string]json.RawMessage
	Timeline []timelineEntry
}

// timelineEntry is one line of a run's timeline.
type timelineEntry struct {
	Time time.Time `json:"-"`
	// Kind is the state it is about (a CSS class).
	Kind string `json:"kind"`
	Step string `json:"step,omitempty"`
	Text string `json:"text"`
}

// launchedView is the view of a launched run; e.mu is held.
func (e *runEntry) launchedView() runView {
	v := runView{Rec: e.rec, Health: e.health, Outputs: e.outputs}
	v.Rec.Steps = slices.Clone(e.rec.Steps)
	v.Timeline = recordTimeline(e.rec)
	return v
}

// recordTimeline derives a timeline from a run record: the record keeps
// each step's latest start and its end, so retries show as one start.
func recordTimeline(rec dag.RunRecord) []timelineEntry {
	var out []timelineEntry
	add := func(t time.Time, kind, step, text string) {
		if !t.IsZero() {
			out = append(out, timelineEntry{Time: t, Kind: kind, Step: step, Text: text})
		}
	}
	add(rec.CreatedAt, "queued", "", "run launched")
	add(rec.StartedAt, "running", "", "run started"+on(rec.Worker, rec.ResumedAt.IsZero()))
	if rec.Attempt > 1 {
		add(rec.ResumedAt, "running", "", fmt.Sprintf("run taken over (execution %d)%s", rec.Attempt, on(rec.Worker, true)))
	}
	for _, st := range rec.Steps {
		if st.ReusedFrom != "" {
			add(cmp.Or(rec.StartedAt, rec.CreatedAt), "succeeded", st.Name, "step "+st.Name+" reused from run "+st.ReusedFrom)
			continue
		}
		if st.StartedAt.IsZero() && st.State == dag.StepRunning {
			continue
		}
		attempt := ""
		if st.Attempts > 1 {
			attempt = fmt.Sprintf(" (attempt %d)", st.Attempts)
		}
		add(st.StartedAt, "running", st.Name, "step "+st.Name+" started"+attempt+on(st.Worker, true))
		if st.State.Final() {
			text := "step " + st.Name + " " + string(st.State)
			if st.Error != "" {
				text += ": " + st.Error
			}
			add(cmp.Or(st.FinishedAt, rec.FinishedAt), string(st.State), st.Name, text)
		}
	}
	add(rec.CancelRequestedAt, "cancelled", "", "terminate requested")
	if rec.State.Final() {
		text := "run " + string(rec.State)
		if rec.Error != "" {
			text += ": " + rec.Error
		}
		add(rec.FinishedAt, string(rec.State), "", text)
	}
	slices.SortStableFunc(out, func(a, b timelineEntry) int { return a.Time.Compare(b.Time) })
	if len(out) > maxTimeline {
		out = out[len(out)-maxTimeline:]
	}
	return out
}

func on(worker string, show bool) string {
	if worker == "" || !show {
		return ""
	}
	return " on " + worker
}

// preview returns the start of an output's JSON text and whether it was
// cut.
func preview(out json.RawMessage) (string, bool) {
	s := strings.TrimSpace(displayJSON(out))
	if utf8.RuneCountInString(s) <= outputPreview {
		return s, false
	}
	r := []rune(s)
	return string(r[:outputPreview]) + "…", true
}

// displayJSON returns JSON as people read it: compact, with <, > and &
// as themselves rather than \u003c escapes (the page escapes them).
func displayJSON(out json.RawMessage) string {
	var v any
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return string(out)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return string(out)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// terminate ends run id: a LocalRun through its cancel function, a
// launched run through the Launcher. It reports whether it did (false: the
// run had finished).
func (s *Server) terminate(ctx context.Context, id string) (bool, error) {
	if e := s.runs.entry(id); e != nil && e.local != nil {
		return e.local.terminate(), nil
	}
	if _, err := s.view(ctx, id, false); err != nil {
		return false, err
	}
	ok, err := s.rt.Launcher.Terminate(ctx, id)
	if errors.Is(err, dag.ErrRunNotFound) {
		return false, errUnknownRun
	}
	if e := s.runs.entry(id); e != nil {
		e.mu.Lock()
		e.readAt = time.Time{} // read it again at once
		e.mu.Unlock()
	}
	return ok, err
}

// LocalRun is a run this process drives with an Executor (dagq run --ui):
// the console follows it through its events instead of a run record, and
// terminates it by cancelling its context.
type LocalRun struct {
	mu      sync.Mutex
	rec     dag.RunRecord
	events  []timelineEntry
	outputs map[string]json.RawMessage
	cancel  func()
	index   map[string]int
}

// AddLocalRun shows run runID of job, driven by this process, in the
// console. Pass the returned LocalRun's Event as RunOptions.OnEvent (or
// call it from yours) and its Finish with the result; cancel (may be nil)
// is called by the console's Terminate.
func (s *Server) AddLocalRun(runID string, job dag.Job, params map[string]string, cancel func()) *LocalRun {
	now := s.now().UTC()
	r := &LocalRun{cancel: cancel, index: map[string]int{}}
	r.rec = dag.RunRecord{RunID: runID, Job: job.Name, State: dag.RunQueued, Params: params, CreatedAt: now,
		Steps: make([]dag.StepRecord, len(job.Steps))}
	for i, st := range job.Steps {
		r.rec.Steps[i] = dag.StepRecord{Name: st.Name, Task: st.Task, Upstream: slices.Clone(st.Upstream), State: dag.StepPending}
		r.index[st.Name] = i
	}
	r.note(now, "queued", "", "run created in this process")
	s.runs.add(&runEntry{id: runID, local: r, added: now})
	return r
}

// note appends a timeline entry; r.mu is held (or r is not shared yet).
func (r *LocalRun) note(t time.Time, kind, step, text string) {
	r.events = append(r.events, timelineEntry{Time: t, Kind: kind, Step: step, Text: text})
	if len(r.events) > maxTimeline {
		r.events = slices.Delete(r.events, 0, len(r.events)-maxTimeline)
	}
}

// Event applies an executor event (dag.RunOptions.OnEvent).
func (r *LocalRun) Event(ev dag.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := ev.Time.UTC()
	if t.IsZero() {
		t = time.Now().UTC()
	}
	switch ev.Type {
	case dag.EventRunStarted:
		r.rec.State, r.rec.StartedAt = dag.RunRunning, t
		r.note(t, "running", "", "run started")
		return
	case dag.EventRunFinished:
		text := "run finished"
		if ev.Error != "" {
			text += ": " + ev.Error
		}
		r.note(t, "finished", "", text)
		return
	}
	i, ok := r.index[ev.Step]
	if !ok {
		return
	}
	s := &r.rec.Steps[i]
	switch ev.Type {
	case dag.EventStepQueued:
		s.TaskID, s.State = ev.TaskID, dag.StepQueued
		r.note(t, "queued", ev.Step, "step "+ev.Step+" queued")
	case dag.EventStepStarted:
		s.State, s.Attempts, s.StartedAt, s.Error, s.Worker = dag.StepRunning, ev.Attempt, t, "", ev.Worker
		attempt := ""
		if ev.Attempt > 1 {
			attempt = fmt.Sprintf(" (attempt %d)", ev.Attempt)
		}
		r.note(t, "running", ev.Step, "step "+ev.Step+" started"+attempt+on(ev.Worker, true))
	case dag.EventStepRetried:
		s.State, s.Attempts, s.Error = dag.StepQueued, ev.Attempt-1, ev.Error
		r.note(t, "queued", ev.Step, fmt.Sprintf("step %s attempt %d failed, retrying: %s", ev.Step, ev.Attempt-1, ev.Error))
	case dag.EventStepSucceeded, dag.EventStepFailed, dag.EventStepCancelled, dag.EventStepSkipped:
		s.State = dag.StepState(strings.TrimPrefix(string(ev.Type), "step_"))
		s.Attempts, s.FinishedAt, s.Error = ev.Attempt, t, ev.Error
		if ev.Worker != "" {
			s.Worker = ev.Worker
		}
		if ev.TaskID != "" {
			s.TaskID = ev.TaskID
		}
		text := "step " + ev.Step + " " + string(s.State)
		if ev.Error != "" {
			text += ": " + ev.Error
		}
		r.note(t, string(s.State), ev.Step, text)
	}
}

// Finish records the run's result: its final state, times and outputs.
func (r *LocalRun) Finish(res dag.RunResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec.State = res.State
	if !res.StartedAt.IsZero() {
		r.rec.StartedAt = res.StartedAt.UTC()
	}
	r.rec.FinishedAt = res.FinishedAt.UTC()
	if r.rec.FinishedAt.IsZero() {
		r.rec.FinishedAt = time.Now().UTC()
	}
	if err := res.Err(); err != nil {
		r.rec.Error = err.Error()
	}
	for _, st := range res.Steps {
		i, ok := r.index[st.Name]
		if !ok {
			continue
		}
		rec := &r.rec.Steps[i]
		rec.TaskID, rec.State, rec.Attempts, rec.Error = st.TaskID, st.State, st.Attempts, st.Error
		rec.StartedAt, rec.FinishedAt = st.StartedAt.UTC(), st.FinishedAt.UTC()
		if st.Worker != "" {
			rec.Worker = st.Worker
		}
		if len(st.Output) > 0 {
			if r.outputs == nil {
				r.outputs = map[string]json.RawMessage{}
			}
			r.outputs[st.Name] = st.Output
		}
	}
	text := "run " + string(res.State)
	if r.rec.Error != "" {
		text += ": " + r.rec.Error
	}
	r.note(r.rec.FinishedAt, string(res.State), "", text)
}

func (r *LocalRun) setOutput(step string, out json.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.outputs == nil {
		r.outputs = map[string]json.RawMessage{}
	}
	r.outputs[step] = out
}

// terminate cancels the run unless it finished.
func (r *LocalRun) terminate() bool {
	r.mu.Lock()
	final := r.rec.State.Final()
	if !final && r.rec.CancelRequestedAt.IsZero() {
		r.rec.CancelRequestedAt = time.Now().UTC()
		r.note(r.rec.CancelRequestedAt, "cancelled", "", "terminate requested from the dashboard")
	}
	cancel := r.cancel
	r.mu.Unlock()
	if final || cancel == nil {
		return false
	}
	cancel()
	return true
}

func (r *LocalRun) view() runView {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := runView{Rec: r.rec, Local: true, Outputs: make(map[string]json.RawMessage, len(r.outputs))}
	v.Rec.Steps = slices.Clone(r.rec.Steps)
	for k, o := range r.outputs {
		v.Outputs[k] = o
	}
	v.Timeline = slices.Clone(r.events)
	slices.SortStableFunc(v.Timeline, func(a, b timelineEntry) int { return a.Time.Compare(b.Time) })
	return v
}
