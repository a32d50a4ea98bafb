package dag

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dagq/dagq/ports"
)

// The run index: one empty record per run in the StateStore, under
// runIndexPrefix, whose key says everything ListRuns reports — so that a
// listing is a few ListKeys calls (ports.KeyLister) and never a Get per
// run. A key is "runindex/<inverted created>.<run ID>.<state>.<finished>.<job>":
//
//   - inverted created: math.MaxInt64 minus the run's CreatedAt in Unix
//     nanoseconds, 19 digits, so that byte order is newest first;
//   - run ID and job: escaped (indexEscape: letters, digits, '-' and '_'
//     as they are, every other byte as %XX), so that '.' separates the
//     fields and the keys of one run are next to each other; a job whose
//     escaped name does not fit in the key (ports.MaxKeyLen) is cut and
//     ends with '.' and a hash of the whole name (16 hex digits);
//   - state: the RunState; finished: the FinishedAt of a final run in Unix
//     nanoseconds, empty otherwise.
//
// Whoever changes a run record's State moves the run's key: it writes the
// new key, then deletes the old one (indexRun). A crash between the two
// leaves both; ListRuns keeps the later state of a run (queued < running <
// final). The record stays the source of truth.
const runIndexPrefix = "runindex/"

// ListRuns limits.
const (
	// DefaultListRunsLimit is ListRunsOptions.Limit's default.
	DefaultListRunsLimit = 50
	// MaxListRunsLimit is the largest ListRunsOptions.Limit.
	MaxListRunsLimit = ports.MaxListKeys
	// listRunsMaxRequests bounds the ListKeys calls of one ListRuns.
	listRunsMaxRequests = 10
	// listRunsGrowth is how much larger each ListKeys call of a filtered
	// ListRuns is than the one before (up to ports.MaxListKeys).
	listRunsGrowth = 8
	// indexWriteTimeout bounds one index write or delete.
	indexWriteTimeout = 30 * time.Second
)

// RunSummary is one run of the index.
type RunSummary struct {
	RunID      string    `json:"run_id"`
	Job        string    `json:"job"`
	State      RunState  `json:"state"`
	CreatedAt  time.Time `json:"created_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// ListRunsOptions filters and pages ListRuns.
type ListRunsOptions struct {
	State  RunState  // "" for every state
	Job    string    // "" for every job
	Since  time.Time // zero: no bound; else only runs created at or after it
	Limit  int       // 0: 50; at most 1000
	Cursor string    // "" for the newest; else the next cursor a previous call returned
}

// ListRuns lists launched runs from the run index, newest first (by
// CreatedAt), filtered by state, job and creation time, a page of at most
// opts.Limit runs at a time. next is "" when there is nothing more; else
// pass it as opts.Cursor (with the same filters) for the following page.
//
// It reads index keys only (ports.KeyLister.ListKeys, up to 1000 keys per
// call), never run records, except the record of a listed run whose job
// name is too long to be kept whole in its key. Without a filter a page of
// n runs is one ListKeys call of n+1 keys (two for 1000 runs). A state or
// job filter scans keys until the page is full — then next is "" only when
// the keys at hand show that no further run matches — in ListKeys calls of
// n+1 keys, then 8 times as many each time up to 1000, and for at most 10
// calls, after which it returns the runs found so far (possibly fewer than
// opts.Limit, even none) with a next cursor to go on from. Since ends the
// scan at the first older run.
//
// A run's state is its record's as of its last state change. A run whose
// record is not final but whose run task has a result (Status reconciles
// it: e.g. a dead-lettered run task) is listed with its record's state,
// queued or running. Runs launched before the index existed are listed only
// once their state changes again. A run may be missing or late for as long
// as its state change takes to write (a key written or deleted during a
// listing may or may not be in it), or when an index write failed (it is
// logged; the run's next state change writes its key again).
//
// It fails with ports.ErrUnsupported when the StateStore does not
// implement ports.KeyLister, and with ports.ErrInvalidArgument for invalid
// options (a Limit out of range, an unknown State, a Cursor that ListRuns
// did not return).
func (l *Launcher) ListRuns(ctx context.Context, opts ListRunsOptions) (runs []RunSummary, next string, err error) {
	lister, ok := l.state.(ports.KeyLister)
	if !ok {
		return nil, "", fmt.Errorf("dagq: list runs: %w: the run index needs a state store that lists keys (ports.KeyLister), "+
			"and %T does not; the memory and S3 state stores do", ports.ErrUnsupported, l.state)
	}
	s, after, err := newRunScan(opts)
	if err != nil {
		return nil, "", fmt.Errorf("dagq: list runs: %w", err)
	}
	filtered := opts.State != "" || opts.Job != ""
	n := 0 // keys to ask for
	for requests := 0; !s.done; requests++ {
		if requests == listRunsMaxRequests {
			s.stop() // the budget is spent: go on from here next time
			break
		}
		switch {
		case !filtered || requests == 0:
			// The runs still wanted and one more, to know whether there
			// are more.
			n = s.limit - len(s.matched) + 1
		default:
			// Matches are sparser than that: larger pages.
			n *= listRunsGrowth
		}
		n = min(max(n, 1), ports.MaxListKeys)
		keys, more, err := lister.ListKeys(ctx, runIndexPrefix, after, n)
		if err != nil {
			return nil, "", fmt.Errorf("dagq: list runs: %w", err)
		}
		for _, k := range keys {
			e, ok := parseIndexKey(k)
			if !ok {
				l.log.Debug("list runs: not a run index key; skipped", "key", k)
				continue
			}
			if !s.add(e) {
				break
			}
		}
		if len(keys) > 0 {
			after = keys[len(keys)-1]
		}
		switch {
		case s.done:
		case !more || len(keys) == 0:
			s.end()
		case len(s.matched) == s.limit:
			// Full, and whether another run matches is not known from the
			// keys at hand: no LIST to find out.
			s.stop()
		}
	}
	runs = make([]RunSummary, len(s.matched))
	for i, e := range s.matched {
		runs[i] = RunSummary{RunID: e.runID, Job: e.job, State: e.state, CreatedAt: e.created, FinishedAt: e.finished}
		if e.jobCut {
			runs[i].Job = l.fullJobName(ctx, e)
		}
	}
	return runs, s.next, nil
}

// fullJobName reads the job name of a run whose index key holds only its
// beginning from the run record.
func (l *Launcher) fullJobName(ctx context.Context, e indexEntry) string {
	rec, err := l.read(ctx, e.runID)
	if err != nil {
		l.log.Warn("list runs: reading the job name of a run failed; listing the beginning of it", "run_id", e.runID, "err", err)
		return e.job + "…"
	}
	return rec.Job
}

// runScan collects one page of ListRuns from the index keys, read in
// order.
type runScan struct {
	opts    ListRunsOptions
	limit   int
	jobEsc  string // the escaped opts.Job
	jobHash string

	matched []indexEntry
	cur     *indexEntry // the run whose keys are being read
	last    string      // the cursor of the last run whose keys were all read
	done    bool
	next    string
}

// newRunScan checks opts and returns the scan and the key to list after.
func newRunScan(opts ListRunsOptions) (*runScan, string, error) {
	s := &runScan{opts: opts, limit: opts.Limit}
	switch {
	case opts.Limit < 0 || opts.Limit > MaxListRunsLimit:
		return nil, "", fmt.Errorf("%w: Limit %d; valid: 0 (default %d) to %d", ports.ErrInvalidArgument, opts.Limit, DefaultListRunsLimit, MaxListRunsLimit)
	case opts.Limit == 0:
		s.limit = DefaultListRunsLimit
	}
	if opts.State != "" && stateRank(opts.State) < 0 {
		return nil, "", fmt.Errorf("%w: State %q; valid: %s, %s, %s, %s, %s, or empty for every state", ports.ErrInvalidArgument,
			opts.State, RunQueued, RunRunning, RunSucceeded, RunFailed, RunCancelled)
	}
	if opts.Job != "" {
		s.jobEsc, s.jobHash = indexEscape(opts.Job), jobHash(opts.Job)
	}
	if opts.Cursor == "" {
		return s, "", nil
	}
	if _, _, err := parseCursor(opts.Cursor); err != nil {
		return nil, "", fmt.Errorf("%w: Cursor %.40q is not one that ListRuns returned (%v)", ports.ErrInvalidArgument, opts.Cursor, err)
	}
	// After every key of the cursor's run ('~' sorts after any state).
	s.last = opts.Cursor
	return s, runIndexPrefix + opts.Cursor + ".~", nil
}

// add reads the next key's entry; false when the scan is done.
func (s *runScan) add(e indexEntry) bool {
	if !s.opts.Since.IsZero() && e.created.Before(s.opts.Since) {
		s.end() // older runs only from here
		return false
	}
	if s.cur != nil && s.cur.sameRun(e) {
		// A key left behind by a crash between a state change's write and
		// delete: keep the later state.
		if stateRank(e.state) > stateRank(s.cur.state) {
			*s.cur = e
		}
		return true
	}
	if s.cur != nil && !s.close() {
		return false
	}
	if len(s.matched) == s.limit && s.opts.State == "" && s.opts.Job == "" {
		// Unfiltered, another run is another match: the page is full.
		s.done, s.next = true, s.last
		return false
	}
	s.cur = &e
	return true
}

// close ends the current run, all of whose keys were read; false when it
// is a match beyond the page (the scan is done, with a next cursor).
func (s *runScan) close() bool {
	e := *s.cur
	s.cur = nil
	if s.matches(e) {
		if len(s.matched) == s.limit {
			s.done, s.next = true, s.last
			return false
		}
		s.matched = append(s.matched, e)
	}
	s.last = e.cursor()
	return true
}

// end ends the scan at the end of the index (or of Since).
func (s *runScan) end() {
	if s.cur != nil {
		s.close()
	}
	s.done = true
}

// stop ends the scan before the end of the index: the next call goes on
// after the last run whose keys were all read.
func (s *runScan) stop() {
	s.done, s.next = true, s.last
	if s.next == s.opts.Cursor && s.cur != nil {
		// Not one run read to its end: skip the current one rather than
		// return the cursor given (unreachable with a few keys per run).
		s.next = s.cur.cursor()
	}
}

func (s *runScan) matches(e indexEntry) bool {
	if s.opts.State != "" && e.state != s.opts.State {
		return false
	}
	if s.opts.Job == "" {
		return true
	}
	if e.jobCut {
		return e.jobHash == s.jobHash && strings.HasPrefix(s.jobEsc, e.jobEsc)
	}
	return e.job == s.opts.Job
}

// stateRank orders run states for the index: queued, running, final; -1
// for an unknown state.
func stateRank(s RunState) int {
	switch s {
	case RunQueued:
		return 0
	case RunRunning:
		return 1
	case RunSucceeded, RunFailed, RunCancelled:
		return 2
	}
	return -1
}

// indexEntry is what one index key says.
type indexEntry struct {
	inv      string // the inverted creation time, as in the key
	runEsc   string // the escaped run ID, as in the key
	runID    string
	state    RunState
	created  time.Time
	finished time.Time
	job      string // the job name; its beginning when jobCut
	jobEsc   string // the escaped job name (its beginning when jobCut)
	jobCut   bool
	jobHash  string // of the whole name, when jobCut
}

func (e indexEntry) sameRun(o indexEntry) bool { return e.inv == o.inv && e.runEsc == o.runEsc }

// cursor is the ListRuns cursor that goes on after e's run.
func (e indexEntry) cursor() string { return e.inv + "." + e.runEsc }

// runIndexKey returns rec's index key (see runIndexPrefix).
func runIndexKey(rec RunRecord) string {
	var b strings.Builder
	b.WriteString(runIndexPrefix)
	b.WriteString(invertedTime(rec.CreatedAt))
	b.WriteByte('.')
	b.WriteString(indexEscape(rec.RunID))
	b.WriteByte('.')
	b.WriteString(string(rec.State))
	b.WriteByte('.')
	if rec.State.Final() && !rec.FinishedAt.IsZero() {
		b.WriteString(strconv.FormatInt(unixNano(rec.FinishedAt), 10))
	}
	b.WriteByte('.')
	b.WriteString(indexJob(rec.Job, ports.MaxKeyLen-b.Len()))
	return b.String()
}

// unixNano is t in Unix nanoseconds, clamped to 0 … math.MaxInt64.
func unixNano(t time.Time) int64 {
	switch {
	case t.Year() < 1970:
		return 0
	case t.Year() > 2261:
		return math.MaxInt64
	}
	return max(t.UnixNano(), 0)
}

// invertedTime is math.MaxInt64 minus t in Unix nanoseconds, 19 digits.
func invertedTime(t time.Time) string {
	return fmt.Sprintf("%019d", math.MaxInt64-unixNano(t))
}

// indexJob is the job field of an index key, at most budget bytes: the
// escaped name, or when it is longer its beginning, '.' and jobHash.
func indexJob(job string, budget int) string {
	esc := indexEscape(job)
	if len(esc) <= budget {
		return esc
	}
	cut := max(budget-17, 0)
	// Not inside a %XX.
	if cut >= 1 && esc[cut-1] == '%' {
		cut--
	} else if cut >= 2 && esc[cut-2] == '%' {
		cut -= 2
	}
	return esc[:cut] + "." + jobHash(job)
}

// jobHash is the 64-bit FNV-1a hash of a job name, 16 hex digits.
func jobHash(job string) string {
	h := fnv.New64a()
	h.Write([]byte(job))
	return fmt.Sprintf("%016x", h.Sum64())
}

// indexEscape keeps ASCII letters, digits, '-' and '_' and writes every
// other byte as %XX.
func indexEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

var errBadEscape = errors.New("bad escape")

// indexUnescape reverses indexEscape.
func indexUnescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errBadEscape
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", errBadEscape
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// parseInverted reads an inverted creation time.
func parseInverted(inv string) (time.Time, error) {
	if len(inv) != 19 {
		return time.Time{}, errors.New("bad time")
	}
	n, err := strconv.ParseInt(inv, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, errors.New("bad time")
	}
	return time.Unix(0, math.MaxInt64-n).UTC(), nil
}

// parseCursor reads a ListRuns cursor: the inverted creation time and the
// escaped run ID of the last run of a page.
func parseCursor(c string) (time.Time, string, error) {
	inv, runEsc, ok := strings.Cut(c, ".")
	if !ok || runEsc == "" || strings.Contains(runEsc, ".") {
		return time.Time{}, "", errors.New("not <time>.<run ID>")
	}
	t, err := parseInverted(inv)
	if err != nil {
		return time.Time{}, "", err
	}
	runID, err := indexUnescape(runEsc)
	if err != nil {
		return time.Time{}, "", err
	}
	return t, runID, nil
}

// parseIndexKey reads an index key; false when it is not one.
func parseIndexKey(key string) (indexEntry, bool) {
	parts := strings.SplitN(strings.TrimPrefix(key, runIndexPrefix), ".", 5)
	if len(parts) != 5 || parts[1] == "" {
		return indexEntry{}, false
	}
	e := indexEntry{inv: parts[0], runEsc: parts[1], state: RunState(parts[2])}
	var err error
	if e.created, err = parseInverted(e.inv); err != nil {
		return indexEntry{}, false
	}
	if e.runID, err = indexUnescape(e.runEsc); err != nil {
		return indexEntry{}, false
	}
	if stateRank(e.state) < 0 {
		return indexEntry{}, false
	}
	if parts[3] != "" {
		n, err := strconv.ParseInt(parts[3], 10, 64)
		if err != nil {
			return indexEntry{}, false
		}
		e.finished = time.Unix(0, n).UTC()
	}
	e.jobEsc = parts[4]
	if i := strings.LastIndexByte(e.jobEsc, '.'); i >= 0 {
		e.jobCut, e.jobHash, e.jobEsc = true, e.jobEsc[i+1:], e.jobEsc[:i]
		if len(e.jobHash) != 16 {
			return indexEntry{}, false
		}
		// Best effort: the beginning may end inside a UTF-8 sequence.
		j, _ := indexUnescape(e.jobEsc)
		e.job = strings.ToValidUTF8(j, "")
		return e, true
	}
	if e.job, err = indexUnescape(e.jobEsc); err != nil {
		return indexEntry{}, false
	}
	return e, true
}

// indexRun moves run rec's index key to rec's state from the state from
// ("" when the run had none: at launch): it writes the new key, then
// deletes the old one. Failures are logged: the record is the source of
// truth, and the run's next state change writes its key again. It runs
// even when ctx is cancelled, since the record changed.
func indexRun(ctx context.Context, state ports.StateStore, log *slog.Logger, rec RunRecord, from RunState) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), indexWriteTimeout)
	defer cancel()
	key := runIndexKey(rec)
	if _, err := state.Put(ctx, key, nil, ports.WriteCondition{}); err != nil {
		log.Warn("writing the run's index key failed; the run index shows its previous state until its next state change",
			"run_id", rec.RunID, "state", rec.State, "err", err)
		return
	}
	if from == "" {
		return
	}
	old := rec
	old.State = from
	if !from.Final() {
		old.FinishedAt = time.Time{}
	}
	if oldKey := runIndexKey(old); oldKey != key {
		if err := state.Delete(ctx, oldKey); err != nil {
			log.Warn("deleting the run's previous index key failed; the run index keeps its later state",
				"run_id", rec.RunID, "state", from, "err", err)
		}
	}
}
