package ui

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// Page sizes of the runs list.
const (
	defaultPageSize = 50
	maxPageSize     = 1000
)

// runStates are the run states a filter offers.
var runStates = []dag.RunState{dag.RunQueued, dag.RunRunning, dag.RunSucceeded, dag.RunFailed, dag.RunCancelled}

// stepStates are the step states, in the order the summary counts them.
var stepStates = []dag.StepState{dag.StepSucceeded, dag.StepRunning, dag.StepQueued, dag.StepPending,
	dag.StepFailed, dag.StepCancelled, dag.StepSkipped}

// legend is the order of the graph's legend.
var legend = []dag.StepState{dag.StepPending, dag.StepQueued, dag.StepRunning, dag.StepSucceeded,
	dag.StepFailed, dag.StepCancelled, dag.StepSkipped}

// sinceChoices are the age filters of the runs list.
var sinceChoices = []struct{ Value, Label string }{
	{"", "any time"}, {"1h", "last hour"}, {"24h", "last 24 hours"}, {"168h", "last 7 days"},
}

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/runs", http.StatusSeeOther)
	})
	m.HandleFunc("GET /runs", s.runsPage)
	m.HandleFunc("GET /runs/open", s.openRun)
	m.HandleFunc("GET /runs/{id}", s.runPage)
	m.HandleFunc("POST /runs/{id}/terminate", s.terminateRun)
	m.HandleFunc("POST /runs/{id}/reexecute", s.reexecuteRun)
	m.HandleFunc("GET /api/runs/{id}", s.runAPI)
	m.HandleFunc("GET /api/runs/{id}/steps/{step}/output", s.outputAPI)
	m.HandleFunc("GET /queues", s.queuesPage)
	m.HandleFunc("GET /api/queues", s.queuesAPI)
	m.HandleFunc("POST /queues/{role}/redrive", s.redrive)
	m.HandleFunc("GET /workers", s.workersPage)
	m.HandleFunc("GET /login", s.login)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("POST /logout", s.logout)
	m.Handle("GET /static/", s.static)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "There is no such page.")
	})
	s.mux = m
}

// pageData is what every page template gets.
type pageData struct {
	Title     string
	Page      string // body data-page: which script part runs
	CSRF      string
	ReadOnly  bool
	SignOut   bool
	Transport string
	Refresh   int // milliseconds
	Asset     string
	Flash     string
	Problem   string
	Next      string
	Status    int

	Runs    *runsData
	Run     *runData
	Queues  *queuesData
	Workers *workersData
}

func (s *Server) page(_ *http.Request, title, page string) pageData {
	transport := s.rt.Config.Transport
	if s.rt.Embedded() {
		transport += " (this process)"
	}
	return pageData{
		Title: title, Page: page, CSRF: s.csrf, ReadOnly: s.opts.ReadOnly, SignOut: s.opts.Token != "",
		Transport: transport, Refresh: int(s.refresh / time.Millisecond), Asset: s.asset,
	}
}

// flash returns the message a redirect after an action asked for.
func flash(r *http.Request) string {
	q := r.URL.Query()
	switch q.Get("msg") {
	case "terminated":
		return "Terminate requested: the run's queued and running steps are being cancelled."
	case "finished":
		return "The run had already finished; nothing was terminated."
	case "reexecuted":
		parent := q.Get("parent")
		if core.ValidateTaskID(parent) != nil {
			parent = "its parent run"
		}
		return "Re-execution of " + parent + " launched: it runs the steps selected again and reuses the outputs of the others."
	case "redriven":
		n, _ := strconv.Atoi(q.Get("n"))
		if n == 0 {
			return "No matching dead letter was found: nothing was moved."
		}
		return fmt.Sprintf("%d dead letter(s) moved back to the %s queue, to run again.", n, safeRole(q.Get("role")))
	case "movetask":
		return fmt.Sprintf("SQS's message-move task started: the dead letters move back to the %s queue over the next moments.", safeRole(q.Get("role")))
	}
	return ""
}

func safeRole(role string) string {
	if slices.Contains(queueRoles, role) {
		return role
	}
	return "source"
}

// parseTemplates parses the layout with each page.
func (s *Server) parseTemplates() error {
	funcs := template.FuncMap{
		"stateClass": func(st any) string { return "st-" + fmt.Sprint(st) },
		"clock":      clock,
		"stamp":      stamp,
		"iso":        iso,
		"dur":        human,
		"add":        func(a, b int) int { return a + b },
		"pathEscape": url.PathEscape,
		"join":       strings.Join,
	}
	s.pages = map[string]*template.Template{}
	for _, name := range []string{"runs", "run", "queues", "workers", "login", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(embedded, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("ui: templates: %w", err)
		}
		s.pages[name] = t
	}
	return nil
}

// render writes page name with data; fragment renders only the template of
// that name (a part the script swaps in).
func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, data pageData) {
	s.renderTemplate(w, r, name, "layout.html", data)
}

func (s *Server) renderTemplate(w http.ResponseWriter, _ *http.Request, page, tmpl string, data pageData) {
	var buf bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&buf, tmpl, data); err != nil {
		s.log.Error("rendering a page failed", "page", page, "err", err)
		http.Error(w, "dagq ui: rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if data.Status != 0 {
		w.WriteHeader(data.Status)
	}
	_, _ = w.Write(buf.Bytes())
}

// fail answers with an error page (or, for the API, JSON).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	data := s.page(r, http.StatusText(status), "error")
	data.Problem, data.Status = msg, status
	s.render(w, r, "error", data)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w) // escapes <, > and & in strings
	_ = enc.Encode(v)
}

// assetVersion hashes the assets, for cache-busting URLs.
func assetVersion(fsys fs.FS) string {
	h := sha256.New()
	_ = fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(fsys, path)
			h.Write([]byte(path))
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Times are shown in UTC.

func clock(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("15:04:05")
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

func iso(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// human formats a duration for people: 850ms, 12.3s, 4m05s, 2h10m.
func human(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d < time.Millisecond:
		return "<1ms"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

func span(from, to time.Time) time.Duration {
	if from.IsZero() || to.IsZero() {
		return 0
	}
	return to.Sub(from)
}

// ---- runs list ----

type runsData struct {
	State, Job, Since string
	States            []dag.RunState
	SinceChoices      []struct{ Value, Label string }
	Indexed           bool // from the run index (ListRuns)
	Local             []runRow
	Rows              []runRow
	Error             string
	NextURL, FirstURL string
	Limit             int
}

type runRow struct {
	RunID, Job string
	State      dag.RunState
	Final      bool
	Created    string
	CreatedISO string
	Duration   string
	Steps      string
	Local      bool
}

func (s *Server) runsPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := &runsData{
		State: q.Get("state"), Job: strings.TrimSpace(q.Get("job")), Since: q.Get("since"),
		States: runStates, SinceChoices: sinceChoices, Limit: defaultPageSize,
	}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 {
		d.Limit = min(n, maxPageSize)
	}
	if !slices.Contains(runStates, dag.RunState(d.State)) {
		d.State = ""
	}
	var since time.Time
	if dd, err := time.ParseDuration(d.Since); err == nil && dd > 0 {
		since = s.now().Add(-dd)
	} else {
		d.Since = ""
	}
	f := RunFilter{State: dag.RunState(d.State), Job: d.Job, Since: since, Limit: d.Limit, Cursor: q.Get("cursor")}
	ctx := r.Context()
	var next string
	for _, e := range s.runs.all() {
		if e.local != nil {
			if row := rowOfView(e.local.view()); matches(f, row, e.local.view().Rec.CreatedAt) {
				d.Local = append(d.Local, row)
			}
		}
	}
	if s.opts.ListRuns != nil {
		d.Indexed = true
		rows, n, err := s.opts.ListRuns(ctx, f)
		if err != nil {
			d.Error = "Listing the runs failed: " + err.Error()
		}
		next = n
		for _, x := range rows {
			d.Rows = append(d.Rows, runRow{RunID: x.RunID, Job: x.Job, State: x.State, Final: x.State.Final(),
				Created: stamp(x.CreatedAt), CreatedISO: iso(x.CreatedAt), Duration: human(span(x.CreatedAt, x.FinishedAt))})
		}
	} else {
		d.Rows, next = s.knownRuns(ctx, f)
	}
	base := url.Values{}
	for k, v := range map[string]string{"state": d.State, "job": d.Job, "since": d.Since} {
		if v != "" {
			base.Set(k, v)
		}
	}
	if d.Limit != defaultPageSize {
		base.Set("limit", strconv.Itoa(d.Limit))
	}
	if next != "" {
		nv := url.Values{}
		for k, v := range base {
			nv[k] = v
		}
		nv.Set("cursor", next)
		d.NextURL = "/runs?" + nv.Encode()
	}
	if f.Cursor != "" {
		d.FirstURL = "/runs?" + base.Encode()
	}
	data := s.page(r, "Runs", "runs")
	data.Runs, data.Flash = d, flash(r)
	if q.Get("fragment") == "rows" {
		s.renderTemplate(w, r, "runs", "rows", data)
		return
	}
	s.render(w, r, "runs", data)
}

// knownRuns lists the launched runs the console knows that match f, a page
// at a time (the cursor is an offset). The records of unfinished runs on
// the page older than listStale are read again.
func (s *Server) knownRuns(ctx context.Context, f RunFilter) ([]runRow, string) {
	var rows []runRow
	for _, e := range s.runs.all() {
		if e.local != nil {
			continue
		}
		e.mu.Lock()
		v := runView{Rec: e.rec}
		e.mu.Unlock()
		if row := rowOfView(v); matches(f, row, v.Rec.CreatedAt) {
			rows = append(rows, row)
		}
	}
	off, _ := strconv.Atoi(f.Cursor)
	off = max(0, min(off, len(rows)))
	end := min(off+f.Limit, len(rows))
	page := rows[off:end]
	for i := range page {
		if page[i].Final {
			continue
		}
		e := s.runs.entry(page[i].RunID)
		if e == nil {
			continue
		}
		e.mu.Lock()
		stale := s.now().Sub(e.readAt) >= listStale
		e.mu.Unlock()
		if stale {
			if v, err := s.view(ctx, page[i].RunID, true); err == nil {
				page[i] = rowOfView(v)
			}
		}
	}
	next := ""
	if end < len(rows) {
		next = strconv.Itoa(end)
	}
	return page, next
}

// matches reports whether a row passes the filter.
func matches(f RunFilter, row runRow, created time.Time) bool {
	return (f.State == "" || row.State == f.State) &&
		(f.Job == "" || strings.Contains(strings.ToLower(row.Job), strings.ToLower(f.Job))) &&
		(f.Since.IsZero() || !created.Before(f.Since))
}

func rowOfView(v runView) runRow {
	rec := v.Rec
	done := 0
	for _, st := range rec.Steps {
		if st.State.Final() {
			done++
		}
	}
	end := rec.FinishedAt
	if end.IsZero() && !rec.State.Final() && !rec.StartedAt.IsZero() {
		end = time.Now()
	}
	return runRow{
		RunID: rec.RunID, Job: rec.Job, State: rec.State, Final: rec.State.Final(), Local: v.Local,
		Created: stamp(rec.CreatedAt), CreatedISO: iso(rec.CreatedAt),
		Duration: human(span(cmp.Or(rec.StartedAt, rec.CreatedAt), end)),
		Steps:    fmt.Sprintf("%d/%d", done, len(rec.Steps)),
	}
}

func (s *Server) openRun(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if id == "" {
		http.Redirect(w, r, "/runs", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/runs/"+url.PathEscape(id), http.StatusSeeOther)
}

// ---- one run ----

type runData struct {
	View         runView
	JSON         runJSON
	Graph        graphLayout
	CanTerminate bool
	// CanReexecute: the re-execute buttons are offered (shown once the run
	// is finished): a launched run on a console that takes actions.
	CanReexecute bool
	Params       []string
	Legend       []dag.StepState
}

func (s *Server) runPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v, err := s.view(r.Context(), id, false)
	if err != nil {
		s.runErr(w, r, id, err)
		return
	}
	d := &runData{View: v, JSON: s.runJSON(v), Graph: layout(v.Rec.Steps), Legend: legend}
	d.CanTerminate = !s.opts.ReadOnly && !v.Rec.State.Final()
	d.CanReexecute = !s.opts.ReadOnly && !v.Local
	for _, k := range slices.Sorted(mapsKeys(v.Rec.Params)) {
		d.Params = append(d.Params, k+"="+v.Rec.Params[k])
	}
	data := s.page(r, "Run "+id, "run")
	data.Run, data.Flash = d, flash(r)
	s.render(w, r, "run", data)
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (s *Server) runErr(w http.ResponseWriter, r *http.Request, id string, err error) {
	if errors.Is(err, errUnknownRun) {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("There is no run %q: the state store has no record of it.", id))
		return
	}
	s.log.Warn("reading a run failed", "run_id", id, "err", err)
	s.fail(w, r, http.StatusBadGateway, "Reading the run failed: "+err.Error())
}

// runJSON is the run page's data: /api/runs/{id}.
type runJSON struct {
	RunID             string         `json:"run_id"`
	Job               string         `json:"job"`
	State             dag.RunState   `json:"state"`
	Final             bool           `json:"final"`
	Local             bool           `json:"local"`
	Error             string         `json:"error,omitempty"`
	Worker            string         `json:"worker,omitempty"`
	Attempt           int            `json:"attempt,omitempty"`
	CreatedAt         string         `json:"created_at,omitempty"`
	StartedAt         string         `json:"started_at,omitempty"`
	FinishedAt        string         `json:"finished_at,omitempty"`
	CancelRequestedAt string         `json:"cancel_requested_at,omitempty"`
	Created           string         `json:"created,omitempty"`
	Started           string         `json:"started,omitempty"`
	Finished          string         `json:"finished,omitempty"`
	Duration          string         `json:"duration,omitempty"`
	Health            string         `json:"health,omitempty"`
	HealthStatus      string         `json:"health_status,omitempty"`
	Summary           []stateCount   `json:"summary"`
	Steps             []stepJSON     `json:"steps"`
	Timeline          []timelineJSON `json:"timeline"`
	CanTerminate      bool           `json:"can_terminate"`
	// CanReexecute: a finished launched run the console may re-execute.
	CanReexecute bool `json:"can_reexecute"`
	// ParentRun, RootRun and Reexecution: a re-execution's lineage.
	ParentRun   string `json:"parent_run,omitempty"`
	RootRun     string `json:"root_run,omitempty"`
	Reexecution string `json:"reexecution,omitempty"`
}

type stateCount struct {
	State dag.StepState `json:"state"`
	N     int           `json:"n"`
}

type stepJSON struct {
	Name       string        `json:"name"`
	Task       string        `json:"task"`
	State      dag.StepState `json:"state"`
	Attempts   int           `json:"attempts"`
	Worker     string        `json:"worker,omitempty"`
	StartedAt  string        `json:"started_at,omitempty"`
	FinishedAt string        `json:"finished_at,omitempty"`
	Started    string        `json:"started,omitempty"`
	Duration   string        `json:"duration,omitempty"`
	Error      string        `json:"error,omitempty"`
	// Output is a preview of a succeeded step's output (JSON text) once the
	// console has it; HasOutput says it can be asked for (outputAPI).
	Output    string `json:"output,omitempty"`
	OutputCut bool   `json:"output_cut,omitempty"`
	HasOutput bool   `json:"has_output,omitempty"`
	Upstream  string `json:"upstream,omitempty"`
	// ReusedFrom: the step did not run in this re-execution; its output is
	// the stored result of that run's step.
	ReusedFrom string `json:"reused_from,omitempty"`
}

type timelineJSON struct {
	Time  string `json:"time"`
	Clock string `json:"clock"`
	Kind  string `json:"kind"`
	Step  string `json:"step,omitempty"`
	Text  string `json:"text"`
}

func (s *Server) runJSON(v runView) runJSON {
	rec := v.Rec
	j := runJSON{
		RunID: rec.RunID, Job: rec.Job, State: rec.State, Final: rec.State.Final(), Local: v.Local,
		Error: rec.Error, Worker: rec.Worker, Attempt: rec.Attempt,
		CreatedAt: iso(rec.CreatedAt), StartedAt: iso(rec.StartedAt), FinishedAt: iso(rec.FinishedAt),
		CancelRequestedAt: iso(rec.CancelRequestedAt),
		Created:           stamp(rec.CreatedAt), Started: stamp(rec.StartedAt), Finished: stamp(rec.FinishedAt),
		CanTerminate: !s.opts.ReadOnly && !rec.State.Final(),
		CanReexecute: !s.opts.ReadOnly && !v.Local && rec.State.Final(),
		ParentRun:    rec.ParentRun, RootRun: rec.RootRun,
		Steps: []stepJSON{}, Timeline: []timelineJSON{},
	}
	if rec.Reexecution != nil {
		j.Reexecution = rec.Reexecution.String()
	}
	if rec.State.Final() {
		j.Duration = human(span(cmp.Or(rec.StartedAt, rec.CreatedAt), rec.FinishedAt))
	}
	if v.Health != nil && !rec.State.Final() {
		j.Health, j.HealthStatus = v.Health.Message, string(v.Health.Status)
	}
	counts := map[dag.StepState]int{}
	for _, st := range rec.Steps {
		counts[st.State]++
		sj := stepJSON{
			Name: st.Name, Task: st.Task, State: st.State, Attempts: st.Attempts, Worker: st.Worker,
			StartedAt: iso(st.StartedAt), FinishedAt: iso(st.FinishedAt), Started: clock(st.StartedAt),
			Duration: human(span(st.StartedAt, st.FinishedAt)), Error: st.Error,
			Upstream: strings.Join(st.Upstream, ", "), ReusedFrom: st.ReusedFrom,
		}
		if out, ok := v.Outputs[st.Name]; ok {
			sj.Output, sj.OutputCut = preview(out)
		} else {
			sj.HasOutput = st.State == dag.StepSucceeded
		}
		j.Steps = append(j.Steps, sj)
	}
	for _, st := range stepStates {
		if counts[st] > 0 {
			j.Summary = append(j.Summary, stateCount{State: st, N: counts[st]})
		}
	}
	for _, e := range v.Timeline {
		j.Timeline = append(j.Timeline, timelineJSON{Time: iso(e.Time), Clock: clock(e.Time), Kind: e.Kind, Step: e.Step, Text: e.Text})
	}
	return j
}

func (s *Server) runAPI(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v, err := s.view(r.Context(), id, false)
	if err != nil {
		s.runErr(w, r, id, err)
		return
	}
	writeJSON(w, http.StatusOK, s.runJSON(v))
}

func (s *Server) outputAPI(w http.ResponseWriter, r *http.Request) {
	id, step := r.PathValue("id"), r.PathValue("step")
	out, ok, err := s.stepOutput(r.Context(), id, step)
	if err != nil {
		s.runErr(w, r, id, err)
		return
	}
	res := map[string]any{"step": step, "found": ok}
	if ok {
		p, cut := preview(out)
		res["output"], res["cut"] = p, cut
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) terminateRun(w http.ResponseWriter, r *http.Request) {
	if !s.actionAllowed(w, r) {
		return
	}
	id := r.PathValue("id")
	ok, err := s.terminate(r.Context(), id)
	if err != nil {
		s.runErr(w, r, id, err)
		return
	}
	s.log.Info("run terminated from the dashboard", "run_id", id, "terminated", ok, "remote", r.RemoteAddr)
	msg := "finished"
	if ok {
		msg = "terminated"
	}
	http.Redirect(w, r, "/runs/"+url.PathEscape(id)+"?msg="+msg, http.StatusSeeOther)
}

// reexecuteRun launches a re-execution of a finished launched run (form
// field from: "failure" or "all") and shows the new run.
func (s *Server) reexecuteRun(w http.ResponseWriter, r *http.Request) {
	if !s.actionAllowed(w, r) {
		return
	}
	id := r.PathValue("id")
	var from dag.ReexecuteFrom
	switch r.PostFormValue("from") {
	case "failure":
		from = dag.ReexecuteFromFailure
	case "all":
		from = dag.ReexecuteAll
	default:
		s.fail(w, r, http.StatusBadRequest, `Re-execute what? The form field "from" must be "failure" or "all".`)
		return
	}
	if e := s.runs.entry(id); e != nil && e.local != nil {
		s.fail(w, r, http.StatusConflict, "This run is driven by this dagq process (dagq run), not launched: it has no stored job to re-execute. Launch it with dagq launch to re-execute it.")
		return
	}
	newID, err := s.rt.Launcher.Reexecute(r.Context(), id, dag.ReexecuteOptions{
		From:       from,
		FailFast:   s.rt.Config.Executor.FailFast,
		CancelWait: s.rt.Config.Executor.CancelWait,
	})
	switch {
	case errors.Is(err, dag.ErrRunNotFound):
		s.runErr(w, r, id, errUnknownRun)
		return
	case errors.Is(err, dag.ErrRunNotFinished):
		s.fail(w, r, http.StatusConflict, "The run has not finished: "+strings.TrimPrefix(err.Error(), "dagq: reexecute: "))
		return
	case errors.Is(err, ports.ErrInvalidArgument), errors.Is(err, dag.ErrResultGone), errors.Is(err, dag.ErrNoStoredJob):
		s.fail(w, r, http.StatusConflict, "The run cannot be re-executed: "+strings.TrimPrefix(err.Error(), "dagq: reexecute: "))
		return
	case err != nil && newID == "":
		s.log.Warn("re-executing a run failed", "run_id", id, "err", err)
		s.fail(w, r, http.StatusBadGateway, "Re-executing the run failed: "+err.Error())
		return
	case err != nil:
		s.log.Warn("the re-execution's launch failed", "run_id", id, "new_run", newID, "err", err)
	}
	s.log.Info("run re-executed from the dashboard", "run_id", id, "new_run", newID, "from", from, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/runs/"+url.PathEscape(newID)+"?msg=reexecuted&parent="+url.QueryEscape(id), http.StatusSeeOther)
}

// ---- queues ----

type queuesData struct {
	Depths []depth
	DLQs   []dlqData
	Every  string
}

type dlqData struct {
	Role    string
	Name    string
	Letters []core.DeadLetter
	Error   string
	More    bool
}

func (s *Server) queuesPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	samples := s.queues.latest(ctx, s.refresh) // a page opened shows news
	d := &queuesData{Every: human(s.queues.watchedEvery())}
	if n := len(samples); n > 0 {
		d.Depths = samples[n-1].Queues
	}
	for _, role := range queueRoles {
		letters, has, err := s.queues.deadLetters(ctx, role)
		if !has {
			continue
		}
		dd := dlqData{Role: role, Letters: letters, More: len(letters) >= maxDeadLetters}
		for _, q := range d.Depths {
			if q.Key == role+"-dlq" {
				dd.Name = q.Name
			}
		}
		if err != nil {
			dd.Error = err.Error()
		}
		d.DLQs = append(d.DLQs, dd)
	}
	data := s.page(r, "Queues", "queues")
	data.Queues, data.Flash = d, flash(r)
	s.render(w, r, "queues", data)
}

func (s *Server) queuesAPI(w http.ResponseWriter, r *http.Request) {
	samples := s.queues.latest(r.Context(), s.queues.watchedAge())
	writeJSON(w, http.StatusOK, map[string]any{"samples": samples, "history_ms": sampleHistory.Milliseconds()})
}

func (s *Server) redrive(w http.ResponseWriter, r *http.Request) {
	if !s.actionAllowed(w, r) {
		return
	}
	role := r.PathValue("role")
	if !slices.Contains(queueRoles, role) {
		s.fail(w, r, http.StatusNotFound, "There is no such queue.")
		return
	}
	taskID := strings.TrimSpace(r.PostFormValue("task_id"))
	if taskID == "" && r.PostFormValue("all") != "1" {
		s.fail(w, r, http.StatusBadRequest, "Name the dead letter to redrive (task_id), or ask for all.")
		return
	}
	rep, err := s.rt.RedriveDeadLetters(r.Context(), role, taskID)
	if err != nil {
		s.log.Warn("redrive from the dashboard failed", "queue", role, "task_id", taskID, "err", err)
		s.fail(w, r, http.StatusBadGateway, "The redrive failed: "+err.Error())
		return
	}
	s.log.Info("dead letters redriven from the dashboard", "queue", role, "task_id", taskID, "moved", len(rep.Moved),
		"move_task", rep.MoveTask, "remote", r.RemoteAddr)
	if rep.MoveTask != "" {
		http.Redirect(w, r, fmt.Sprintf("/queues?msg=movetask&role=%s", url.QueryEscape(role)), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/queues?msg=redriven&n=%d&role=%s", len(rep.Moved), url.QueryEscape(role)), http.StatusSeeOther)
}

// ---- workers ----

type workersData struct {
	Registry bool
	Rows     []WorkerRow
	Seen     []seenWorker
	Error    string
}

// seenWorker is a worker named in the runs the console knows.
type seenWorker struct {
	ID       string
	Steps    int
	Runs     int
	LastSeen string
}

func (s *Server) workersPage(w http.ResponseWriter, r *http.Request) {
	d := &workersData{}
	if s.opts.Workers != nil {
		d.Registry = true
		rows, err := s.opts.Workers(r.Context())
		if err != nil {
			d.Error = "Listing the workers failed: " + err.Error()
		}
		d.Rows = rows
	} else {
		d.Seen = s.seenWorkers()
	}
	data := s.page(r, "Workers", "workers")
	data.Workers = d
	if r.URL.Query().Get("fragment") == "rows" {
		s.renderTemplate(w, r, "workers", "rows", data)
		return
	}
	s.render(w, r, "workers", data)
}

// seenWorkers lists the workers named by the runs the console knows, most
// recently seen first.
func (s *Server) seenWorkers() []seenWorker {
	type acc struct {
		steps, runs int
		last        time.Time
	}
	m := map[string]*acc{}
	get := func(id string) *acc {
		if m[id] == nil {
			m[id] = &acc{}
		}
		return m[id]
	}
	for _, e := range s.runs.all() {
		var rec dag.RunRecord
		if e.local != nil {
			rec = e.local.view().Rec
		} else {
			e.mu.Lock()
			rec = e.rec
			e.mu.Unlock()
		}
		if rec.Worker != "" {
			a := get(rec.Worker)
			a.runs++
			a.last = latest(a.last, rec.StartedAt, rec.ResumedAt, rec.FinishedAt)
		}
		for _, st := range rec.Steps {
			if st.Worker != "" {
				a := get(st.Worker)
				a.steps++
				a.last = latest(a.last, st.StartedAt, st.FinishedAt)
			}
		}
	}
	out := make([]seenWorker, 0, len(m))
	for id, a := range m {
		out = append(out, seenWorker{ID: id, Steps: a.steps, Runs: a.runs, LastSeen: stamp(a.last)})
	}
	slices.SortFunc(out, func(a, b seenWorker) int {
		return cmp.Or(strings.Compare(b.LastSeen, a.LastSeen), strings.Compare(a.ID, b.ID))
	})
	return out
}

func latest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}
