package cli_test

// The handler journal of the multi-process tests' worker processes: what
// the handlers did, told by the handlers. A worker process started by
// startE2EWorker has a core.Registry middleware (journalMiddleware) that
// appends one JSON line to its journal file when a handler starts and one
// when it returns. The tests read the journals to learn which worker
// started which task, when, and how often; they do not parse log wording
// for that.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core"
)

// e2eJournalEnv names the handler journal file of a worker process
// (startE2EWorker sets it; e2eWorkerMain opens it). The DAGQ_TEST_ prefix
// keeps the configuration loader from warning about it.
const e2eJournalEnv = "DAGQ_TEST_JOURNAL"

// Journal events.
const (
	journalStart = "start" // the handler is about to run
	journalEnd   = "end"   // the handler returned (or panicked)
)

// journalEntry is one line of a handler journal.
type journalEntry struct {
	Event   string    `json:"event"` // journalStart or journalEnd
	TaskID  string    `json:"task_id"`
	Task    string    `json:"task"`
	Worker  string    `json:"worker"` // core.WorkerIDFromContext
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	// Err is the handler's error (end only; empty on success).
	Err string `json:"err,omitempty"`

	proc *e2eProc // the process whose journal holds the line (reader side)
}

// openJournal opens the journal file at path for appending, once per
// process. Every line is one write(2) on the O_APPEND descriptor: whole
// lines, in order, from concurrent handlers; and a line written before a
// handler runs is in the kernel's page cache, so it survives a SIGKILL of
// the process.
func openJournal(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
}

// journalMiddleware records every handler run in f: a start line before the
// handler runs, an end line once it returned, with its error (a handler
// that panics gets an end line too, as the panic passes through).
func journalMiddleware(f *os.File) core.Middleware {
	write := func(e journalEntry) {
		line, err := json.Marshal(e)
		if err == nil {
			_, err = f.Write(append(line, '\n'))
		}
		if err != nil {
			// The test cannot tell a missing line from a handler that did
			// not run: stop the process loudly rather than lie.
			fmt.Fprintf(os.Stderr, "e2e worker: handler journal: %v\n", err)
			os.Exit(4)
		}
	}
	return func(next core.Handler) core.Handler {
		return core.HandlerFunc(func(ctx context.Context, t *core.Task) (out json.RawMessage, err error) {
			e := journalEntry{Event: journalStart, TaskID: t.ID, Task: t.Name,
				Worker: core.WorkerIDFromContext(ctx), Attempt: t.Attempt, At: time.Now()}
			write(e)
			returned := false
			defer func() {
				e.Event, e.At = journalEnd, time.Now()
				switch {
				case !returned:
					e.Err = "handler panicked"
				case err != nil:
					e.Err = err.Error()
				}
				write(e)
			}()
			out, err = next.ProcessTask(ctx, t)
			returned = true
			return out, err
		})
	}
}

// journal returns the complete lines of p's handler journal, in write
// order. A line without its newline is left out: it is being written, or
// the write was cut short by a SIGKILL. A complete line that does not
// decode fails the test.
func (p *e2eProc) journal(t *testing.T) []journalEntry {
	b, err := os.ReadFile(p.journalPath)
	if err != nil {
		t.Errorf("%s: handler journal: %v", p.name, err)
		return nil
	}
	var out []journalEntry
	for {
		line, rest, ok := bytes.Cut(b, []byte("\n"))
		if !ok {
			return out
		}
		b = rest
		var e journalEntry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Errorf("%s: handler journal line %q: %v", p.name, line, err)
			continue
		}
		e.proc = p
		out = append(out, e)
	}
}

// journals returns the journal entries of procs, in process order, then
// write order.
func journals(t *testing.T, procs ...*e2eProc) []journalEntry {
	var out []journalEntry
	for _, p := range procs {
		out = append(out, p.journal(t)...)
	}
	return out
}

// journalStarts returns the handler starts of procs per task ID, in time
// order (a task runs again on another process after a kill or a release).
func journalStarts(t *testing.T, procs ...*e2eProc) map[string][]journalEntry {
	m := map[string][]journalEntry{}
	for _, e := range journals(t, procs...) {
		if e.Event == journalStart {
			m[e.TaskID] = append(m[e.TaskID], e)
		}
	}
	for _, s := range m {
		slices.SortStableFunc(s, func(a, b journalEntry) int { return a.At.Compare(b.At) })
	}
	return m
}

// started returns, per task ID, the workers whose handler journal has a
// start of it, from the journals of procs (in process order, then write
// order).
func started(t *testing.T, procs ...*e2eProc) map[string][]string {
	m := map[string][]string{}
	for _, e := range journals(t, procs...) {
		if e.Event == journalStart {
			m[e.TaskID] = append(m[e.TaskID], e.Worker)
		}
	}
	return m
}

// inHandler returns the handler runs of p that started and have not ended
// (task ID and attempt).
func inHandler(t *testing.T, p *e2eProc) []journalEntry {
	type run struct {
		id      string
		attempt int
	}
	running := map[run]journalEntry{}
	for _, e := range p.journal(t) {
		switch e.Event {
		case journalStart:
			running[run{e.TaskID, e.Attempt}] = e
		case journalEnd:
			delete(running, run{e.TaskID, e.Attempt})
		}
	}
	out := make([]journalEntry, 0, len(running))
	for _, e := range running {
		out = append(out, e)
	}
	return out
}

// waitJournal polls the journals of procs every 20ms until check, given
// their entries (as journals returns them), returns nil, and fails the test
// with check's last error when that does not happen within within. The
// polling is synchronous: check runs on the test's goroutine and never
// after waitJournal returned.
func waitJournal(t *testing.T, procs []*e2eProc, within time.Duration, check func([]journalEntry) error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check(journals(t, procs...))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the handler journals, polled for %v: %v", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The journal middleware writes a start line before the handler runs and
// an end line with its error after it returned or panicked; the reader
// leaves out a line cut short.
func TestHandlerJournal(t *testing.T) {
	path := t.TempDir() + "/w.journal"
	f, err := openJournal(path)
	require.NoError(t, err)
	defer f.Close()
	p := &e2eProc{name: "w", journalPath: path}

	reg := core.NewRegistry()
	reg.Use(journalMiddleware(f))
	require.NoError(t, reg.HandleFunc("ok", func(context.Context, *core.Task) (json.RawMessage, error) {
		starts := journalStarts(t, p)["t1"]
		require.Len(t, starts, 1, "the start line is written before the handler runs")
		assert.Len(t, inHandler(t, p), 1)
		return json.RawMessage(`"done"`), nil
	}))
	require.NoError(t, reg.HandleFunc("fail", func(context.Context, *core.Task) (json.RawMessage, error) {
		return nil, errors.New("no luck")
	}))
	require.NoError(t, reg.HandleFunc("boom", func(context.Context, *core.Task) (json.RawMessage, error) {
		panic("boom")
	}))
	ctx := core.ContextWithWorkerID(context.Background(), "worker-1")
	run := func(name, id string, attempt int) (json.RawMessage, error) {
		h, ok := reg.Lookup(name)
		require.True(t, ok)
		return h.ProcessTask(ctx, &core.Task{ID: id, Name: name, Attempt: attempt})
	}
	before := time.Now()
	out, err := run("ok", "t1", 1)
	require.NoError(t, err)
	assert.JSONEq(t, `"done"`, string(out))
	_, err = run("fail", "t2", 2)
	require.EqualError(t, err, "no luck")
	assert.PanicsWithValue(t, "boom", func() { _, _ = run("boom", "t3", 1) })
	// A line without its newline: a write cut short by a SIGKILL.
	_, err = f.WriteString(`{"event":"start","task_id":"t4"`)
	require.NoError(t, err)

	got := p.journal(t)
	require.Len(t, got, 6)
	type line struct {
		event, id, task, worker, err string
		attempt                      int
	}
	var lines []line
	for _, e := range got {
		assert.Same(t, p, e.proc)
		assert.False(t, e.At.Before(before), e.At)
		lines = append(lines, line{e.Event, e.TaskID, e.Task, e.Worker, e.Err, e.Attempt})
	}
	assert.Equal(t, []line{
		{journalStart, "t1", "ok", "worker-1", "", 1}, {journalEnd, "t1", "ok", "worker-1", "", 1},
		{journalStart, "t2", "fail", "worker-1", "", 2}, {journalEnd, "t2", "fail", "worker-1", "no luck", 2},
		{journalStart, "t3", "boom", "worker-1", "", 1}, {journalEnd, "t3", "boom", "worker-1", "handler panicked", 1},
	}, lines)
	assert.Empty(t, inHandler(t, p))
	assert.Equal(t, map[string][]string{"t1": {"worker-1"}, "t2": {"worker-1"}, "t3": {"worker-1"}}, started(t, p))
}
