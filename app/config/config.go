// Package config is dagq's typed configuration: the structs, their defaults,
// loading with viper from a file, the environment and command-line flags, and
// validation.
//
// # Sources and precedence
//
// A value comes from, lowest to highest precedence: the default (every key has
// one), the config file, the environment, a command-line flag. The config file
// is YAML; its path is the --config flag, else the DAGQ_CONFIG environment
// variable, else ./dagq.yaml when that file exists (a missing default file is
// fine; a missing file named explicitly is an error). Environment variables
// are the key upper-cased, dots replaced by "_" and prefixed with DAGQ_:
// worker.concurrency is DAGQ_WORKER_CONCURRENCY.
//
// # Errors and warnings
//
// A value of the wrong type (an integer that does not parse, a duration
// without a unit) fails Load, naming the key and where the value came from.
// Values of the right type but out of range fail Validate, which reports every
// problem at once with the key and the valid values. Unknown keys in the file
// and unknown DAGQ_ variables are warnings (with the closest valid key), not
// errors, so that a newer file still loads in an older dagq; a non-empty
// variable named after a section (DAGQ_WORKER) is an error, since viper
// would read it in place of the section's keys.
//
// # Secrets
//
// A field tagged `secret:"true"` (signing.keys) is redacted by Render and
// Values (and so by `dagq config show`), and validation errors never quote
// it.
package config

import (
	"reflect"
	"strings"
	"time"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
	"github.com/dagq/dagq/ports"
)

// Transports: the values of the transport key.
const (
	// TransportMemory runs workers inside the dagq process over in-memory
	// queues and stores (no AWS).
	TransportMemory = "memory"
	// TransportSQS is Amazon SQS (task and run queues) + S3 (results,
	// payloads, run state): shared by every process that names the same
	// queues and bucket.
	TransportSQS = "sqs"
)

// SupportedTransports lists the transports this build can run.
var SupportedTransports = []string{TransportMemory, TransportSQS}

// Embedded reports whether transport keeps its queues and stores inside
// one process (memory): then only that process's workers serve its tasks,
// and only that process can see its runs.
func Embedded(transport string) bool { return transport == TransportMemory }

// IsFIFO reports whether a queue name names a FIFO queue (ends in .fifo).
func IsFIFO(queue string) bool { return strings.HasSuffix(queue, ".fifo") }

// DefaultSQSWaitTime is the default of sqs.wait_time: the SQS maximum.
const DefaultSQSWaitTime = 20 * time.Second

// DefaultSQSCancelListLag is the default of sqs.cancel_list_lag: the
// ListQueues lag AWS documents.
const DefaultSQSCancelListLag = 60 * time.Second

// DefaultRegistryInterval is the default of worker.registry_interval: one
// S3 PUT per worker process per minute, the request budget an idle worker
// has left (docs/performance.md: 9 long polls a minute against a target of
// at most 10), and a dead worker reads as stale within 3 minutes.
const DefaultRegistryInterval = time.Minute

// DefaultRegion is the region used when neither sqs.region nor the AWS
// chain names one.
const DefaultRegion = "us-east-1"

// Config is the whole dagq configuration. The yaml tag of each field is its
// key; nested structs join keys with dots (worker.concurrency).
type Config struct {
	Transport    string             `yaml:"transport" doc:"where tasks, results and cancellations travel: memory (in-process) or sqs (Amazon SQS + S3, shared between processes)"`
	Queue        string             `yaml:"queue" doc:"name of the task queue (SQS naming: 1-80 of [A-Za-z0-9_-], a FIFO queue ends in .fifo)"`
	Worker       WorkerConfig       `yaml:"worker"`
	Pools        PoolLimits         `yaml:"pools" doc:"fleet-wide concurrency pools: the most tasks of each pool running at once across every worker sharing the transport, e.g. {db: 3}; a task or job step names its pool (pool: db); names [A-Za-z0-9_-], 1 to 63 bytes, lower case in a file; limits 1 to 1000; every worker must have the same limits; in the environment db=3,gpu=1"`
	Retry        RetryConfig        `yaml:"retry"`
	Cancellation CancellationConfig `yaml:"cancellation"`
	Log          LogConfig          `yaml:"log"`
	Executor     ExecutorConfig     `yaml:"executor"`
	Launcher     LauncherConfig     `yaml:"launcher"`
	Payload      PayloadConfig      `yaml:"payload"`
	SQS          SQSConfig          `yaml:"sqs"`
	S3           S3Config           `yaml:"s3"`
	Signing      SigningConfig      `yaml:"signing"`
	UI           UIConfig           `yaml:"ui"`
}

// PayloadConfig configures the claim check: envelopes above the threshold
// travel through the payload store (memory, or s3.bucket under
// <s3.prefix>payloads/) and the message carries a reference.
type PayloadConfig struct {
	Threshold int `yaml:"threshold" doc:"largest encoded task envelope (bytes) sent in the message itself; larger ones go through the payload store; 1024 to 786432 (768 KiB)"`
}

// Limits of payload.threshold: the largest fits an SQS message (1 MiB)
// with room for attributes.
const (
	MinPayloadThreshold = 1 << 10
	MaxPayloadThreshold = 768 << 10
)

// Values of sqs.fair_queue and sqs.message_group.
var (
	FairQueueModes = []string{"auto", "on", "off"}
	MessageGroups  = []string{string(core.GroupByRun), string(core.GroupByTask)}
)

// SQSConfig configures the queues of the sqs transport. Region and
// credentials otherwise come from the standard AWS chain (environment,
// shared config files, instance roles).
type SQSConfig struct {
	QueueURL    string        `yaml:"queue_url" doc:"URL of the SQS task (steps) queue, https://sqs.<region>.amazonaws.com/<account>/<name>; required for transport sqs"`
	RunQueueURL string        `yaml:"run_queue_url" doc:"URL of the SQS run queue (launched runs); required for transport sqs, must differ from sqs.queue_url"`
	Region      string        `yaml:"region" doc:"AWS region of the queues and bucket; empty: the AWS chain (AWS_REGION, profile), else us-east-1"`
	Endpoint    string        `yaml:"endpoint" doc:"SQS endpoint override (emulators, VPC endpoints); empty: the AWS default, or AWS_ENDPOINT_URL(_SQS)"`
	WaitTime    time.Duration `yaml:"wait_time" doc:"SQS long-polling wait of one receive, 1s to 20s"`
	// CancelListLag: see adapters/sqs CancelOptions.ListLag.
	CancelListLag time.Duration `yaml:"cancel_list_lag" doc:"how long SQS may take to list a new queue (ListQueues lag); a worker's durable cancel check reads S3 until its cancel subscription is this old, then answers from memory; 0s for emulators that list at once (fauxqs), 0s to 15m"`
	FairQueue     string        `yaml:"fair_queue" doc:"message-group (fair-queue) mode of the queues: auto (from the queue type: on for .fifo queues), on (a standard queue logs a warning and ignores it) or off (refused for .fifo queues, which need a group on every message)"`
	MessageGroup  string        `yaml:"message_group" doc:"FIFO message group of a step: run (the run ID: a run's steps go one at a time, runs interleave fairly) or task (the task ID: a run's steps run in parallel)"`
	// MaxDelay: core.ClientOptions.MaxDelay and core.WorkerOptions.MaxDelay.
	MaxDelay time.Duration `yaml:"max_delay" doc:"longest delay of one message (SQS DelaySeconds; the memory transport keeps the same limit): a task due later, or a retry backoff longer than this, waits in the queue as a chain of messages of at most this delay, each sent on by a worker; 1s to 15m; lower it only to try the hops out"`
}

// S3Config configures the bucket of the sqs transport: results, large
// payloads and run state.
type S3Config struct {
	Bucket    string `yaml:"bucket" doc:"S3 bucket of results, large payloads and run state; required for transport sqs"`
	Prefix    string `yaml:"prefix" doc:"prefix of every object key dagq writes (end it with /)"`
	Endpoint  string `yaml:"endpoint" doc:"S3 endpoint override (emulators, S3-compatible stores); empty: the AWS default, or AWS_ENDPOINT_URL(_S3)"`
	PathStyle bool   `yaml:"path_style" doc:"path-style addressing (endpoint/bucket/key) instead of virtual-hosted; true for most emulators"`
}

// WorkerConfig configures every worker the process runs (core.WorkerOptions).
type WorkerConfig struct {
	Concurrency       int           `yaml:"concurrency" doc:"most tasks one worker runs at once"`
	Lease             time.Duration `yaml:"lease" doc:"lease (visibility timeout) of a received task, renewed by the heartbeat"`
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval" doc:"how often leases of running tasks are extended; 0 means lease/3"`
	MaxExtensions     int           `yaml:"max_extensions" doc:"cap on lease extensions of one task (360 × 10s = 1h with the defaults)"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout" doc:"how long a stopping worker waits for running tasks before it cancels and releases them"`
	SettleDepth       int           `yaml:"settle_depth" doc:"most finished tasks whose result write, completion and delete go on at once after their slot was freed"`
	Prefetch          int           `yaml:"prefetch" doc:"most received messages a worker holds not yet started, beyond concurrency; 0: none"`
	DeadLetterSweep   time.Duration `yaml:"dead_letter_sweep" doc:"how often a worker reads its queues' dead-letter queues and records a failed result for each task there without one; 0s: never"`
	// RegistryInterval: see app.WorkerInfo and docs/operations.md.
	RegistryInterval time.Duration `yaml:"registry_interval" doc:"how often a worker process rewrites its record in the worker registry (dagq workers): ID, host, queues, slots, tasks in flight; a record not rewritten for 3 intervals reads as stale; 0s: off; 1s to 1h"`
	MetricsAddr      string        `yaml:"metrics_addr" doc:"dagq worker: address (host:port) of the Prometheus /metrics, /healthz and /readyz listener; empty: off"`
	// PoolLease and PoolPoll: see core.PoolOptions.
	PoolLease time.Duration `yaml:"pool_lease" doc:"lease of a concurrency pool slot, renewed every third of it while its task runs: a worker that dies frees its slots within it; 10ms to 12h"`
	PoolPoll  time.Duration `yaml:"pool_poll" doc:"re-check delay of a task waiting for a pool slot that is next or nearly (tasks further back wait up to 32 times longer); more than 0s, at most 15m"`
}

// RetryConfig is the default retry policy of tasks (core.RetryPolicy); a job
// step's own retry overrides it.
type RetryConfig struct {
	MaxAttempts    int           `yaml:"max_attempts" doc:"runs of a task including the first; 1 means no retry"`
	InitialBackoff time.Duration `yaml:"initial_backoff" doc:"delay after the first failure"`
	MaxBackoff     time.Duration `yaml:"max_backoff" doc:"cap on the delay, at most 8760h (365 days); 0 means a cap of 12h; a delay longer than sqs.max_delay waits in the queue, sent on by the workers until due"`
	Multiplier     float64       `yaml:"multiplier" doc:"growth of the delay per attempt; 0 or ≥ 1"`
	Jitter         float64       `yaml:"jitter" doc:"largest random fraction removed from a delay, 0 to 1"`
}

// CancellationConfig is the one cancellation switch.
type CancellationConfig struct {
	Enabled bool `yaml:"enabled" doc:"wire the cancel channel: interrupting a run cancels its queued and running steps; false leaves running steps to finish"`
}

// LogConfig configures the process logger (stderr).
type LogConfig struct {
	Level  string `yaml:"level" doc:"debug, info, warn or error"`
	Format string `yaml:"format" doc:"auto (text when stderr is a terminal, JSON otherwise), text or json"`
}

// ExecutorConfig configures the DAG executor.
type ExecutorConfig struct {
	FailFast bool `yaml:"fail_fast" doc:"on the first failed step, cancel every other step instead of finishing the independent ones"`
	// CancelWait bounds the wait for cancelled steps to report after an
	// interrupt or a fail-fast stop (dag.RunOptions.CancelWait).
	CancelWait time.Duration `yaml:"cancel_wait" doc:"after an interrupt or a fail-fast stop, how long a run waits for its cancelled steps to report"`
}

// LauncherConfig configures launched runs (dagq launch, status, health,
// terminate; dag.Launcher) and the workers that run them. A launched run is
// one task that holds a worker slot for the whole run, so run tasks travel on
// a queue of their own, served by run workers with their own slots; their
// steps go to the task queue (queue), served by the ordinary workers.
type LauncherConfig struct {
	Queue             string        `yaml:"queue" doc:"name of the run queue, where launched runs wait for a run worker; must differ from queue (same naming rules, .fifo: FIFO)"`
	Concurrency       int           `yaml:"concurrency" doc:"most launched runs one process drives at once (slots of its run worker)"`
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval" doc:"how often a run worker writes a launched run's heartbeat and step states"`
	StaleAfter        time.Duration `yaml:"stale_after" doc:"heartbeat age after which a running run's worker counts as dead (health FAILED, another worker takes over); also the lease of run tasks; more than launcher.heartbeat_interval"`
}

// Default returns the configuration used for every key no source sets.
func Default() Config {
	return Config{
		Transport: TransportMemory,
		Queue:     "dagq-tasks",
		Worker: WorkerConfig{
			Concurrency:       core.DefaultWorkerConcurrency,
			Lease:             core.DefaultLease,
			HeartbeatInterval: 0,
			MaxExtensions:     core.DefaultMaxExtensions,
			ShutdownTimeout:   core.DefaultShutdownTimeout,
			SettleDepth:       core.DefaultSettleDepth,
			Prefetch:          core.DefaultPrefetch,
			DeadLetterSweep:   core.DefaultDeadLetterSweep,
			RegistryInterval:  DefaultRegistryInterval,
			PoolLease:         core.DefaultPoolLease,
			PoolPoll:          core.DefaultPoolPoll,
		},
		Pools: PoolLimits{},
		Retry: RetryConfig{
			MaxAttempts:    core.DefaultRetryPolicy.MaxAttempts,
			InitialBackoff: core.DefaultRetryPolicy.InitialBackoff,
			MaxBackoff:     core.DefaultRetryPolicy.MaxBackoff,
			Multiplier:     core.DefaultRetryPolicy.Multiplier,
			Jitter:         core.DefaultRetryPolicy.Jitter,
		},
		Cancellation: CancellationConfig{Enabled: true},
		Log:          LogConfig{Level: "warn", Format: LogFormatAuto},
		Executor:     ExecutorConfig{FailFast: false, CancelWait: dag.DefaultCancelWait},
		Launcher: LauncherConfig{
			Queue:             "dagq-runs",
			Concurrency:       4,
			HeartbeatInterval: dag.DefaultRunHeartbeat,
			StaleAfter:        dag.DefaultStaleFactor * dag.DefaultRunHeartbeat,
		},
		Payload: PayloadConfig{Threshold: core.DefaultPayloadThreshold},
		SQS: SQSConfig{
			WaitTime:      DefaultSQSWaitTime,
			CancelListLag: DefaultSQSCancelListLag,
			FairQueue:     "auto",
			MessageGroup:  string(core.GroupByRun),
			MaxDelay:      ports.MaxDelay,
		},
		S3:      S3Config{Prefix: "dagq/"},
		Signing: SigningConfig{Required: true},
		UI:      UIConfig{Addr: DefaultUIAddr, Refresh: DefaultUIRefresh},
	}
}

// Policy returns the retry configuration as a core.RetryPolicy.
func (r RetryConfig) Policy() core.RetryPolicy {
	return core.RetryPolicy{
		MaxAttempts:    r.MaxAttempts,
		InitialBackoff: r.InitialBackoff,
		MaxBackoff:     r.MaxBackoff,
		Multiplier:     r.Multiplier,
		Jitter:         r.Jitter,
	}
}

// Key describes one configuration key.
type Key struct {
	// Path is the dotted key, as in the file: worker.concurrency.
	Path string
	// Env is the environment variable: DAGQ_WORKER_CONCURRENCY.
	Env string
	// Flag is the command-line flag bound to the key, without dashes; empty
	// when the key has none.
	Flag string
	// Default is the default value as written in a file ("30s", "10").
	Default string
	// Doc is a one-line description.
	Doc string
	// Secret keys are redacted when the configuration is printed.
	Secret bool

	index []int // field index path in Config
	typ   reflect.Type
}

// EnvPrefix prefixes every environment variable of a key.
const EnvPrefix = "DAGQ"

// EnvConfig names the config file path variable.
const EnvConfig = "DAGQ_CONFIG"

// DefaultFile is the config file read when neither --config nor DAGQ_CONFIG
// names one and it exists in the working directory.
const DefaultFile = "dagq.yaml"

// EnvName returns the environment variable of a dotted key.
func EnvName(path string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// Keys lists every configuration key in declaration order.
func Keys() []Key { return keysOf(reflect.TypeFor[Config](), Default()) }

// keysOf walks the leaf fields of struct type t; def supplies the defaults.
func keysOf(t reflect.Type, def any) []Key {
	var keys []Key
	dv := reflect.ValueOf(def)
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				walk(f.Type, path, idx)
				continue
			}
			keys = append(keys, Key{
				Path:    path,
				Env:     EnvName(path),
				Flag:    flagOf[path],
				Default: formatValue(dv.FieldByIndex(idx)),
				Doc:     f.Tag.Get("doc"),
				Secret:  f.Tag.Get("secret") == "true",
				index:   idx,
				typ:     f.Type,
			})
		}
	}
	walk(t, "", nil)
	return keys
}
