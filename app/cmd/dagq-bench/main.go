// Command dagq-bench is the dagq benchmark ("make bench"): memory-transport
// throughput and DAG overhead, and, against the local emulators (fauxqs and
// versitygw, scripts/emulators.sh), SQS throughput at worker concurrency 1,
// 10 and 32 next to a raw aws-sdk-go-v2 baseline (dagq ÷ raw), AWS
// requests and CPU per task, end-to-end and cancellation latency, idle
// requests and request cost. It prints a table, then one JSON object on its
// last line (also written to $BENCH_OUT when set). See package
// app/cmd/dagq-bench/internal/bench.
//
//	dagq-bench [-quick] [-idle-window 40s] [-out FILE] [-only raw,sqs,…] [-sqs-tasks N] [-sqs-concurrency 1,10,32]
//
// "dagq-bench -soak 30m" runs the soak instead ("make soak"): three worker
// processes on the emulators under rolling SIGTERM restarts and kill -9s,
// then checks that every task has one stored result, every run finished
// and no queue holds a message (-soak-tasks, -soak-runs,
// -soak-sigterm-every, -soak-kill-every, -soak-drain; see -h).
//
// "dagq-bench worker" is the worker process the benchmark starts itself
// (and BENCH_ROLE=raw the raw baseline's consumer process).
package main

import (
	"context"
	"os"

	"github.com/dagq/dagq/app/cmd/dagq-bench/internal/bench"
)

func main() {
	os.Exit(bench.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
