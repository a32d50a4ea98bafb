package cli_test

// The process harness of the multi-process tests (TestE2E_*, TestFault_*):
// "dagq worker" OS processes (the test binary re-executed, see TestMain),
// their handler journals (journal_test.go), their logs, and stopping or
// killing them.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/builtin"
	"github.com/dagq/dagq/app/cli"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
)

// e2eWorkerEnv, when set, makes the test binary a "dagq worker" process of
// a multi-process test (see TestMain): its value is the command line, a
// JSON array. The DAGQ_TEST_ prefix keeps the configuration loader from
// warning about it.
const e2eWorkerEnv = "DAGQ_TEST_E2E_WORKER_ARGS"

// e2eWorkerMain runs the dagq command line with the built-in tasks, as
// cmd/dagq does, on the arguments in argsJSON and returns its exit code.
// When e2eJournalEnv names a file, every handler run is recorded there
// (journalMiddleware). It stops the process when its standard input (a pipe
// from the test process) reaches EOF: the test process is gone, and no
// worker outlives it.
func e2eWorkerMain(argsJSON string) int {
	var args []string
	if err := json.Unmarshal([]byte(argsJSON), &args); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", e2eWorkerEnv, err)
		return 2
	}
	reg := core.NewRegistry()
	if path := os.Getenv(e2eJournalEnv); path != "" {
		f, err := openJournal(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", e2eJournalEnv, err)
			return 2
		}
		defer f.Close()
		reg.Use(journalMiddleware(f))
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		fmt.Fprintln(os.Stderr, "e2e worker: the test process is gone; stopping")
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		time.Sleep(15 * time.Second)
		os.Exit(3)
	}()
	builtin.MustRegister(reg)
	return cli.Execute(context.Background(), reg, args, os.Stdout, os.Stderr)
}

// e2eProc is one "dagq worker" OS process.
type e2eProc struct {
	name        string
	cmd         *exec.Cmd
	logPath     string
	journalPath string        // its handler journal (e2eJournalEnv)
	runs        bool          // it serves the run queue too (no --runs=false)
	done        chan struct{} // closed once the process exited
	waitErr     error
	killed      bool // SIGKILLed on purpose: its exit status is not checked
	// stepWorker and runWorker are the IDs of its step worker and run
	// worker, from its startup lines.
	stepWorker, runWorker string
}

func (p *e2eProc) logs() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// exited reports whether the process has exited.
func (p *e2eProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// e2eLogLine is one JSON log line of a worker process. The tests read the
// logs for what only logs show (readiness, bounded error logging, what a
// worker decided about a message no handler ran for); what the handlers did
// is in the handler journal.
type e2eLogLine struct {
	Time   time.Time `json:"time"`
	Level  string    `json:"level"`
	Msg    string    `json:"msg"`
	Worker string    `json:"worker"`
	TaskID string    `json:"task_id"`
	Err    string    `json:"err"`
	// MessageID is the broker message of a delivery not decoded (yet).
	MessageID string `json:"message_id"`
}

// logLines returns the JSON log lines of the process (the other lines are
// the CLI's own messages).
func (p *e2eProc) logLines() []e2eLogLine {
	var out []e2eLogLine
	sc := bufio.NewScanner(strings.NewReader(p.logs()))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var l e2eLogLine
		if line := sc.Bytes(); len(line) > 0 && line[0] == '{' && json.Unmarshal(line, &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

var (
	e2eStepWorkerLine = regexp.MustCompile(`(?m)^dagq: worker (\S+) serving queue `)
	e2eRunWorkerLine  = regexp.MustCompile(`(?m)^dagq: run worker (\S+) serving run queue `)
)

// startE2EWorker starts "dagq worker" in a new process (the test binary,
// see TestMain) with env added to the environment, and stops it in
// t.Cleanup: SIGTERM, then SIGKILL after 15s. Its stdout and stderr go to a
// file that is printed when the test fails; its handlers record their runs
// in a journal file of their own (e2eProc.journal).
func startE2EWorker(t *testing.T, name string, args, env []string) *e2eProc {
	t.Helper()
	argsJSON, err := json.Marshal(args)
	require.NoError(t, err)
	dir := t.TempDir()
	p := &e2eProc{name: name, logPath: filepath.Join(dir, name+".log"), journalPath: filepath.Join(dir, name+".journal"),
		done: make(chan struct{}), runs: !slices.Contains(args, "--runs=false")}
	logFile, err := os.Create(p.logPath)
	require.NoError(t, err)
	defer logFile.Close() // the child has its own descriptor
	// Created here, so that an empty journal reads as one (the child
	// appends to it).
	journalFile, err := os.Create(p.journalPath)
	require.NoError(t, err)
	require.NoError(t, journalFile.Close())

	// -test.run=^$: should TestMain not turn the binary into a worker, it
	// runs no test (and starts no worker processes of its own) and exits.
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	// The parent's DAGQ_ variables (sqsEnv's, the emulators') do not leak
	// into the worker: it gets exactly env.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix+"_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Env = append(p.cmd.Env, e2eWorkerEnv+"="+string(argsJSON), e2eJournalEnv+"="+p.journalPath)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	// The worker exits when this pipe closes, that is when this process
	// dies, however it dies (e2eWorkerMain).
	stdin, err := p.cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(15 * time.Second):
				t.Errorf("%s (pid %d) did not stop within 15s of SIGTERM; killing it", name, p.cmd.Process.Pid)
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		_ = stdin.Close()
		logs := p.logs()
		if p.waitErr != nil && !p.killed {
			t.Errorf("%s (pid %d) exited with %v", name, p.cmd.Process.Pid, p.waitErr)
		}
		assert.NotContains(t, logs, "DATA RACE", name)
		assert.NotContains(t, logs, "panic", name)
		if t.Failed() {
			t.Logf("=== %s (pid %d) log, debug lines left out:\n%s", name, p.cmd.Process.Pid, withoutDebug(logs))
		}
	})
	return p
}

// startReadyWorker is startE2EWorker followed by waitReady.
func startReadyWorker(t *testing.T, name string, args, env []string) *e2eProc {
	t.Helper()
	p := startE2EWorker(t, name, args, env)
	p.waitReady(t)
	return p
}

// waitReady waits until the process's workers (the step worker, and the run
// worker unless --runs=false) logged "worker started", which comes after
// their cancel subscription, and records their IDs. It fails the test when
// the process exits first or takes more than 30s.
func (p *e2eProc) waitReady(t *testing.T) {
	t.Helper()
	want := 1
	if p.runs {
		want = 2
	}
	require.Eventually(t, func() bool {
		if p.exited() {
			return true // fails below
		}
		logs := p.logs()
		s := e2eStepWorkerLine.FindStringSubmatch(logs)
		if s == nil {
			return false
		}
		p.stepWorker = s[1]
		if p.runs {
			r := e2eRunWorkerLine.FindStringSubmatch(logs)
			if r == nil {
				return false
			}
			p.runWorker = r[1]
		}
		var n int
		for _, l := range p.logLines() {
			if l.Msg == "worker started" && (l.Worker == p.stepWorker || (p.runs && l.Worker == p.runWorker)) {
				n++
			}
		}
		return n == want
	}, 30*time.Second, 50*time.Millisecond, "%s did not start", p.name)
	if p.exited() {
		t.Fatalf("%s exited at startup: %v", p.name, p.waitErr)
	}
	if p.runs {
		t.Logf("%s: pid %d, step worker %s, run worker %s", p.name, p.cmd.Process.Pid, p.stepWorker, p.runWorker)
	} else {
		t.Logf("%s: pid %d, step worker %s", p.name, p.cmd.Process.Pid, p.stepWorker)
	}
}

// kill9 sends SIGKILL (no shutdown of any kind) and waits for the exit.
func (p *e2eProc) kill9(t *testing.T) {
	t.Helper()
	p.killed = true
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s (pid %d) still running 10s after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// withoutDebug drops the DEBUG lines of a worker log.
func withoutDebug(logs string) string {
	var b strings.Builder
	debug := 0
	for line := range strings.Lines(logs) {
		if strings.HasPrefix(line, `{"time":`) && strings.Contains(line, `"level":"DEBUG"`) {
			debug++
			continue
		}
		b.WriteString(line)
	}
	fmt.Fprintf(&b, "(%d debug lines left out)\n", debug)
	return b.String()
}

// awsClients returns raw SDK clients on cfg's endpoints, to look into the
// queues and the bucket (or to send messages dagq would not send).
func awsClients(t *testing.T, cfg config.Config) (*awssqs.Client, *awss3.Client) {
	t.Helper()
	awsCfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion(cfg.SQS.Region))
	require.NoError(t, err)
	if b, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient); ok { // as app.ProvideAWSConfig: closable idle connections
		tr := b.GetTransport()
		awsCfg.HTTPClient = &http.Client{Transport: tr}
		t.Cleanup(tr.CloseIdleConnections)
	}
	sqsc := awssqs.NewFromConfig(awsCfg, func(o *awssqs.Options) { o.BaseEndpoint = aws.String(cfg.SQS.Endpoint) })
	s3c := awss3.NewFromConfig(awsCfg, func(o *awss3.Options) {
		o.BaseEndpoint = aws.String(cfg.S3.Endpoint)
		o.UsePathStyle = true
	})
	return sqsc, s3c
}
