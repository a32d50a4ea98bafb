package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// The soak's defaults (issue 13): 30 minutes, 50,000 tasks and 200
// launched runs on three worker processes, a rolling SIGTERM restart of one
// worker every 2 minutes and a kill -9 of one every 5.
const (
	SoakDefaultDuration     = 30 * time.Minute
	SoakDefaultTasks        = 50_000
	SoakDefaultRuns         = 200
	SoakDefaultWorkers      = 3
	SoakDefaultConcurrency  = 10
	SoakDefaultSigtermEvery = 2 * time.Minute
	SoakDefaultKillEvery    = 5 * time.Minute
	SoakDefaultDrain        = 5 * time.Minute
)

// The worker settings of the soak: short enough leases that a task or run
// on a killed worker is picked up again within seconds (the values of the
// dagq command's fault tests).
const (
	soakLease           = 8 * time.Second // worker.lease: a killed worker's tasks come back after this
	soakShutdownTimeout = 5 * time.Second // worker.shutdown_timeout: the drain of a SIGTERM
	soakWaitTime        = 5 * time.Second // sqs.wait_time: a stopping worker waits out its long poll
	soakRunHeartbeat    = time.Second     // launcher.heartbeat_interval
	soakStaleAfter      = 5 * time.Second // launcher.stale_after: a killed worker's runs are taken over after this
	// soakProduceShare of the duration is spent submitting tasks and
	// launching runs at a steady rate; the chaos goes on to the end.
	soakProduceShare = 0.85
)

// SoakOptions configures Soak. Zero values take the defaults.
type SoakOptions struct {
	// Duration of the load and the chaos (default 30m); the final drain
	// and checks come after it.
	Duration time.Duration
	// Tasks and Runs are the numbers of tasks submitted and runs launched
	// (default 50,000 and 200 for 30 minutes, proportionally fewer or more
	// for another Duration, at least 1).
	Tasks, Runs int
	// Workers is the number of worker processes (default 3) and
	// Concurrency the slots of each (default 10).
	Workers, Concurrency int
	// SigtermEvery and KillEvery are the intervals of the rolling SIGTERM
	// restarts and of the kill -9s (default 2m and 5m; negative: never).
	SigtermEvery, KillEvery time.Duration
	// Drain bounds the wait, after Duration, for the tasks and runs to
	// finish and the queues to empty (default 5m).
	Drain time.Duration
	// Seed makes the task sleeps reproducible (default 1).
	Seed uint64
	// Executable, SQSEndpoint, S3Endpoint, Stdout and Stderr as in Options.
	Executable              string
	SQSEndpoint, S3Endpoint string
	Stdout, Stderr          io.Writer
}

// soakArgs is the argument of the soak task.
type soakArgs struct {
	MS int `json:"ms"`
}

// soakOutput is the soak task's output.
type soakOutput struct {
	SleptMS int `json:"slept_ms"`
	Attempt int `json:"attempt"`
}

// execLine is a bench-exec line: an execution of the soak task started.
type execLine struct {
	taskID string
	worker string // the process's name
	at     time.Time
}

// Fates of a worker process, for the attribution of duplicate executions.
const (
	fateKilled  = "killed"  // kill -9
	fateStopped = "stopped" // rolling SIGTERM restart
)

// scaledCount is full scaled from SoakDefaultDuration to d, at least 1.
func scaledCount(full int, d time.Duration) int {
	return max(1, int(math.Round(float64(full)*d.Seconds()/SoakDefaultDuration.Seconds())))
}

// chaosAction is one fault of the soak's schedule.
type chaosAction struct {
	at   time.Duration // from the start
	kill bool          // kill -9; else a rolling SIGTERM restart
}

// chaosSchedule returns the faults of a soak of duration d: a SIGTERM
// restart at every multiple of sigtermEvery and a kill -9 at every multiple
// of killEvery, before d (not at 0), in time order, the SIGTERM first when
// both fall on the same instant. A non-positive interval schedules none.
func chaosSchedule(d, sigtermEvery, killEvery time.Duration) []chaosAction {
	var s []chaosAction
	add := func(every time.Duration, kill bool) {
		if every <= 0 {
			return
		}
		for at := every; at < d; at += every {
			s = append(s, chaosAction{at: at, kill: kill})
		}
	}
	add(sigtermEvery, false)
	add(killEvery, true)
	slices.SortStableFunc(s, func(a, b chaosAction) int {
		if a.at != b.at {
			return int(a.at - b.at)
		}
		if a.kill == b.kill {
			return 0
		}
		if !a.kill {
			return -1
		}
		return 1
	})
	return s
}

// soakSleepMS draws a soak task's sleep: 80% 2–50 ms, 15% 50–300 ms, 5%
// 300–1000 ms (mean about 80 ms).
func soakSleepMS(r *rand.Rand) int {
	switch x := r.Float64(); {
	case x < 0.80:
		return 2 + r.IntN(49)
	case x < 0.95:
		return 50 + r.IntN(251)
	default:
		return 300 + r.IntN(701)
	}
}

// soakJob is the job of the launched runs: a diamond of soak steps, about
// 7 seconds long, so that faults often hit a running run (and its step c
// outlasts worker.shutdown_timeout: a SIGTERM releases it).
func soakJob() dag.Job {
	step := func(name string, ms int, up ...string) dag.Step {
		return dag.Step{Name: name, Task: TaskSoak, Args: json.RawMessage(fmt.Sprintf(`{"ms":%d}`, ms)), Upstream: up}
	}
	return dag.Job{Name: "soak-diamond", Steps: []dag.Step{
		step("a", 200), step("b", 2000, "a"), step("c", 6000, "a"), step("d", 200, "b", "c"),
	}}
}

// dupCount summarises executions per task ID.
type dupCount struct {
	executions int // exec lines
	tasks      int // distinct task IDs executed
	duplicates int // executions beyond the first per task ID
	// Of the duplicates, those whose previous execution was on a worker
	// killed with kill -9, on one stopped by a rolling SIGTERM, or on a
	// worker that lived on (a lease lost, a redelivery).
	afterKill, afterStop, other int
	maxPerTask                  int // most executions of one task ID
}

// countDuplicates counts the executions of execs per task ID; fate maps a
// worker process's name to its fate (fateKilled, fateStopped, or "" for
// one that lived to the end).
func countDuplicates(execs []execLine, fate map[string]string) dupCount {
	s := slices.Clone(execs)
	slices.SortFunc(s, func(a, b execLine) int {
		if c := strings.Compare(a.taskID, b.taskID); c != 0 {
			return c
		}
		return a.at.Compare(b.at)
	})
	var d dupCount
	d.executions = len(s)
	run := 0
	for i, e := range s {
		if i > 0 && s[i-1].taskID == e.taskID {
			run++
			d.duplicates++
			switch fate[s[i-1].worker] {
			case fateKilled:
				d.afterKill++
			case fateStopped:
				d.afterStop++
			default:
				d.other++
			}
		} else {
			run = 1
			d.tasks++
		}
		d.maxPerTask = max(d.maxPerTask, run)
	}
	return d
}

// longestStall returns the longest interval during which work was
// outstanding (submitted, not yet completed) and no task completed, and
// when it began: from the later of the last completion and the moment
// work became outstanding, to the next completion, or to end when work is
// still outstanding then. A submission at the same instant as a
// completion counts first.
func longestStall(submitted, completed []time.Time, end time.Time) (time.Duration, time.Time) {
	type ev struct {
		at   time.Time
		done bool
	}
	evs := make([]ev, 0, len(submitted)+len(completed))
	for _, t := range submitted {
		evs = append(evs, ev{at: t})
	}
	for _, t := range completed {
		evs = append(evs, ev{at: t, done: true})
	}
	slices.SortStableFunc(evs, func(a, b ev) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		switch {
		case a.done == b.done:
			return 0
		case !a.done:
			return -1
		default:
			return 1
		}
	})
	var (
		outstanding int
		since       time.Time // start of the current stall, while outstanding > 0
		longest     time.Duration
		longestAt   time.Time
	)
	for _, e := range evs {
		if !e.done {
			if outstanding == 0 {
				since = e.at
			}
			outstanding++
			continue
		}
		if outstanding > 0 {
			if gap := e.at.Sub(since); gap > longest {
				longest, longestAt = gap, since
			}
			outstanding--
		}
		since = e.at
	}
	if outstanding > 0 {
		if gap := end.Sub(since); gap > longest {
			longest, longestAt = gap, since
		}
	}
	return longest, longestAt
}

// soakTask is a submitted task.
type soakTask struct {
	submitted time.Time
	done      time.Time // when the client saw its result; zero: not yet
	state     ports.State
	err       string
}

// soakRun is a launched run.
type soakRun struct {
	id       string
	launched time.Time
	finished time.Time // when Launcher.Wait returned
	rec      dag.RunRecord
	err      error
}

// chaosEvent is a fault the soak caused.
type chaosEvent struct {
	at          time.Duration // from the start
	kill        bool
	victim, new string
	stopped     time.Duration // signal → exited
	ready       time.Duration // replacement start → ready
}

type soaker struct {
	o     SoakOptions
	b     *bencher
	cfg   config.Config
	rt    *app.Runtime
	start time.Time
	job   dag.Job

	mu       sync.Mutex
	slots    []*proc
	gens     []int
	procs    []*proc // every worker process started
	fates    map[string]string
	chaos    []chaosEvent
	failures []string
	tasks    map[string]*soakTask
	order    []string // task IDs in submission order
	runs     []*soakRun
	produced bool // every task submitted and run launched
}

func (s *soaker) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.failures = append(s.failures, msg)
	s.mu.Unlock()
	s.logf("FAIL: %s", msg)
}

func (s *soaker) since() string { return fmtOffset(time.Since(s.start)) }

func (s *soaker) logf(format string, args ...any) {
	fmt.Fprintf(s.o.Stderr, "soak %s: %s\n", s.since(), fmt.Sprintf(format, args...))
}

// fmtOffset formats an offset from the start: +4m03.2s.
func fmtOffset(d time.Duration) string {
	return "+" + d.Round(100*time.Millisecond).String()
}

// Soak is "make soak": Options.Duration of load on worker processes on the
// emulators with faults (rolling SIGTERM restarts and kill -9s), then
// checks that every task has exactly one stored result and it succeeded,
// that every launched run finished succeeded and that no queue holds a
// message. It prints a table (duplicates executed, latency, longest stall)
// to Stdout, its progress to Stderr, and returns an error naming every
// check that failed.
func Soak(ctx context.Context, o SoakOptions) error {
	if err := soakDefaults(&o); err != nil {
		return err
	}
	b := &bencher{opts: Options{Executable: o.Executable, SQSEndpoint: o.SQSEndpoint, S3Endpoint: o.S3Endpoint, Stdout: o.Stdout, Stderr: o.Stderr},
		sz: fullSizes, runs: func(...string) bool { return true }, prefix: fmt.Sprintf("dagq-soak-%x", time.Now().UnixNano()&0xffffffffff)}
	b.log = slog.New(slog.NewTextHandler(o.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	reg, err := Registry(io.Discard)
	if err != nil {
		return err
	}
	b.reg = reg
	cfg, err := b.sqsConfig(ctx, "q", o.Concurrency) // queue init: queues, DLQs, bucket
	if err != nil {
		return fmt.Errorf("set up the queues: %w", err)
	}
	cfg.Worker.Lease = soakLease
	cfg.Worker.ShutdownTimeout = soakShutdownTimeout
	cfg.SQS.WaitTime = soakWaitTime
	cfg.Launcher.HeartbeatInterval = soakRunHeartbeat
	cfg.Launcher.StaleAfter = soakStaleAfter
	cfg.Log.Level = "warn"
	if err := cfg.Validate(); err != nil {
		return err
	}
	s := &soaker{o: o, b: b, cfg: cfg, job: soakJob(), fates: map[string]string{}, tasks: map[string]*soakTask{},
		slots: make([]*proc, o.Workers), gens: make([]int, o.Workers)}
	return s.run(ctx)
}

func soakDefaults(o *SoakOptions) error {
	if o.Duration <= 0 {
		o.Duration = SoakDefaultDuration
	}
	if o.Tasks == 0 {
		o.Tasks = scaledCount(SoakDefaultTasks, o.Duration)
	}
	if o.Runs == 0 {
		o.Runs = scaledCount(SoakDefaultRuns, o.Duration)
	}
	if o.Workers == 0 {
		o.Workers = SoakDefaultWorkers
	}
	if o.Concurrency == 0 {
		o.Concurrency = SoakDefaultConcurrency
	}
	if o.SigtermEvery == 0 {
		o.SigtermEvery = SoakDefaultSigtermEvery
	}
	if o.KillEvery == 0 {
		o.KillEvery = SoakDefaultKillEvery
	}
	if o.Drain <= 0 {
		o.Drain = SoakDefaultDrain
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the program to run worker processes: %w", err)
		}
		o.Executable = exe
	}
	if o.SQSEndpoint == "" {
		o.SQSEndpoint = os.Getenv("DAGQ_TEST_SQS_ENDPOINT")
	}
	if o.S3Endpoint == "" {
		o.S3Endpoint = os.Getenv("DAGQ_TEST_S3_ENDPOINT")
	}
	switch {
	case o.SQSEndpoint == "" || o.S3Endpoint == "":
		return errors.New(`the soak needs the emulators: run "make soak", or "make emulators-up" and eval "$(scripts/emulators.sh env)" (DAGQ_TEST_SQS_ENDPOINT, DAGQ_TEST_S3_ENDPOINT)`)
	case o.Tasks < 0 || o.Runs < 0 || o.Workers < 0 || o.Concurrency < 0:
		return fmt.Errorf("tasks %d, runs %d, workers %d, concurrency %d: valid: 1 or more (0: the default)", o.Tasks, o.Runs, o.Workers, o.Concurrency)
	case o.Workers < 2 && (o.SigtermEvery > 0 || o.KillEvery > 0):
		return fmt.Errorf("%d worker process: the faults need 2 or more", o.Workers)
	}
	return nil
}

// workerName names generation gen of slot i: w1.1, then w1.2 for its
// replacement, …
func workerName(slot, gen int) string { return fmt.Sprintf("w%d.%d", slot+1, gen) }

// startSlot starts the next generation of slot i's worker process.
func (s *soaker) startSlot(i int) (*proc, time.Duration, error) {
	s.mu.Lock()
	s.gens[i]++
	name := workerName(i, s.gens[i])
	s.mu.Unlock()
	t0 := time.Now()
	p, err := s.b.startWorker(name, s.cfg, procOptions{runs: true}, nil)
	if err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	s.slots[i] = p
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, time.Since(t0), nil
}

// killAll kills every worker process still running (after a setup error).
func (s *soaker) killAll() {
	s.mu.Lock()
	ps := slices.Clone(s.procs)
	s.mu.Unlock()
	for _, p := range ps {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
}

func (s *soaker) run(ctx context.Context) (err error) {
	o := s.o
	fmt.Fprintf(o.Stderr, "dagq-bench: soak for %s: %d tasks, %d runs, %d worker processes; SIGTERM restart every %s, kill -9 every %s\n",
		o.Duration, o.Tasks, o.Runs, o.Workers, everyString(o.SigtermEvery), everyString(o.KillEvery))
	defer func() {
		if err != nil {
			s.killAll()
		}
	}()
	errs := make([]error, o.Workers)
	var wg sync.WaitGroup
	for i := range o.Workers {
		wg.Go(func() { _, _, errs[i] = s.startSlot(i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	rt, err := app.New(s.cfg, s.b.reg, app.WithLogger(s.b.log))
	if err != nil {
		return err
	}
	s.rt = rt
	defer rt.Close()

	s.start = time.Now()
	loadEnd := s.start.Add(o.Duration)
	drainEnd := loadEnd.Add(o.Drain)
	runCtx, cancel := context.WithDeadline(ctx, drainEnd)
	defer cancel()
	watch, err := rt.Client.Watch(runCtx)
	if err != nil {
		return err
	}
	defer watch.Close()

	var bg sync.WaitGroup
	bg.Go(func() { s.collect(runCtx, watch) })
	var producers sync.WaitGroup
	producers.Go(func() { s.produce(runCtx, watch) })
	producers.Go(func() { s.launch(runCtx, &bg) })
	var chaos sync.WaitGroup
	chaosCtx, stopChaos := context.WithDeadline(runCtx, loadEnd)
	defer stopChaos()
	chaos.Go(func() { s.chaosLoop(chaosCtx) })
	progressCtx, stopProgress := context.WithCancel(runCtx)
	defer stopProgress()
	bg.Go(func() { s.progress(progressCtx) })

	chaos.Wait()
	producers.Wait()
	s.mu.Lock()
	s.produced = true
	s.mu.Unlock()
	select { // the load ends at Duration, whatever the producer's pace
	case <-time.After(time.Until(loadEnd)):
	case <-ctx.Done():
	}
	s.logf("load over; waiting (up to %s) for every task and run to finish", o.Drain)
	drained := s.waitDone(runCtx)
	drainAt := time.Now()
	if drained {
		s.logf("every task and run finished; waiting for the queues to empty")
	}
	qs, qerr := s.queues(ctx)
	if qerr != nil {
		return qerr
	}
	emptyBy := drainEnd
	if t := time.Now().Add(2*soakLease + 30*time.Second); t.After(emptyBy) {
		emptyBy = t
	}
	if drained && !s.waitEmpty(ctx, qs, emptyBy) {
		s.logf("the queues still hold messages at the deadline")
	}
	stopProgress()

	s.logf("stopping the workers")
	s.stopWorkers()
	// The final word on the queues, with no worker left to move anything.
	depths := s.depths(ctx, qs)
	cancel()
	bg.Wait()
	return s.report(ctx, drainAt, qs, depths)
}

func everyString(d time.Duration) string {
	if d <= 0 {
		return "never"
	}
	return d.String()
}

// collect records the results the client sees.
func (s *soaker) collect(ctx context.Context, w *core.Watch) {
	for {
		evs, err := w.Next(ctx)
		if err != nil {
			return
		}
		now := time.Now()
		s.mu.Lock()
		for _, ev := range evs {
			t := s.tasks[ev.TaskID]
			if !ev.Final || t == nil || !t.done.IsZero() {
				continue
			}
			t.done, t.state = now, ev.Result.State
			switch {
			case ev.Err != nil:
				t.err = ev.Err.Error()
			case ev.Result.State != ports.StateSucceeded:
				t.err = ev.Result.Error
			}
		}
		s.mu.Unlock()
	}
}

// produce submits o.Tasks soak tasks at a steady rate over
// soakProduceShare of the duration.
func (s *soaker) produce(ctx context.Context, w *core.Watch) {
	o := s.o
	span := time.Duration(float64(o.Duration) * soakProduceShare)
	rnd := rand.New(rand.NewPCG(o.Seed, 13))
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for n := 0; n < o.Tasks; {
		due := min(o.Tasks, int(float64(o.Tasks)*time.Since(s.start).Seconds()/span.Seconds())+1)
		for n < due {
			k := min(due-n, 100)
			reqs := make([]core.Request, k)
			for i := range reqs {
				reqs[i] = core.Request{Task: TaskSoak, ID: core.NewTaskID(), Args: soakArgs{MS: soakSleepMS(rnd)}}
			}
			t0 := time.Now()
			s.mu.Lock()
			for _, r := range reqs {
				s.tasks[r.ID] = &soakTask{submitted: t0}
				s.order = append(s.order, r.ID)
			}
			s.mu.Unlock()
			var err error
			for try := range 5 {
				if _, err = w.SubmitBatch(ctx, reqs...); err == nil || ctx.Err() != nil {
					break
				}
				s.logf("submit %d tasks (try %d of 5): %v", k, try+1, err)
				time.Sleep(time.Second) // the same IDs again: safe
			}
			if err != nil {
				s.fail("submit %d tasks: %v", k, err)
			}
			n += k
		}
		select {
		case <-ctx.Done():
			if n < o.Tasks {
				s.fail("submitted only %d of %d tasks: %v", n, o.Tasks, ctx.Err())
			}
			return
		case <-t.C:
		}
	}
}

// launch launches o.Runs runs of the soak job, evenly over
// soakProduceShare of the duration, and waits for each in a goroutine of
// wg.
func (s *soaker) launch(ctx context.Context, wg *sync.WaitGroup) {
	o := s.o
	every := time.Duration(float64(o.Duration) * soakProduceShare / float64(o.Runs))
	for i := range o.Runs {
		select {
		case <-ctx.Done():
			s.fail("launched only %d of %d runs: %v", i, o.Runs, ctx.Err())
			return
		case <-time.After(time.Until(s.start.Add(every*time.Duration(i) + every/2))):
		}
		r := &soakRun{launched: time.Now()}
		id, err := s.rt.Launcher.Launch(ctx, s.job, dag.LaunchOptions{})
		if err != nil {
			s.fail("launch run %d: %v", i+1, err)
			if id == "" {
				continue
			}
		}
		r.id = id
		s.mu.Lock()
		s.runs = append(s.runs, r)
		s.mu.Unlock()
		wg.Go(func() {
			rec, err := s.rt.Launcher.Wait(ctx, id)
			s.mu.Lock()
			r.finished, r.rec, r.err = time.Now(), rec, err
			s.mu.Unlock()
		})
	}
}

// chaosLoop runs the fault schedule until ctx is done.
func (s *soaker) chaosLoop(ctx context.Context) {
	victims := faultVictims(chaosSchedule(s.o.Duration, s.o.SigtermEvery, s.o.KillEvery), s.o.Workers)
	for _, v := range victims {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(s.start.Add(v.at))):
		}
		s.fault(v.slot, v.kill)
	}
}

// victim is a fault of the schedule and the worker slot it hits.
type victim struct {
	chaosAction
	slot int
}

// faultVictims picks the slot of every fault of schedule: round robin over
// n slots, the SIGTERM restarts from slot 0, the kills from slot 1; a kill
// due at the same instant as a restart skips the slot just restarted (its
// fresh replacement holds no work yet).
func faultVictims(schedule []chaosAction, n int) []victim {
	nextStop, nextKill := 0, 1
	var vs []victim
	for i, a := range schedule {
		v := victim{chaosAction: a}
		if a.kill {
			v.slot = nextKill % n
			if i > 0 && !schedule[i-1].kill && schedule[i-1].at == a.at && vs[i-1].slot == v.slot {
				nextKill++
				v.slot = nextKill % n
			}
			nextKill++
		} else {
			v.slot = nextStop % n
			nextStop++
		}
		vs = append(vs, v)
	}
	return vs
}

// fault kills (kill -9) or stops (SIGTERM) slot i's worker, waits for it
// to exit and starts its replacement.
func (s *soaker) fault(i int, kill bool) {
	s.mu.Lock()
	p := s.slots[i]
	s.mu.Unlock()
	ev := chaosEvent{at: time.Since(s.start), kill: kill, victim: p.name}
	t0 := time.Now()
	if kill {
		s.mu.Lock()
		s.fates[p.name] = fateKilled
		s.mu.Unlock()
		_ = p.cmd.Process.Kill()
		<-p.exited
	} else {
		s.mu.Lock()
		s.fates[p.name] = fateStopped
		s.mu.Unlock()
		p.terminate()
		select {
		case <-p.exited:
			if p.err != nil {
				s.fail("worker %s exited with %v after SIGTERM", p.name, p.err)
			}
		case <-time.After(60 * time.Second):
			s.fail("worker %s did not exit within 60s of SIGTERM; killed", p.name)
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	ev.stopped = time.Since(t0)
	np, ready, err := s.startSlot(i)
	if err != nil {
		s.fail("start the replacement of worker %s: %v", p.name, err)
		return
	}
	ev.new, ev.ready = np.name, ready
	s.mu.Lock()
	s.chaos = append(s.chaos, ev)
	s.mu.Unlock()
	what := "SIGTERM"
	if kill {
		what = "kill -9"
	}
	s.logf("%s of %s at %s: it exited in %s; %s ready in %s", what, p.name, fmtOffset(ev.at), ev.stopped.Round(time.Millisecond), np.name, ready.Round(time.Millisecond))
}

// counts returns the tasks submitted and done, and the runs launched and
// finished.
func (s *soaker) counts() (submitted, done, launched, finished int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tasks {
		if !t.done.IsZero() {
			done++
		}
	}
	for _, r := range s.runs {
		if !r.finished.IsZero() {
			finished++
		}
	}
	return len(s.tasks), done, len(s.runs), finished
}

// progress logs the counts every 30s.
func (s *soaker) progress(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sub, done, launched, finished := s.counts()
		s.mu.Lock()
		var names []string
		for _, p := range s.slots {
			names = append(names, p.name)
		}
		s.mu.Unlock()
		s.logf("tasks %d/%d submitted, %d done, %d outstanding; runs %d/%d launched, %d finished; workers %s",
			sub, s.o.Tasks, done, sub-done, launched, s.o.Runs, finished, strings.Join(names, " "))
	}
}

// waitDone waits until every task and run is done (true) or ctx ends.
func (s *soaker) waitDone(ctx context.Context) bool {
	for {
		sub, done, launched, finished := s.counts()
		s.mu.Lock()
		produced := s.produced
		s.mu.Unlock()
		if produced && sub == done && launched == finished {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// soakQueue is a queue the soak checks.
type soakQueue struct{ name, url string }

// queueDepth is a queue's ApproximateNumberOfMessages, …NotVisible and
// …Delayed, or the error reading them.
type queueDepth struct {
	visible, inFlight, delayed int
	err                        error
}

func (d queueDepth) total() int { return d.visible + d.inFlight + d.delayed }

// queues returns the task queue, the run queue and their DLQs.
func (s *soaker) queues(ctx context.Context) ([]soakQueue, error) {
	client, err := rawSQSClient(ctx, s.cfg.SQS.Endpoint, nil)
	if err != nil {
		return nil, err
	}
	var qs []soakQueue
	for _, u := range []string{s.cfg.SQS.QueueURL, s.cfg.SQS.RunQueueURL} {
		name := config.QueueName(u)
		qs = append(qs, soakQueue{name: name, url: u})
		dlq := app.DLQName(name)
		out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(dlq)})
		if err != nil {
			return nil, fmt.Errorf("find the dead-letter queue %s: %w", dlq, err)
		}
		qs = append(qs, soakQueue{name: dlq, url: aws.ToString(out.QueueUrl)})
	}
	return qs, nil
}

// depths reads the depth of every queue of qs.
func (s *soaker) depths(ctx context.Context, qs []soakQueue) []queueDepth {
	out := make([]queueDepth, len(qs))
	client, err := rawSQSClient(ctx, s.cfg.SQS.Endpoint, nil)
	if err != nil {
		for i := range out {
			out[i].err = err
		}
		return out
	}
	for i, q := range qs {
		res, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q.url), AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		}})
		if err != nil {
			out[i].err = err
			continue
		}
		for _, f := range []struct {
			n sqstypes.QueueAttributeName
			v *int
		}{
			{sqstypes.QueueAttributeNameApproximateNumberOfMessages, &out[i].visible},
			{sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, &out[i].inFlight},
			{sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed, &out[i].delayed},
		} {
			v, err := strconv.Atoi(res.Attributes[string(f.n)])
			if err != nil {
				out[i].err = fmt.Errorf("%s is %q, not a number", f.n, res.Attributes[string(f.n)])
			}
			*f.v = v
		}
	}
	return out
}

// waitEmpty polls the queues until every one is empty (true) or until by
// (with the workers still running: a message of a task whose result was
// stored by a killed worker comes back after its lease, and only then is
// deleted).
func (s *soaker) waitEmpty(ctx context.Context, qs []soakQueue, by time.Time) bool {
	for {
		empty := true
		for _, d := range s.depths(ctx, qs) {
			empty = empty && d.err == nil && d.total() == 0
		}
		if empty {
			return true
		}
		if time.Now().After(by) || ctx.Err() != nil {
			return false
		}
		time.Sleep(time.Second)
	}
}

// stopWorkers stops every running worker process gracefully.
func (s *soaker) stopWorkers() {
	s.mu.Lock()
	ps := slices.Clone(s.slots)
	s.mu.Unlock()
	for _, p := range ps {
		p.terminate()
	}
	for _, p := range ps {
		select {
		case <-p.exited:
			if p.err != nil {
				s.fail("worker %s exited with %v after the final SIGTERM", p.name, p.err)
			}
		case <-time.After(60 * time.Second):
			s.fail("worker %s did not exit within 60s of the final SIGTERM; killed", p.name)
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
}

// storedResults reads the stored result of every ID with the result
// backend, a few at a time.
func storedResults(ctx context.Context, rb ports.ResultBackend, ids []string) (map[string]ports.Result, map[string]error) {
	found := make(map[string]ports.Result, len(ids))
	failed := map[string]error{}
	var mu sync.Mutex
	next := make(chan string)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for id := range next {
				var r ports.Result
				var err error
				for try := range 3 {
					if r, err = rb.Get(ctx, id); err == nil || errors.Is(err, ports.ErrNotFound) {
						break
					}
					time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
				}
				mu.Lock()
				if err != nil {
					failed[id] = err
				} else {
					found[id] = r
				}
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	return found, failed
}

// countResultObjects counts the objects under the result backend's key
// space (<s3.prefix>results/).
func (s *soaker) countResultObjects(ctx context.Context) (int, error) {
	a, cleanup, err := app.ProvideAWSConfig(s.cfg)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	client := app.ProvideS3Client(a, s.cfg)
	n := 0
	p := awss3.NewListObjectsV2Paginator(client, &awss3.ListObjectsV2Input{
		Bucket: aws.String(s.cfg.S3.Bucket), Prefix: aws.String(s.cfg.S3.Prefix + "results/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, err
		}
		n += len(page.Contents)
	}
	return n, nil
}

// report runs the final checks and prints the table.
func (s *soaker) report(ctx context.Context, drainAt time.Time, qs []soakQueue, depths []queueDepth) error {
	o := s.o
	s.mu.Lock()
	order := slices.Clone(s.order)
	tasks := s.tasks
	runs := slices.Clone(s.runs)
	procs := slices.Clone(s.procs)
	fates := s.fates
	chaos := slices.Clone(s.chaos)
	s.mu.Unlock()

	// Tasks: every one has a stored result, and it succeeded.
	s.logf("reading the stored results of %d tasks", len(order))
	found, failed := storedResults(ctx, s.rt.Ports.Results, order)
	var succeeded, missing, notOK, unseen int
	var examples []string
	example := func(format string, args ...any) {
		if len(examples) < 5 {
			examples = append(examples, fmt.Sprintf(format, args...))
		}
	}
	var lat []time.Duration
	var subTimes, doneTimes []time.Time
	for _, id := range order {
		t := tasks[id]
		subTimes = append(subTimes, t.submitted)
		if !t.done.IsZero() {
			lat = append(lat, t.done.Sub(t.submitted))
			doneTimes = append(doneTimes, t.done)
		} else {
			unseen++
			example("task %s: no result seen by the client", id)
		}
		r, ok := found[id]
		switch {
		case failed[id] != nil:
			missing++
			example("task %s: reading its result: %v", id, failed[id])
		case !ok:
			missing++
			example("task %s: no stored result", id)
		case r.State != ports.StateSucceeded:
			notOK++
			example("task %s: %s: %s", id, r.State, r.Error)
		default:
			succeeded++
		}
	}
	if len(order) != o.Tasks {
		s.fail("%d of %d tasks submitted", len(order), o.Tasks)
	}
	if missing > 0 || notOK > 0 || unseen > 0 {
		s.fail("tasks: %d without a stored result, %d not succeeded, %d never seen by the client; e.g. %s",
			missing, notOK, unseen, strings.Join(examples, "; "))
	}

	// Runs: every one finished succeeded, with a stored result for its run
	// task and every step.
	var runOK, takenOver int
	var runDur []time.Duration
	var runIDs []string
	examples = nil
	for _, r := range runs {
		rec := r.rec
		if r.err != nil || !rec.State.Final() {
			st, err := s.rt.Launcher.Status(ctx, r.id)
			if err != nil {
				example("run %s: %v", r.id, errors.Join(r.err, err))
				continue
			}
			rec = st
		}
		if rec.Attempt > 1 {
			takenOver++
		}
		if rec.State != dag.RunSucceeded {
			example("run %s: %s %s", r.id, rec.State, rec.Error)
			continue
		}
		runOK++
		runDur = append(runDur, r.finished.Sub(r.launched))
		runIDs = append(runIDs, rec.TaskID)
		for _, st := range rec.Steps {
			runIDs = append(runIDs, st.TaskID)
		}
	}
	if len(runs) != o.Runs || runOK != len(runs) {
		s.fail("runs: %d launched of %d, %d succeeded; e.g. %s", len(runs), o.Runs, runOK, strings.Join(examples, "; "))
	}
	rfound, rfailed := storedResults(ctx, s.rt.Ports.Results, runIDs)
	examples = nil
	for _, id := range runIDs {
		r, ok := rfound[id]
		switch {
		case rfailed[id] != nil:
			example("%s: reading its result: %v", id, rfailed[id])
		case !ok:
			example("%s: no stored result", id)
		case r.State != ports.StateSucceeded:
			example("%s: %s: %s", id, r.State, r.Error)
		}
	}
	if len(examples) > 0 {
		s.fail("runs: run tasks or steps without a succeeded stored result: %s", strings.Join(examples, "; "))
	}
	// Exactly one stored result per task: the result keys are the task IDs
	// (write-once), so the count of objects says there is none besides.
	objects, lerr := s.countResultObjects(ctx)
	wantObjects := len(order) + len(runs)*(1+len(s.job.Steps))
	if lerr != nil {
		s.fail("list the stored results: %v", lerr)
	} else if objects != wantObjects {
		s.fail("%d stored results, want %d (%d tasks + %d runs × (run task + %d steps))", objects, wantObjects, len(order), len(runs), len(s.job.Steps))
	}

	// Queues: empty.
	var qnotes []string
	for i, q := range qs {
		d := depths[i]
		switch {
		case d.err != nil:
			s.fail("queue %s: %v", q.name, d.err)
		case d.total() > 0:
			s.fail("queue %s holds messages: %d visible, %d in flight, %d delayed", q.name, d.visible, d.inFlight, d.delayed)
			qnotes = append(qnotes, fmt.Sprintf("%s %d/%d/%d", q.name, d.visible, d.inFlight, d.delayed))
		}
	}

	// Executions.
	var execs []execLine
	for _, p := range procs {
		execs = append(execs, p.execLines()...)
	}
	var taskExecs, stepExecs []execLine
	for _, e := range execs {
		if _, ok := tasks[e.taskID]; ok {
			taskExecs = append(taskExecs, e)
		} else {
			stepExecs = append(stepExecs, e)
		}
	}
	td, sd := countDuplicates(taskExecs, fates), countDuplicates(stepExecs, fates)
	stall, stallAt := longestStall(subTimes, doneTimes, drainAt)

	// The table.
	var sigterms, kills int
	var stops []time.Duration
	for _, c := range chaos {
		if c.kill {
			kills++
		} else {
			sigterms++
			stops = append(stops, c.stopped)
		}
	}
	w := o.Stdout
	fmt.Fprintf(w, "dagq-bench soak: %s of load, %d worker processes (worker.concurrency %d, worker.lease %s, worker.shutdown_timeout %s, launcher.stale_after %s, sqs.wait_time %s)\n"+
		"%s %s/%s, %d CPUs, load average %s at the end; SQS %s (fauxqs), S3 %s (versitygw)\n\n",
		o.Duration, o.Workers, o.Concurrency, soakLease, soakShutdownTimeout, soakStaleAfter, soakWaitTime,
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), loadAvg(), o.SQSEndpoint, o.S3Endpoint)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	row("METRIC", "VALUE")
	row("tasks", "%d submitted, %d succeeded with one stored result (%d results seen by the client)", len(order), succeeded, len(lat))
	row("runs", "%d launched, %d finished succeeded (job %s, %d %s steps); %d taken over after their worker stopped or died; launch → finished p50 %s, max %s",
		len(runs), runOK, s.job.Name, len(s.job.Steps), TaskSoak, takenOver, fmtDur(percentile(runDur, 0.5)), fmtDur(percentile(runDur, 1)))
	row("faults", "%d SIGTERM restarts (every %s; stop took p50 %s, max %s), %d kill -9 (every %s)",
		sigterms, everyString(o.SigtermEvery), fmtDur(percentile(stops, 0.5)), fmtDur(percentile(stops, 1)), kills, everyString(o.KillEvery))
	row("duplicates executed", "%d of %d task executions (after kill -9 %d, after SIGTERM %d, other %d; most runs of one task %d); steps %d of %d (after kill -9 %d, after SIGTERM %d, other %d)",
		td.duplicates, td.executions, td.afterKill, td.afterStop, td.other, td.maxPerTask, sd.duplicates, sd.executions, sd.afterKill, sd.afterStop, sd.other)
	row("latency", "p50 %s, p99 %s, max %s (submit → result seen by the client)",
		fmtDur(percentile(lat, 0.5)), fmtDur(percentile(lat, 0.99)), fmtDur(percentile(lat, 1)))
	row("longest stall", "%s from %s%s (work outstanding, no task completed)", fmtDur(stall), fmtOffset(stallAt.Sub(s.start)), nearestFault(chaos, stallAt.Sub(s.start)))
	qstate := fmt.Sprintf("empty: %d queues (tasks, runs and their DLQs; visible, in flight and delayed all 0)", len(qs))
	if len(qnotes) > 0 {
		qstate = "NOT empty (visible/in flight/delayed): " + strings.Join(qnotes, ", ")
	}
	row("queues", "%s", qstate)
	row("stored results", "%d objects under %sresults/ (want %d)", objects, s.cfg.S3.Prefix, wantObjects)
	row("duration", "%s (load %s, drain %s, checks %s)", time.Since(s.start).Round(time.Second), o.Duration,
		drainAt.Sub(s.start.Add(o.Duration)).Round(time.Second), time.Since(drainAt).Round(time.Second))
	_ = tw.Flush()

	s.mu.Lock()
	failures := slices.Clone(s.failures)
	s.mu.Unlock()
	if len(failures) > 0 {
		fmt.Fprintf(w, "\nsoak FAILED (%d):\n", len(failures))
		for _, f := range failures {
			fmt.Fprintf(w, "  - %s\n", f)
		}
		return fmt.Errorf("soak failed: %s", strings.Join(failures, "; "))
	}
	fmt.Fprintln(w, "\nsoak PASSED")
	return nil
}

// nearestFault names the last fault at or before at (an offset), if any.
func nearestFault(chaos []chaosEvent, at time.Duration) string {
	var last *chaosEvent
	for i := range chaos {
		if chaos[i].at <= at {
			last = &chaos[i]
		}
	}
	if last == nil {
		return ""
	}
	what := "SIGTERM"
	if last.kill {
		what = "kill -9"
	}
	return fmt.Sprintf(", %s after the %s of %s at %s", fmtDur(at-last.at), what, last.victim, fmtOffset(last.at))
}

// fmtDur formats a duration at a precision fit for the table.
func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(100 * time.Microsecond).String()
	}
}
