package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
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
	prev  dag.RunRecord
}

func newFollower(w io.Writer, job dag.Job, runID string) *follower {
	prev := dag.RunRecord{RunID: runID, Job: job.Name, State: dag.RunQueued}
	for _, s := range job.Steps {
		prev.Steps = append(prev.Steps, dag.StepRecord{Name: s.Name, Task: s.Task, State: dag.StepPending})
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
func (f *follower) follow(ctx context.Context, l *dag.Launcher, poll time.Duration) (dag.RunRecord, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type waited struct {
		rec dag.RunRecord
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
func (f *follower) observe(rec dag.RunRecord, now time.Time) {
	prev := f.prev
	f.prev = rec
	if rec.State == dag.RunRunning && (prev.State != dag.RunRunning || prev.Attempt != rec.Attempt) {
		if prev.State == dag.RunRunning {
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
		if rec.State == dag.RunSucceeded {
			f.line(now, "run %s succeeded%s", rec.RunID, took)
		} else {
			f.line(now, "run %s %s%s%s", rec.RunID, rec.State, took, errSuffix(rec.Error))
		}
	}
}

// stepLine describes a step's new state.
func stepLine(s dag.StepRecord, now time.Time) string {
	attempt := ""
	if s.Attempts > 0 {
		attempt = fmt.Sprintf(" (attempt %d)", s.Attempts)
		if d := stepDuration(s, now); d > 0 && s.State.Final() {
			attempt = fmt.Sprintf(" (attempt %d, %s)", s.Attempts, formatDuration(d))
		}
	}
	switch s.State {
	case dag.StepPending:
		return ""
	case dag.StepQueued:
		if s.Attempts > 0 {
			return fmt.Sprintf("step %s queued for a retry%s%s", s.Name, attempt, errSuffix(s.Error))
		}
		return fmt.Sprintf("step %s queued", s.Name)
	case dag.StepRunning:
		return fmt.Sprintf("step %s running%s", s.Name, attempt)
	case dag.StepSkipped:
		return fmt.Sprintf("step %s skipped%s", s.Name, errSuffix(s.Error))
	case dag.StepSucceeded:
		if s.ReusedFrom != "" {
			return fmt.Sprintf("step %s reused from run %s", s.Name, s.ReusedFrom)
		}
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
func stepDuration(s dag.StepRecord, now time.Time) time.Duration {
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
func runDuration(rec dag.RunRecord) time.Duration {
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
func writeRecordTable(w io.Writer, rec dag.RunRecord, now time.Time, outputs map[string]json.RawMessage) error {
	return writeStepTable(w, rec, now, stepTable{outputs: outputs, detailMax: 72})
}

// stepTable says what writeStepTable prints besides the fixed columns.
type stepTable struct {
	// outputs: the last column is "OUTPUT / ERROR" (a succeeded step's
	// output from here, another's error) instead of "ERROR".
	outputs map[string]json.RawMessage
	// workers, when not nil: a WORKER column with the worker that recorded
	// each step's result ("-" when unknown).
	workers map[string]string
	// detailMax truncates the last column to that many characters; width
	// (a terminal's) truncates it so that lines fit, to no less than
	// minDetail. 0: no limit.
	detailMax, width int
}

// minDetail is the least room the error column gets on a narrow terminal.
const minDetail = 24

// writeStepTable prints the step table of a run record (see stepTable).
func writeStepTable(w io.Writer, rec dag.RunRecord, now time.Time, t stepTable) error {
	head := []string{"STEP", "TASK", "STATE", "ATTEMPTS", "DURATION"}
	if t.workers != nil {
		head = append(head, "WORKER")
	}
	last := "ERROR"
	if t.outputs != nil {
		last = "OUTPUT / ERROR"
	}
	rows := [][]string{append(head, last)}
	for _, s := range rec.Steps {
		dur := "-"
		if d := stepDuration(s, now); d > 0 {
			dur = formatDuration(d)
		}
		row := []string{s.Name, s.Task, string(s.State), strconv.Itoa(s.Attempts), dur}
		if t.workers != nil {
			wk := t.workers[s.Name]
			if wk == "" {
				wk = "-"
			}
			row = append(row, wk)
		}
		detail := s.Error
		if out, ok := t.outputs[s.Name]; ok && s.State == dag.StepSucceeded {
			detail = compactJSON(out)
		}
		if s.ReusedFrom != "" {
			detail = strings.TrimSpace("(reused from " + s.ReusedFrom + ") " + detail)
		}
		rows = append(rows, append(row, oneLine(detail)))
	}
	return writeColumns(w, rows, t.detailMax, t.width)
}

// oneLine turns the line breaks and tabs of s into spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
}

// writeColumns prints rows as left-aligned columns two spaces apart. The
// last column is not padded; it is truncated to limit characters, and to
// what is left of width (to no less than minDetail); 0 is no limit.
func writeColumns(w io.Writer, rows [][]string, limit, width int) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows[0])
	widths := make([]int, n-1)
	for _, r := range rows {
		for i := range widths {
			widths[i] = max(widths[i], utf8.RuneCountInString(r[i]))
		}
	}
	if width > 0 {
		room := width
		for _, cw := range widths {
			room -= cw + 2
		}
		room = max(room, minDetail)
		if limit == 0 || room < limit {
			limit = room
		}
	}
	var b strings.Builder
	for _, r := range rows {
		b.Reset()
		for i, cw := range widths {
			b.WriteString(r[i])
			b.WriteString(strings.Repeat(" ", cw-utf8.RuneCountInString(r[i])+2))
		}
		lastCol := r[n-1]
		if limit > 0 {
			lastCol = truncate(lastCol, limit)
		}
		b.WriteString(lastCol)
		if _, err := io.WriteString(w, strings.TrimRight(b.String(), " ")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// outputsWait bounds how long runOutputs waits for the run task's result:
// the run's record is final before its worker stores that result, which
// follows at once unless the worker died in between.
const outputsWait = 5 * time.Second

// runOutputs reads the steps' outputs of a finished run from its run task's
// result (a dag.RunResult, whatever the run's outcome), waiting up to
// outputsWait for it; nil when there is none to read.
func runOutputs(ctx context.Context, c *core.Client, runID string) map[string]json.RawMessage {
	ctx, cancel := context.WithTimeout(ctx, outputsWait)
	defer cancel()
	res, err := c.Wait(ctx, dag.RunTaskID(runID))
	if err != nil || res.State != ports.StateSucceeded {
		return nil
	}
	var rr dag.RunResult
	if json.Unmarshal(res.Output, &rr) != nil {
		return nil
	}
	outputs := make(map[string]json.RawMessage, len(rr.Steps))
	for _, s := range rr.Steps {
		if s.State == dag.StepSucceeded {
			outputs[s.Name] = s.Output
		}
	}
	return outputs
}

// writeRecordSummary prints the line under a finished run's table:
//
//	run r1 of job diamond succeeded in 6ms: 4 succeeded
func writeRecordSummary(w io.Writer, rec dag.RunRecord) error {
	counts := map[dag.StepState]int{}
	for _, s := range rec.Steps {
		counts[s.State]++
	}
	var parts []string
	for _, st := range []dag.StepState{dag.StepSucceeded, dag.StepFailed, dag.StepSkipped, dag.StepCancelled,
		dag.StepRunning, dag.StepQueued, dag.StepPending} {
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
// the step table t.
//
//	run       r1
//	job       long
//	state     running
//	worker    host-1-a1b2c3 (attempt 1)
//	…
func writeStatus(w io.Writer, rec dag.RunRecord, now time.Time, t stepTable) error {
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
	if l := lineage(rec); l != "" {
		field("lineage", "%s", l)
	}
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
	if rec.MaxConcurrent > 0 {
		field("max-concurrent", "%d", rec.MaxConcurrent)
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
	return writeStepTable(w, rec, now, t)
}

// lineage says what a re-execution re-executes: "re-execution of r2 (root
// r1), from failure"; "" for a run that is none.
func lineage(rec dag.RunRecord) string {
	if rec.ParentRun == "" {
		return ""
	}
	s := "re-execution of " + rec.ParentRun
	if rec.RootRun != "" && rec.RootRun != rec.ParentRun {
		s += " (root " + rec.RootRun + ")"
	}
	if rec.Reexecution != nil {
		s += ", " + rec.Reexecution.String()
	}
	return s
}

// stepWorkers returns the worker of each step, by step name: the one the
// run record names (running the step's attempt, or that recorded its
// result), else, for a step that ended, the one its result names (read a
// few at a time; records written before steps had a worker). A step whose
// worker is unknown is left out.
func stepWorkers(ctx context.Context, results ports.ResultBackend, rec dag.RunRecord) map[string]string {
	workers := make(map[string]string, len(rec.Steps))
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, 8)
	)
	for _, s := range rec.Steps {
		if s.Worker != "" && (s.State == dag.StepRunning || s.State.Final()) {
			mu.Lock()
			workers[s.Name] = s.Worker
			mu.Unlock()
			continue
		}
		if s.TaskID == "" || !s.State.Final() {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			res, err := results.Get(ctx, s.TaskID)
			if err != nil || res.Worker == "" {
				return
			}
			mu.Lock()
			workers[s.Name] = res.Worker
			mu.Unlock()
		})
	}
	wg.Wait()
	return workers
}

// statusJSON is what dagq status --output json prints: the run record,
// each step with the worker that recorded its result when known.
type statusJSON struct {
	dag.RunRecord
	Steps []statusStepJSON `json:"steps"`
}

type statusStepJSON struct {
	dag.StepRecord
	Worker string `json:"worker,omitempty"`
}

func newStatusJSON(rec dag.RunRecord, workers map[string]string) statusJSON {
	out := statusJSON{RunRecord: rec, Steps: make([]statusStepJSON, len(rec.Steps))}
	for i, s := range rec.Steps {
		out.Steps[i] = statusStepJSON{StepRecord: s, Worker: workers[s.Name]}
	}
	return out
}

// termWidth is the width of the terminal w is, 0 when w is none.
func termWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(w) {
		return 0
	}
	cols, _, err := term.GetSize(int(f.Fd()))
	if err != nil || cols < 2 {
		return 0
	}
	return cols - 1
}
