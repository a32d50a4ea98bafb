// Package bench is the dagq benchmark harness behind "make bench"
// (command dagq-bench): throughput and DAG overhead on the memory
// transport, and throughput (at worker concurrency 1, 10 and 32, each next
// to a raw aws-sdk-go-v2 baseline), requests and CPU per task, latency,
// cancellation latency, idle cost and AWS request cost on the sqs transport
// against the local emulators (fauxqs and versitygw; scripts/emulators.sh).
//
// Run prints a human table, then one JSON object (Results) on the last line
// of its output. The SQS scenarios run their workers in separate OS
// processes: the bench re-executes its own program (Options.Executable)
// with RoleEnv=worker, and such a process runs WorkerMain instead; the raw
// baseline's consumer likewise with RoleEnv=raw (RawMain). These processes
// talk to the bench in lines on their stdout: bench-ready, bench-started /
// bench-cancel (from the cancel probe task), bench-exec (from the soak
// task), bench-raw-done (the raw consumer's last delete) and bench-counts
// (their AWS request counts, periodically and at exit).
//
// Soak (dagq-bench -soak, make soak) is the soak test on the same
// machinery: worker processes under faults, then end-to-end checks.
//
// Requests are counted by cli.AWSCounter (each HTTP attempt) in the bench
// process (client) and in every worker process, so per-task numbers include
// both sides, idle long polls and the queues each process creates and
// deletes.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// Results are the benchmark's numbers, printed as the last line of its
// output (JSON, these keys exactly). -1 means not measured (a skipped
// scenario, or a variant dagq does not have yet).
//
// The sqs_* keys without a _c suffix are of the default SQS scenario:
// 2,000 tasks at worker concurrency 32 (sqs_tasks_per_sec is the same
// measurement as the c=32 round of the ratios). The _c<N> keys are of the
// SQS throughput rounds at worker concurrency N and of the raw
// aws-sdk-go-v2 baseline at the same concurrency, run next to each other
// in the same process (the ratios are dagq ÷ raw). e2e_p50_ms and
// e2e_p99_ms are measured at worker concurrency 10, e2e_p50_ms_c1 at 1.
type Results struct {
	MemTasksPerSec           float64 `json:"mem_tasks_per_sec"`
	MemDAGUsPerStepWide      float64 `json:"mem_dag_us_per_step_wide"`
	MemDAGUsPerStepChain     float64 `json:"mem_dag_us_per_step_chain"`
	SQSTasksPerSec           float64 `json:"sqs_tasks_per_sec"`
	SQSRequestsPerTask       float64 `json:"sqs_requests_per_task"`
	S3RequestsPerTask        float64 `json:"s3_requests_per_task"`
	E2EP50Ms                 float64 `json:"e2e_p50_ms"`
	E2EP99Ms                 float64 `json:"e2e_p99_ms"`
	CancelP50Ms              float64 `json:"cancel_p50_ms"`
	CancelP99Ms              float64 `json:"cancel_p99_ms"`
	IdleRequestsPerWorkerMin float64 `json:"idle_requests_per_worker_min"`
	USDPerMillionTasks       float64 `json:"usd_per_million_tasks"`

	// dagq (policy reply) ÷ raw, side by side.
	SQSVsRawC1  float64 `json:"sqs_vs_raw_c1"`
	SQSVsRawC10 float64 `json:"sqs_vs_raw_c10"`
	SQSVsRawC32 float64 `json:"sqs_vs_raw_c32"`
	// Policy none, concurrency 10.
	SQSNoneVsRawC10 float64 `json:"sqs_none_vs_raw_c10"`
	// Policy durable (S3 result + pushed completion), concurrency 32.
	SQSDurableVsRawC32   float64 `json:"sqs_durable_vs_raw_c32"`
	SQSRequestsPerTaskC1 float64 `json:"sqs_requests_per_task_c1"`
	// The dagq worker and client processes' user+system CPU per task.
	CPUMsPerTaskC32 float64 `json:"cpu_ms_per_task_c32"`
	E2EP50MsC1      float64 `json:"e2e_p50_ms_c1"`
	// The rounds behind the ratios.
	SQSTasksPerSecC1  float64 `json:"sqs_tasks_per_sec_c1"`
	SQSTasksPerSecC10 float64 `json:"sqs_tasks_per_sec_c10"`
	RawTasksPerSecC1  float64 `json:"raw_tasks_per_sec_c1"`
	RawTasksPerSecC10 float64 `json:"raw_tasks_per_sec_c10"`
	RawTasksPerSecC32 float64 `json:"raw_tasks_per_sec_c32"`
	// The raw producer's and consumer process's CPU per task.
	RawCPUMsPerTaskC32 float64 `json:"raw_cpu_ms_per_task_c32"`
	// Concurrency pools (scenario pool): the S3 requests a task in a pool
	// with room adds, and the end-to-end p50 with and without a pool.
	PoolS3RequestsAddedPerTask float64 `json:"pool_s3_requests_added_per_task"`
	PoolE2EP50Ms               float64 `json:"pool_e2e_p50_ms"`
	PoolE2EP50MsWithout        float64 `json:"pool_e2e_p50_ms_without"`
}

// Keys are the JSON keys of Results, in order.
var Keys = []string{
	"mem_tasks_per_sec", "mem_dag_us_per_step_wide", "mem_dag_us_per_step_chain",
	"sqs_tasks_per_sec", "sqs_requests_per_task", "s3_requests_per_task",
	"e2e_p50_ms", "e2e_p99_ms", "cancel_p50_ms", "cancel_p99_ms",
	"idle_requests_per_worker_min", "usd_per_million_tasks",
	"sqs_vs_raw_c1", "sqs_vs_raw_c10", "sqs_vs_raw_c32", "sqs_none_vs_raw_c10", "sqs_durable_vs_raw_c32",
	"sqs_requests_per_task_c1", "cpu_ms_per_task_c32", "e2e_p50_ms_c1",
	"sqs_tasks_per_sec_c1", "sqs_tasks_per_sec_c10",
	"raw_tasks_per_sec_c1", "raw_tasks_per_sec_c10", "raw_tasks_per_sec_c32", "raw_cpu_ms_per_task_c32",
	"pool_s3_requests_added_per_task", "pool_e2e_p50_ms", "pool_e2e_p50_ms_without",
}

// fields returns pointers to every field of r, in the order of Keys.
func (r *Results) fields() []*float64 {
	return []*float64{&r.MemTasksPerSec, &r.MemDAGUsPerStepWide, &r.MemDAGUsPerStepChain,
		&r.SQSTasksPerSec, &r.SQSRequestsPerTask, &r.S3RequestsPerTask,
		&r.E2EP50Ms, &r.E2EP99Ms, &r.CancelP50Ms, &r.CancelP99Ms,
		&r.IdleRequestsPerWorkerMin, &r.USDPerMillionTasks,
		&r.SQSVsRawC1, &r.SQSVsRawC10, &r.SQSVsRawC32, &r.SQSNoneVsRawC10, &r.SQSDurableVsRawC32,
		&r.SQSRequestsPerTaskC1, &r.CPUMsPerTaskC32, &r.E2EP50MsC1,
		&r.SQSTasksPerSecC1, &r.SQSTasksPerSecC10,
		&r.RawTasksPerSecC1, &r.RawTasksPerSecC10, &r.RawTasksPerSecC32, &r.RawCPUMsPerTaskC32,
		&r.PoolS3RequestsAddedPerTask, &r.PoolE2EP50Ms, &r.PoolE2EP50MsWithout}
}

// AWS request prices in USD per million requests (us-east-1): SQS
// (standard queues, per 64 KiB chunk, first million free ignored); S3
// PUT, COPY, POST and LIST; S3 GET, HEAD and everything else.
const (
	PriceSQS     = 0.40
	PriceS3Write = 5.00
	PriceS3Other = 0.40
)

// Options configures Run.
type Options struct {
	// Quick runs every scenario with tiny sizes and a short idle window
	// (seconds in all; for tests). Its numbers mean nothing.
	Quick bool
	// Executable is the program started for worker processes, with
	// RoleEnv=worker in its environment (default os.Executable()).
	Executable string
	// SQSEndpoint and S3Endpoint are the emulators' (default
	// $DAGQ_TEST_SQS_ENDPOINT and $DAGQ_TEST_S3_ENDPOINT).
	SQSEndpoint, S3Endpoint string
	// IdleWindow overrides the idle measurement window (default 40s, a
	// multiple of the 20s long-poll wait, so the count is not quantised;
	// quick: 1s).
	IdleWindow time.Duration
	// SQSTasks overrides the number of no-op tasks of the SQS throughput
	// and requests-per-task scenario and of the raw baseline, at every
	// concurrency (default 2,000; quick: 20).
	SQSTasks int
	// SQSConcurrencies overrides the worker concurrencies of the SQS
	// throughput rounds and the raw baseline (default 1, 10, 32). The
	// _c1, _c10 and _c32 keys come from the rounds of that concurrency,
	// and the keys without a suffix (sqs_tasks_per_sec, requests per task,
	// cost) from the c=32 one; those not run report -1.
	SQSConcurrencies []int
	// Scenarios, when not empty, runs only these (see ScenarioNames); the
	// others report -1.
	Scenarios []string
	// Stdout receives the table and the JSON line; Stderr the progress and
	// the worker processes' logs. Defaults os.Stdout, os.Stderr.
	Stdout, Stderr io.Writer
}

// sizes of one mode.
type sizes struct {
	memTasks, memConcurrency int
	memRounds                int // memory throughput rounds; the median is reported
	dagSteps                 int
	sqsTasks                 int
	sqsConcurrencies         []int // rounds of the SQS throughput and raw scenarios
	rawRounds                int   // raw rounds per concurrency; the median is reported
	e2eTasks, e2eWarmup      int
	cancels, cancelConc      int // cancelConc per worker process; rounds of 3×cancelConc probes
	idleWarmup, idleWindow   time.Duration
	idleReport               time.Duration
}

var (
	fullSizes = sizes{
		memTasks: 100_000, memConcurrency: 64, memRounds: 3, dagSteps: 1000,
		sqsTasks: 2000, sqsConcurrencies: []int{1, 10, 32}, rawRounds: 3,
		e2eTasks: 200, e2eWarmup: 5,
		cancels: 50, cancelConc: 4,
		idleWarmup: 5 * time.Second, idleWindow: 40 * time.Second, idleReport: 5 * time.Second,
	}
	quickSizes = sizes{
		memTasks: 500, memConcurrency: 64, memRounds: 1, dagSteps: 50,
		sqsTasks: 20, sqsConcurrencies: []int{1, 10, 32}, rawRounds: 1,
		e2eTasks: 5, e2eWarmup: 1,
		cancels: 3, cancelConc: 4,
		idleWarmup: 300 * time.Millisecond, idleWindow: time.Second, idleReport: 100 * time.Millisecond,
	}
)

// row is one line of the table.
type row struct{ scenario, metric, value, target, notes string }

type bencher struct {
	opts   Options
	sz     sizes
	log    *slog.Logger
	reg    *core.Registry
	rows   []row
	extra  []string                  // sections printed after the table
	prefix string                    // of queue and bucket names
	runs   func(keys ...string) bool // whether any of these scenarios runs
	load0  string                    // the load average at the start
}

// loadAvg returns the 1-minute load average ("?" where /proc/loadavg is
// not there): how busy the machine was, for the header.
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(raw)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// Main is the dagq-bench command: "dagq-bench [-quick] [-idle-window D]
// [-out FILE] [-only mem,dag,…] [-sqs-tasks N] [-sqs-concurrency 1,10,32]
// [-cpuprofile F] [-memprofile F]" runs the benchmark (BENCH_QUICK=1 is
// -quick, BENCH_OUT is -out); "dagq-bench -soak 30m [-soak-…]" runs the
// soak instead (Soak; make soak); "dagq-bench worker" (or RoleEnv=worker)
// runs a worker process, RoleEnv=raw a raw baseline consumer. It returns
// the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if os.Getenv(RoleEnv) == "worker" || (len(args) > 0 && args[0] == "worker") {
		return WorkerMain(ctx, stdout, stderr)
	}
	if os.Getenv(RoleEnv) == "raw" {
		return RawMain(ctx, stdout, stderr)
	}
	fs := flag.NewFlagSet("dagq-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "tiny sizes and a short idle window (env BENCH_QUICK=1)")
	idle := fs.Duration("idle-window", 0, "idle measurement window (default 40s; quick 1s)")
	out := fs.String("out", os.Getenv("BENCH_OUT"), "also write the JSON line to this file (env BENCH_OUT)")
	sqsTasks := fs.Int("sqs-tasks", 0, "no-op tasks of the SQS throughput and requests-per-task scenario and of the raw baseline, per concurrency (default 2000; quick 20)")
	sqsConc := fs.String("sqs-concurrency", "", "worker concurrencies of the SQS throughput and raw scenarios, comma-separated (default 1,10,32)")
	only := fs.String("only", "", "run only these scenarios, comma-separated: "+strings.Join(ScenarioNames, ",")+
		" (skipped ones report -1; mem and dag need no emulators)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	memProfile := fs.String("memprofile", "", "write an allocation profile at the end of the run to this file")
	soak := fs.Duration("soak", 0, "run the soak instead of the benchmark, for this long (make soak: 30m); see the -soak-* flags")
	var so SoakOptions
	fs.IntVar(&so.Tasks, "soak-tasks", 0, "tasks the soak submits (default 50000 for 30m, proportionally fewer for a shorter -soak)")
	fs.IntVar(&so.Runs, "soak-runs", 0, "runs the soak launches (default 200 for 30m, proportionally fewer for a shorter -soak)")
	fs.IntVar(&so.Workers, "soak-workers", 0, "worker processes of the soak (default 3)")
	fs.IntVar(&so.Concurrency, "soak-concurrency", 0, "worker.concurrency of the soak's worker processes (default 10)")
	fs.DurationVar(&so.SigtermEvery, "soak-sigterm-every", 0, "interval of the soak's rolling SIGTERM restarts (env SOAK_SIGTERM_EVERY; default 2m; -1s: none)")
	fs.DurationVar(&so.KillEvery, "soak-kill-every", 0, "interval of the soak's kill -9s (env SOAK_KILL_EVERY; default 5m; -1s: none)")
	fs.DurationVar(&so.Drain, "soak-drain", 0, "after -soak, the longest wait for the tasks and runs to finish and the queues to empty (default 5m)")
	for _, e := range []struct {
		name string
		d    *time.Duration
	}{{"SOAK_SIGTERM_EVERY", &so.SigtermEvery}, {"SOAK_KILL_EVERY", &so.KillEvery}} {
		if v := os.Getenv(e.name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				fmt.Fprintf(stderr, "dagq-bench: %s=%q: not a duration; write a number with a unit, e.g. 1m\n", e.name, v)
				return 2
			}
			*e.d = d
		}
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *soak != 0 {
		if *soak < 0 {
			fmt.Fprintf(stderr, "dagq-bench: -soak %s: valid: a positive duration, e.g. 30m\n", *soak)
			return 2
		}
		so.Duration = *soak
		if err := Soak(ctx, so); err != nil {
			fmt.Fprintf(stderr, "dagq-bench: %v\n", err)
			return 1
		}
		return 0
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(stderr, "dagq-bench: -cpuprofile: %v\n", err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	if *memProfile != "" {
		defer func() {
			f, err := os.Create(*memProfile)
			if err == nil {
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				_ = f.Close()
			}
			if err != nil {
				fmt.Fprintf(stderr, "dagq-bench: -memprofile: %v\n", err)
			}
		}()
	}
	if *sqsTasks < 0 {
		fmt.Fprintf(stderr, "dagq-bench: -sqs-tasks %d: valid: 1 or more (0: the default)\n", *sqsTasks)
		return 2
	}
	var concs []int
	if *sqsConc != "" {
		for _, f := range strings.Split(*sqsConc, ",") {
			c, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || c < 1 {
				fmt.Fprintf(stderr, "dagq-bench: -sqs-concurrency %q: valid: positive integers, comma-separated (e.g. 1,10,32)\n", *sqsConc)
				return 2
			}
			concs = append(concs, c)
		}
	}
	var scenarios []string
	if *only != "" {
		scenarios = strings.Split(*only, ",")
	}
	res, err := Run(ctx, Options{Quick: *quick, IdleWindow: *idle, SQSTasks: *sqsTasks, SQSConcurrencies: concs, Scenarios: scenarios,
		Stdout: stdout, Stderr: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "dagq-bench: %v\n", err)
		return 1
	}
	if *out != "" {
		b, _ := json.Marshal(res)
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(stderr, "dagq-bench: %v\n", err)
			return 1
		}
	}
	return 0
}

// Run runs every scenario, prints the table and the JSON line to
// opts.Stdout and returns the results.
func Run(ctx context.Context, opts Options) (Results, error) {
	if _, err := rtt(); err != nil {
		return Results{}, err
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return Results{}, fmt.Errorf("find the program to run worker processes: %w", err)
		}
		opts.Executable = exe
	}
	if opts.SQSEndpoint == "" {
		opts.SQSEndpoint = os.Getenv("DAGQ_TEST_SQS_ENDPOINT")
	}
	if opts.S3Endpoint == "" {
		opts.S3Endpoint = os.Getenv("DAGQ_TEST_S3_ENDPOINT")
	}
	steps := []struct {
		name      string
		keys      []string // the step runs when any of them is selected
		emulators bool
		run       func(*bencher, context.Context, *Results) error
	}{
		{"memory throughput", []string{"mem"}, false, (*bencher).memThroughput},
		{"memory DAG", []string{"dag"}, false, (*bencher).memDAG},
		// raw and sqs alternate per concurrency, so that each ratio's two
		// numbers are measured next to each other.
		{"sqs throughput and raw baseline", []string{"raw", "sqs"}, true, (*bencher).sqsThroughput},
		{"sqs end-to-end latency", []string{"e2e"}, true, (*bencher).e2eLatency},
		{"sqs cancellation latency", []string{"cancel"}, true, (*bencher).cancelLatency},
		{"sqs idle worker", []string{"idle"}, true, (*bencher).idle},
		{"sqs concurrency pool", []string{"pool"}, true, (*bencher).poolOverhead},
	}
	selected := map[string]bool{}
	for _, name := range opts.Scenarios {
		if !slices.Contains(ScenarioNames, name) {
			return Results{}, fmt.Errorf("unknown scenario %q; valid: %s", name, strings.Join(ScenarioNames, ", "))
		}
		selected[name] = true
	}
	runs := func(keys ...string) bool {
		return len(selected) == 0 || slices.ContainsFunc(keys, func(k string) bool { return selected[k] })
	}
	needEmulators := false
	for _, s := range steps {
		needEmulators = needEmulators || (s.emulators && runs(s.keys...))
	}
	if needEmulators && (opts.SQSEndpoint == "" || opts.S3Endpoint == "") {
		return Results{}, errors.New(`the SQS scenarios need the emulators: run "make bench", or "make emulators-up" and eval "$(scripts/emulators.sh env)" (DAGQ_TEST_SQS_ENDPOINT, DAGQ_TEST_S3_ENDPOINT)`)
	}
	b := &bencher{opts: opts, sz: fullSizes, runs: runs, prefix: fmt.Sprintf("dagq-bench-%x", time.Now().UnixNano()&0xffffffffff)}
	if opts.Quick {
		b.sz = quickSizes
	}
	if opts.SQSTasks > 0 {
		b.sz.sqsTasks = opts.SQSTasks
	}
	if len(opts.SQSConcurrencies) > 0 {
		b.sz.sqsConcurrencies = opts.SQSConcurrencies
	}
	if opts.IdleWindow > 0 {
		b.sz.idleWindow = opts.IdleWindow
	}
	b.log = slog.New(slog.NewTextHandler(opts.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	reg, err := Registry(io.Discard)
	if err != nil {
		return Results{}, err
	}
	b.reg = reg

	res := skipped()
	start := time.Now()
	b.load0 = loadAvg()
	for _, s := range steps {
		if !runs(s.keys...) {
			b.add(s.name, "", "skipped", "", "not in -only")
			continue
		}
		t0 := time.Now()
		fmt.Fprintf(opts.Stderr, "dagq-bench: %s…\n", s.name)
		if err := s.run(b, ctx, &res); err != nil {
			return Results{}, fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Fprintf(opts.Stderr, "dagq-bench: %s done in %s\n", s.name, time.Since(t0).Round(time.Millisecond))
	}
	res = clean(res)
	b.print(res, time.Since(start))
	return res, nil
}

// print writes the table, the extra sections and the JSON line.
func (b *bencher) print(res Results, took time.Duration) {
	w := b.opts.Stdout
	mode := "full"
	if b.opts.Quick {
		mode = "quick (numbers mean nothing)"
	}
	fmt.Fprintf(w, "dagq benchmark, %s mode: %s %s/%s, %d CPUs; SQS %s (fauxqs), S3 %s (versitygw); %s; load average %s at the start, %s at the end\n\n",
		mode, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), b.opts.SQSEndpoint, b.opts.S3Endpoint,
		took.Round(time.Second), b.load0, loadAvg())
	if d, _ := rtt(); d > 0 {
		fmt.Fprintf(w, "%s=%s: every AWS request of the SQS rounds (raw and dagq, client and workers) waited %s before it was sent\n\n", RTTEnv, d, d)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tMETRIC\tVALUE\tTARGET\tNOTES")
	for _, r := range b.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.scenario, r.metric, r.value, r.target, r.notes)
	}
	_ = tw.Flush()
	for _, e := range b.extra {
		fmt.Fprintf(w, "\n%s", e)
	}
	js, err := json.Marshal(res)
	if err != nil { // cannot happen: clean removes NaN and Inf
		js = []byte("{}")
	}
	fmt.Fprintf(w, "\n%s\n", js)
}

// ScenarioNames are the scenarios -only (Options.Scenarios) accepts: memory
// throughput, memory DAGs, SQS throughput with requests per task and cost
// (at each concurrency), the raw aws-sdk-go-v2 baseline (at the same
// concurrencies; the dagq ÷ raw ratios need sqs and raw), end-to-end
// latency, cancellation latency, the idle worker and the overhead of a
// concurrency pool.
var ScenarioNames = []string{"mem", "dag", "sqs", "raw", "e2e", "cancel", "idle", "pool"}

// skipped returns Results with every metric at -1, what a scenario that does
// not run reports.
func skipped() Results {
	var r Results
	for _, p := range r.fields() {
		*p = -1
	}
	return r
}

// clean replaces NaN and infinities (no JSON number) by -1, and rounds to
// four significant digits after the point.
func clean(r Results) Results {
	for _, p := range r.fields() {
		switch {
		case math.IsNaN(*p) || math.IsInf(*p, 0):
			*p = -1
		default:
			*p = math.Round(*p*1e4) / 1e4
		}
	}
	return r
}

func (b *bencher) add(scenario, metric, value, target, notes string) {
	b.rows = append(b.rows, row{scenario, metric, value, target, notes})
}

// memRuntime wires a memory-transport runtime with one step worker.
func (b *bencher) memRuntime(ctx context.Context) (*app.Runtime, *app.Pool, error) {
	cfg := config.Default()
	cfg.Worker.Concurrency = b.sz.memConcurrency
	rt, err := app.New(cfg, b.reg, app.WithLogger(b.log))
	if err != nil {
		return nil, nil, err
	}
	pool, err := rt.StartWorkers(ctx, 1)
	if err != nil {
		rt.Close()
		return nil, nil, err
	}
	return rt, pool, nil
}

func noops(n int, policy core.ResultPolicy) []core.Request {
	reqs := make([]core.Request, n)
	for i := range reqs {
		reqs[i] = core.Request{Task: TaskNoop, Result: policy}
	}
	return reqs
}

// checkSucceeded fails unless every result succeeded.
func checkSucceeded(rs []ports.Result) error {
	for _, r := range rs {
		if r.State != ports.StateSucceeded {
			return fmt.Errorf("task %s: %s: %s", r.TaskID, r.State, r.Error)
		}
	}
	return nil
}

// memThroughput runs the memory throughput round memRounds times, each on a
// fresh runtime, and reports the median.
func (b *bencher) memThroughput(ctx context.Context, res *Results) error {
	n := b.sz.memTasks
	reqs := noops(n, "")
	var rates []float64
	var took []string
	for range b.sz.memRounds {
		d, err := b.memThroughputRound(ctx, reqs)
		if err != nil {
			return err
		}
		rates = append(rates, float64(n)/d.Seconds())
		took = append(took, d.Round(time.Millisecond).String())
	}
	res.MemTasksPerSec = median(rates)
	b.add("memory: throughput", "tasks/s", fmt.Sprintf("%.0f", res.MemTasksPerSec), "≥ 50000",
		fmt.Sprintf("%d no-op tasks: one SubmitBatch, one WaitAll; 1 worker, concurrency %d; median of %d rounds (%s)",
			n, b.sz.memConcurrency, len(rates), strings.Join(took, ", ")))
	return nil
}

// memThroughputRound submits reqs with one SubmitBatch, waits with one
// WaitAll on a fresh memory runtime and returns how long that took.
func (b *bencher) memThroughputRound(ctx context.Context, reqs []core.Request) (time.Duration, error) {
	rt, pool, err := b.memRuntime(ctx)
	if err != nil {
		return 0, err
	}
	defer rt.Close()
	defer func() { _ = pool.Stop() }()
	start := time.Now()
	ids, err := rt.Client.SubmitBatch(ctx, reqs...)
	if err != nil {
		return 0, err
	}
	rs, err := rt.Client.WaitAll(ctx, ids...)
	if err != nil {
		return 0, err
	}
	took := time.Since(start)
	return took, checkSucceeded(rs)
}

// median returns the median of xs (not empty); it sorts xs.
func median(xs []float64) float64 {
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

func (b *bencher) memDAG(ctx context.Context, res *Results) error {
	rt, pool, err := b.memRuntime(ctx)
	if err != nil {
		return err
	}
	defer rt.Close()
	defer func() { _ = pool.Stop() }()
	n := b.sz.dagSteps
	for _, shape := range []string{"wide", "chain"} {
		job := dag.Job{Name: "bench-" + shape, Steps: make([]dag.Step, n)}
		for i := range job.Steps {
			job.Steps[i] = dag.Step{Name: fmt.Sprintf("s%d", i), Task: TaskNoop}
			if shape == "chain" && i > 0 {
				job.Steps[i].Upstream = []string{fmt.Sprintf("s%d", i-1)}
			}
		}
		start := time.Now()
		run, err := rt.Executor.Run(ctx, job, dag.RunOptions{})
		took := time.Since(start)
		if err != nil {
			return err
		}
		if run.State != dag.RunSucceeded {
			return fmt.Errorf("%s run: %s: %v", shape, run.State, run.Err())
		}
		us := float64(took.Microseconds()) / float64(n)
		if shape == "wide" {
			res.MemDAGUsPerStepWide = us
		} else {
			res.MemDAGUsPerStepChain = us
		}
		b.add("memory: DAG "+shape, "µs/step", fmt.Sprintf("%.1f", us), "",
			fmt.Sprintf("%d no-op steps (%s) in one Executor.Run: %s; 1 worker, concurrency %d", n,
				map[string]string{"wide": "no edges", "chain": "each after the previous"}[shape], took.Round(time.Millisecond), b.sz.memConcurrency))
	}
	return nil
}

// sqsConfig returns the configuration of scenario tag on fresh queues and a
// fresh bucket, and creates them (dagq queue init).
func (b *bencher) sqsConfig(ctx context.Context, tag string, concurrency int) (config.Config, error) {
	name := b.prefix + "-" + tag
	cfg := config.Default()
	cfg.Transport = config.TransportSQS
	cfg.SQS.QueueURL = b.opts.SQSEndpoint + "/000000000000/" + name
	cfg.SQS.RunQueueURL = b.opts.SQSEndpoint + "/000000000000/" + name + "-runs"
	cfg.SQS.Region = "us-east-1"
	cfg.SQS.Endpoint = b.opts.SQSEndpoint
	cfg.S3.Bucket = name
	cfg.S3.Endpoint = b.opts.S3Endpoint
	cfg.S3.PathStyle = true
	// fauxqs lists a new queue at once: no ListQueues lag to wait out before
	// cancel checks are answered from memory (real SQS: the default 1m, so
	// a worker's first minute pays one S3 GET per task).
	cfg.SQS.CancelListLag = 0
	cfg.Worker.Concurrency = concurrency
	cfg.Worker.ShutdownTimeout = 5 * time.Second
	cfg.Log.Level = "error"
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	rt, err := app.New(cfg, b.reg, app.WithLogger(b.log))
	if err != nil {
		return cfg, err
	}
	defer rt.Close()
	var out strings.Builder
	if code := cli.Execute(ctx, b.reg, []string{"queue", "init"}, &out, &out, cli.WithRuntime(rt)); code != cli.ExitOK {
		return cfg, fmt.Errorf("queue init (exit %d): %s", code, out.String())
	}
	return cfg, nil
}

// sqsRound is one round of the SQS throughput scenario.
type sqsRound struct {
	tasks, concurrency int
	policy             core.ResultPolicy
	took               time.Duration // first submit → WaitAll returned (none: → the queue was empty)
	client, workers    cli.AWSCounts
	clientCPU          time.Duration // this process's user+system CPU, first submit → client closed
	workerCPU          time.Duration // the worker process's, first submit → its exit
	workerFromStart    bool          // workerCPU is its whole lifetime (no /proc)
	emulators          emulatorCPUs  // the emulators' CPU, first submit → the worker's exit
}

func (r sqsRound) tasksPerSec() float64 { return float64(r.tasks) / r.took.Seconds() }

func (r sqsRound) cpuMsPerTask() float64 { return ms(r.clientCPU+r.workerCPU) / float64(r.tasks) }

func (r sqsRound) total() cli.AWSCounts { return r.client.Plus(r.workers) }

func (r sqsRound) sqsRequestsPerTask() float64 {
	return float64(r.total().Service("SQS")) / float64(r.tasks)
}

// policyNotes says how a round of each result policy ends.
var policyNotes = map[core.ResultPolicy]string{
	core.ResultDurable: "policy durable: each result written to S3, its completion pushed to the client",
	core.ResultReply:   "policy reply: each completion pushed to the client with its result inline, nothing written to S3",
	core.ResultNone:    "policy none: nothing recorded; the round ends when the queue reports no message visible or in flight (polled every 2 ms, those requests not counted)",
}

// sqsRound submits n no-op tasks of result policy policy with one
// SubmitBatch to a fresh worker process of concurrency c on fresh queues,
// and waits for them: with one WaitAll (pushed completions), or for
// policy none until the queue is empty.
func (b *bencher) sqsRound(ctx context.Context, c, n int, policy core.ResultPolicy) (sqsRound, error) {
	r := sqsRound{tasks: n, concurrency: c, policy: policy}
	tag := fmt.Sprintf("tput-%s-c%d", policy, c)
	cfg, err := b.sqsConfig(ctx, tag, c)
	if err != nil {
		return r, err
	}
	var drained func(context.Context) error
	if policy == core.ResultNone {
		if drained, err = b.queueDrained(ctx, cfg.SQS.QueueURL); err != nil {
			return r, err
		}
	}
	w, err := b.startWorker(tag, cfg, procOptions{runs: true}, nil)
	if err != nil {
		return r, err
	}
	counter := cli.NewAWSCounter()
	rt, err := app.New(cfg, b.reg, app.WithLogger(b.log), cli.WithAWSCounter(counter), app.WithAWSAPIOptions(rttAPIOption))
	if err != nil {
		_, _ = stopAll(w)
		return r, err
	}
	worker0, workerErr := procCPU(w.cmd.Process.Pid)
	self0 := selfCPU()
	emu0 := emulatorsCPU()
	start := time.Now()
	ids, err := rt.Client.SubmitBatch(ctx, noops(n, policy)...)
	var rs []ports.Result
	if err == nil {
		if drained != nil {
			err = drained(ctx)
		} else {
			rs, err = rt.Client.WaitAll(ctx, ids...)
		}
	}
	r.took = time.Since(start)
	rt.Close()
	r.clientCPU = selfCPU() - self0
	workerCounts, werr := stopAll(w)
	if err = errors.Join(err, werr); err != nil {
		return r, err
	}
	if err := checkSucceeded(rs); err != nil {
		return r, err
	}
	r.client, r.workers = counter.Snapshot(), workerCounts
	r.workerCPU, r.workerFromStart = w.cpu-worker0, workerErr != nil
	r.emulators = emulatorsCPU().since(emu0)
	return r, nil
}

// queueDrained returns a function that waits until the queue of url has
// no message visible, delayed or in flight, polling every 2 ms with a
// client of its own (its requests are not counted).
func (b *bencher) queueDrained(ctx context.Context, url string) (func(context.Context) error, error) {
	client, err := rawSQSClient(ctx, b.opts.SQSEndpoint, nil)
	if err != nil {
		return nil, err
	}
	names := []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
	}
	return func(ctx context.Context) error {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: names})
			if err != nil {
				return fmt.Errorf("read the depth of %s: %w", url, err)
			}
			left := 0
			for _, n := range names {
				v, err := strconv.Atoi(out.Attributes[string(n)])
				if err != nil {
					return fmt.Errorf("queue %s reports %s %q, not a number", url, n, out.Attributes[string(n)])
				}
				left += v
			}
			if left == 0 {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
		}
	}, nil
}

// sqsThroughput runs, per concurrency of sqsConcurrencies, the raw
// baseline and then dagq's SQS throughput round with policy reply
// (whichever of raw and sqs runs), and reports both and their ratio; at
// c=10 a round with policy none, at c=32 one with policy durable, which
// also gives the keys of the default SQS scenario (throughput, requests
// per task, cost).
func (b *bencher) sqsThroughput(ctx context.Context, res *Results) error {
	n := b.sz.sqsTasks
	for _, c := range b.sz.sqsConcurrencies {
		var raw *rawResult
		if b.runs("raw") {
			fmt.Fprintf(b.opts.Stderr, "dagq-bench: raw baseline, concurrency %d…\n", c)
			r, all, err := b.rawMedian(ctx, c, n)
			if err != nil {
				return fmt.Errorf("raw baseline, concurrency %d: %w", c, err)
			}
			raw = &r
			b.addRaw(r, all)
			switch c {
			case 1:
				res.RawTasksPerSecC1 = raw.tasksPerSec()
			case 10:
				res.RawTasksPerSecC10 = raw.tasksPerSec()
			case 32:
				res.RawTasksPerSecC32 = raw.tasksPerSec()
				res.RawCPUMsPerTaskC32 = raw.cpuMsPerTask()
			}
		}
		if !b.runs("sqs") {
			continue
		}
		policies := []core.ResultPolicy{core.ResultReply}
		switch c {
		case 10:
			policies = append(policies, core.ResultNone)
		case 32:
			policies = append(policies, core.ResultDurable)
		}
		for _, policy := range policies {
			fmt.Fprintf(b.opts.Stderr, "dagq-bench: sqs throughput, concurrency %d, policy %s…\n", c, policy)
			dq, err := b.sqsRound(ctx, c, n, policy)
			if err != nil {
				return fmt.Errorf("sqs throughput, concurrency %d, policy %s: %w", c, policy, err)
			}
			b.addSQS(dq, raw, res)
		}
	}
	return nil
}

// addRaw adds the rows of a raw baseline round, the median of rounds
// whose throughputs were rates.
func (b *bencher) addRaw(r rawResult, rates []float64) {
	var rs []string
	for _, x := range rates {
		rs = append(rs, fmt.Sprintf("%.0f", x))
	}
	notes := fmt.Sprintf("median of %d rounds (%s tasks/s); the median round: %d no-op messages: producer (this process) SendMessageBatch of 10, one after another; 1 consumer process, "+
		"%d goroutines each ReceiveMessage 10 (wait %s) → no-op → DeleteMessageBatch; no results; first send → last delete %s; "+
		"CPU %.3f ms/task (producer %s, consumer %s%s); %.3f SQS requests/task",
		len(rates), strings.Join(rs, ", "), r.tasks, r.concurrency, config.FormatDuration(config.Default().SQS.WaitTime), r.took.Round(time.Millisecond),
		r.cpuMsPerTask(), r.producerCPU.Round(time.Millisecond), r.consumerCPU.Round(time.Millisecond),
		map[bool]string{true: ", whole lifetime", false: ""}[r.consumerFromStart], r.sqsRequestsPerTask())
	if len(r.emulators) > 0 {
		notes += "; emulators' CPU " + r.emulators.perTask(r.tasks)
	}
	if extra := r.received - int64(r.tasks); extra > 0 {
		notes += fmt.Sprintf("; %d messages received twice (a receive response lost: they waited out the visibility timeout), run again", extra)
	}
	b.add(fmt.Sprintf("raw sdk: throughput c=%d", r.concurrency), "tasks/s", fmt.Sprintf("%.0f", r.tasksPerSec()), "", notes)
}

// addSQS adds the rows of a dagq SQS throughput round (and its ratio to
// raw, the baseline at the same concurrency, when measured) and sets its
// keys.
func (b *bencher) addSQS(r sqsRound, raw *rawResult, res *Results) {
	n, c := r.tasks, r.concurrency
	end := "one WaitAll (pushed completions)"
	if r.policy == core.ResultNone {
		end = "waiting for the queue to be empty"
	}
	notes := fmt.Sprintf("%d no-op tasks: one SubmitBatch, %s; 1 worker process, concurrency %d; %s; "+
		"CPU %.3f ms/task (client %s, worker %s%s); %.3f SQS requests/task; %s",
		n, end, c, r.took.Round(time.Millisecond), r.cpuMsPerTask(), r.clientCPU.Round(time.Millisecond),
		r.workerCPU.Round(time.Millisecond), map[bool]string{true: ", whole lifetime", false: ""}[r.workerFromStart],
		r.sqsRequestsPerTask(), policyNotes[r.policy])
	if len(r.emulators) > 0 {
		notes += "; emulators' CPU " + r.emulators.perTask(n)
	}
	// A worker reads a result only for a redelivered task: its earlier
	// delivery was lost (with fauxqs, a ReceiveMessage response that never
	// arrived under load), and the run waited for the lease to run out.
	if redelivered := r.workers.Get("S3", "GetObject"); redelivered > 0 {
		notes += fmt.Sprintf("; %d tasks redelivered after their %s lease ran out (a receive response was lost): "+
			"the time is mostly that wait, run again", redelivered, config.Default().Worker.Lease)
	}
	b.add(fmt.Sprintf("sqs: throughput c=%d %s", c, r.policy), "tasks/s", fmt.Sprintf("%.0f", r.tasksPerSec()), "", notes)
	ratio := -1.0
	if raw != nil {
		ratio = r.tasksPerSec() / raw.tasksPerSec()
	}
	target := map[core.ResultPolicy]string{core.ResultReply: "≥ 0.5", core.ResultNone: "≥ 0.7", core.ResultDurable: "≥ 0.2"}[r.policy]
	if ratio >= 0 {
		note := fmt.Sprintf("%.0f ÷ %.0f tasks/s, measured one after the other", r.tasksPerSec(), raw.tasksPerSec())
		if r.policy == core.ResultDurable {
			note += "; bounded by one S3 result PUT per task, whose signing and checksums cost the worker CPU " +
				"and whose upload costs the S3 emulator's CPU on the same cores"
		}
		b.add(fmt.Sprintf("sqs: vs raw c=%d %s", c, r.policy), "dagq ÷ raw", fmt.Sprintf("%.3f", ratio), target, note)
	}
	switch {
	case r.policy == core.ResultReply && c == 1:
		res.SQSVsRawC1, res.SQSTasksPerSecC1 = ratio, r.tasksPerSec()
		res.SQSRequestsPerTaskC1 = r.sqsRequestsPerTask()
		b.add("sqs: requests c=1 reply", "SQS requests/task", fmt.Sprintf("%.3f", res.SQSRequestsPerTaskC1), "≤ 0.7",
			fmt.Sprintf("client + worker process, whole lifetimes (queue setup excluded): %d requests", r.total().Service("SQS")))
		b.extra = append(b.extra, breakdown(fmt.Sprintf("Requests of the sqs throughput run at concurrency 1, policy reply (%d tasks), per operation:", n), n, r.client, r.workers))
	case r.policy == core.ResultReply && c == 10:
		res.SQSVsRawC10, res.SQSTasksPerSecC10 = ratio, r.tasksPerSec()
	case r.policy == core.ResultReply && c == 32:
		res.SQSVsRawC32 = ratio
		res.CPUMsPerTaskC32 = r.cpuMsPerTask()
		b.add("sqs: cpu c=32 reply", "CPU ms/task", fmt.Sprintf("%.3f", r.cpuMsPerTask()), "≤ 0.4",
			"user+system: the worker process from the first submit to its exit (/proc/<pid>/stat, then its rusage) + "+
				"this process (the client: getrusage from the first submit to the client closed)")
		b.extra = append(b.extra, breakdown(fmt.Sprintf("Requests of the sqs throughput run at concurrency 32, policy reply (%d tasks), per operation:", n), n, r.client, r.workers))
	case r.policy == core.ResultNone && c == 10:
		res.SQSNoneVsRawC10 = ratio
	case r.policy == core.ResultDurable && c == 32:
		res.SQSDurableVsRawC32 = ratio
		total := r.total()
		res.SQSTasksPerSec = r.tasksPerSec()
		res.SQSRequestsPerTask = r.sqsRequestsPerTask()
		res.S3RequestsPerTask = float64(total.Service("S3")) / float64(n)
		write, other := s3Classes(total)
		res.USDPerMillionTasks = (res.SQSRequestsPerTask*PriceSQS + float64(write)/float64(n)*PriceS3Write + float64(other)/float64(n)*PriceS3Other)
		b.add("sqs: requests c=32 durable", "SQS requests/task", fmt.Sprintf("%.3f", res.SQSRequestsPerTask), "≤ 0.5",
			fmt.Sprintf("the default scenario; client + worker process, whole lifetimes (queue setup excluded): %d requests", total.Service("SQS")))
		b.add("sqs: requests c=32 durable", "S3 requests/task", fmt.Sprintf("%.3f", res.S3RequestsPerTask), "≤ 1.1",
			fmt.Sprintf("%d requests: %d PUT/COPY/POST/LIST class, %d GET and other", total.Service("S3"), write, other))
		b.add("sqs: cost c=32 durable", "USD per million tasks", fmt.Sprintf("%.2f", res.USDPerMillionTasks), "",
			fmt.Sprintf("SQS $%.2f/M, S3 PUT/COPY/POST/LIST $%.2f/M, other S3 $%.2f/M requests", PriceSQS, PriceS3Write, PriceS3Other))
		b.extra = append(b.extra, breakdown(fmt.Sprintf("Requests of the sqs throughput run at concurrency 32, policy durable (%d tasks), per operation:", n), n, r.client, r.workers))
	}
}

// s3Classes splits the S3 requests of cs into the PUT/COPY/POST/LIST price
// class and the rest (GET, HEAD, DELETE, …).
func s3Classes(cs cli.AWSCounts) (write, other int64) {
	for _, c := range cs {
		if c.Service != "S3" {
			continue
		}
		if s3WriteClass(c.Operation) {
			write += c.Requests
		} else {
			other += c.Requests
		}
	}
	return write, other
}

func s3WriteClass(op string) bool {
	for _, p := range []string{"Put", "Copy", "Post", "List", "Create", "UploadPart", "CompleteMultipartUpload", "RestoreObject"} {
		if strings.HasPrefix(op, p) {
			return true
		}
	}
	return false
}

// breakdown formats the requests per operation of the client and the
// worker processes.
func breakdown(title string, tasks int, client, workers cli.AWSCounts) string {
	var sb strings.Builder
	sb.WriteString(title + "\n")
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SERVICE\tOPERATION\tCLIENT\tWORKERS\tTOTAL\tPER TASK\tERRORS\t")
	total := client.Plus(workers)
	rows := slices.Clone(total)
	slices.SortStableFunc(rows, func(a, b cli.AWSCount) int { return int(b.Requests - a.Requests) })
	for _, c := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.3f\t%d\t\n", c.Service, c.Operation,
			client.Get(c.Service, c.Operation), workers.Get(c.Service, c.Operation), c.Requests,
			float64(c.Requests)/float64(tasks), c.Errors)
	}
	fmt.Fprintf(tw, "\tall\t%d\t%d\t%d\t%.3f\t\t\n", client.Total(), workers.Total(), total.Total(), float64(total.Total())/float64(tasks))
	_ = tw.Flush()
	return sb.String()
}

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 1) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// e2eLatency measures sequential Submit+Wait round trips on a worker of
// concurrency 10 (e2e_p50_ms, e2e_p99_ms: the scenario's meaning since it
// was added) and of concurrency 1 (e2e_p50_ms_c1).
func (b *bencher) e2eLatency(ctx context.Context, res *Results) error {
	for _, c := range []int{10, 1} {
		lat, err := b.e2eRound(ctx, c)
		if err != nil {
			return fmt.Errorf("concurrency %d: %w", c, err)
		}
		p50, p99 := ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99))
		notes := fmt.Sprintf("%d sequential Submit+Wait of a no-op task (after %d unmeasured); 1 worker process, concurrency %d; max %.1f ms; %s",
			b.sz.e2eTasks, b.sz.e2eWarmup, c, ms(percentile(lat, 1)), policyNotes[core.ResultDurable])
		if c == 10 {
			res.E2EP50Ms, res.E2EP99Ms = p50, p99
			b.add("sqs: end to end", "p50 ms", fmt.Sprintf("%.1f", p50), "≤ 20", notes)
			b.add("sqs: end to end", "p99 ms", fmt.Sprintf("%.1f", p99), "", "")
		} else {
			res.E2EP50MsC1 = p50
			b.add("sqs: end to end c=1", "p50 ms", fmt.Sprintf("%.1f", p50), "≤ 10", notes+fmt.Sprintf("; p99 %.1f ms", p99))
		}
	}
	return nil
}

// e2eRound returns the latencies of sequential Submit+Wait round trips on
// a fresh worker process of concurrency c.
func (b *bencher) e2eRound(ctx context.Context, c int) ([]time.Duration, error) {
	tag := fmt.Sprintf("e2e-c%d", c)
	cfg, err := b.sqsConfig(ctx, tag, c)
	if err != nil {
		return nil, err
	}
	w, err := b.startWorker(tag, cfg, procOptions{runs: true}, nil)
	if err != nil {
		return nil, err
	}
	rt, err := app.New(cfg, b.reg, app.WithLogger(b.log))
	if err != nil {
		_, _ = stopAll(w)
		return nil, err
	}
	lat := make([]time.Duration, 0, b.sz.e2eTasks)
	for i := range b.sz.e2eWarmup + b.sz.e2eTasks {
		t0 := time.Now()
		var r ports.Result
		id, err := rt.Client.Submit(ctx, core.Request{Task: TaskNoop})
		if err == nil {
			r, err = rt.Client.Wait(ctx, id)
		}
		if err == nil {
			err = checkSucceeded([]ports.Result{r})
		}
		if err != nil {
			rt.Close()
			_, _ = stopAll(w)
			return nil, err
		}
		if i >= b.sz.e2eWarmup {
			lat = append(lat, time.Since(t0))
		}
	}
	rt.Close()
	if _, err := stopAll(w); err != nil {
		return nil, err
	}
	return lat, nil
}

func (b *bencher) cancelLatency(ctx context.Context, res *Results) error {
	cfg, err := b.sqsConfig(ctx, "cancel", b.sz.cancelConc)
	if err != nil {
		return err
	}
	// The probes block until cancelled, and each round fills exactly the
	// three workers' slots: a worker that prefetched a probe would hold it
	// behind its blocked ones while another worker's slot stays empty. Long
	// tasks are what worker.prefetch 0 is for (docs/configuration.md).
	cfg.Worker.Prefetch = 0
	events := make(chan event, 1024)
	var ws []*proc
	stop := func() error { _, err := stopAll(ws...); return err }
	ws = make([]*proc, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range ws {
		wg.Go(func() {
			ws[i], errs[i] = b.startWorker(fmt.Sprintf("cancel-%d", i+1), cfg, procOptions{runs: true}, events)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return errors.Join(err, stop())
	}
	rt, err := app.New(cfg, b.reg, app.WithLogger(b.log))
	if err != nil {
		return errors.Join(err, stop())
	}
	lat, calls, perWorker, err := b.cancelRounds(ctx, rt, events)
	rt.Close()
	if err = errors.Join(err, stop()); err != nil {
		return err
	}
	res.CancelP50Ms, res.CancelP99Ms = ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99))
	var spread []string
	for _, w := range ws {
		spread = append(spread, fmt.Sprintf("%s %d", w.name, perWorker[w.name]))
	}
	b.add("sqs: cancel", "p50 ms", fmt.Sprintf("%.1f", res.CancelP50Ms), "",
		fmt.Sprintf("%d running probes, Cancel call start → handler ctx done; 3 worker processes (concurrency %d each; probes per process: %s)",
			len(lat), b.sz.cancelConc, strings.Join(spread, ", ")))
	b.add("sqs: cancel", "p99 ms", fmt.Sprintf("%.1f", res.CancelP99Ms), "≤ 1000",
		fmt.Sprintf("max %.1f ms; the Cancel call itself (S3 mark, ListQueues, sends): p50 %.1f ms, p99 %.1f ms",
			ms(percentile(lat, 1)), ms(percentile(calls, 0.5)), ms(percentile(calls, 0.99))))
	return nil
}

// cancelRounds runs the cancel probes in rounds that fill the three
// workers' slots, and cancels the running probes one at a time.
func (b *bencher) cancelRounds(ctx context.Context, rt *app.Runtime, events <-chan event) (lat, calls []time.Duration, perWorker map[string]int, err error) {
	perWorker = map[string]int{}
	canceled := map[string]event{}
	wait := func(kind, id string, running map[string]string, want int) error {
		deadline := time.After(30 * time.Second)
		for {
			if kind == lineStarted && len(running) >= want {
				return nil
			}
			if _, ok := canceled[id]; kind == lineCancel && ok {
				return nil
			}
			select {
			case ev := <-events:
				switch ev.kind {
				case lineStarted:
					running[ev.taskID] = ev.worker
				case lineCancel:
					canceled[ev.taskID] = ev
				}
			case <-deadline:
				return fmt.Errorf("timed out waiting for %s %s (%d of %d probes running)", kind, id, len(running), want)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	round := 3 * b.sz.cancelConc
	for done := 0; done < b.sz.cancels; {
		k := min(round, b.sz.cancels-done)
		reqs := make([]core.Request, k)
		for i := range reqs {
			reqs[i] = core.Request{Task: TaskCancelProbe}
		}
		ids, err := rt.Client.SubmitBatch(ctx, reqs...)
		if err != nil {
			return nil, nil, nil, err
		}
		running := map[string]string{}
		if err := wait(lineStarted, "", running, k); err != nil {
			return nil, nil, nil, err
		}
		for _, id := range ids {
			perWorker[running[id]]++
			t0 := time.Now()
			if err := rt.Client.Cancel(ctx, id); err != nil {
				return nil, nil, nil, err
			}
			calls = append(calls, time.Since(t0))
			if err := wait(lineCancel, id, running, k); err != nil {
				return nil, nil, nil, err
			}
			ev := canceled[id]
			if !strings.Contains(ev.cause, core.ErrTaskCanceled.Error()) {
				return nil, nil, nil, fmt.Errorf("probe %s on %s: context done with cause %q, want %q", id, ev.worker, ev.cause, core.ErrTaskCanceled)
			}
			lat = append(lat, ev.at.Sub(t0))
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rs, err := rt.Client.WaitAll(wctx, ids...)
		cancel()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("wait for the cancelled probes: %w", err)
		}
		for _, r := range rs {
			if r.State != ports.StateCancelled {
				return nil, nil, nil, fmt.Errorf("probe %s: %s, want cancelled", r.TaskID, r.State)
			}
		}
		done += k
	}
	return lat, calls, perWorker, nil
}

func (b *bencher) idle(ctx context.Context, res *Results) error {
	cfg, err := b.sqsConfig(ctx, "idle", 10)
	if err != nil {
		return err
	}
	w, err := b.startWorker("idle", cfg, procOptions{runs: true, report: b.sz.idleReport}, nil)
	if err != nil {
		return err
	}
	ready := time.Now()
	// Reports come every idleReport: accept a window shorter by half of
	// that (timer jitter), so a 40s window is not stretched to 45s.
	first, last, err := waitWindow(ctx, w, ready.Add(b.sz.idleWarmup), b.sz.idleWindow-b.sz.idleReport/2)
	if _, serr := stopAll(w); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	span := time.Duration(last.At - first.At)
	delta := last.Counts.Minus(first.Counts)
	// The worker registry rewrites the process's record (one S3 PUT) every
	// worker.registry_interval, 1m by default: longer than the window, which
	// sees 0 or 1 of them depending on where it falls. So they are counted
	// amortised, one per interval, in place of the PUTs the window saw (an
	// idle worker writes nothing else to S3).
	registryPuts := delta.Get("S3", "PutObject")
	var registryPerMin float64
	if iv := cfg.Worker.RegistryInterval; iv > 0 {
		registryPerMin = time.Minute.Seconds() / iv.Seconds()
	}
	polled := float64(delta.Total()-registryPuts) / span.Minutes()
	res.IdleRequestsPerWorkerMin = polled + registryPerMin
	var ops []string
	for _, c := range delta {
		ops = append(ops, fmt.Sprintf("%s %s %d", c.Service, c.Operation, c.Requests))
	}
	b.add("sqs: idle worker", "requests/min", fmt.Sprintf("%.1f", res.IdleRequestsPerWorkerMin), "≤ 10",
		fmt.Sprintf("1 worker process (task + run queue, cancellation on, sqs.wait_time %s), %d requests in %s after %s warm-up: %s",
			config.FormatDuration(cfg.SQS.WaitTime), delta.Total(), span.Round(time.Millisecond), b.sz.idleWarmup, strings.Join(ops, ", ")))
	b.add("", "", "", "", fmt.Sprintf("= %.1f/min polling and the rest, without the window's %d registry PUT(s), + %.1f/min worker registry "+
		"(1 S3 PUT per worker.registry_interval %s, amortised)", polled, registryPuts, registryPerMin,
		config.FormatDuration(cfg.Worker.RegistryInterval)))
	if n := delta.Get("SQS", "DeleteMessageBatch") + delta.Get("SQS", "DeleteMessage"); n > 0 {
		// Nothing is sent to the idle worker's queues; but every Cancel
		// anywhere on the emulator broadcasts to every dagq-cancel-* queue.
		b.add("", "", "", "", fmt.Sprintf("note: the idle worker received and deleted messages (%d deletes): cancel broadcasts "+
			"from other processes on the same emulator (every Cancel reaches every dagq-cancel-* queue)", n))
	}
	return nil
}

// waitWindow returns the first counts report of w at or after from, and the
// first one at least window after it.
func waitWindow(ctx context.Context, w *proc, from time.Time, window time.Duration) (first, last countsReport, err error) {
	var haveFirst bool
	deadline := time.Now().Add(window + time.Until(from) + time.Minute)
	for time.Now().Before(deadline) {
		if rep, ok := w.lastReport(); ok && !rep.Final {
			at := time.Unix(0, rep.At)
			switch {
			case !haveFirst && !at.Before(from):
				first, haveFirst = rep, true
			case haveFirst && time.Duration(rep.At-first.At) >= window:
				return first, rep, nil
			}
		}
		select {
		case <-ctx.Done():
			return first, last, ctx.Err()
		case <-w.exited:
			return first, last, fmt.Errorf("worker process %s exited: %v", w.name, w.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return first, last, fmt.Errorf("worker process %s: no counts report after the %s window", w.name, window)
}
