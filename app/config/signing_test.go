package config_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core"
)

// Secret key material used by these tests: it must never appear in an error.
var (
	sigK1 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("A1"), 16))     // 32 bytes
	sigK2 = base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte("b2~"), 16)) // 48 bytes, URL-safe, unpadded
	short = base64.StdEncoding.EncodeToString([]byte("sixteen-byte-key"))
)

func signingConfig(keyID, keys string) config.Config {
	c := config.Default()
	c.Signing.KeyID, c.Signing.Keys = keyID, keys
	return c
}

func TestSigning_OffByDefault(t *testing.T) {
	c := config.Default()
	require.False(t, c.Signing.Enabled())
	require.True(t, c.Signing.Required, "required defaults to true")
	s, err := c.Signing.Signer()
	require.NoError(t, err)
	require.Nil(t, s)
	v, err := c.Signing.Verifier()
	require.NoError(t, err)
	require.Nil(t, v)
}

func TestSigning_ValidKeysBuildSignerAndVerifier(t *testing.T) {
	for name, keys := range map[string]string{
		"commas":          "k1=" + sigK1 + ",k2=" + sigK2,
		"spaces":          " k1=" + sigK1 + " , k2=" + sigK2 + " ",
		"newlines (YAML)": "k1=" + sigK1 + "\nk2=" + sigK2 + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := signingConfig("k2", keys)
			require.NoError(t, c.Validate())
			s, err := c.Signing.Signer()
			require.NoError(t, err)
			require.Equal(t, "k2", s.KeyID())
			v, err := c.Signing.Verifier()
			require.NoError(t, err)
			require.Equal(t, []string{"k1", "k2"}, v.KeyIDs())
			body := []byte(`{"v":1}`)
			require.NoError(t, v.Verify(body, s.Sign(body)))
			require.ErrorIs(t, v.Verify(body, ""), core.ErrSignature, "required: unsigned refused")
		})
	}
	c := signingConfig("k1", "k1="+sigK1)
	c.Signing.Required = false
	v, err := c.Signing.Verifier()
	require.NoError(t, err)
	require.NoError(t, v.Verify([]byte("x"), ""), "required false: unsigned accepted")
}

func TestSigning_ValidationErrorsNameTheKeyNotTheSecret(t *testing.T) {
	cases := []struct {
		name, keyID, keys string
		want              []string
	}{
		{"key_id without keys", "k1", "", []string{`signing.key_id: "k1" is set but signing.keys is empty`}},
		{"keys without key_id", "", "k1=" + sigK1, []string{`signing.key_id: is required when signing.keys is set: the ID of the key this process signs tasks with; valid: one of k1`}},
		{"unknown key_id", "k3", "k1=" + sigK1 + ",k2=" + sigK2, []string{`signing.key_id: "k3" is not in signing.keys; valid: one of k1, k2`}},
		{"key in key_id", sigK1, "k1=" + sigK1, []string{`signing.key_id: the value is not a key ID (1 to 32 of [A-Za-z0-9_.-]; not quoted: it may be a key); valid: empty (signing off) or the ID of one of signing.keys`}},
		{"bad base64", "k1", "k1=" + sigK1 + ",k2=" + sigK2[:20] + "!!!" + sigK2[23:], []string{`signing.keys: entry 2 (key "k2") is not base64`}},
		{"short key", "k1", "k1=" + sigK1 + ",k2=" + short, []string{`signing.keys: key "k2" is 16 bytes; valid: at least 32 bytes`}},
		{"duplicate ID", "k1", "k1=" + sigK1 + ",k2=" + sigK2 + ",k1=" + sigK2, []string{`signing.keys: key ID "k1" appears twice (entries 1 and 3)`}},
		{"no =", "k1", "k1=" + sigK1 + "," + sigK2, []string{`signing.keys: entry 2 is not <key ID>=<base64 key>`}},
		{"bare padded key", "k1", "k1=" + sigK1 + "," + sigK1, []string{`signing.keys: entry 2: the key ID before "=" is not valid`}},
		{"bad ID", "k1", "k1=" + sigK1 + ",k:2=" + sigK2, []string{`signing.keys: entry 2: the key ID before "=" is not valid`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := signingConfig(tc.keyID, tc.keys).Validate()
			require.ErrorIs(t, err, config.ErrInvalid)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			for _, secret := range []string{sigK1, sigK2, short, sigK1[:16], sigK2[:16], short[:12]} {
				assert.NotContains(t, err.Error(), secret, "an error quotes key material")
			}
		})
	}
}

func TestSigning_FromEnvAndFileRedacted(t *testing.T) {
	file := writeFile(t, "signing:\n  key_id: k1\n  keys: k1="+sigK1+"\n")
	t.Setenv("DAGQ_SIGNING_KEYS", "k1="+sigK1+",k2="+sigK2)
	cfg, loaded := load(t, config.LoadOptions{File: file})
	require.NoError(t, cfg.ValidateSources(loaded.Sources))
	require.Equal(t, "env DAGQ_SIGNING_KEYS", loaded.Sources["signing.keys"])
	require.Equal(t, "file "+file, loaded.Sources["signing.key_id"])
	v, err := cfg.Signing.Verifier()
	require.NoError(t, err)
	require.Equal(t, []string{"k1", "k2"}, v.KeyIDs())

	out, err := config.Render(cfg)
	require.NoError(t, err)
	require.Contains(t, string(out), "signing:\n  key_id: k1\n  keys: <redacted>\n  required: true\n")
	js, err := config.RenderJSON(cfg)
	require.NoError(t, err)
	require.Equal(t, config.Redacted, config.Values(cfg)["signing.keys"])
	for _, s := range [][]byte{out, js} {
		require.NotContains(t, string(s), sigK1)
		require.NotContains(t, string(s), sigK2)
	}
}

func TestSigning_SectionNotAMappingDoesNotQuoteIt(t *testing.T) {
	file := writeFile(t, "signing: "+sigK1+"\n")
	_, _, err := config.Load(config.LoadOptions{File: file})
	require.ErrorContains(t, err, "signing (file "+file+":1): a value is not a mapping; the section holds signing.key_id, signing.keys, signing.required")
	require.False(t, strings.Contains(err.Error(), sigK1))
}
