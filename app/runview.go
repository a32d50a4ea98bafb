package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// follower follows a launched run through its record and prints one line
// per change it sees (plain progress, like dagq run's):
//
//	12:00:01 run r1 running on worker host-1-a1b2c3 (attempt 1)
//	12:00:02 step b succeeded (attempt 1, 20ms)
//
// Its record lags behind the steps by up to one launcher heartbeat, so a
// step may go from pending to succeeded in one line.
type follower struct {
	w     io.Writer // nil: print nothing
	runID string
	prev  core.RunRecord
}

func newFollower(w io.Writer, job core.Job, runID string) *follower {
	prev := core.RunRecord{RunID: runID, Job: job.Name, State: core.RunQueued}
	for _, s := range job.Steps {
		prev.Steps = append(prev.Steps, core.StepRecord{Name: s.Name, Task: s.Task, State: core.StepPending})
	}
	return &follower{w: w, runID: runID, prev: prev}
}

func (f *follower) line(now time.Time, format string, args ...any) {
	if f.w != nil {
		fmt.Fprintf(f.w, "%s %s\n", now.Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

// follow waits for the run to finish (Launcher.Wait) and meanwhile reads
// its record every poll to print what changed. It returns the final record,
// or Wait's error (ctx's when ctx is done). It leaves no goroutine behind.
func (f *follower) follow(ctx context.Context, l *core.Launcher, poll time.Duration) (core.RunRecord, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type waited struct {
		rec core.RunRecord
		err error
	}
	done := make(chan waited, 1)
	go func() {
		rec, err := l.Wait(ctx, f.runID)
		done <- waited{rec, err}
	}()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case w := <-done:
			if w.err == nil {
				f.observe(w.rec, time.Now())
			}
			return w.rec, w.err
		case <-tick.C:
			// A failed read is left to Wait, which reports lasting trouble.
			if rec, err := l.Status(ctx, f.runID); err == nil {
				f.observe(rec, time.Now())
			}
		}
	}
}

// observe prints the differences between the last record seen and rec.
func (f *follower) observe(rec core.RunRecord, now time.Time) {
	prev := f.prev
	f.prev = rec
	if rec.State == core.RunRunning && (prev.State != core.RunRunning || prev.Attempt != rec.Attempt) {
		if prev.State == core.RunRunning {
			f.line(now, "run %s taken over by worker %s (attempt %d)", rec.RunID, rec.Worker, rec.Attempt)
		} else {
			f.line(now, "run %s running on worker %s (attempt %d)", rec.RunID, rec.Worker, rec.Attempt)
		}
	}
	if !prev.CancelRequestedAt.Equal(rec.CancelRequestedAt) && !rec.CancelRequestedAt.IsZero() && !rec.State.Final() {
		f.line(now, "run %s: termination requested", rec.RunID)
	}
	for _, s := range rec.Steps {
		p, _ := prev.Step(s.Name)
		if p.State == s.State && p.Attempts == s.Attempts {
			continue
		}
		if l := stepLine(s, now); l != "" {
			f.line(now, "%s", l)
		}
	}
	if rec.State.Final() && !prev.State.Final() {
		took := ""
		if d := runDuration(rec); d > 0 {
			took = " in " + formatDuration(d)
		}
		if rec.State == core.RunSucceeded {
			f.line(now, "run %s succeeded%s", rec.RunID, took)
		} else {
			f.line(now, "run %s %s%s%s", rec.RunID, rec.State, took, errSuffix(rec.Error))
		}
	}
}

// stepLine describes a step's new state.
func stepLine(s core.StepRecord, now time.Time) string {
	attempt := ""
	if s.Attempts > 0 {
		attempt = fmt.Sprintf(" (attempt %d)", s.Attempts)
		if d := stepDuration(s, now); d > 0 && s.State.Final() {
			attempt = fmt.Sprintf(" (attempt %d, %s)", s.Attempts, formatDuration(d))
		}
	}
	switch s.State {
	case core.StepPending:
		return ""
	case core.StepQueued:
		if s.Attempts > 0 {
			return fmt.Sprintf("step %s queued for a retry%s%s", s.Name, attempt, errSuffix(s.Error))
		}
		return fmt.Sprintf("step %s queued", s.Name)
	case core.StepRunning:
		return fmt.Sprintf("step %s running%s", s.Name, attempt)
	case core.StepSkipped:
		return fmt.Sprintf("step %s skipped%s", s.Name, errSuffix(s.Error))
	case core.StepSucceeded:
		return fmt.Sprintf("step %s succeeded%s", s.Name, attempt)
	}
	return fmt.Sprintf("step %s %s%s%s", s.Name, s.State, attempt, errSuffix(s.Error))
}

func errSuffix(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + strings.TrimPrefix(msg, "dagq: ")
}

// stepDuration is how long the step ran: to its finish, or to now while it
// runs; 0 when it did not start.
func stepDuration(s core.StepRecord, now time.Time) time.Duration {
	switch {
	case s.StartedAt.IsZero():
		return 0
	case !s.FinishedAt.IsZero():
		return s.FinishedAt.Sub(s.StartedAt)
	case s.State.Final():
		return 0
	}
	return now.Sub(s.StartedAt)
}

// runDuration is from the run's first start (else its launch) to its end;
// 0 while it runs.
func runDuration(rec core.RunRecord) time.Duration {
	start := rec.StartedAt
	if start.IsZero() {
		start = rec.CreatedAt
	}
	if start.IsZero() || rec.FinishedAt.IsZero() {
		return 0
	}
	return rec.FinishedAt.Sub(start)
}

// writeRecordTable prints one line per step of a run record: name, task,
// state, attempts, duration (so far, for a running step) and error. With
// outputs (by step name), the last column is "OUTPUT / ERROR" as in dagq
// run's table: a succeeded step's output, another's error.
func writeRecordTable(w io.Writer, rec core.RunRecord, now time.Time, outputs map[string]json.RawMessage) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	last := "ERROR"
	if outputs != nil {
		last = "OUTPUT / ERROR"
	}
	fmt.Fprintf(tw, "STEP\tTASK\tSTATE\tATTEMPTS\tDURATION\t%s\n", last)
	for _, s := range rec.Steps {
		dur := "-"
		if d := stepDuration(s, now); d > 0 {
			dur = formatDuration(d)
		}
		detail := s.Error
		if out, ok := outputs[s.Name]; ok && s.State == core.StepSucceeded {
			detail = compactJSON(out)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", s.Name, s.Task, s.State, s.Attempts, dur, truncate(detail, 72))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// An empty last column leaves the padding of the one before it.
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		if line == "" {
			continue
		}
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// runOutputs reads the steps' outputs of a finished run from its run task's
// result (a core.RunResult, whatever the run's outcome); nil when there is
// none to read.
func runOutputs(ctx context.Context, results ports.ResultBackend, runID string) map[string]json.RawMessage {
	res, err := results.Get(ctx, core.RunTaskID(runID))
	if err != nil || res.State != ports.StateSucceeded {
		return nil
	}
	var rr core.RunResult
	if json.Unmarshal(res.Output, &rr) != nil {
		return nil
	}
	outputs := make(map[string]json.RawMessage, len(rr.Steps))
	for _, s := range rr.Steps {
		if s.State == core.StepSucceeded {
			outputs[s.Name] = s.Output
		}
	}
	return outputs
}

// writeRecordSummary prints the line under a finished run's table:
//
//	run r1 of job diamond succeeded in 6ms: 4 succeeded
func writeRecordSummary(w io.Writer, rec core.RunRecord) error {
	counts := map[core.StepState]int{}
	for _, s := range rec.Steps {
		counts[s.State]++
	}
	var parts []string
	for _, st := range []core.StepState{core.StepSucceeded, core.StepFailed, core.StepSkipped, core.StepCancelled,
		core.StepRunning, core.StepQueued, core.StepPending} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	took := ""
	if d := runDuration(rec); d > 0 {
		took = " in " + formatDuration(d)
	}
	_, err := fmt.Fprintf(w, "\nrun %s of job %s %s%s: %s\n", rec.RunID, rec.Job, rec.State, took, strings.Join(parts, ", "))
	return err
}

// writeStatus prints a run record for dagq status: the run's fields, then
// the step table.
//
//	run       r1
//	job       long
//	state     running
//	worker    host-1-a1b2c3 (attempt 1)
//	…
func writeStatus(w io.Writer, rec core.RunRecord, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	field := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", name, fmt.Sprintf(format, args...))
	}
	at := func(t time.Time) string {
		s := t.Local().Format(time.RFC3339)
		if d := now.Sub(t); d >= 0 {
			s += " (" + formatDuration(d) + " ago)"
		}
		return s
	}
	field("run", "%s", rec.RunID)
	field("job", "%s", rec.Job)
	state := string(rec.State)
	if !rec.CancelRequestedAt.IsZero() && !rec.State.Final() {
		state += " (termination requested " + at(rec.CancelRequestedAt) + ")"
	}
	field("state", "%s", state)
	if rec.Worker != "" {
		field("worker", "%s (attempt %d)", rec.Worker, rec.Attempt)
	}
	if len(rec.Params) > 0 {
		var ps []string
		for _, k := range slices.Sorted(maps.Keys(rec.Params)) {
			ps = append(ps, k+"="+rec.Params[k])
		}
		field("params", "%s", strings.Join(ps, " "))
	}
	if rec.FailFast {
		field("fail-fast", "true")
	}
	field("created", "%s", at(rec.CreatedAt))
	if !rec.StartedAt.IsZero() {
		field("started", "%s", at(rec.StartedAt))
	}
	if !rec.ResumedAt.IsZero() {
		field("resumed", "%s", at(rec.ResumedAt))
	}
	if !rec.FinishedAt.IsZero() {
		took := ""
		if d := runDuration(rec); d > 0 {
			took = ", took " + formatDuration(d)
		}
		field("finished", "%s%s", at(rec.FinishedAt), took)
	}
	if rec.Error != "" {
		field("error", "%s", truncate(strings.TrimPrefix(rec.Error, "dagq: "), 200))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return writeRecordTable(w, rec, now, nil)
}
