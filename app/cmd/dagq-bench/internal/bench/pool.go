package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// benchPool is the concurrency pool of the pool scenario, and poolLimit its
// limit: far above the worker's concurrency, so that no task ever waits and
// the scenario measures what a slot costs, not a queue of waiters.
const (
	benchPool = "bench"
	poolLimit = 100
)

// poolOverhead measures what a fleet-wide concurrency pool adds to a task
// on the sqs transport when the pool has room: the requests of a round of
// no-op tasks with and without a pool (each on a fresh worker process), and
// the latency of sequential Submit+Wait round trips with and without one,
// interleaved on the same worker process so that both see the same machine.
func (b *bencher) poolOverhead(ctx context.Context, res *Results) error {
	n := max(b.sz.sqsTasks/4, 10)
	var rounds [2]sqsRound
	for i, pooled := range []bool{false, true} {
		r, err := b.poolRound(ctx, n, pooled)
		if err != nil {
			return fmt.Errorf("requests, pool %v: %w", pooled, err)
		}
		rounds[i] = r
	}
	per := func(r sqsRound, service string) float64 {
		return float64(r.total().Service(service)) / float64(r.tasks)
	}
	res.PoolS3RequestsAddedPerTask = per(rounds[1], "S3") - per(rounds[0], "S3")
	b.add("sqs: pool requests", "S3 requests/task added", fmt.Sprintf("%.3f", res.PoolS3RequestsAddedPerTask), "≈ 4",
		fmt.Sprintf("%d no-op tasks, policy durable, one SubmitBatch + WaitAll, 1 worker process of concurrency 10, with pool %s (limit %d: never full) "+
			"vs without: %.3f vs %.3f S3 requests/task; expected: 1 LIST + 1 GET + 1 PUT to take the slot, 1 PUT to free it "+
			"(a conflict with a task taking the same slot adds a GET and a PUT). SQS %.3f vs %.3f requests/task: no SQS request of its own, "+
			"but the slot's requests before each start spread the finishes, so completions and deletes are batched less; %.0f vs %.0f tasks/s",
			n, benchPool, poolLimit, per(rounds[1], "S3"), per(rounds[0], "S3"), per(rounds[1], "SQS"), per(rounds[0], "SQS"),
			rounds[1].tasksPerSec(), rounds[0].tasksPerSec()))
	b.extra = append(b.extra,
		breakdown(fmt.Sprintf("Requests of the pool round (%d no-op tasks in pool %s, concurrency 10, policy durable), per operation:",
			n, benchPool), n, rounds[1].client, rounds[1].workers),
		breakdown(fmt.Sprintf("Requests of the same round without a pool (%d no-op tasks, concurrency 10, policy durable), per operation:", n),
			n, rounds[0].client, rounds[0].workers))

	with, without, err := b.poolLatency(ctx)
	if err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	p50w, p50o := ms(percentile(with, 0.5)), ms(percentile(without, 0.5))
	res.PoolE2EP50Ms, res.PoolE2EP50MsWithout = p50w, p50o
	b.add("sqs: pool end to end", "p50 ms", fmt.Sprintf("%.1f", p50w), "",
		fmt.Sprintf("%d sequential Submit+Wait of a no-op task in pool %s (limit %d), interleaved with as many without a pool on the same worker "+
			"process (concurrency 10); p99 %.1f ms; without: p50 %.1f ms, p99 %.1f ms",
			len(with), benchPool, poolLimit, ms(percentile(with, 0.99)), p50o, ms(percentile(without, 0.99))))
	b.add("sqs: pool end to end", "p50 ms added", fmt.Sprintf("%.1f", p50w-p50o), "",
		"p50 with a pool minus p50 without: the slot's LIST + GET + PUT before the start (the PUT that frees it comes after the result)")
	return nil
}

// poolRound submits n no-op tasks (in pool benchPool when pooled) with one
// SubmitBatch to a fresh worker process of concurrency 10 that has the
// pool, waits for them and counts the requests of both processes.
func (b *bencher) poolRound(ctx context.Context, n int, pooled bool) (sqsRound, error) {
	r := sqsRound{tasks: n, concurrency: 10, policy: core.ResultDurable}
	tag := fmt.Sprintf("pool-%v", pooled)
	cfg, err := b.sqsConfig(ctx, tag, r.concurrency)
	if err != nil {
		return r, err
	}
	cfg.Pools = map[string]int{benchPool: poolLimit}
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
	reqs := noops(n, core.ResultDurable)
	if pooled {
		for i := range reqs {
			reqs[i].Pool = benchPool
		}
	}
	start := time.Now()
	ids, err := rt.Client.SubmitBatch(ctx, reqs...)
	var rs []ports.Result
	if err == nil {
		rs, err = rt.Client.WaitAll(ctx, ids...)
	}
	r.took = time.Since(start)
	rt.Close()
	workerCounts, werr := stopAll(w)
	if err = errors.Join(err, werr, checkSucceeded(rs)); err != nil {
		return r, err
	}
	r.client, r.workers = counter.Snapshot(), workerCounts
	return r, nil
}

// poolLatency returns the latencies of sequential Submit+Wait round trips
// of no-op tasks with and without the pool, alternating, on one fresh
// worker process of concurrency 10.
func (b *bencher) poolLatency(ctx context.Context) (with, without []time.Duration, err error) {
	tag := "pool-e2e"
	cfg, err := b.sqsConfig(ctx, tag, 10)
	if err != nil {
		return nil, nil, err
	}
	cfg.Pools = map[string]int{benchPool: poolLimit}
	w, err := b.startWorker(tag, cfg, procOptions{runs: true}, nil)
	if err != nil {
		return nil, nil, err
	}
	rt, err := app.New(cfg, b.reg, app.WithLogger(b.log))
	if err != nil {
		_, _ = stopAll(w)
		return nil, nil, err
	}
	defer rt.Close()
	for i := range b.sz.e2eWarmup + b.sz.e2eTasks {
		for _, pooled := range []bool{i%2 == 0, i%2 != 0} { // alternate which goes first
			req := core.Request{Task: TaskNoop}
			if pooled {
				req.Pool = benchPool
			}
			t0 := time.Now()
			var r ports.Result
			id, err := rt.Client.Submit(ctx, req)
			if err == nil {
				r, err = rt.Client.Wait(ctx, id)
			}
			if err == nil {
				err = checkSucceeded([]ports.Result{r})
			}
			if err != nil {
				_, _ = stopAll(w)
				return nil, nil, err
			}
			if i < b.sz.e2eWarmup {
				continue
			}
			if pooled {
				with = append(with, time.Since(t0))
			} else {
				without = append(without, time.Since(t0))
			}
		}
	}
	if _, err := stopAll(w); err != nil {
		return nil, nil, err
	}
	return with, without, nil
}
