// Command service is a small HTTP service that runs dagq on SQS + S3: it
// starts a DAG job on request and runs the worker that executes its steps in
// the same binary. Configuration comes from the environment:
//
//	DAGQ_SQS_QUEUE_URL   the SQS task queue (required; create it first, e.g. dagq queue init)
//	DAGQ_S3_BUCKET       the S3 bucket of results and large payloads (required)
//	DAGQ_S3_PREFIX       key prefix in the bucket (default dagq/)
//	DAGQ_S3_PATH_STYLE   true for S3 emulators (path-style addressing)
//	DAGQ_SQS_WAIT_TIME   SQS long-polling wait (default 20s)
//	DAGQ_HTTP_ADDR       listen address (default :8080)
//	AWS_REGION, AWS_ENDPOINT_URL(_SQS|_S3), credentials: the AWS SDK's own
//
// Endpoints:
//
//	POST /jobs       {"text": "..."} starts the text-stats job; answers 202 {"run_id": "..."}
//	GET  /jobs/{id}  the run's state and step outputs; ?wait=10s waits up to 10s for the run to end
//
// The wiring is Start: awsports.New builds the ports from the aws.Config,
// then a Worker, a Client and the DAG Executor run over them.
//
//	go run ./examples/service
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/dagq/dagq/adapters/awsports"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := serve(log); err != nil {
		log.Error("service: " + err.Error())
		os.Exit(1)
	}
}

func serve(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	opts, err := OptionsFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	svc, shutdown, err := Start(ctx, opts, log)
	if err != nil {
		return err
	}
	defer shutdown()
	addr := os.Getenv("DAGQ_HTTP_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	srv := &http.Server{Addr: addr, Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	log.Info("service: listening", "addr", addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Start wires the service on SQS + S3 and starts its worker: the AWS
// configuration from the SDK's chain (AWS_REGION, AWS_ENDPOINT_URL, …), the
// ports from awsports, a Worker serving the task queue with the service's
// tasks, and the Executor that runs jobs through a Client. shutdown stops
// the runs, then the worker, and closes everything.
func Start(ctx context.Context, opts awsports.Options, log *slog.Logger) (svc *Service, shutdown func(), err error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, nil, err
	}
	p, closePorts, err := awsports.New(ctx, cfg, opts)
	if err != nil {
		return nil, nil, err
	}
	worker, err := core.NewWorker(core.WorkerOptions{Ports: p, Registry: Registry(), Concurrency: 8, Logger: log})
	if err != nil {
		closePorts()
		return nil, nil, err
	}
	client, err := core.NewClient(core.ClientOptions{Ports: p, Logger: log})
	if err != nil {
		closePorts()
		return nil, nil, err
	}
	exec, _ := dag.NewExecutor(client, dag.ExecutorOptions{Logger: log}) // fails only without a client
	workerCtx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	workerDone := make(chan error, 1)
	go func() { workerDone <- worker.Run(workerCtx) }()
	svc = NewService(exec)
	return svc, func() { svc.Close(); stopWorker(); <-workerDone; _ = client.Close(); closePorts() }, nil
}

// OptionsFromEnv reads the transport options from the environment (see the
// package doc); getenv is os.Getenv. Problems name the variable.
func OptionsFromEnv(getenv func(string) string) (awsports.Options, error) {
	o := awsports.Options{
		QueueURL: getenv("DAGQ_SQS_QUEUE_URL"),
		Bucket:   getenv("DAGQ_S3_BUCKET"),
		Prefix:   "dagq/",
	}
	if v, ok := lookup(getenv, "DAGQ_S3_PREFIX"); ok {
		o.Prefix = v
	}
	var errs []error
	if o.QueueURL == "" {
		errs = append(errs, errors.New("DAGQ_SQS_QUEUE_URL is not set: the URL of the SQS task queue"))
	}
	if o.Bucket == "" {
		errs = append(errs, errors.New("DAGQ_S3_BUCKET is not set: the S3 bucket of results and large payloads"))
	}
	if v, ok := lookup(getenv, "DAGQ_S3_PATH_STYLE"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("DAGQ_S3_PATH_STYLE: %q is not a boolean; valid: true or false", v))
		}
		o.S3PathStyle = b
	}
	if v, ok := lookup(getenv, "DAGQ_SQS_WAIT_TIME"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("DAGQ_SQS_WAIT_TIME: %q is not a duration; valid: e.g. 20s", v))
		}
		o.WaitTime = d
	}
	return o, errors.Join(errs...)
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}
