package cli_test

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/cli"
)

// Secrets (signing keys, AWS credentials in the environment) never appear in
// dagq's output: config show, validation errors, and the logs of a run at
// debug level.
func TestSecretsNeverPrinted(t *testing.T) {
	fileKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("file-secret-key!"), 2))
	envKey := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte("env-secret-key!!"), 3))
	const (
		awsSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
		awsToken  = "FwoGZXIvYXdzEXAMPLESESSIONTOKENvalue=="
		badMarker = "NOTbase64SECRETMARKER"
		shortKey  = "c2hvcnQtc2VjcmV0LWtleQ" // "short-secret-key"
	)
	secrets := []string{fileKey, envKey, awsSecret, awsToken, badMarker, shortKey,
		fileKey[:20], envKey[:20], "file-secret-key", "env-secret-key", "short-secret-key"}
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEACCESSKEY")
	t.Setenv("AWS_SECRET_ACCESS_KEY", awsSecret)
	t.Setenv("AWS_SESSION_TOKEN", awsToken)

	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	require.NoError(t, os.WriteFile(good, []byte("signing:\n  key_id: k2\n  keys: k1="+fileKey+"\n"), 0o600))
	t.Setenv("DAGQ_SIGNING_KEYS", "k1="+fileKey+",k2="+envKey) // the environment beats the file

	var outs []result
	check := func(r result) result {
		t.Helper()
		outs = append(outs, r)
		return r
	}

	// config show: YAML, JSON and --sources.
	r := check(dagq(t, "config", "show", "--config", good))
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "signing:\n  key_id: k2\n  keys: <redacted>\n  required: true\n")
	r = check(dagq(t, "config", "show", "--config", good, "-o", "json"))
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, `"keys": "<redacted>"`)
	r = check(dagq(t, "config", "show", "--config", good, "--sources"))
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Regexp(t, `(?m)^signing\.keys\s+<redacted>\s+env DAGQ_SIGNING_KEYS$`, r.stdout)

	// Runs at debug level, signed end to end: steps (dagq run) and a
	// launched run's task and steps (dagq launch, served in process).
	for _, cmd := range []string{"run", "launch"} {
		r = check(dagq(t, cmd, examples+"diamond.yaml", "--config", good, "--log-level", "debug", "--log-format", "json"))
		require.Equal(t, cli.ExitOK, r.code, r.stderr)
		require.Contains(t, r.stderr, `"level":"DEBUG"`, "debug logs were written")
		require.NotContains(t, r.stderr, "signature check failed")
	}

	// Invalid keys: validation names entries and key IDs, not the values,
	// whether the bad value comes from the file or the environment.
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("signing:\n  key_id: "+fileKey+"\n  keys: k1="+fileKey+",k2="+badMarker+"!,k3="+shortKey+","+envKey+"\n"), 0o600))
	t.Setenv("DAGQ_SIGNING_KEYS", "")
	r = check(dagq(t, "config", "validate", "--config", bad))
	require.Equal(t, cli.ExitFailed, r.code)
	for _, w := range []string{
		`signing.keys (file ` + bad + `:3): entry 2 (key "k2") is not base64`,
		`signing.keys (file ` + bad + `:3): key "k3" is 16 bytes; valid: at least 32 bytes`,
		`signing.keys (file ` + bad + `:3): entry 4 is not <key ID>=<base64 key>`,
		`signing.key_id (file ` + bad + `:2): the value is not a key ID`,
	} {
		assert.Contains(t, r.stderr, w)
	}
	t.Setenv("DAGQ_SIGNING_KEYS", "k1="+envKey+",k2="+badMarker)
	t.Setenv("DAGQ_SIGNING_KEY_ID", "k1")
	r = check(dagq(t, "config", "validate", "--config", bad))
	require.Equal(t, cli.ExitFailed, r.code)
	assert.Contains(t, r.stderr, `signing.keys (env DAGQ_SIGNING_KEYS): entry 2 (key "k2") is not base64`)
	r = check(dagq(t, "run", examples+"diamond.yaml", "--config", bad, "--log-level", "debug"))
	require.Equal(t, cli.ExitFailed, r.code, r.stderr)
	r = check(dagq(t, "config", "show", "--config", bad))
	require.NotEqual(t, cli.ExitOK, r.code)

	for _, r := range outs {
		for _, s := range secrets {
			require.False(t, strings.Contains(r.stdout+r.stderr, s), "a secret (%.6s…) was printed", s)
		}
	}
}
