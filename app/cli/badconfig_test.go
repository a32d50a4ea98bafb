package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/cli"
)

// Invalid configurations through the real command line, from each source
// (file, DAGQ_* environment, flag): the command fails, and stderr names the
// key, its source and what is valid, in clean lines (dagq's own helper
// checks there is no panic or goroutine dump).

const (
	usURL   = "https://sqs.us-east-1.amazonaws.com/123456789012/dagq-tasks"
	usRuns  = "https://sqs.us-east-1.amazonaws.com/123456789012/dagq-runs"
	euURL   = "https://sqs.eu-west-1.amazonaws.com/123456789012/dagq-tasks"
	fifoURL = "https://sqs.us-east-1.amazonaws.com/123456789012/dagq-tasks.fifo"
)

func TestBadConfig_CLI(t *testing.T) {
	validate := []string{"config", "validate"}
	cases := []struct {
		name string
		file string            // config file body (passed with --config)
		env  map[string]string // DAGQ_* variables
		args []string          // command and flags (default: config validate)
		want []string          // each in stderr
	}{
		// A queue URL that is not one.
		{name: "queue_url-file", file: "sqs:\n  queue_url: not-a-url\n",
			want: []string{"sqs.queue_url (file ", `"not-a-url" is not an http(s) URL; valid: an http(s) URL of the form https://sqs.<region>.amazonaws.com/<account>/<queue name>`}},
		{name: "queue_url-env", env: map[string]string{"DAGQ_SQS_QUEUE_URL": "ftp://example.com/1/q"},
			want: []string{"sqs.queue_url (env DAGQ_SQS_QUEUE_URL)", "is not an http(s) URL; valid:"}},
		{name: "queue_url-flag", args: append(validate, "--sqs-queue-url", "https://sqs.us-east-1.amazonaws.com/1/bad$name"),
			want: []string{"sqs.queue_url (flag --sqs-queue-url)", `names queue "bad$name", which may only hold letters, digits, - and _`}},

		// The queue's region differs from sqs.region.
		{name: "region-file", file: "sqs:\n  region: us-east-1\n  queue_url: " + euURL + "\n",
			want: []string{"sqs.queue_url (file ", "is in region eu-west-1 but sqs.region is us-east-1; valid: make sqs.region eu-west-1 (or empty)"}},
		{name: "region-env+flag", env: map[string]string{"DAGQ_SQS_REGION": "us-east-1"}, args: append(validate, "--sqs-queue-url", euURL),
			want: []string{"sqs.queue_url (flag --sqs-queue-url)", "is in region eu-west-1 but sqs.region is us-east-1; valid:"}},
		{name: "region-flag", args: append(validate, "--sqs-region", "Mars-1"),
			want: []string{"sqs.region (flag --sqs-region)", `"Mars-1" is not an AWS region; valid: a region name such as us-east-1`}},

		// Fair queues off on a FIFO queue, and an unknown mode.
		{name: "fair_queue-file", file: "sqs:\n  fair_queue: off\n  queue_url: " + fifoURL + "\n",
			want: []string{"sqs.fair_queue (file ", "is a FIFO queue, which needs a message group on every message; valid: auto or on"}},
		{name: "fair_queue-env", env: map[string]string{"DAGQ_SQS_FAIR_QUEUE": "off", "DAGQ_SQS_QUEUE_URL": fifoURL},
			want: []string{"sqs.fair_queue (env DAGQ_SQS_FAIR_QUEUE)", "valid: auto or on"}},
		{name: "fair_queue-unknown", env: map[string]string{"DAGQ_SQS_FAIR_QUEUE": "maybe"},
			want: []string{"sqs.fair_queue (env DAGQ_SQS_FAIR_QUEUE)", `"maybe" is not a mode; valid: auto, on, off`}},

		// A payload threshold an SQS message cannot carry.
		{name: "threshold-file", file: "payload:\n  threshold: 2000000\n",
			want: []string{"payload.threshold (file ", "2000000 bytes is out of range; valid: 1024 to 786432"}},
		{name: "threshold-env", env: map[string]string{"DAGQ_PAYLOAD_THRESHOLD": "1048576"},
			want: []string{"payload.threshold (env DAGQ_PAYLOAD_THRESHOLD)", "valid: 1024 to 786432"}},
		{name: "threshold-not a number", env: map[string]string{"DAGQ_PAYLOAD_THRESHOLD": "1MiB"},
			want: []string{"payload.threshold (env DAGQ_PAYLOAD_THRESHOLD)", `"1MiB" is not an integer; valid: a whole number`}},

		// Transport sqs without a bucket.
		{name: "bucket-file", file: "transport: sqs\nsqs:\n  queue_url: " + usURL + "\n  run_queue_url: " + usRuns + "\n",
			want: []string{`s3.bucket: is required with transport "sqs"`, "e.g. my-dagq-bucket"}},
		{name: "bucket-env", env: map[string]string{"DAGQ_TRANSPORT": "sqs", "DAGQ_SQS_QUEUE_URL": usURL, "DAGQ_SQS_RUN_QUEUE_URL": usRuns},
			want: []string{`s3.bucket: is required with transport "sqs"`}},
		{name: "bucket-flag", args: append(validate, "--transport", "sqs", "--sqs-queue-url", usURL, "--sqs-run-queue-url", usRuns),
			want: []string{`s3.bucket: is required with transport "sqs"`}},
		{name: "bucket-invalid", args: append(validate, "--s3-bucket", "My_Bucket"),
			want: []string{"s3.bucket (flag --s3-bucket)", "valid: 3 to 63 of lower-case letters"}},

		// An unknown transport.
		{name: "transport-file", file: "transport: kafka\n",
			want: []string{"transport (file ", `"kafka" is not a transport; valid values: memory, sqs`}},
		{name: "transport-env", env: map[string]string{"DAGQ_TRANSPORT": "SQS "},
			want: []string{"transport (env DAGQ_TRANSPORT)", "valid values: memory, sqs"}},
		{name: "transport-flag", args: append(validate, "--transport", "rabbit"),
			want: []string{"transport (flag --transport)", `"rabbit" is not a transport; valid values: memory, sqs`}},

		// A negative concurrency.
		{name: "concurrency-file", file: "worker:\n  concurrency: -1\n",
			want: []string{"worker.concurrency (file ", "-1 is out of range; valid: 1 to 10000"}},
		{name: "concurrency-env", env: map[string]string{"DAGQ_LAUNCHER_CONCURRENCY": "-3"},
			want: []string{"launcher.concurrency (env DAGQ_LAUNCHER_CONCURRENCY)", "-3 is out of range; valid: 1 to 10000"}},
		{name: "concurrency-flag", args: []string{"run", examples + "diamond.yaml", "--concurrency=-1"},
			want: []string{"worker.concurrency (flag --concurrency)", "-1 is out of range; valid: 1 to 10000"}},

		// A duration without a unit.
		{name: "duration-file", file: "worker:\n  lease: 30\n",
			want: []string{"worker.lease (file ", "30 is not a duration; write a number with a unit, e.g. 500ms, 30s, 5m, 1h"}},
		{name: "duration-env", env: map[string]string{"DAGQ_SQS_WAIT_TIME": "20"},
			want: []string{"sqs.wait_time (env DAGQ_SQS_WAIT_TIME)", `"20" is not a duration; write a number with a unit`}},
		{name: "duration-flag", args: []string{"worker", "--launcher-stale-after", "30"},
			want: []string{"--launcher-stale-after", `"30" is not a duration; write a number with a unit, e.g. 500ms, 30s, 5m, 1h (key launcher.stale_after)`}},

		// An integer that is not a number.
		{name: "integer-file", file: "worker:\n  concurrency: many\n",
			want: []string{"worker.concurrency (file ", `"many" is not an integer; valid: a whole number such as 4`}},
		{name: "integer-env", env: map[string]string{"DAGQ_RETRY_MAX_ATTEMPTS": "lots"},
			want: []string{"retry.max_attempts (env DAGQ_RETRY_MAX_ATTEMPTS)", `"lots" is not an integer; valid: a whole number such as 4`}},
		{name: "integer-flag", args: []string{"run", examples + "diamond.yaml", "--concurrency", "many"},
			want: []string{"--concurrency", `"many" is not an integer; valid: a whole number such as 4 (key worker.concurrency)`}},

		// An unknown log level.
		{name: "log.level-file", file: "log:\n  level: loud\n",
			want: []string{"log.level (file ", `"loud" is not a level; valid values: debug, info, warn, error`}},
		{name: "log.level-env", env: map[string]string{"DAGQ_LOG_LEVEL": "verbose"},
			want: []string{"log.level (env DAGQ_LOG_LEVEL)", `"verbose" is not a level; valid values: debug, info, warn, error`}},
		{name: "log.level-flag", args: append(validate, "--log-level", "trace"),
			want: []string{"log.level (flag --log-level)", `"trace" is not a level; valid values: debug, info, warn, error`}},

		// A boolean that is not one, and a file that is not a mapping.
		{name: "bool-flag", args: append(validate, "--cancellation=maybe"),
			want: []string{"--cancellation", `"maybe" is not a boolean; valid: true or false (key cancellation.enabled)`}},
		{name: "bool-env", env: map[string]string{"DAGQ_EXECUTOR_FAIL_FAST": "sometimes"},
			want: []string{"executor.fail_fast (env DAGQ_EXECUTOR_FAIL_FAST)", `"sometimes" is not a boolean; valid: true or false`}},
		{name: "file-list", file: "- transport: sqs\n",
			want: []string{"line 1: the file is a list, not a mapping of keys; valid: lines of key: value"}},
		{name: "file-alias bomb", file: "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" +
			"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n" +
			"g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\nqueue: *h\n",
			want: []string{"aliases (*name) expand the file too much"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(t.TempDir()) // no ./dagq.yaml
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := tc.args
			if args == nil {
				args = validate
			}
			args = append([]string(nil), args...)
			if tc.file != "" {
				p := filepath.Join(t.TempDir(), "dagq.yaml")
				require.NoError(t, os.WriteFile(p, []byte(tc.file), 0o600))
				args = append(args, "--config", p)
			}
			for i, a := range args { // the job file, relative to the package
				if strings.HasPrefix(a, examples) {
					args[i] = filepath.Join(pkgDir, a)
				}
			}
			r := dagq(t, args...)
			require.NotEqual(t, cli.ExitOK, r.code)
			for _, w := range tc.want {
				assert.Contains(t, r.stderr, w)
			}
			assert.True(t, strings.HasPrefix(r.stderr, "dagq: "), "stderr starts with a dagq: line")
			for _, bad := range []string{"goroutine ", "panic", "&{", "strconv.", "map[", "interface {}", "%!"} {
				assert.NotContains(t, r.stderr, bad)
				assert.NotContains(t, r.stdout, bad)
			}
			assert.NotContains(t, r.stdout, "succeeded", "nothing ran")
		})
	}
}

// pkgDir is the package directory (the tests chdir away from it).
var pkgDir = func() string {
	d, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return d
}()

// sqs.fair_queue "on" with standard queues is valid but has no effect:
// config validate passes and warns, naming the key and what is valid.
func TestConfigValidate_FairQueueOnStandardQueueWarns(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("DAGQ_SQS_FAIR_QUEUE", "on")
	r := dagq(t, "config", "validate", "--transport", "sqs", "--sqs-queue-url", usURL, "--sqs-run-queue-url", usRuns, "--s3-bucket", "my-bucket")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stderr, `dagq: warning: sqs.fair_queue: on, but sqs.queue_url "`+usURL+`" is a standard queue: message groups need a FIFO queue, so the setting is ignored for it; valid: auto (or off) for standard queues, or a .fifo queue`)
}
