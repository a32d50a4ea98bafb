package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/config"
)

// writeFile writes a config file in a temp dir and returns its path.
func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dagq.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

// flags returns a flag set with every config flag, parsed from args.
func flags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	config.AddConfigFlag(fs)
	config.AddFlag(fs, config.FlagNames()...)
	require.NoError(t, fs.Parse(args))
	return fs
}

func load(t *testing.T, opts config.LoadOptions) (config.Config, *config.Loaded) {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	cfg, loaded, err := config.Load(opts)
	require.NoError(t, err)
	return cfg, loaded
}

func TestDefaultsAreValid(t *testing.T) {
	require.NoError(t, config.Default().Validate())
	cfg, loaded := load(t, config.LoadOptions{Flags: flags(t)})
	require.Equal(t, config.Default(), cfg)
	require.Empty(t, loaded.File)
	require.Empty(t, loaded.Warnings)
	require.Equal(t, "default", loaded.Sources["worker.concurrency"])
}

func TestExampleFileIsValid(t *testing.T) {
	cfg, loaded := load(t, config.LoadOptions{File: "../../examples/dagq.yaml"})
	require.Empty(t, loaded.Warnings, "the example must hold only known keys")
	require.NoError(t, cfg.Validate())
	require.Equal(t, 8, cfg.Worker.Concurrency)
	require.Equal(t, config.TransportMemory, cfg.Transport)
	require.True(t, cfg.Cancellation.Enabled)
}

func TestPrecedence_FileEnvFlag(t *testing.T) {
	file := writeFile(t, `
queue: from-file
worker:
  concurrency: 3
  lease: 1m
log:
  level: info
`)
	t.Setenv("DAGQ_WORKER_CONCURRENCY", "5")
	t.Setenv("DAGQ_LOG_LEVEL", "debug")

	cfg, loaded := load(t, config.LoadOptions{Flags: flags(t, "--config", file, "--concurrency", "7")})
	require.Equal(t, file, loaded.File)
	assert.Equal(t, 7, cfg.Worker.Concurrency, "flag beats env and file")
	assert.Equal(t, "debug", cfg.Log.Level, "env beats file")
	assert.Equal(t, "from-file", cfg.Queue, "file beats default")
	assert.Equal(t, time.Minute, cfg.Worker.Lease, "file beats default")
	assert.Equal(t, config.Default().Worker.ShutdownTimeout, cfg.Worker.ShutdownTimeout, "default when unset")

	assert.Equal(t, "flag --concurrency", loaded.Sources["worker.concurrency"])
	assert.Equal(t, "env DAGQ_LOG_LEVEL", loaded.Sources["log.level"])
	assert.Equal(t, "file "+file, loaded.Sources["queue"])
	assert.Equal(t, "default", loaded.Sources["worker.shutdown_timeout"])

	// Without the flag the environment wins over the file.
	cfg, _ = load(t, config.LoadOptions{Flags: flags(t, "--config", file)})
	assert.Equal(t, 5, cfg.Worker.Concurrency)
}

func TestEnvOverridesEveryKind(t *testing.T) {
	t.Setenv("DAGQ_WORKER_LEASE", "2m")
	t.Setenv("DAGQ_WORKER_HEARTBEAT_INTERVAL", "10s")
	t.Setenv("DAGQ_RETRY_JITTER", "0.5")
	t.Setenv("DAGQ_EXECUTOR_FAIL_FAST", "true")
	t.Setenv("DAGQ_QUEUE", "jobs.fifo")
	cfg, loaded := load(t, config.LoadOptions{})
	require.Empty(t, loaded.Warnings)
	require.Equal(t, 2*time.Minute, cfg.Worker.Lease)
	require.Equal(t, 10*time.Second, cfg.Worker.HeartbeatInterval)
	require.Equal(t, 0.5, cfg.Retry.Jitter)
	require.True(t, cfg.Executor.FailFast)
	require.Equal(t, "jobs.fifo", cfg.Queue)
	require.NoError(t, cfg.Validate())
}

func TestLauncherKeys(t *testing.T) {
	def := config.Default().Launcher
	require.Equal(t, config.LauncherConfig{Queue: "dagq-runs", Concurrency: 4, HeartbeatInterval: 5 * time.Second, StaleAfter: 15 * time.Second}, def)

	// Every source reaches every launcher key; flags beat the environment.
	file := writeFile(t, "launcher:\n  queue: runs-from-file.fifo\n  concurrency: 2\n  stale_after: 1m\n")
	t.Setenv("DAGQ_LAUNCHER_HEARTBEAT_INTERVAL", "2s")
	t.Setenv("DAGQ_LAUNCHER_CONCURRENCY", "6")
	cfg, loaded := load(t, config.LoadOptions{Flags: flags(t, "--config", file, "--launcher-stale-after", "20s")})
	require.Empty(t, loaded.Warnings)
	require.Equal(t, config.LauncherConfig{Queue: "runs-from-file.fifo", Concurrency: 6, HeartbeatInterval: 2 * time.Second, StaleAfter: 20 * time.Second}, cfg.Launcher)
	require.NoError(t, cfg.Validate())
	require.True(t, config.IsFIFO(cfg.Launcher.Queue))
	require.Equal(t, "flag --launcher-stale-after", loaded.Sources["launcher.stale_after"])
	require.Equal(t, "env DAGQ_LAUNCHER_CONCURRENCY", loaded.Sources["launcher.concurrency"])
	require.Equal(t, "file "+file, loaded.Sources["launcher.queue"])

	// Duration flags show the key's default.
	fs := flags(t)
	require.Equal(t, "5s", fs.Lookup("launcher-heartbeat-interval").DefValue)
	require.Equal(t, "dagq-runs", fs.Lookup("launcher-queue").DefValue)

	cfg, loaded = load(t, config.LoadOptions{Flags: flags(t, "--launcher-heartbeat-interval", "3s", "--launcher-stale-after", "3s")})
	require.EqualError(t, cfg.ValidateSources(loaded.Sources),
		"launcher.stale_after (flag --launcher-stale-after): 3s is not more than launcher.heartbeat_interval (3s); valid: more than it, e.g. 9s (3 × the interval)")
	t.Setenv("DAGQ_LAUNCHER_STALE_AFTER", "soon")
	_, _, err := config.Load(config.LoadOptions{Dir: t.TempDir()})
	require.ErrorContains(t, err, `launcher.stale_after (env DAGQ_LAUNCHER_STALE_AFTER): "soon" is not a duration`)
}

func TestCancellation_OneSwitchOneDefault(t *testing.T) {
	// The default is the same in the struct, the flag and an empty environment.
	require.True(t, config.Default().Cancellation.Enabled)
	fs := flags(t)
	require.Equal(t, "true", fs.Lookup("cancellation").DefValue)
	cfg, _ := load(t, config.LoadOptions{Flags: fs})
	require.True(t, cfg.Cancellation.Enabled)

	file := writeFile(t, "cancellation:\n  enabled: false\n")
	cfg, _ = load(t, config.LoadOptions{File: file})
	require.False(t, cfg.Cancellation.Enabled, "file")

	cfg, _ = load(t, config.LoadOptions{Flags: flags(t, "--cancellation=false")})
	require.False(t, cfg.Cancellation.Enabled, "flag")

	t.Setenv("DAGQ_CANCELLATION_ENABLED", "false")
	cfg, _ = load(t, config.LoadOptions{})
	require.False(t, cfg.Cancellation.Enabled, "env")
	cfg, _ = load(t, config.LoadOptions{Flags: flags(t, "--cancellation=true")})
	require.True(t, cfg.Cancellation.Enabled, "flag beats env")
}

func TestConfigFileLocation(t *testing.T) {
	t.Run("DAGQ_CONFIG names the file", func(t *testing.T) {
		file := writeFile(t, "queue: via-env\n")
		t.Setenv("DAGQ_CONFIG", file)
		cfg, loaded := load(t, config.LoadOptions{})
		require.Equal(t, "via-env", cfg.Queue)
		require.Equal(t, file, loaded.File)
	})
	t.Run("--config beats DAGQ_CONFIG", func(t *testing.T) {
		t.Setenv("DAGQ_CONFIG", writeFile(t, "queue: via-env\n"))
		cfg, _ := load(t, config.LoadOptions{Flags: flags(t, "--config", writeFile(t, "queue: via-flag\n"))})
		require.Equal(t, "via-flag", cfg.Queue)
	})
	t.Run("default file in the directory is read", func(t *testing.T) {
		dir := filepath.Dir(writeFile(t, "queue: default-file\n"))
		cfg, loaded := load(t, config.LoadOptions{Dir: dir})
		require.Equal(t, "default-file", cfg.Queue)
		require.Equal(t, filepath.Join(dir, config.DefaultFile), loaded.File)
	})
	t.Run("absent default file is fine", func(t *testing.T) {
		cfg, loaded := load(t, config.LoadOptions{Dir: t.TempDir()})
		require.Equal(t, config.Default(), cfg)
		require.Empty(t, loaded.File)
	})
	t.Run("explicit missing file is an error", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.yaml")
		_, _, err := config.Load(config.LoadOptions{Flags: flags(t, "--config", missing)})
		require.ErrorContains(t, err, missing)
		require.ErrorContains(t, err, "does not exist")
		require.ErrorContains(t, err, "--config")

		t.Setenv("DAGQ_CONFIG", missing)
		_, _, err = config.Load(config.LoadOptions{})
		require.ErrorContains(t, err, "DAGQ_CONFIG")
	})
	t.Run("YAML syntax error names the file and line", func(t *testing.T) {
		file := writeFile(t, "worker:\n  concurrency: 3\n lease: [\n")
		_, _, err := config.Load(config.LoadOptions{File: file})
		require.ErrorContains(t, err, file)
		require.ErrorContains(t, err, "line")
	})
}

func TestUnknownKeysWarn(t *testing.T) {
	file := writeFile(t, `transport: memory
concurrency: 4
worker:
  concurency: 3
  lease: 10s
executor:
  failfast: true
bogus:
  nested: 1
`)
	cfg, loaded := load(t, config.LoadOptions{File: file})
	require.Equal(t, 10*time.Second, cfg.Worker.Lease, "known keys still load")
	require.Equal(t, config.Default().Worker.Concurrency, cfg.Worker.Concurrency, "unknown keys change nothing")
	require.Len(t, loaded.Warnings, 4, "%q", loaded.Warnings)
	w := strings.Join(loaded.Warnings, "\n")
	assert.Contains(t, w, file+`:2: unknown key "concurrency" is ignored (did you mean "worker.concurrency"?)`)
	assert.Contains(t, w, file+`:4: unknown key "worker.concurency" is ignored (did you mean "worker.concurrency"?)`)
	assert.Contains(t, w, file+`:7: unknown key "executor.failfast" is ignored (did you mean "executor.fail_fast"?)`)
	assert.Contains(t, w, file+`:8: unknown key "bogus" is ignored`)
	assert.NotContains(t, w, "bogus\" is ignored (did you mean")
}

func TestUnknownEnvWarns(t *testing.T) {
	t.Setenv("DAGQ_WORKER_CONCURENCY", "3")
	t.Setenv("DAGQ_CONCURRENCY", "3")
	t.Setenv("DAGQ_CONFIG", "")                    // the file variable is known
	t.Setenv("DAGQ_TEST_SQS_ENDPOINT", "http://x") // the test setup's variables are not settings
	_, loaded := load(t, config.LoadOptions{})
	require.ElementsMatch(t, []string{
		"environment variable DAGQ_CONCURRENCY is not a dagq setting and is ignored (did you mean DAGQ_WORKER_CONCURRENCY?)",
		"environment variable DAGQ_WORKER_CONCURENCY is not a dagq setting and is ignored (did you mean DAGQ_WORKER_CONCURRENCY?)",
	}, loaded.Warnings)
}

func TestTypeErrorsNameKeyAndSource(t *testing.T) {
	file := writeFile(t, `worker:
  lease: 30
  shutdown_timeout: soon
retry:
  multiplier: [1, 2]
`)
	t.Setenv("DAGQ_WORKER_CONCURRENCY", "many")
	t.Setenv("DAGQ_CANCELLATION_ENABLED", "maybe")
	_, _, err := config.Load(config.LoadOptions{File: file})
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, `worker.concurrency (env DAGQ_WORKER_CONCURRENCY): "many" is not an integer`)
	assert.Contains(t, msg, `cancellation.enabled (env DAGQ_CANCELLATION_ENABLED): "maybe" is not a boolean; valid: true or false`)
	assert.Contains(t, msg, `worker.lease (file `+file+`:2): 30 is not a duration; write a number with a unit, e.g. 500ms, 30s`)
	assert.Contains(t, msg, `worker.shutdown_timeout (file `+file+`:3): "soon" is not a duration`)
	assert.Contains(t, msg, `retry.multiplier (file `+file+`:5): a list is not a number`)
	var fe *config.FieldError
	require.ErrorAs(t, err, &fe)
}

func TestSectionThatIsNotAMapping(t *testing.T) {
	file := writeFile(t, "worker: 5\nlog:\nretry: [1]\n")
	_, _, err := config.Load(config.LoadOptions{File: file})
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, 2, "one error per section, not one per key: %q", lines)
	require.Contains(t, err.Error(), `worker (file `+file+`:1): "5" is not a mapping; the section holds worker.concurrency, worker.lease,`)
	require.Contains(t, err.Error(), `retry (file `+file+`:3): a list is not a mapping`)
}

func TestValidate_AllErrorsWithKeyAndValidValues(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*config.Config)
		want string
	}{
		{"bad transport", func(c *config.Config) { c.Transport = "kafka" }, `transport: "kafka" is not a transport; valid values: memory, sqs`},
		{"empty queue", func(c *config.Config) { c.Queue = "" }, `queue: "" must have 1 to 80 characters`},
		{"queue chars", func(c *config.Config) { c.Queue = "a b" }, `queue: "a b" may only hold letters, digits, - and _`},
		{"concurrency", func(c *config.Config) { c.Worker.Concurrency = 0 }, `worker.concurrency: 0 is out of range; valid: 1 to 10000`},
		{"lease", func(c *config.Config) { c.Worker.Lease = 13 * time.Hour }, `worker.lease: 13h is out of range; valid: more than 0s, at most 12h`},
		{"heartbeat", func(c *config.Config) { c.Worker.HeartbeatInterval = 20 * time.Second }, `worker.heartbeat_interval: 20s is more than half of worker.lease (30s); valid: 0 (lease/3) or up to 15s`},
		{"heartbeat negative", func(c *config.Config) { c.Worker.HeartbeatInterval = -time.Second }, `worker.heartbeat_interval: -1s is negative`},
		{"extensions", func(c *config.Config) { c.Worker.MaxExtensions = 0 }, `worker.max_extensions: 0 is out of range; valid: 1 or more`},
		{"settle depth", func(c *config.Config) { c.Worker.SettleDepth = 0 }, `worker.settle_depth: 0 is out of range; valid: 1 to 10000`},
		{"prefetch too many", func(c *config.Config) { c.Worker.Prefetch = 10001 }, `worker.prefetch: 10001 is out of range; valid: 0 (none) to 10000`},
		{"shutdown", func(c *config.Config) { c.Worker.ShutdownTimeout = 0 }, `worker.shutdown_timeout: 0s is out of range; valid: more than 0s`},
		{"registry interval too short", func(c *config.Config) { c.Worker.RegistryInterval = 500 * time.Millisecond }, `worker.registry_interval: 500ms is out of range; valid: 0s (off) or 1s to 1h`},
		{"registry interval too long", func(c *config.Config) { c.Worker.RegistryInterval = 2 * time.Hour }, `worker.registry_interval: 2h is out of range; valid: 0s (off) or 1s to 1h`},
		{"attempts", func(c *config.Config) { c.Retry.MaxAttempts = 0 }, `retry.max_attempts: 0 is out of range; valid: 1 (no retry) or more`},
		{"initial", func(c *config.Config) { c.Retry.InitialBackoff = -time.Second }, `retry.initial_backoff: -1s is out of range; valid: 0s to 8760h`},
		{"max below initial", func(c *config.Config) { c.Retry.MaxBackoff = 500 * time.Millisecond }, `retry.max_backoff: 500ms is below retry.initial_backoff (1s)`},
		{"multiplier", func(c *config.Config) { c.Retry.Multiplier = 0.5 }, `retry.multiplier: 0.5 is out of range; valid: 0 (constant delay) or 1 to 1000`},
		{"jitter", func(c *config.Config) { c.Retry.Jitter = 2 }, `retry.jitter: 2 is out of range; valid: 0 to 1`},
		{"level", func(c *config.Config) { c.Log.Level = "loud" }, `log.level: "loud" is not a level; valid values: debug, info, warn, error`},
		{"format", func(c *config.Config) { c.Log.Format = "xml" }, `log.format: "xml" is not a format; valid values: auto, text, json`},
		{"cancel wait", func(c *config.Config) { c.Executor.CancelWait = 0 }, `executor.cancel_wait: 0s is out of range; valid: more than 0s, at most 12h`},
		{"run queue is the task queue", func(c *config.Config) { c.Launcher.Queue = "dagq-tasks" }, `launcher.queue: "dagq-tasks" is also the task queue (queue); valid: a queue name other than "dagq-tasks", e.g. "dagq-runs"`},
		{"run queue chars", func(c *config.Config) { c.Launcher.Queue = "runs!" }, `launcher.queue: "runs!" may only hold letters, digits, - and _`},
		{"run concurrency", func(c *config.Config) { c.Launcher.Concurrency = 0 }, `launcher.concurrency: 0 is out of range; valid: 1 to 10000`},
		{"run heartbeat", func(c *config.Config) { c.Launcher.HeartbeatInterval = 0 }, `launcher.heartbeat_interval: 0s is out of range; valid: more than 0s, at most 12h`},
		{"stale range", func(c *config.Config) { c.Launcher.StaleAfter = 13 * time.Hour }, `launcher.stale_after: 13h is out of range; valid: more than launcher.heartbeat_interval, at most 12h`},
		{"stale not above heartbeat", func(c *config.Config) { c.Launcher.StaleAfter = 5 * time.Second }, `launcher.stale_after: 5s is not more than launcher.heartbeat_interval (5s); valid: more than it, e.g. 15s (3 × the interval)`},
	}
	all := config.Default()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			tc.mod(&c)
			err := c.Validate()
			require.Error(t, err)
			require.ErrorIs(t, err, config.ErrInvalid)
			require.Contains(t, err.Error(), tc.want)
		})
		switch tc.name {
		case "bad transport", "empty queue", "heartbeat", "heartbeat negative", "max below initial",
			"run queue is the task queue", "stale not above heartbeat", "registry interval too long":
			// they overlap with another case of the same key
		default:
			tc.mod(&all)
		}
	}
	// Every problem is reported at once, one per line.
	err := all.Validate()
	require.Error(t, err)
	require.Len(t, strings.Split(err.Error(), "\n"), len(cases)-8)
}

func TestValidateNamesSource(t *testing.T) {
	t.Setenv("DAGQ_WORKER_CONCURRENCY", "-1")
	cfg, loaded := load(t, config.LoadOptions{})
	err := cfg.ValidateSources(loaded.Sources)
	require.EqualError(t, err, "worker.concurrency (env DAGQ_WORKER_CONCURRENCY): -1 is out of range; valid: 1 to 10000")
	var fe *config.FieldError
	require.True(t, errors.As(err, &fe))
	require.Equal(t, "worker.concurrency", fe.Key)
}

func TestRender_RoundTripsThroughLoad(t *testing.T) {
	c := config.Default()
	c.Worker.Lease = 90 * time.Second
	c.Queue = "q-1"
	c.Retry.Jitter = 0
	out, err := config.Render(c)
	require.NoError(t, err)
	require.Contains(t, string(out), "lease: 1m30s\n")
	require.Contains(t, string(out), "max_backoff: 5m\n")
	// Plain YAML, without tags: a whole float is "2", not "!!float 2".
	require.Contains(t, string(out), "multiplier: 2\n")
	require.Contains(t, string(out), "jitter: 0\n")
	require.Contains(t, string(out), "enabled: true\n")
	require.NotContains(t, string(out), "!!")
	got, loaded := load(t, config.LoadOptions{File: writeFile(t, string(out))})
	require.Empty(t, loaded.Warnings)
	require.Equal(t, c, got)

	js, err := config.RenderJSON(c)
	require.NoError(t, err)
	require.Contains(t, string(js), `"lease": "1m30s"`)
	require.Contains(t, string(js), `"concurrency": 10`)
}

func TestRender_RedactsSecrets(t *testing.T) {
	type creds struct {
		AccessKey string `yaml:"access_key"`
		SecretKey string `yaml:"secret_key" secret:"true"`
		Token     string `yaml:"token" secret:"true"`
	}
	type withSecrets struct {
		Region string `yaml:"region"`
		AWS    creds  `yaml:"aws"`
	}
	out, err := config.Render(withSecrets{Region: "eu-west-1", AWS: creds{AccessKey: "AKIA1", SecretKey: "hunter2"}})
	require.NoError(t, err)
	require.Equal(t, `region: eu-west-1
aws:
  access_key: AKIA1
  secret_key: <redacted>
  token: ""
`, string(out))
	require.NotContains(t, string(out), "hunter2")

	js, err := config.RenderJSON(withSecrets{AWS: creds{Token: "tok"}})
	require.NoError(t, err)
	require.NotContains(t, string(js), "tok\"")
	require.Contains(t, string(js), `"token": "<redacted>"`)
}

func TestSuggest(t *testing.T) {
	for in, want := range map[string]string{
		"worker.concurency":    "worker.concurrency",
		"concurrency":          "worker.concurrency",
		"executor.concurrency": "worker.concurrency",
		"log.levle":            "log.level",
		"retry.max_attempt":    "retry.max_attempts",
		"cancellation":         "cancellation.enabled",
		"transprt":             "transport",
		"completely.different": "",
		"x":                    "",
	} {
		require.Equal(t, want, config.Suggest(in), in)
	}
}

func TestKeysHaveDocAndEnv(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range config.Keys() {
		require.NotEmpty(t, k.Doc, k.Path)
		require.False(t, seen[k.Env], "duplicate env %s", k.Env)
		seen[k.Env] = true
		require.Equal(t, "DAGQ_"+strings.ToUpper(strings.ReplaceAll(k.Path, ".", "_")), k.Env)
	}
}

// TestKeysDocumented fails when a key is missing from the configuration
// reference (docs/configuration.md) or the README table, or is documented
// with the wrong environment variable or default.
func TestKeysDocumented(t *testing.T) {
	for _, doc := range []string{"../../docs/configuration.md", "../../README.md"} {
		data, err := os.ReadFile(doc)
		require.NoError(t, err)
		rows := map[string]string{}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "| `") {
				key := strings.Trim(strings.Split(line, "|")[1], " `")
				rows[key] = line
			}
		}
		for _, k := range config.Keys() {
			row, ok := rows[k.Path]
			if !assert.True(t, ok, "%s: no table row for key %s", doc, k.Path) {
				continue
			}
			assert.Contains(t, row, "`"+k.Env+"`", "%s: row of %s", doc, k.Path)
			assert.Contains(t, row, "`"+k.Default+"`", "%s: default of %s", doc, k.Path)
			if k.Flag != "" {
				assert.Contains(t, row, "`--"+k.Flag+"`", "%s: flag of %s", doc, k.Path)
			}
		}
	}
}

// sqsConfig is a valid configuration of the sqs transport.
func sqsConfig() config.Config {
	c := config.Default()
	c.Transport = config.TransportSQS
	c.Cancellation.Enabled = false
	c.SQS.QueueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/dagq-tasks"
	c.SQS.RunQueueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/dagq-runs"
	c.S3.Bucket = "my-dagq"
	return c
}

func TestValidate_SQS(t *testing.T) {
	require.NoError(t, sqsConfig().Validate())
	ok := []struct {
		name string
		mod  func(*config.Config)
	}{
		{"matching region", func(c *config.Config) { c.SQS.Region = "eu-west-1" }},
		{"emulator URLs", func(c *config.Config) {
			c.SQS.QueueURL, c.SQS.RunQueueURL = "http://127.0.0.1:19324/000000000000/a", "http://127.0.0.1:19324/000000000000/b"
			c.SQS.Region, c.SQS.Endpoint, c.S3.Endpoint, c.S3.PathStyle = "us-east-1", "http://127.0.0.1:19324", "http://127.0.0.1:19000", true
		}},
		{"fifo queues", func(c *config.Config) {
			c.SQS.QueueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks.fifo"
			c.SQS.RunQueueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/runs.fifo"
		}},
		{"no prefix", func(c *config.Config) { c.S3.Prefix = "" }},
		{"fair queue on a standard queue (a warning at start, not an error)", func(c *config.Config) { c.SQS.FairQueue = "on" }},
		{"fair queue off on standard queues", func(c *config.Config) { c.SQS.FairQueue = "off" }},
		{"steps in parallel", func(c *config.Config) { c.SQS.MessageGroup = "task" }},
		{"largest payload threshold", func(c *config.Config) { c.Payload.Threshold = 768 << 10 }},
		{"lowered max delay (tests)", func(c *config.Config) { c.SQS.MaxDelay = 8 * time.Second }},
		{"retry backoff of a day", func(c *config.Config) { c.Retry.InitialBackoff, c.Retry.MaxBackoff = time.Hour, 24*time.Hour }},
		{"memory ignores missing sqs keys", func(c *config.Config) { *c = config.Default() }},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			c := sqsConfig()
			tc.mod(&c)
			require.NoError(t, c.Validate())
		})
	}
	bad := []struct {
		name string
		mod  func(*config.Config)
		want string
	}{
		{"missing queue URL", func(c *config.Config) { c.SQS.QueueURL = "" }, `sqs.queue_url: is required with transport "sqs"`},
		{"missing run queue URL", func(c *config.Config) { c.SQS.RunQueueURL = "" }, `sqs.run_queue_url: is required with transport "sqs"`},
		{"missing bucket", func(c *config.Config) { c.S3.Bucket = "" }, `s3.bucket: is required with transport "sqs": the S3 bucket`},
		{"not a URL", func(c *config.Config) { c.SQS.QueueURL = "dagq-tasks" }, `sqs.queue_url: "dagq-tasks" is not an http(s) URL; valid: an http(s) URL of the form https://sqs.<region>.amazonaws.com/<account>/<queue name>`},
		{"no account", func(c *config.Config) { c.SQS.QueueURL = "https://sqs.eu-west-1.amazonaws.com/dagq-tasks" }, `sqs.queue_url: "https://sqs.eu-west-1.amazonaws.com/dagq-tasks" has no /<account>/<queue name> path`},
		{"bad queue name", func(c *config.Config) { c.SQS.RunQueueURL = "https://sqs.eu-west-1.amazonaws.com/1/runs!" }, `sqs.run_queue_url: "https://sqs.eu-west-1.amazonaws.com/1/runs!" names queue "runs!", which may only hold letters`},
		{"bare .fifo", func(c *config.Config) { c.SQS.QueueURL = "https://sqs.eu-west-1.amazonaws.com/1/.fifo" }, `names queue ".fifo", which must have 1 to 80 characters`},
		{"same queue", func(c *config.Config) { c.SQS.RunQueueURL = c.SQS.QueueURL }, `sqs.run_queue_url: "https://sqs.eu-west-1.amazonaws.com/123456789012/dagq-tasks" is also the task queue (sqs.queue_url)`},
		{"region mismatch", func(c *config.Config) { c.SQS.Region = "us-east-1" }, `sqs.queue_url: "https://sqs.eu-west-1.amazonaws.com/123456789012/dagq-tasks" is in region eu-west-1 but sqs.region is us-east-1; valid: make sqs.region eu-west-1 (or empty)`},
		{"queues in two regions", func(c *config.Config) {
			c.SQS.RunQueueURL = "https://sqs.us-west-2.amazonaws.com/123456789012/dagq-runs"
		}, `sqs.run_queue_url: "https://sqs.us-west-2.amazonaws.com/123456789012/dagq-runs" is in region us-west-2 but sqs.queue_url is in eu-west-1`},
		{"bad region", func(c *config.Config) { c.SQS.Region = "Europe" }, `sqs.region: "Europe" is not an AWS region`},
		{"wait time", func(c *config.Config) { c.SQS.WaitTime = 30 * time.Second }, `sqs.wait_time: 30s is out of range; valid: 1s to 20s`},
		{"max delay above the SQS limit", func(c *config.Config) { c.SQS.MaxDelay = 16 * time.Minute }, `sqs.max_delay: 16m is out of range; valid: 1s to 15m (the SQS limit)`},
		{"max delay zero", func(c *config.Config) { c.SQS.MaxDelay = 0 }, `sqs.max_delay: 0s is out of range; valid: 1s to 15m`},
		{"retry max backoff over a year", func(c *config.Config) { c.Retry.MaxBackoff = 8761 * time.Hour }, `retry.max_backoff: 8761h is out of range; valid: 0 (a cap of 12h) to 8760h`},
		{"sqs endpoint", func(c *config.Config) { c.SQS.Endpoint = "localhost:9324" }, `sqs.endpoint: "localhost:9324" is not an http(s) URL`},
		{"s3 endpoint", func(c *config.Config) { c.S3.Endpoint = "ftp://x" }, `s3.endpoint: "ftp://x" is not an http(s) URL`},
		{"bucket name", func(c *config.Config) { c.S3.Bucket = "My_Bucket" }, `s3.bucket: "My_Bucket" is not a valid bucket name`},
		{"prefix", func(c *config.Config) { c.S3.Prefix = "dagq" }, `s3.prefix: "dagq" must end with / and not start with one`},
		{"long prefix", func(c *config.Config) { c.S3.Prefix = strings.Repeat("p", config.MaxS3PrefixLen) + "/" },
			`s3.prefix: is 507 bytes; at most 506 are valid, so that every key dagq writes fits S3's 1,024-byte object keys`},
		{"fair queue mode", func(c *config.Config) { c.SQS.FairQueue = "yes" }, `sqs.fair_queue: "yes" is not a mode; valid: auto, on, off`},
		{"fair queue off on FIFO", func(c *config.Config) {
			c.SQS.FairQueue = "off"
			c.SQS.RunQueueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/runs.fifo"
		}, `sqs.fair_queue: off, but sqs.run_queue_url "https://sqs.eu-west-1.amazonaws.com/123456789012/runs.fifo" is a FIFO queue, which needs a message group on every message; valid: auto or on`},
		{"message group", func(c *config.Config) { c.SQS.MessageGroup = "step" }, `sqs.message_group: "step" is not a group policy; valid: run, task`},
		{"payload threshold above the SQS limit", func(c *config.Config) { c.Payload.Threshold = 1 << 20 }, `payload.threshold: 1048576 bytes is out of range; valid: 1024 to 786432`},
		{"payload threshold too small", func(c *config.Config) { c.Payload.Threshold = 0 }, `payload.threshold: 0 bytes is out of range`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			c := sqsConfig()
			tc.mod(&c)
			err := c.Validate()
			require.ErrorIs(t, err, config.ErrInvalid)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// sqs.fair_queue "on" with a standard queue is valid but ignored: a notice
// names the key, the queue and what is valid; FIFO queues get none.
func TestNotices_FairQueueOnStandardQueue(t *testing.T) {
	c := sqsConfig()
	require.Empty(t, c.Notices(), "defaults")
	c.SQS.FairQueue = "on"
	require.NoError(t, c.Validate())
	n := c.Notices()
	require.Len(t, n, 2, "task and run queue: %q", n)
	require.Contains(t, n[0], `sqs.fair_queue: on, but sqs.queue_url "https://sqs.eu-west-1.amazonaws.com/123456789012/dagq-tasks" is a standard queue`)
	require.Contains(t, n[0], "valid: auto (or off) for standard queues, or a .fifo queue")
	c.SQS.QueueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks.fifo"
	c.SQS.RunQueueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/runs.fifo"
	require.Empty(t, c.Notices(), "FIFO queues use groups")
}
