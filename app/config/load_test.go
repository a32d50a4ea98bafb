package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/config"
)

// TestLoad_ValueForms pins the forms each type accepts from the file and the
// environment, and the message of a form it refuses.
func TestLoad_ValueForms(t *testing.T) {
	cases := []struct {
		name, file, env, val string // env sets DAGQ_<key> to val
		check                func(*testing.T, config.Config)
		wantErr              string
	}{
		{name: "hex int", file: "payload:\n  threshold: 0x400\n",
			check: func(t *testing.T, c config.Config) { require.Equal(t, 1024, c.Payload.Threshold) }},
		{name: "whole float", file: "payload:\n  threshold: 1e4\n",
			check: func(t *testing.T, c config.Config) { require.Equal(t, 10000, c.Payload.Threshold) }},
		{name: "quoted int", file: "payload:\n  threshold: \"2048\"\n",
			check: func(t *testing.T, c config.Config) { require.Equal(t, 2048, c.Payload.Threshold) }},
		{name: "env int with spaces", env: "DAGQ_PAYLOAD_THRESHOLD", val: " 4096 ",
			check: func(t *testing.T, c config.Config) { require.Equal(t, 4096, c.Payload.Threshold) }},
		{name: "size unit", env: "DAGQ_PAYLOAD_THRESHOLD", val: "200KiB",
			wantErr: `payload.threshold (env DAGQ_PAYLOAD_THRESHOLD): "200KiB" is not an integer; valid: a whole number such as 4`},
		{name: "fraction is not truncated", file: "worker:\n  concurrency: 1.5\n",
			wantErr: `worker.concurrency (file FILE:2): 1.5 is not an integer; valid: a whole number such as 4`},
		{name: "env hex", env: "DAGQ_WORKER_CONCURRENCY", val: "0x10",
			wantErr: `worker.concurrency (env DAGQ_WORKER_CONCURRENCY): "0x10" is not an integer`},
		{name: "zero duration", file: "worker:\n  heartbeat_interval: 0\n  lease: \" 5s \"\n",
			check: func(t *testing.T, c config.Config) {
				require.Zero(t, c.Worker.HeartbeatInterval)
				require.Equal(t, 5*time.Second, c.Worker.Lease)
			}},
		{name: "env bool 1", env: "DAGQ_EXECUTOR_FAIL_FAST", val: "1",
			check: func(t *testing.T, c config.Config) { require.True(t, c.Executor.FailFast) }},
		{name: "file bool 1", file: "executor:\n  fail_fast: 1\n",
			wantErr: `executor.fail_fast (file FILE:2): 1 is not a boolean; valid: true or false`},
		{name: "number as string", file: "queue: 123\nretry:\n  jitter: \"0.5\"\n",
			check: func(t *testing.T, c config.Config) {
				require.Equal(t, "123", c.Queue)
				require.Equal(t, 0.5, c.Retry.Jitter)
			}},
		{name: "mapping as string", file: "transport: {a: 1}\n",
			wantErr: `transport (file FILE:1): a mapping is not a string; valid: a single value such as "text"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, tc.file)
			if tc.env != "" {
				t.Setenv(tc.env, tc.val)
			}
			cfg, _, err := config.Load(config.LoadOptions{File: file, Dir: t.TempDir()})
			if tc.wantErr != "" {
				require.ErrorContains(t, err, strings.ReplaceAll(tc.wantErr, "FILE", file))
				require.ErrorIs(t, err, config.ErrInvalid)
				return
			}
			require.NoError(t, err)
			tc.check(t, cfg)
		})
	}
}

// TestLoad_EmptySectionKeepsEnvAndFlags: a section left empty in the file
// ("log:") means unset; the environment and flags still reach its keys.
// (Handed to viper as a null section, it replaced them at random with the
// defaults, so the load is repeated.)
func TestLoad_EmptySectionKeepsEnvAndFlags(t *testing.T) {
	file := writeFile(t, "log:\nlauncher:\nworker: {}\n")
	t.Setenv("DAGQ_LOG_LEVEL", "debug")
	for range 30 {
		cfg, loaded := load(t, config.LoadOptions{File: file, Flags: flags(t, "--launcher-stale-after", "1m", "--concurrency", "3")})
		require.Equal(t, "debug", cfg.Log.Level)
		require.Equal(t, time.Minute, cfg.Launcher.StaleAfter)
		require.Equal(t, 3, cfg.Worker.Concurrency)
		require.Equal(t, config.Default().Launcher.Queue, cfg.Launcher.Queue)
		require.Equal(t, "default", loaded.Sources["launcher.queue"])
		require.Empty(t, loaded.Warnings)
	}
}

// TestLoad_SectionVariableIsAnError: DAGQ_WORKER is no key, and viper reads
// it in place of every worker.* key, so it stops the load instead of being
// ignored with a warning; empty, it is only a warning.
func TestLoad_SectionVariableIsAnError(t *testing.T) {
	file := writeFile(t, "worker:\n  concurrency: 3\n")
	t.Setenv("DAGQ_WORKER", "5")
	_, _, err := config.Load(config.LoadOptions{File: file, Dir: t.TempDir()})
	require.EqualError(t, err, "environment variable DAGQ_WORKER is not a dagq setting but names the section worker, which hides every worker.* key from the file and the defaults; unset it and set one variable per key (did you mean DAGQ_WORKER_CONCURRENCY?)")
	checkConfigMessage(t, err, config.Keys(), true)

	t.Setenv("DAGQ_WORKER", "")
	cfg, loaded := load(t, config.LoadOptions{File: file})
	require.Equal(t, 3, cfg.Worker.Concurrency)
	require.Equal(t, []string{"environment variable DAGQ_WORKER is not a dagq setting and is ignored (did you mean DAGQ_WORKER_CONCURRENCY?)"}, loaded.Warnings)
}

// A syntax error names the line (and column) of the problem, not the line
// where the enclosing section began.
func TestLoad_SyntaxErrorLine(t *testing.T) {
	file := writeFile(t, "transport: memory\nworker:\n  concurrency: 4\nretry:\n  max_attempts: 3\n    jitter: 0.1\n")
	_, _, err := config.Load(config.LoadOptions{File: file})
	require.Error(t, err)
	require.Equal(t, "config file "+file+":6:11: mapping values are not allowed in this context", err.Error())

	file = writeFile(t, "worker:\n  concurrency: 4\n  lease: 30s\n shutdown_timeout: 5s\n")
	_, _, err = config.Load(config.LoadOptions{File: file})
	require.Error(t, err)
	require.Contains(t, err.Error(), "config file "+file+":4:")
}

// A wrong type does not hide the other problems: Load reports them all at
// once, each with the file and the line of its value.
func TestLoad_TypeErrorsDoNotHideInvalidValues(t *testing.T) {
	file := writeFile(t, "transport: sqs3\nworker:\n  lease: 0s\nretry:\n  max_attempts: many\n")
	_, _, err := config.Load(config.LoadOptions{File: file})
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	require.ElementsMatch(t, []string{
		`retry.max_attempts (file ` + file + `:5): "many" is not an integer; valid: a whole number such as 4`,
		`transport (file ` + file + `:1): "sqs3" is not a transport; valid values: memory, sqs`,
		`worker.lease (file ` + file + `:3): 0s is out of range; valid: more than 0s, at most 12h`,
	}, lines)
}

// Validation errors name the line of a value set in the file.
func TestValidateLoaded_Lines(t *testing.T) {
	file := writeFile(t, "worker:\n  concurrency: 4\n  lease: 0s\n")
	cfg, loaded, err := config.Load(config.LoadOptions{File: file})
	require.NoError(t, err)
	require.EqualError(t, cfg.ValidateLoaded(loaded),
		`worker.lease (file `+file+`:3): 0s is out of range; valid: more than 0s, at most 12h`)
	require.EqualError(t, cfg.ValidateSources(loaded.Sources),
		`worker.lease (file `+file+`): 0s is out of range; valid: more than 0s, at most 12h`)
}
