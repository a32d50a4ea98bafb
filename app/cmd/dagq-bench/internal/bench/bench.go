// Package bench is the dagq benchmark harness behind "make bench"
// (command dagq-bench): throughput and DAG overhead on the memory
// transport, and throughput, requests per task, latency, cancellation
// latency, idle cost and AWS request cost on the sqs transport against the
// local emulators (fauxqs and versitygw; scripts/emulators.sh).
//
// Run prints a human table, then one JSON object (Results) on the last line
// of its output. The SQS scenarios run their workers in separate OS
// processes: the bench re-executes its own program (Options.Executable)
// with RoleEnv=worker, and such a process runs WorkerMain instead. Worker
// processes talk to the bench in lines on their stdout: bench-ready,
// bench-started / bench-cancel (from the cancel probe task) and
// bench-counts (their AWS request counts, periodically and at exit).
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
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// Results are the benchmark's numbers, printed as the last line of its
// output (JSON, these keys exactly).
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
}

// Keys are the JSON keys of Results, in order.
var Keys = []string{
	"mem_tasks_per_sec", "mem_dag_us_per_step_wide", "mem_dag_us_per_step_chain",
	"sqs_tasks_per_sec", "sqs_requests_per_task", "s3_requests_per_task",
	"e2e_p50_ms", "e2e_p99_ms", "cancel_p50_ms", "cancel_p99_ms",
	"idle_requests_per_worker_min", "usd_per_million_tasks",
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
	// and requests-per-task scenario (default 2,000; quick: 20).
	SQSTasks int
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
	sqsTasks, sqsConcurrency int
	e2eTasks, e2eWarmup      int
	cancels, cancelConc      int // cancelConc per worker process; rounds of 3×cancelConc probes
	idleWarmup, idleWindow   time.Duration
	idleReport               time.Duration
}

var (
	fullSizes = sizes{
		memTasks: 100_000, memConcurrency: 64, memRounds: 3, dagSteps: 1000,
		sqsTasks: 2000, sqsConcurrency: 32,
		e2eTasks: 200, e2eWarmup: 5,
		cancels: 50, cancelConc: 4,
		idleWarmup: 5 * time.Second, idleWindow: 40 * time.Second, idleReport: 5 * time.Second,
	}
	quickSizes = sizes{
		memTasks: 500, memConcurrency: 64, memRounds: 1, dagSteps: 50,
		sqsTasks: 20, sqsConcurrency: 32,
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
	extra  []string // sections printed after the table
	prefix string   // of queue and bucket names
}

// Main is the dagq-bench command: "dagq-bench [-quick] [-idle-window D]
// [-out FILE] [-only mem,dag,…] [-cpuprofile F] [-memprofile F]" runs the
// benchmark (BENCH_QUICK=1 is -quick, BENCH_OUT is -out); "dagq-bench
// worker" (or RoleEnv=worker) runs a worker process. It returns the exit
// code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if os.Getenv(RoleEnv) == "worker" || (len(args) > 0 && args[0] == "worker") {
		return WorkerMain(ctx, stdout, stderr)
	}
	fs := flag.NewFlagSet("dagq-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "tiny sizes and a short idle window (env BENCH_QUICK=1)")
	idle := fs.Duration("idle-window", 0, "idle measurement window (default 40s; quick 1s)")
	out := fs.String("out", os.Getenv("BENCH_OUT"), "also write the JSON line to this file (env BENCH_OUT)")
	sqsTasks := fs.Int("sqs-tasks", 0, "no-op tasks of the SQS throughput and requests-per-task scenario (default 2000; quick 20)")
	only := fs.String("only", "", "run only these scenarios, comma-separated: "+strings.Join(ScenarioNames, ",")+
		" (skipped ones report -1; mem and dag need no emulators)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	memProfile := fs.String("memprofile", "", "write an allocation profile at the end of the run to this file")
	if err := fs.Parse(args); err != nil {
		return 2
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
	var scenarios []string
	if *only != "" {
		scenarios = strings.Split(*only, ",")
	}
	res, err := Run(ctx, Options{Quick: *quick, IdleWindow: *idle, SQSTasks: *sqsTasks, Scenarios: scenarios,
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
		name, key string
		emulators bool
		run       func(*bencher, context.Context, *Results) error
	}{
		{"memory throughput", "mem", false, (*bencher).memThroughput},
		{"memory DAG", "dag", false, (*bencher).memDAG},
		{"sqs throughput", "sqs", true, (*bencher).sqsThroughput},
		{"sqs end-to-end latency", "e2e", true, (*bencher).e2eLatency},
		{"sqs cancellation latency", "cancel", true, (*bencher).cancelLatency},
		{"sqs idle worker", "idle", true, (*bencher).idle},
	}
	selected := map[string]bool{}
	for _, name := range opts.Scenarios {
		if !slices.Contains(ScenarioNames, name) {
			return Results{}, fmt.Errorf("unknown scenario %q; valid: %s", name, strings.Join(ScenarioNames, ", "))
		}
		selected[name] = true
	}
	runs := func(key string) bool { return len(selected) == 0 || selected[key] }
	needEmulators := false
	for _, s := range steps {
		needEmulators = needEmulators || (s.emulators && runs(s.key))
	}
	if needEmulators && (opts.SQSEndpoint == "" || opts.S3Endpoint == "") {
		return Results{}, errors.New(`the SQS scenarios need the emulators: run "make bench", or "make emulators-up" and eval "$(scripts/emulators.sh env)" (DAGQ_TEST_SQS_ENDPOINT, DAGQ_TEST_S3_ENDPOINT)`)
	}
	b := &bencher{opts: opts, sz: fullSizes, prefix: fmt.Sprintf("dagq-bench-%x", time.Now().UnixNano()&0xffffffffff)}
	if opts.Quick {
		b.sz = quickSizes
	}
	if opts.SQSTasks > 0 {
		b.sz.sqsTasks = opts.SQSTasks
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
	for _, s := range steps {
		if !runs(s.key) {
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
	fmt.Fprintf(w, "dagq benchmark, %s mode: %s %s/%s, %d CPUs; SQS %s (fauxqs), S3 %s (versitygw); %s\n\n",
		mode, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), b.opts.SQSEndpoint, b.opts.S3Endpoint,
		took.Round(time.Second))
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
// throughput, memory DAGs, SQS throughput with requests per task and cost,
// end-to-end latency, cancellation latency and the idle worker.
var ScenarioNames = []string{"mem", "dag", "sqs", "e2e", "cancel", "idle"}

// skipped returns Results with every metric at -1, what a scenario that does
// not run reports.
func skipped() Results {
	return Results{-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1}
}

// clean replaces NaN and infinities (no JSON number) by -1, and rounds to
// four significant digits after the point.
func clean(r Results) Results {
	for _, p := range []*float64{&r.MemTasksPerSec, &r.MemDAGUsPerStepWide, &r.MemDAGUsPerStepChain, &r.SQSTasksPerSec,
		&r.SQSRequestsPerTask, &r.S3RequestsPerTask, &r.E2EP50Ms, &r.E2EP99Ms, &r.CancelP50Ms, &r.CancelP99Ms,
		&r.IdleRequestsPerWorkerMin, &r.USDPerMillionTasks} {
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

func noops(n int) []core.Request {
	reqs := make([]core.Request, n)
	for i := range reqs {
		reqs[i] = core.Request{Task: TaskNoop}
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
	reqs := noops(n)
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

func (b *bencher) sqsThroughput(ctx context.Context, res *Results) error {
	n := b.sz.sqsTasks
	cfg, err := b.sqsConfig(ctx, "tput", b.sz.sqsConcurrency)
	if err != nil {
		return err
	}
	w, err := b.startWorker("tput", cfg, procOptions{runs: true}, nil)
	if err != nil {
		return err
	}
	counter := cli.NewAWSCounter()
	rt, err := app.New(cfg, b.reg, app.WithLogger(b.log), cli.WithAWSCounter(counter))
	if err != nil {
		_, _ = stopAll(w)
		return err
	}
	start := time.Now()
	ids, err := rt.Client.SubmitBatch(ctx, noops(n)...)
	var rs []ports.Result
	if err == nil {
		rs, err = rt.Client.WaitAll(ctx, ids...)
	}
	took := time.Since(start)
	rt.Close()
	workerCounts, werr := stopAll(w)
	if err = errors.Join(err, werr); err != nil {
		return err
	}
	if err := checkSucceeded(rs); err != nil {
		return err
	}
	client := counter.Snapshot()
	total := client.Plus(workerCounts)
	res.SQSTasksPerSec = float64(n) / took.Seconds()
	res.SQSRequestsPerTask = float64(total.Service("SQS")) / float64(n)
	res.S3RequestsPerTask = float64(total.Service("S3")) / float64(n)
	write, other := s3Classes(total)
	res.USDPerMillionTasks = (res.SQSRequestsPerTask*PriceSQS + float64(write)/float64(n)*PriceS3Write + float64(other)/float64(n)*PriceS3Other)
	notes := fmt.Sprintf("%d no-op tasks: one SubmitBatch, one WaitAll (pushed completions); 1 worker process, concurrency %d; %s",
		n, b.sz.sqsConcurrency, took.Round(time.Millisecond))
	// A worker reads a result only for a redelivered task: its earlier
	// delivery was lost (with fauxqs, a ReceiveMessage response that never
	// arrived under load), and the run waited for the lease to run out.
	if redelivered := workerCounts.Get("S3", "GetObject"); redelivered > 0 {
		notes += fmt.Sprintf("; %d tasks redelivered after their %s lease ran out (a receive response was lost): "+
			"the time is mostly that wait, run again", redelivered, config.Default().Worker.Lease)
	}
	b.add("sqs: throughput", "tasks/s", fmt.Sprintf("%.0f", res.SQSTasksPerSec), "", notes)
	b.add("sqs: requests", "SQS requests/task", fmt.Sprintf("%.3f", res.SQSRequestsPerTask), "≤ 0.6",
		fmt.Sprintf("client + worker process, whole lifetimes (queue setup excluded): %d requests", total.Service("SQS")))
	b.add("sqs: requests", "S3 requests/task", fmt.Sprintf("%.3f", res.S3RequestsPerTask), "≤ 1.1",
		fmt.Sprintf("%d requests: %d PUT/COPY/POST/LIST class, %d GET and other", total.Service("S3"), write, other))
	b.add("sqs: cost", "USD per million tasks", fmt.Sprintf("%.2f", res.USDPerMillionTasks), "",
		fmt.Sprintf("SQS $%.2f/M, S3 PUT/COPY/POST/LIST $%.2f/M, other S3 $%.2f/M requests", PriceSQS, PriceS3Write, PriceS3Other))
	b.extra = append(b.extra, breakdown(fmt.Sprintf("Requests of the sqs throughput run (%d tasks), per operation:", n), n, client, workerCounts))
	return nil
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

func (b *bencher) e2eLatency(ctx context.Context, res *Results) error {
	cfg, err := b.sqsConfig(ctx, "e2e", 10)
	if err != nil {
		return err
	}
	w, err := b.startWorker("e2e", cfg, procOptions{runs: true}, nil)
	if err != nil {
		return err
	}
	rt, err := app.New(cfg, b.reg, app.WithLogger(b.log))
	if err != nil {
		_, _ = stopAll(w)
		return err
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
			return err
		}
		if i >= b.sz.e2eWarmup {
			lat = append(lat, time.Since(t0))
		}
	}
	rt.Close()
	if _, err := stopAll(w); err != nil {
		return err
	}
	res.E2EP50Ms, res.E2EP99Ms = ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99))
	notes := fmt.Sprintf("%d sequential Submit+Wait of a no-op task (after %d unmeasured); 1 worker process, concurrency 10; max %.1f ms",
		b.sz.e2eTasks, b.sz.e2eWarmup, ms(percentile(lat, 1)))
	b.add("sqs: end to end", "p50 ms", fmt.Sprintf("%.1f", res.E2EP50Ms), "≤ 20", notes)
	b.add("sqs: end to end", "p99 ms", fmt.Sprintf("%.1f", res.E2EP99Ms), "", "")
	return nil
}

func (b *bencher) cancelLatency(ctx context.Context, res *Results) error {
	cfg, err := b.sqsConfig(ctx, "cancel", b.sz.cancelConc)
	if err != nil {
		return err
	}
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
	res.IdleRequestsPerWorkerMin = float64(delta.Total()) / span.Minutes()
	var ops []string
	for _, c := range delta {
		ops = append(ops, fmt.Sprintf("%s %s %d", c.Service, c.Operation, c.Requests))
	}
	b.add("sqs: idle worker", "requests/min", fmt.Sprintf("%.1f", res.IdleRequestsPerWorkerMin), "≤ 10",
		fmt.Sprintf("1 worker process (task + run queue, cancellation on, sqs.wait_time %s), %d requests in %s after %s warm-up: %s",
			config.FormatDuration(cfg.SQS.WaitTime), delta.Total(), span.Round(time.Millisecond), b.sz.idleWarmup, strings.Join(ops, ", ")))
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
