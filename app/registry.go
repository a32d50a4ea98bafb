package app

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// The worker registry: every process that serves queues through a Runtime
// (StartWorkers, StartRunWorkers; dagq worker) keeps one small record in
// the StateStore, under WorkerRecordPrefix plus its ID. It is written when
// the process's first pool starts (and again when another pool joins), then
// every worker.registry_interval with the current count of running tasks,
// and deleted when the last pool has stopped. Runtime.Workers (dagq
// workers, the web console) lists the records.
//
// One record per process, not per worker: a process runs a step worker and
// a run worker, which share its host, PID, version and lifetime, and an
// operator asks about processes (which are up, where, with how many slots,
// how busy). It also halves the writes: the registry is the only request an
// idle worker makes besides its long polls, and each write is an S3 PUT.

// WorkerInfo is one worker process of the registry.
type WorkerInfo struct {
	// ID is the ID of the process's first worker: in dagq worker, its step
	// worker (the "worker <ID> serving queue …" line). Its run worker's ID
	// (in run records) differs, with the same host and PID.
	ID      string `json:"id"`
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	Version string `json:"version"`
	// Queues are the queue names (memory) or URLs (sqs) it serves: the task
	// queue, the run queue.
	Queues []string `json:"queues"`
	// Concurrency is its slots: those of its step workers plus those of its
	// run workers (worker.concurrency + launcher.concurrency).
	Concurrency int `json:"concurrency"`
	// InFlight is the number of tasks (steps and launched runs) whose
	// handler ran at SeenAt (core.Worker.InFlight).
	InFlight  int       `json:"in_flight"`
	StartedAt time.Time `json:"started_at"`
	// SeenAt is its last heartbeat: when it last wrote its record (its own
	// clock).
	SeenAt time.Time `json:"seen_at"`
	// Stale: no heartbeat for StaleIntervals of its registry interval. The
	// process died (kill -9, a lost host) or cannot reach the state store.
	Stale bool `json:"stale"`
}

// WorkerRecordPrefix is the StateStore key prefix of the worker registry:
// a process's record is WorkerRecordPrefix + its ID (on S3,
// <s3.prefix>state/workers/<ID>).
const WorkerRecordPrefix = "workers/"

// StaleIntervals is how many of its registry intervals a record may go
// without a rewrite before it reads as stale: a write or two may fail or
// come late without the process looking dead.
const StaleIntervals = 3

// WorkerRecordExpiry is how long a record may stay stale: Workers deletes
// the records of processes that died without a graceful stop once they have
// been stale for longer, so that the registry does not grow with every
// crashed worker.
const WorkerRecordExpiry = 24 * time.Hour

// Bounds of the registry's requests.
const (
	// registryWriteTimeout bounds one write or delete of a record.
	registryWriteTimeout = 10 * time.Second
	// workersReadParallel is how many records Workers reads at once.
	workersReadParallel = 16
)

// workerRecord is the stored record: WorkerInfo without Stale, which the
// reader decides, plus the writer's interval, which it decides it by.
type workerRecord struct {
	ID          string    `json:"id"`
	Host        string    `json:"host"`
	PID         int       `json:"pid"`
	Version     string    `json:"version"`
	Queues      []string  `json:"queues"`
	Concurrency int       `json:"concurrency"`
	InFlight    int       `json:"in_flight"`
	StartedAt   time.Time `json:"started_at"`
	SeenAt      time.Time `json:"seen_at"`
	// Interval is the writer's worker.registry_interval ("1m0s").
	Interval string `json:"interval"`
}

// workerKey is the StateStore key of the record of the process whose ID is
// id: WorkerRecordPrefix + id, or + a hash of id when id cannot be part of
// a key (the record keeps the ID itself).
func workerKey(id string) string {
	key := WorkerRecordPrefix + id
	if len(id) > 200 || ports.ValidateKey(key) != nil {
		sum := sha256.Sum256([]byte(id))
		key = WorkerRecordPrefix + hex.EncodeToString(sum[:16])
	}
	return key
}

// workerRegistry keeps the record of the Runtime's process: the pools
// started through the Runtime, and the loop that rewrites it.
type workerRegistry struct {
	state    ports.StateStore // nil: the registry is off
	interval time.Duration
	log      *slog.Logger
	host     string
	pid      int
	version  string

	// io serialises the store's requests (sync), so that the store ends as
	// the last sync saw the state. written (guarded by io) is the key of a
	// record this process may have in the store.
	io      sync.Mutex
	written string

	mu      sync.Mutex
	pools   []*registeredPool
	id, key string
	started time.Time
	// stopLoop ends the heartbeat loop of the current record; loopDone is
	// closed when it has ended.
	stopLoop context.CancelFunc
	loopDone chan struct{}
	closed   bool
}

// registeredPool is one pool of the process's record.
type registeredPool struct {
	workers     []*core.Worker
	queue       string
	concurrency int // of each worker
}

// newWorkerRegistry returns the registry of a Runtime: off (every method a
// no-op) when interval is 0 or the state store cannot list its keys, since
// then nobody could read the record.
func newWorkerRegistry(state ports.StateStore, interval time.Duration, log *slog.Logger, version string) *workerRegistry {
	g := &workerRegistry{interval: interval, log: log, pid: os.Getpid(), version: version}
	if _, ok := state.(ports.KeyLister); ok && interval > 0 {
		g.state = state
	}
	g.host, _ = os.Hostname()
	if g.version == "" {
		g.version = defaultVersion()
	}
	return g
}

// enter adds a pool to the record, writes the record at once and returns
// the function that takes the pool out again (once its workers returned);
// the first pool starts the heartbeat loop, the last one's leave stops it
// and deletes the record.
func (g *workerRegistry) enter(p *registeredPool) (leave func()) {
	if g.state == nil || len(p.workers) == 0 {
		return func() {}
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return func() {}
	}
	g.pools = append(g.pools, p)
	if len(g.pools) == 1 {
		g.id = p.workers[0].ID()
		g.key = workerKey(g.id)
		g.started = time.Now()
		ctx, stop := context.WithCancel(context.Background())
		g.stopLoop, g.loopDone = stop, make(chan struct{})
		go g.loop(ctx, g.loopDone)
	}
	g.mu.Unlock()
	g.sync(context.Background())
	return func() { g.leave(p) }
}

// leave takes p out of the record. When it was the last pool, the loop
// stops and the record is deleted; otherwise the next heartbeat writes the
// smaller record.
func (g *workerRegistry) leave(p *registeredPool) {
	g.mu.Lock()
	g.pools = slices.DeleteFunc(g.pools, func(q *registeredPool) bool { return q == p })
	last := len(g.pools) == 0
	stop, done := g.takeLoopLocked(last)
	g.mu.Unlock()
	if last {
		stop()
		<-done
		g.sync(context.Background())
	}
}

// close ends the registry with its Runtime: no pool enters any more, the
// loop stops and the record, if any, is deleted.
func (g *workerRegistry) close() {
	if g.state == nil {
		return
	}
	g.mu.Lock()
	g.closed = true
	g.pools = nil
	stop, done := g.takeLoopLocked(true)
	g.mu.Unlock()
	stop()
	<-done
	g.sync(context.Background())
}

// takeLoopLocked hands out the stop function and done channel of the
// heartbeat loop when take is set and a loop runs (no-ops otherwise).
func (g *workerRegistry) takeLoopLocked(take bool) (context.CancelFunc, <-chan struct{}) {
	if !take || g.stopLoop == nil {
		done := make(chan struct{})
		close(done)
		return func() {}, done
	}
	stop, done := g.stopLoop, g.loopDone
	g.stopLoop, g.loopDone = nil, nil
	return stop, done
}

// loop rewrites the record every interval until ctx is done.
func (g *workerRegistry) loop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(g.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.sync(ctx)
		}
	}
}

// sync makes the store hold what the registry holds now: the record while
// pools run, nothing once they all stopped. Failures are logged: the
// registry is informative, a worker keeps serving without it.
func (g *workerRegistry) sync(ctx context.Context) {
	g.io.Lock()
	defer g.io.Unlock()
	g.mu.Lock()
	var (
		key  string
		data []byte
	)
	if len(g.pools) > 0 {
		key = g.key
		data, _ = json.Marshal(g.recordLocked(time.Now())) // plain data: never fails
	}
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, registryWriteTimeout)
	defer cancel()
	if g.written != "" && g.written != key {
		if err := g.state.Delete(ctx, g.written); err != nil {
			g.log.Warn("worker registry: could not delete this process's record; it will read as stale, then expire",
				"key", g.written, "err", err)
		} else {
			g.written = ""
		}
	}
	if key == "" {
		return
	}
	g.written = key // it may land even if the call fails
	if _, err := g.state.Put(ctx, key, data, ports.WriteCondition{}); err != nil && ctx.Err() == nil {
		g.log.Warn("worker registry: could not write this process's record", "key", key, "err", err)
	}
}

// recordLocked is the record as of now.
func (g *workerRegistry) recordLocked(now time.Time) workerRecord {
	rec := workerRecord{ID: g.id, Host: g.host, PID: g.pid, Version: g.version, StartedAt: g.started,
		SeenAt: now, Interval: g.interval.String(), Queues: []string{}}
	for _, p := range g.pools {
		if !slices.Contains(rec.Queues, p.queue) {
			rec.Queues = append(rec.Queues, p.queue)
		}
		for _, w := range p.workers {
			rec.Concurrency += p.concurrency
			rec.InFlight += w.InFlight()
		}
	}
	return rec
}

// defaultVersion is the version of the dagq module in the build info: the
// main module's (the dagq command) or a dependency's (a program embedding
// dagq); "dev" when it has none.
func defaultVersion() string {
	const module = "github.com/dagq/dagq"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if bi.Main.Path == module && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == module && d.Version != "" && d.Version != "(devel)" {
			return d.Version
		}
	}
	return "dev"
}

// workerRegistry returns the Runtime's registry, made on first use.
func (r *Runtime) workerRegistry() *workerRegistry {
	r.registryOnce.Do(func() {
		log := r.Logger
		if log == nil {
			log = slog.Default()
		}
		r.registry = newWorkerRegistry(r.Ports.State, r.Config.Worker.RegistryInterval, log, r.version)
	})
	return r.registry
}

// Workers lists the worker registry: every worker process that publishes
// a record in the state store (dagq worker, and any process serving queues
// through a Runtime's StartWorkers or StartRunWorkers with
// worker.registry_interval above 0), live ones first, then stale ones
// (Stale: no heartbeat for StaleIntervals of the interval the process
// writes with), each group by ID.
//
// It costs one list request per 1,000 records (S3: ListObjectsV2) plus one
// read per record (S3: GET), up to 16 at a time. Records stale for more than
// WorkerRecordExpiry (a process that died without a graceful stop) are
// deleted on the way (one DELETE each) and not returned. Staleness compares
// the writer's clock (SeenAt) with this process's: hosts should keep their
// clocks in sync (NTP), well within an interval.
//
// A state store that cannot list its keys (no ports.KeyLister) has no
// registry: Workers fails with ports.ErrUnsupported.
func (r *Runtime) Workers(ctx context.Context) ([]WorkerInfo, error) {
	lister, ok := r.Ports.State.(ports.KeyLister)
	if !ok {
		return nil, fmt.Errorf("app: worker registry: the state store (%T) cannot list its keys (ports.KeyLister): %w",
			r.Ports.State, ports.ErrUnsupported)
	}
	var keys []string
	for after := ""; ; {
		page, more, err := lister.ListKeys(ctx, WorkerRecordPrefix, after, ports.MaxListKeys)
		if err != nil {
			return nil, fmt.Errorf("app: list the worker registry: %w", err)
		}
		keys = append(keys, page...)
		if !more || len(page) == 0 {
			break
		}
		after = page[len(page)-1]
	}
	now := time.Now()
	infos := make([]*WorkerInfo, len(keys))
	errs := make([]error, len(keys))
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range min(workersReadParallel, len(keys)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(keys) || ctx.Err() != nil {
					return
				}
				infos[i], errs[i] = r.readWorker(ctx, keys[i], now)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("app: read the worker registry: %w", err)
	}
	out := make([]WorkerInfo, 0, len(keys))
	for _, info := range infos {
		if info != nil {
			out = append(out, *info)
		}
	}
	slices.SortFunc(out, func(a, b WorkerInfo) int {
		if a.Stale != b.Stale {
			if a.Stale {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

// readWorker reads the record under key: nil when it is gone (the process
// stopped since the listing), is not a record (logged), or expired (then
// deleted).
func (r *Runtime) readWorker(ctx context.Context, key string, now time.Time) (*WorkerInfo, error) {
	got, err := r.Ports.State.Get(ctx, key)
	switch {
	case errors.Is(err, ports.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("app: read worker record %s: %w", key, err)
	}
	var rec workerRecord
	if err := json.Unmarshal(got.Data, &rec); err != nil || rec.ID == "" {
		r.logger().Warn("worker registry: skipping an object that is not a worker record", "key", key, "err", err)
		return nil, nil
	}
	if rec.SeenAt.IsZero() {
		rec.SeenAt = got.UpdatedAt
	}
	interval, err := time.ParseDuration(rec.Interval)
	if err != nil || interval <= 0 {
		interval = cmp.Or(r.Config.Worker.RegistryInterval, config.DefaultRegistryInterval)
	}
	staleAfter := StaleIntervals * interval
	age := now.Sub(rec.SeenAt)
	if age > staleAfter+WorkerRecordExpiry {
		if err := r.Ports.State.Delete(ctx, key); err != nil {
			r.logger().Warn("worker registry: could not delete an expired record", "key", key, "err", err)
		}
		return nil, nil
	}
	queues := rec.Queues
	if queues == nil {
		queues = []string{}
	}
	return &WorkerInfo{ID: rec.ID, Host: rec.Host, PID: rec.PID, Version: rec.Version, Queues: queues,
		Concurrency: rec.Concurrency, InFlight: rec.InFlight, StartedAt: rec.StartedAt, SeenAt: rec.SeenAt,
		Stale: age > staleAfter}, nil
}

func (r *Runtime) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}
