package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
)

// Task names of the benchmark tasks (registered next to the built-ins).
const (
	// TaskNoop returns null at once.
	TaskNoop = "bench.noop"
	// TaskCancelProbe prints "bench-started <taskID> <unixnano>" on the
	// worker's stdout, blocks until its context is done, then prints
	// "bench-cancel <taskID> <unixnano> <cause>" with the time it saw the
	// context done, and fails with the context's cause.
	TaskCancelProbe = "bench.cancel-probe"
	// TaskSoak, the task of the soak (Soak), prints "bench-exec <taskID>
	// <unixnano>" on the worker's stdout when an execution starts, sleeps
	// the milliseconds of its argument {"ms": N} (returning early with the
	// context's cause when its context is done) and returns
	// {"slept_ms": N, "attempt": A}.
	TaskSoak = "bench.soak"
)

// Environment of a worker process (set by the bench on the processes it
// starts).
const (
	// RoleEnv=worker makes Main (and the test binary's TestMain) run a worker
	// process instead of the benchmark.
	RoleEnv = "BENCH_ROLE"
	// ConfigEnv holds the worker's config.Config as JSON.
	ConfigEnv = "BENCH_WORKER_CONFIG"
	// ReportEnv, a duration, makes the worker print its request counts
	// periodically (besides once at exit).
	ReportEnv = "BENCH_WORKER_REPORT"
	// RunsEnv=false makes the worker serve the task queue only (default: the
	// run queue too, like dagq worker).
	RunsEnv = "BENCH_WORKER_RUNS"
	// CPUProfileEnv, a directory, makes every worker process write a CPU
	// profile of its whole life there (worker-<pid>.prof), for go tool
	// pprof. Workers inherit the bench's environment: set it when running
	// the bench.
	CPUProfileEnv = "BENCH_WORKER_CPUPROFILE"
)

// Lines a worker process prints on stdout.
const (
	lineReady   = "bench-ready"   // bench-ready <worker IDs, comma-separated>
	lineStarted = "bench-started" // bench-started <taskID> <unixnano>
	lineCancel  = "bench-cancel"  // bench-cancel <taskID> <unixnano> <cause>
	lineCounts  = "bench-counts"  // bench-counts <countsReport JSON>
	lineExec    = "bench-exec"    // bench-exec <taskID> <unixnano>
)

// countsReport is the payload of a bench-counts line.
type countsReport struct {
	At     int64         `json:"at_unix_nano"`
	Final  bool          `json:"final"`
	Counts cli.AWSCounts `json:"counts"`
}

// lineWriter writes whole lines to w, one at a time.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (l *lineWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
}

// Registry returns the built-in tasks plus the benchmark tasks; the
// cancel probe prints its lines to out.
func Registry(out io.Writer) (*core.Registry, error) {
	lw, ok := out.(*lineWriter)
	if !ok {
		lw = &lineWriter{w: out}
	}
	reg := core.NewRegistry()
	if err := builtin.Register(reg); err != nil {
		return nil, err
	}
	noop := func(context.Context, *core.Task) (json.RawMessage, error) { return json.RawMessage("null"), nil }
	probe := func(ctx context.Context, t *core.Task) (json.RawMessage, error) {
		lw.printf("%s %s %d", lineStarted, t.ID, time.Now().UnixNano())
		<-ctx.Done()
		at := time.Now()
		cause := strings.ReplaceAll(fmt.Sprint(context.Cause(ctx)), " ", "_")
		lw.printf("%s %s %d %s", lineCancel, t.ID, at.UnixNano(), cause)
		return nil, context.Cause(ctx)
	}
	soak := func(ctx context.Context, t *core.Task) (json.RawMessage, error) {
		lw.printf("%s %s %d", lineExec, t.ID, time.Now().UnixNano())
		var args soakArgs
		if len(t.Args) > 0 {
			if err := json.Unmarshal(t.Args, &args); err != nil {
				return nil, fmt.Errorf("%w: %s: args %s: %v", core.ErrSkipRetry, TaskSoak, t.Args, err)
			}
		}
		timer := time.NewTimer(time.Duration(args.MS) * time.Millisecond)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		return json.Marshal(soakOutput{SleptMS: args.MS, Attempt: t.Attempt})
	}
	if err := reg.HandleFunc(TaskSoak, soak); err != nil {
		return nil, err
	}
	if err := reg.HandleFunc(TaskNoop, noop); err != nil {
		return nil, err
	}
	if err := reg.HandleFunc(TaskCancelProbe, probe); err != nil {
		return nil, err
	}
	return reg, nil
}

// WorkerMain runs a worker process: the configuration of ConfigEnv, a step
// worker on the task queue (and a run worker on the run queue unless
// RunsEnv=false) with the built-in and benchmark tasks, and an AWSCounter
// on its SQS and S3 clients. It prints "bench-ready" once its workers run,
// stops gracefully on SIGTERM or SIGINT, and prints its request counts
// (a final bench-counts line) before it exits. It returns the exit code.
func WorkerMain(ctx context.Context, stdout, stderr io.Writer) int {
	if err := runWorker(ctx, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "dagq-bench worker: %v\n", err)
		return 1
	}
	return 0
}

func runWorker(ctx context.Context, stdout, stderr io.Writer) error {
	out := &lineWriter{w: stdout}
	var cfg config.Config
	raw := os.Getenv(ConfigEnv)
	if raw == "" {
		return fmt.Errorf("%s is not set (the bench sets it on the worker processes it starts)", ConfigEnv)
	}
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return fmt.Errorf("%s: %w", ConfigEnv, err)
	}
	var every time.Duration
	if s := os.Getenv(ReportEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%s: %w", ReportEnv, err)
		}
		every = d
	}
	log, err := app.NewLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	if dir := os.Getenv(CPUProfileEnv); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("worker-%d.prof", os.Getpid())))
		if err != nil {
			return fmt.Errorf("%s: %w", CPUProfileEnv, err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("%s: %w", CPUProfileEnv, err)
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	reg, err := Registry(out)
	if err != nil {
		return err
	}
	counter := cli.NewAWSCounter()
	rt, err := app.New(cfg, reg, app.WithLogger(log), cli.WithAWSCounter(counter), app.WithAWSAPIOptions(rttAPIOption))
	if err != nil {
		return err
	}
	ctx, stopSignals := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stopSignals()
	report := func(final bool) {
		b, _ := json.Marshal(countsReport{At: time.Now().UnixNano(), Final: final, Counts: counter.Snapshot()})
		out.printf("%s %s", lineCounts, b)
	}

	var pools []*app.Pool
	stop := func() error {
		var errs []error
		for _, p := range pools {
			errs = append(errs, p.Stop())
		}
		rt.Close()
		report(true)
		return errors.Join(errs...)
	}
	bg := context.WithoutCancel(ctx)
	pool, err := rt.StartWorkers(bg, 1)
	if err != nil {
		rt.Close()
		return err
	}
	pools = append(pools, pool)
	ids := pool.IDs()
	if os.Getenv(RunsEnv) != "false" {
		runs, err := rt.StartRunWorkers(bg, 1)
		if err != nil {
			return errors.Join(err, stop())
		}
		pools = append(pools, runs)
		ids = append(ids, runs.IDs()...)
	}
	out.printf("%s %s", lineReady, strings.Join(ids, ","))
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case <-t.C:
				report(false)
			}
		}
	}
	<-ctx.Done()
	return stop()
}
