package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
)

// The pools key: a mapping in the file, name=N,… in the environment (which
// replaces the file's), rendered back as a mapping; handed to workers as
// core.PoolOptions with worker.pool_lease and worker.pool_poll.
func TestPools_FileEnvRender(t *testing.T) {
	file := writeFile(t, "pools:\n  db: 3\n  gpu-1: 1\nworker:\n  pool_lease: 1m\n  pool_poll: 500ms\n")
	cfg, loaded := load(t, config.LoadOptions{File: file})
	require.NoError(t, cfg.ValidateLoaded(loaded))
	assert.Equal(t, config.PoolLimits{"db": 3, "gpu-1": 1}, cfg.Pools)
	assert.Equal(t, "file "+file, loaded.Sources["pools"])
	assert.Equal(t, core.PoolOptions{Limits: map[string]int{"db": 3, "gpu-1": 1}, Lease: time.Minute, Poll: 500 * time.Millisecond},
		cfg.PoolOptions())
	out, err := config.Render(cfg)
	require.NoError(t, err)
	assert.Contains(t, string(out), "\npools: {db: 3, gpu-1: 1}\n")
	assert.Equal(t, "db=3,gpu-1=1", config.Values(cfg)["pools"])

	t.Setenv("DAGQ_POOLS", " api=2 , db=5")
	cfg, loaded = load(t, config.LoadOptions{File: file})
	assert.Equal(t, config.PoolLimits{"api": 2, "db": 5}, cfg.Pools, "the environment replaces the file's pools")
	assert.Equal(t, "env DAGQ_POOLS", loaded.Sources["pools"])
}

func TestPools_Errors(t *testing.T) {
	for _, tc := range []struct {
		name, file, env, want string
	}{
		{"limit 0", "pools: {db: 0}\n", "", `pools (file FILE:1): pool "db" has limit 0; valid: 1 to 1000 slots`},
		{"limit too large", "pools: {db: 1001}\n", "", `pool "db" has limit 1001; valid: 1 to 1000 slots`},
		{"bad name", "pools: {d.b: 2}\n", "", `pool name "d.b" has '.' at byte 1; pool names use only A-Z, a-z, 0-9, '_' and '-'`},
		{"upper case", "pools:\n  DB: 2\n", "", `pools (file FILE:2): pool name "DB" has upper-case letters, which the config file's keys cannot keep`},
		{"not a number", "pools: {db: many}\n", "", `pools (file FILE:1): pool "db": "many" is not an integer`},
		{"not a mapping", "pools: 3\n", "", `pools (file FILE:1): 3 is not a mapping of pool names to limits`},
		{"env form", "", "db:3", `pools (env DAGQ_POOLS): "db:3" is not name=N; valid: pool limits such as db=3,gpu=1`},
		{"env twice", "", "db=3,db=4", `pool "db" is named twice`},
		{"env limit", "", "db=-1", `pools (env DAGQ_POOLS): pool "db" has limit -1; valid: 1 to 1000 slots`},
		{"lease", "worker: {pool_lease: 1ms}\n", "", "worker.pool_lease (file FILE:1): 1ms is out of range; valid: 10ms to 12h"},
		{"poll", "worker: {pool_poll: 20m}\n", "", "worker.pool_poll (file FILE:1): 20m is out of range; valid: more than 0s, at most 15m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := config.LoadOptions{Dir: t.TempDir()}
			if tc.file != "" {
				opts.File = writeFile(t, tc.file)
			}
			if tc.env != "" {
				t.Setenv("DAGQ_POOLS", tc.env)
			}
			cfg, loaded, err := config.Load(opts)
			if err == nil {
				err = cfg.ValidateLoaded(loaded)
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), replaceFile(tc.want, opts.File))
		})
	}
}

func replaceFile(s, file string) string {
	for i := 0; i+4 <= len(s); i++ {
		if s[i:i+4] == "FILE" {
			return s[:i] + file + s[i+4:]
		}
	}
	return s
}
