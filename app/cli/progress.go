package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/dagq/dagq/core/dag"
)

// Progress modes of dagq run.
const (
	ProgressAuto  = "auto"  // live on a terminal, plain otherwise
	ProgressLive  = "live"  // a redrawn per-step view (ANSI)
	ProgressPlain = "plain" // one line per event
	ProgressNone  = "none"
)

var progressModes = []string{ProgressAuto, ProgressLive, ProgressPlain, ProgressNone}

// isTerminal reports whether w is a terminal (and not TERM=dumb).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// progress receives a run's events.
type progress interface {
	Event(dag.Event)
	// Wrap returns a writer for other output (logs, notices) that keeps
	// the view intact: a live view clears its frame, lets the text through
	// and draws the frame again below it.
	Wrap(w io.Writer) io.Writer
	// Close stops the view; a live view leaves its last frame on screen.
	Close()
}

func newProgress(mode string, w io.Writer, job dag.Job) progress {
	if mode == ProgressAuto {
		mode = ProgressPlain
		if isTerminal(w) {
			mode = ProgressLive
		}
	}
	switch mode {
	case ProgressLive:
		return newLiveProgress(w, job, 200*time.Millisecond)
	case ProgressPlain:
		return newPlainProgress(w)
	}
	return nopProgress{}
}

type nopProgress struct{}

func (nopProgress) Event(dag.Event)            {}
func (nopProgress) Wrap(w io.Writer) io.Writer { return w }
func (nopProgress) Close()                     {}

// stepClock remembers when each step's current attempt began, to report
// durations: from its started event, else from its queued event.
type stepClock map[string]time.Time

func (c stepClock) observe(ev dag.Event) time.Duration {
	switch ev.Type {
	case dag.EventStepQueued:
		c[ev.Step] = ev.Time
	case dag.EventStepStarted:
		c[ev.Step] = ev.Time
	case dag.EventStepRetried, dag.EventStepSucceeded, dag.EventStepFailed, dag.EventStepCancelled:
		if t, ok := c[ev.Step]; ok {
			return ev.Time.Sub(t)
		}
	}
	return -1
}

// plainProgress prints one line per event:
//
//	12:00:01 step b succeeded (attempt 1, 20ms)
//
// Its lines and those written through Wrap (logs, notices) are written
// whole, one at a time: when both go to one stream (--output json puts the
// progress on stderr, with the logs) a log line is never cut by a progress
// line.
type plainProgress struct {
	mu      sync.Mutex
	pending []*lineWriter // the writers of Wrap, flushed by Close
	w       io.Writer
	clock   stepClock
	start   time.Time
}

func newPlainProgress(w io.Writer) *plainProgress {
	return &plainProgress{w: w, clock: stepClock{}}
}

func (p *plainProgress) Event(ev dag.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.clock.observe(ev)
	if line := eventLine(ev, d, &p.start); line != "" {
		fmt.Fprintf(p.w, "%s %s\n", ev.Time.Format("15:04:05"), line)
	}
}

// Wrap returns a writer that writes whole lines only, between the
// progress lines: a partial line waits for its end (Close writes what is
// left).
func (p *plainProgress) Wrap(w io.Writer) io.Writer {
	lw := &lineWriter{mu: &p.mu, w: w}
	p.mu.Lock()
	p.pending = append(p.pending, lw)
	p.mu.Unlock()
	return lw
}

func (p *plainProgress) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, lw := range p.pending {
		lw.flushLocked()
	}
}

// lineWriter writes to w whole lines at a time, under mu.
type lineWriter struct {
	mu  *sync.Mutex
	w   io.Writer
	buf []byte
}

// Unwrap returns the writer it writes to (app.NewLogger's auto format asks
// whether it is a terminal).
func (l *lineWriter) Unwrap() io.Writer { return l.w }

func (l *lineWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	end := bytes.LastIndexByte(l.buf, '\n')
	if end < 0 {
		return len(b), nil
	}
	_, err := l.w.Write(l.buf[:end+1])
	l.buf = append(l.buf[:0], l.buf[end+1:]...)
	return len(b), err
}

func (l *lineWriter) flushLocked() {
	if len(l.buf) > 0 {
		_, _ = l.w.Write(l.buf)
		l.buf = l.buf[:0]
	}
}

// eventLine describes one event; d is the attempt's duration when known
// (negative otherwise); start is set by run_started.
func eventLine(ev dag.Event, d time.Duration, start *time.Time) string {
	suffix := func() string {
		if ev.Error != "" {
			return ": " + ev.Error
		}
		return ""
	}
	attempt := func() string {
		if d >= 0 {
			return fmt.Sprintf("(attempt %d, %s)", ev.Attempt, formatDuration(d))
		}
		return fmt.Sprintf("(attempt %d)", ev.Attempt)
	}
	switch ev.Type {
	case dag.EventRunStarted:
		*start = ev.Time
		return fmt.Sprintf("run %s started", ev.RunID)
	case dag.EventRunFinished:
		took := ""
		if !start.IsZero() {
			took = " in " + formatDuration(ev.Time.Sub(*start))
		}
		if ev.Error != "" {
			return fmt.Sprintf("run %s finished%s: %s", ev.RunID, took, runReason(ev))
		}
		return fmt.Sprintf("run %s succeeded%s", ev.RunID, took)
	case dag.EventStepQueued:
		return fmt.Sprintf("step %s queued", ev.Step)
	case dag.EventStepStarted:
		return fmt.Sprintf("step %s started (attempt %d)", ev.Step, ev.Attempt)
	case dag.EventStepRetried:
		return fmt.Sprintf("step %s will retry (attempt %d next)%s", ev.Step, ev.Attempt, suffix())
	case dag.EventStepSucceeded:
		return fmt.Sprintf("step %s succeeded %s", ev.Step, attempt())
	case dag.EventStepFailed:
		return fmt.Sprintf("step %s failed %s%s", ev.Step, attempt(), suffix())
	case dag.EventStepCancelled:
		return fmt.Sprintf("step %s cancelled %s%s", ev.Step, attempt(), suffix())
	case dag.EventStepSkipped:
		return fmt.Sprintf("step %s skipped%s", ev.Step, suffix())
	}
	return fmt.Sprintf("%s %s", ev.Type, ev.Step)
}

// runReason shortens a run_finished error that repeats the run and job:
// "dagq: run X of job "j" failed; step …" becomes "failed; step …".
func runReason(ev dag.Event) string {
	msg := strings.TrimPrefix(ev.Error, "dagq: ")
	msg = strings.TrimPrefix(msg, "run "+ev.RunID+" ")
	return jobPrefix.ReplaceAllString(msg, "")
}

var jobPrefix = regexp.MustCompile(`^of job "(?:[^"\\]|\\.)*" `)

// formatDuration rounds d for people: 850µs, 20ms, 1.25s, 1m5s.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// liveProgress redraws one line per step in place (ANSI cursor movement),
// with a header line, on each event and every tick.
type liveProgress struct {
	w     io.Writer
	width int      // terminal columns; frame lines are cut to fit (0: no limit)
	steps []string // job order
	tasks map[string]string

	mu      sync.Mutex
	state   map[string]*liveStep
	runID   string
	start   time.Time
	end     time.Time
	drawn   int // lines drawn last time
	stop    chan struct{}
	stopped chan struct{}
	closed  bool
}

type liveStep struct {
	state   string
	attempt int
	since   time.Time // when the current state began
	took    time.Duration
	note    string
}

func newLiveProgress(w io.Writer, job dag.Job, tick time.Duration) *liveProgress {
	p := &liveProgress{
		w:       w,
		tasks:   make(map[string]string, len(job.Steps)),
		state:   make(map[string]*liveStep, len(job.Steps)),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 1 {
			p.width = cols - 1
		}
	}
	for _, s := range job.Steps {
		p.steps = append(p.steps, s.Name)
		p.tasks[s.Name] = s.Task
		p.state[s.Name] = &liveStep{state: "pending"}
	}
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.mu.Lock()
				if !p.start.IsZero() {
					p.drawLocked(time.Now())
				}
				p.mu.Unlock()
			}
		}
	}()
	return p
}

func (p *liveProgress) Event(ev dag.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	s := p.state[ev.Step]
	switch ev.Type {
	case dag.EventRunStarted:
		p.runID, p.start = ev.RunID, ev.Time
	case dag.EventRunFinished:
		p.end = ev.Time
	default:
		if s == nil {
			return
		}
		s.note = ev.Error
		switch ev.Type {
		case dag.EventStepQueued:
			s.state, s.since = "queued", ev.Time
		case dag.EventStepStarted:
			s.state, s.since, s.attempt = "running", ev.Time, ev.Attempt
		case dag.EventStepRetried:
			s.state, s.attempt = "retrying", ev.Attempt
		case dag.EventStepSucceeded, dag.EventStepFailed, dag.EventStepCancelled:
			s.state = strings.TrimPrefix(string(ev.Type), "step_")
			s.attempt = ev.Attempt
			if !s.since.IsZero() {
				s.took = ev.Time.Sub(s.since)
			}
			if ev.Type == dag.EventStepSucceeded {
				s.note = ""
			}
		case dag.EventStepSkipped:
			s.state = "skipped"
		}
	}
	p.drawLocked(ev.Time)
}

func (p *liveProgress) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	<-p.stopped
}

// Wrap returns a writer that prints above the live frame.
func (p *liveProgress) Wrap(w io.Writer) io.Writer { return liveAbove{p: p, w: w} }

type liveAbove struct {
	p *liveProgress
	w io.Writer
}

// Unwrap returns the writer it prints to (app.NewLogger's auto format asks
// whether it is a terminal).
func (a liveAbove) Unwrap() io.Writer { return a.w }

func (a liveAbove) Write(b []byte) (int, error) {
	p := a.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.drawn == 0 {
		return a.w.Write(b)
	}
	// Up over the frame, clear to the end of the screen, write, redraw.
	fmt.Fprintf(p.w, "\x1b[%dA\r\x1b[J", p.drawn)
	n, err := a.w.Write(b)
	p.drawn = 0
	p.drawLocked(time.Now())
	return n, err
}

var liveSymbols = map[string]string{
	"pending": "·", "queued": "…", "running": "▶", "retrying": "↻",
	"succeeded": "✓", "failed": "✗", "skipped": "-", "cancelled": "⊘",
}

// drawLocked redraws the view: the cursor goes back up over the previous
// frame and every line is cleared and written again.
func (p *liveProgress) drawLocked(now time.Time) {
	var b bytes.Buffer
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	done := 0
	for _, n := range p.steps {
		switch p.state[n].state {
		case "succeeded", "failed", "skipped", "cancelled":
			done++
		}
	}
	elapsed := now.Sub(p.start)
	if !p.end.IsZero() {
		elapsed = p.end.Sub(p.start)
	}
	fmt.Fprintf(&b, "\r\x1b[2K%s\n", p.fit(fmt.Sprintf("run %s · %d/%d steps done · %s", p.runID, done, len(p.steps), formatDuration(elapsed))))
	width := 0
	for _, n := range p.steps {
		width = max(width, len(n))
	}
	for _, n := range p.steps {
		s := p.state[n]
		line := fmt.Sprintf("  %s %-*s  %-10s %-9s", liveSymbols[s.state], width, n, p.tasks[n], s.state)
		switch s.state {
		case "running", "queued":
			line += " " + formatDuration(now.Sub(s.since))
		case "succeeded", "failed", "cancelled":
			line += " " + formatDuration(s.took)
		}
		if s.attempt > 1 || s.state == "retrying" {
			line += fmt.Sprintf(" (attempt %d)", s.attempt)
		}
		if s.note != "" {
			line += " " + truncate(s.note, 60)
		}
		fmt.Fprintf(&b, "\r\x1b[2K%s\n", p.fit(line))
	}
	p.drawn = len(p.steps) + 1
	_, _ = p.w.Write(b.Bytes())
}

// fit cuts a frame line to the terminal's width, so that no line wraps and
// the cursor movements stay right.
func (p *liveProgress) fit(line string) string {
	if p.width <= 0 {
		return line
	}
	return truncate(line, p.width)
}

// truncate shortens s to n runes, marking the cut with "…".
func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// writeTable prints the final per-step table and a summary line.
func writeTable(w io.Writer, res dag.RunResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tTASK\tSTATE\tATTEMPTS\tDURATION\tOUTPUT / ERROR")
	counts := map[dag.StepState]int{}
	for _, s := range res.Steps {
		counts[s.State]++
		dur := "-"
		if d := s.Duration(); d > 0 {
			dur = formatDuration(d)
		}
		detail := s.Error
		if s.State == dag.StepSucceeded {
			detail = compactJSON(s.Output)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", s.Name, s.Task, s.State, s.Attempts, dur, truncate(detail, 72))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var parts []string
	for _, st := range []dag.StepState{dag.StepSucceeded, dag.StepFailed, dag.StepSkipped, dag.StepCancelled, dag.StepPending} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	_, err := fmt.Fprintf(w, "\nrun %s of job %s %s in %s: %s\n", res.RunID, res.Job, res.State,
		formatDuration(res.FinishedAt.Sub(res.StartedAt)), strings.Join(parts, ", "))
	return err
}

func compactJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

// runJSON is the JSON form of a run result printed by dagq run --output json.
type runJSON struct {
	RunID      string     `json:"run_id"`
	Job        string     `json:"job"`
	State      string     `json:"state"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt time.Time  `json:"finished_at"`
	DurationMS int64      `json:"duration_ms"`
	Steps      []stepJSON `json:"steps"`
}

type stepJSON struct {
	Name       string          `json:"name"`
	Task       string          `json:"task"`
	TaskID     string          `json:"task_id,omitempty"`
	State      string          `json:"state"`
	Attempts   int             `json:"attempts"`
	StartedAt  time.Time       `json:"started_at,omitzero"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
	DurationMS int64           `json:"duration_ms"`
	Error      string          `json:"error,omitempty"`
	Output     json.RawMessage `json:"output,omitempty"`
}

func toJSON(res dag.RunResult) runJSON {
	out := runJSON{
		RunID: res.RunID, Job: res.Job, State: string(res.State),
		StartedAt: res.StartedAt, FinishedAt: res.FinishedAt,
		DurationMS: res.FinishedAt.Sub(res.StartedAt).Milliseconds(),
		Steps:      make([]stepJSON, len(res.Steps)),
	}
	for i, s := range res.Steps {
		out.Steps[i] = stepJSON{
			Name: s.Name, Task: s.Task, TaskID: s.TaskID, State: string(s.State), Attempts: s.Attempts,
			StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, DurationMS: s.Duration().Milliseconds(),
			Error: s.Error, Output: s.Output,
		}
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
