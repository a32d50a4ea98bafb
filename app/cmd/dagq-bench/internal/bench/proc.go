package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
)

// event is a line of a cancel probe (bench-started, bench-cancel).
type event struct {
	kind   string // lineStarted or lineCancel
	worker string // the process's name
	taskID string
	at     time.Time
	cause  string
}

// proc is a worker (or raw consumer) process the bench started.
type proc struct {
	name   string
	cmd    *exec.Cmd
	ready  chan struct{} // closed on bench-ready
	doneCh chan struct{} // closed on bench-raw-done (raw consumers)
	done   rawDone       // its payload, once doneCh is closed
	exited chan struct{} // closed once stdout is drained and the process exited
	err    error         // the process's exit error, after exited
	cpu    time.Duration // its user+system CPU time (rusage at exit), after exited

	mu      sync.Mutex
	reports []countsReport // periodic and final bench-counts lines
	execs   []execLine     // bench-exec lines (of the soak task)

	// termOnce sends SIGTERM once: a second one could reach a worker that
	// already restored the default signal action (a second Ctrl-C exits at
	// once) and kill it before its final counts.
	termOnce sync.Once
}

// terminate asks the process to shut down (SIGTERM), once.
func (p *proc) terminate() {
	p.termOnce.Do(func() { _ = p.cmd.Process.Signal(syscall.SIGTERM) })
}

type procOptions struct {
	runs   bool          // serve the run queue too
	report time.Duration // periodic counts; 0: at exit only
}

// startWorker starts a worker process on cfg and waits until it serves its
// queues. Probe events go to events.
func (b *bencher) startWorker(name string, cfg config.Config, po procOptions, events chan<- event) (*proc, error) {
	if b.opts.Quick {
		// A stopping worker lets its long poll end (a message handed to an
		// abandoned poll would be stranded for a lease): with the default
		// 20s wait, every stop of an idle worker takes up to 20s. Quick mode
		// (make test) checks shapes, not numbers: poll 1s.
		cfg.SQS.WaitTime = time.Second
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return b.startProc(name, "worker", []string{
		ConfigEnv + "=" + string(raw),
		RunsEnv + "=" + strconv.FormatBool(po.runs),
		ReportEnv + "=" + po.report.String(),
	}, events)
}

// startProc starts the bench's program as a process of role (RoleEnv:
// worker or raw) with env added to its environment, and waits until it
// prints bench-ready.
func (b *bencher) startProc(name, role string, env []string, events chan<- event) (*proc, error) {
	cmd := exec.Command(b.opts.Executable, role)
	cmd.Env = append(append(os.Environ(), RoleEnv+"="+role), env...)
	cmd.Stderr = prefixWriter(b.opts.Stderr, "["+name+"] ")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, ready: make(chan struct{}), doneCh: make(chan struct{}), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s process %s: %w", role, name, err)
	}
	go func() {
		p.read(stdout, events)
		p.err = cmd.Wait()
		if st := cmd.ProcessState; st != nil {
			p.cpu = st.UserTime() + st.SystemTime()
		}
		close(p.exited)
	}()
	select {
	case <-p.ready:
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("process %s exited before it was ready: %v", name, p.err)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-p.exited
		return nil, fmt.Errorf("process %s: not ready after 60s", name)
	}
}

func (p *proc) read(r io.Reader, events chan<- event) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	readyOnce, doneOnce := sync.Once{}, sync.Once{}
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		switch kind {
		case lineReady:
			readyOnce.Do(func() { close(p.ready) })
		case lineRawDone:
			f := strings.Fields(rest)
			if len(f) < 3 {
				continue
			}
			ns, err1 := strconv.ParseInt(f[0], 10, 64)
			rec, err2 := strconv.ParseInt(f[1], 10, 64)
			del, err3 := strconv.ParseInt(f[2], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				continue
			}
			doneOnce.Do(func() {
				p.done = rawDone{at: time.Unix(0, ns), received: rec, deleted: del}
				close(p.doneCh)
			})
		case lineExec:
			f := strings.Fields(rest)
			if len(f) < 2 {
				continue
			}
			ns, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				continue
			}
			p.mu.Lock()
			p.execs = append(p.execs, execLine{taskID: f[0], worker: p.name, at: time.Unix(0, ns)})
			p.mu.Unlock()
		case lineCounts:
			var rep countsReport
			if json.Unmarshal([]byte(rest), &rep) == nil {
				p.mu.Lock()
				p.reports = append(p.reports, rep)
				p.mu.Unlock()
			}
		case lineStarted, lineCancel:
			f := strings.Fields(rest)
			if len(f) < 2 || events == nil {
				continue
			}
			ns, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				continue
			}
			ev := event{kind: kind, worker: p.name, taskID: f[0], at: time.Unix(0, ns)}
			if len(f) > 2 {
				ev.cause = strings.ReplaceAll(f[2], "_", " ")
			}
			select {
			case events <- ev:
			default: // nobody listens: never block the worker's stdout
			}
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// execLines returns the bench-exec lines the process printed so far.
func (p *proc) execLines() []execLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.execs)
}

// lastReport returns the last counts report (ok false: none yet).
func (p *proc) lastReport() (countsReport, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.reports) == 0 {
		return countsReport{}, false
	}
	return p.reports[len(p.reports)-1], true
}

// stop sends SIGTERM, waits for the process to exit (killing it after
// 60s) and returns its final counts.
func (p *proc) stop() (cli.AWSCounts, error) {
	select {
	case <-p.exited:
	default:
		p.terminate()
		select {
		case <-p.exited:
		case <-time.After(60 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			return nil, fmt.Errorf("process %s did not stop within 60s of SIGTERM", p.name)
		}
	}
	rep, ok := p.lastReport()
	switch {
	case p.err != nil:
		return nil, fmt.Errorf("process %s: %w", p.name, p.err)
	case !ok || !rep.Final:
		return nil, fmt.Errorf("process %s exited without its final counts", p.name)
	}
	return rep.Counts, nil
}

// stopAll stops ps and returns their counts summed.
func stopAll(ps ...*proc) (cli.AWSCounts, error) {
	var sum cli.AWSCounts
	var errs []error
	for _, p := range ps { // signal all first: they shut down in parallel
		if p != nil {
			p.terminate()
		}
	}
	for _, p := range ps {
		if p == nil {
			continue
		}
		c, err := p.stop()
		errs = append(errs, err)
		sum = sum.Plus(c)
	}
	return sum, errors.Join(errs...)
}

// prefixWriter prefixes every line written to w.
func prefixWriter(w io.Writer, prefix string) io.Writer {
	return &prefixed{w: w, prefix: prefix, bol: true}
}

type prefixed struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	bol    bool
}

func (p *prefixed) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []byte
	for _, c := range b {
		if p.bol {
			out = append(out, p.prefix...)
			p.bol = false
		}
		out = append(out, c)
		if c == '\n' {
			p.bol = true
		}
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}
