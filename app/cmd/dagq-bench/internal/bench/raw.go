package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
)

// The raw aws-sdk-go-v2 baseline: what the SDK alone does on the same
// emulator, the same number of no-op tasks and the same concurrency as
// dagq's SQS throughput scenario, with no results. The producer runs in the
// bench process (where dagq's client runs) and sends with SendMessageBatch
// of 10, one request after the other (as dagq's SubmitBatch does); the
// consumer is a separate process (RoleEnv=raw) with c goroutines, each
// receiving 10 at a time with long polling (dagq's sqs.wait_time), running
// a no-op per message and deleting them with one DeleteMessageBatch.

// Environment of a raw consumer process (RoleEnv=raw).
const (
	// RawQueueEnv is the URL of the queue to consume.
	RawQueueEnv = "BENCH_RAW_QUEUE_URL"
	// RawEndpointEnv is the SQS endpoint (the emulator's).
	RawEndpointEnv = "BENCH_RAW_ENDPOINT"
	// RawConcurrencyEnv is the number of receiving goroutines.
	RawConcurrencyEnv = "BENCH_RAW_CONCURRENCY"
	// RawTasksEnv is the number of messages after whose deletion the
	// consumer prints its bench-raw-done line.
	RawTasksEnv = "BENCH_RAW_TASKS"
	// RawWaitEnv is the long-polling wait of a receive (a duration).
	RawWaitEnv = "BENCH_RAW_WAIT"
)

// lineRawDone: bench-raw-done <unixnano> <received> <deleted>, printed by
// a raw consumer once it has deleted RawTasksEnv messages.
const lineRawDone = "bench-raw-done"

// rawDone is the payload of a bench-raw-done line.
type rawDone struct {
	at                time.Time
	received, deleted int64
}

// rawNoop is the raw consumer's handler: nothing.
var rawNoop = func(string) {}

// rawSQSClient is an SQS client on endpoint from the standard AWS chain
// (region us-east-1 unless the chain names one), the client dagq's
// transport builds, with counter (when not nil) on every request.
func rawSQSClient(ctx context.Context, endpoint string, counter *cli.AWSCounter) (*sqs.Client, error) {
	ac, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if ac.Region == "" {
		ac.Region = config.DefaultRegion
	}
	if counter != nil {
		ac.APIOptions = append(ac.APIOptions, counter.APIOption, rttAPIOption)
	}
	return sqs.NewFromConfig(ac, func(o *sqs.Options) { o.BaseEndpoint = aws.String(endpoint) }), nil
}

// RawMain runs a raw consumer process (RoleEnv=raw; see the Raw*Env
// variables): bench-ready once its goroutines run, bench-raw-done once it
// has deleted the expected number of messages, and its request counts (a
// final bench-counts line) when SIGTERM or SIGINT stops it. It returns the
// exit code.
func RawMain(ctx context.Context, stdout, stderr io.Writer) int {
	if err := runRaw(ctx, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "dagq-bench raw consumer: %v\n", err)
		return 1
	}
	return 0
}

func runRaw(ctx context.Context, stdout, stderr io.Writer) error {
	out := &lineWriter{w: stdout}
	url, endpoint := os.Getenv(RawQueueEnv), os.Getenv(RawEndpointEnv)
	conc, err1 := strconv.Atoi(os.Getenv(RawConcurrencyEnv))
	tasks, err2 := strconv.ParseInt(os.Getenv(RawTasksEnv), 10, 64)
	wait, err3 := time.ParseDuration(os.Getenv(RawWaitEnv))
	if err := errors.Join(err1, err2, err3); err != nil || url == "" || endpoint == "" || conc < 1 {
		return fmt.Errorf("%s, %s, %s, %s and %s must be set (the bench sets them on the processes it starts): %v",
			RawQueueEnv, RawEndpointEnv, RawConcurrencyEnv, RawTasksEnv, RawWaitEnv, err)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	counter := cli.NewAWSCounter()
	client, err := rawSQSClient(ctx, endpoint, counter)
	if err != nil {
		return err
	}
	var received, deleted atomic.Int64
	var doneOnce sync.Once
	var failures atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				rec, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
					QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: int32(wait / time.Second),
				})
				if err != nil {
					if ctx.Err() == nil && failures.Add(1) <= 10 {
						fmt.Fprintf(stderr, "receive: %v\n", err)
					}
					continue
				}
				if len(rec.Messages) == 0 {
					continue
				}
				received.Add(int64(len(rec.Messages)))
				entries := make([]types.DeleteMessageBatchRequestEntry, len(rec.Messages))
				for i, m := range rec.Messages {
					rawNoop(aws.ToString(m.Body))
					entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
				}
				del, err := client.DeleteMessageBatch(context.WithoutCancel(ctx), &sqs.DeleteMessageBatchInput{
					QueueUrl: aws.String(url), Entries: entries,
				})
				if err != nil {
					fmt.Fprintf(stderr, "delete: %v\n", err)
					continue
				}
				for _, f := range del.Failed {
					fmt.Fprintf(stderr, "delete: entry %s: %s %s\n", aws.ToString(f.Id), aws.ToString(f.Code), aws.ToString(f.Message))
				}
				if n := deleted.Add(int64(len(del.Successful))); n >= tasks {
					doneOnce.Do(func() {
						out.printf("%s %d %d %d", lineRawDone, time.Now().UnixNano(), received.Load(), n)
					})
				}
			}
		})
	}
	out.printf("%s raw-consumer", lineReady)
	<-ctx.Done()
	wg.Wait()
	b, _ := json.Marshal(countsReport{At: time.Now().UnixNano(), Final: true, Counts: counter.Snapshot()})
	out.printf("%s %s", lineCounts, b)
	return nil
}

// rawResult is one raw round's numbers.
type rawResult struct {
	tasks, concurrency int
	took               time.Duration // first send → last delete observed
	producerCPU        time.Duration // the bench process's user+system CPU while it sent
	consumerCPU        time.Duration // the consumer process's, from the first send to its exit
	consumerFromStart  bool          // consumerCPU is its whole lifetime (no /proc)
	producer, consumer cli.AWSCounts
	received           int64        // messages the consumer received (> tasks: redeliveries)
	emulators          emulatorCPUs // the emulators' CPU, first send → the consumer's exit
}

func (r rawResult) tasksPerSec() float64 { return float64(r.tasks) / r.took.Seconds() }

func (r rawResult) cpuMsPerTask() float64 {
	return ms(r.producerCPU+r.consumerCPU) / float64(r.tasks)
}

func (r rawResult) sqsRequestsPerTask() float64 {
	return float64(r.producer.Plus(r.consumer).Service("SQS")) / float64(r.tasks)
}

// rawMedian runs rawRounds raw rounds of concurrency c and returns the
// one of median throughput, and every round's throughput in the order run.
// A raw round takes a fraction of a second, so one round's number moves
// with whatever else the machine does at that moment.
func (b *bencher) rawMedian(ctx context.Context, c, n int) (rawResult, []float64, error) {
	var rounds []rawResult
	var rates []float64
	for i := range max(1, b.sz.rawRounds) {
		r, err := b.rawRound(ctx, c, n, i)
		if err != nil {
			return r, nil, err
		}
		rounds = append(rounds, r)
		rates = append(rates, r.tasksPerSec())
	}
	sorted := slices.Clone(rounds)
	slices.SortFunc(sorted, func(x, y rawResult) int { return cmp.Compare(x.tasksPerSec(), y.tasksPerSec()) })
	return sorted[len(sorted)/2], rates, nil
}

// rawRound runs the raw baseline once: n no-op messages on a fresh queue,
// consumed by a fresh consumer process of concurrency c.
func (b *bencher) rawRound(ctx context.Context, c, n, round int) (rawResult, error) {
	res := rawResult{tasks: n, concurrency: c}
	admin, err := rawSQSClient(ctx, b.opts.SQSEndpoint, nil)
	if err != nil {
		return res, err
	}
	q, err := admin.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("%s-raw-c%d-%d", b.prefix, c, round))})
	if err != nil {
		return res, fmt.Errorf("create the raw queue: %w", err)
	}
	url := aws.ToString(q.QueueUrl)
	defer func() {
		_, _ = admin.DeleteQueue(context.WithoutCancel(ctx), &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl})
	}()

	p, err := b.startProc(fmt.Sprintf("raw-c%d-%d", c, round), "raw", []string{
		RawQueueEnv + "=" + url,
		RawEndpointEnv + "=" + b.opts.SQSEndpoint,
		RawConcurrencyEnv + "=" + strconv.Itoa(c),
		RawTasksEnv + "=" + strconv.Itoa(n),
		RawWaitEnv + "=" + config.Default().SQS.WaitTime.String(),
	}, nil)
	if err != nil {
		return res, err
	}
	counter := cli.NewAWSCounter()
	producer, err := rawSQSClient(ctx, b.opts.SQSEndpoint, counter)
	if err != nil {
		_, _ = stopAll(p)
		return res, err
	}
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = fmt.Sprintf(`{"task":%q,"id":"%s-raw-%07d","args":null}`, TaskNoop, b.prefix, i)
	}
	consumer0, consumerErr := procCPU(p.cmd.Process.Pid)
	self0 := selfCPU()
	emu0 := emulatorsCPU()
	start := time.Now()
	err = rawSend(ctx, producer, url, bodies)
	res.producerCPU = selfCPU() - self0
	res.producer = counter.Snapshot()
	var done rawDone
	if err == nil {
		done, err = p.waitRawDone(ctx, 2*time.Minute)
	}
	counts, serr := stopAll(p)
	if err = errors.Join(err, serr); err != nil {
		return res, err
	}
	res.took = done.at.Sub(start)
	res.received = done.received
	res.consumer = counts
	res.consumerCPU = p.cpu - consumer0
	res.consumerFromStart = consumerErr != nil
	res.emulators = emulatorsCPU().since(emu0)
	return res, nil
}

// rawSend sends bodies to url with SendMessageBatch requests of 10, one
// after the other.
func rawSend(ctx context.Context, client *sqs.Client, url string, bodies []string) error {
	entries := make([]types.SendMessageBatchRequestEntry, 0, 10)
	for start := 0; start < len(bodies); start += 10 {
		entries = entries[:0]
		for i, body := range bodies[start:min(start+10, len(bodies))] {
			entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(body)})
		}
		out, err := client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			return fmt.Errorf("send: %w", err)
		}
		if len(out.Failed) > 0 {
			f := out.Failed[0]
			return fmt.Errorf("send: %d of %d entries failed, e.g. %s: %s", len(out.Failed), len(entries), aws.ToString(f.Code), aws.ToString(f.Message))
		}
	}
	return nil
}

// waitRawDone waits for the bench-raw-done line of p.
func (p *proc) waitRawDone(ctx context.Context, timeout time.Duration) (rawDone, error) {
	select {
	case <-p.doneCh:
		return p.done, nil
	case <-p.exited:
		return rawDone{}, fmt.Errorf("raw consumer %s exited before it deleted every message: %v", p.name, p.err)
	case <-time.After(timeout):
		return rawDone{}, fmt.Errorf("raw consumer %s: not every message deleted after %s", p.name, timeout)
	case <-ctx.Done():
		return rawDone{}, ctx.Err()
	}
}
