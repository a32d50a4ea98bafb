package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/config"
)

const (
	uiToken    = "s3cr3t-token-0123456789abcdef"
	uiPassword = "hunter2-hunter2"
)

func TestUI_FromEnvRedacted(t *testing.T) {
	t.Setenv("DAGQ_UI_TOKEN", uiToken)
	t.Setenv("DAGQ_UI_BASIC_AUTH", "ops:"+uiPassword)
	t.Setenv("DAGQ_UI_ADDR", ":9000")
	t.Setenv("DAGQ_UI_READ_ONLY", "true")
	cfg, loaded := load(t, config.LoadOptions{})
	require.Empty(t, loaded.Warnings)
	require.NoError(t, cfg.Validate())
	require.Equal(t, uiToken, cfg.UI.Token)
	user, pw := cfg.UI.BasicUser()
	require.Equal(t, "ops", user)
	require.Equal(t, uiPassword, pw)
	require.Equal(t, ":9000", cfg.UI.Addr)
	require.True(t, cfg.UI.ReadOnly)
	require.Equal(t, config.DefaultUIRefresh, cfg.UI.Refresh)

	out, err := config.Render(cfg)
	require.NoError(t, err)
	js, err := config.RenderJSON(cfg)
	require.NoError(t, err)
	require.Contains(t, string(out), "  token: <redacted>\n  basic_auth: <redacted>\n")
	for _, s := range []string{string(out), string(js)} {
		require.NotContains(t, s, uiToken)
		require.NotContains(t, s, uiPassword)
	}
	require.Equal(t, config.Redacted, config.Values(cfg)["ui.token"])
	require.Equal(t, config.Redacted, config.Values(cfg)["ui.basic_auth"])
}

func TestUI_ValidationNamesTheKeyNotTheSecret(t *testing.T) {
	for name, tc := range map[string]struct {
		change func(*config.UIConfig)
		key    string
	}{
		"short token":       {func(u *config.UIConfig) { u.Token = "short-secret" }, "ui.token"},
		"token with spaces": {func(u *config.UIConfig) { u.Token = "two words but long enough" }, "ui.token"},
		"basic no colon":    {func(u *config.UIConfig) { u.BasicAuth = "opshunter2-hunter2" }, "ui.basic_auth"},
		"basic no user":     {func(u *config.UIConfig) { u.BasicAuth = ":hunter2-hunter2" }, "ui.basic_auth"},
		"short password":    {func(u *config.UIConfig) { u.BasicAuth = "ops:pw-sec" }, "ui.basic_auth"},
		"empty addr":        {func(u *config.UIConfig) { u.Addr = "" }, "ui.addr"},
		"bad addr":          {func(u *config.UIConfig) { u.Addr = "localhost" }, "ui.addr"},
		"fast refresh":      {func(u *config.UIConfig) { u.Refresh = 10 * time.Millisecond }, "ui.refresh"},
	} {
		t.Run(name, func(t *testing.T) {
			c := config.Default()
			tc.change(&c.UI)
			err := c.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.key+": ")
			for _, secret := range []string{"short-secret", "two words", "hunter2-hunter2", "pw-sec"} {
				assert.NotContains(t, err.Error(), secret, "an error quotes a secret")
			}
		})
	}
}

func TestLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "localhost:8080": true, "[::1]:8080": true, "127.0.0.2:1": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:8080": false, "10.0.0.5:8080": false, "example.com:80": false, "nonsense": false,
	} {
		assert.Equal(t, want, config.LoopbackAddr(addr), addr)
	}
}
