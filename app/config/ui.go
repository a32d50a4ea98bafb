package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
	"unicode"
)

// UIConfig configures the dashboard (dagq ui, dagq run --ui; package app/ui).
// Token and BasicAuth are secrets: set them through the environment
// (DAGQ_UI_TOKEN, DAGQ_UI_BASIC_AUTH); errors about them never quote them.
type UIConfig struct {
	Addr      string        `yaml:"addr" doc:"dagq ui: listen address (host:port) of the dashboard; a host other than loopback (127.0.0.1, ::1, localhost) needs ui.token or ui.basic_auth, or --insecure"`
	ReadOnly  bool          `yaml:"read_only" doc:"dagq ui: show runs, queues and workers but refuse every action (terminate, redrive)"`
	Token     string        `yaml:"token" secret:"true" doc:"dagq ui: bearer token every request must carry (Authorization: Bearer, or the cookie of the login page); at least 16 characters without spaces; empty: none"`
	BasicAuth string        `yaml:"basic_auth" secret:"true" doc:"dagq ui: HTTP basic authentication, user:password (password at least 8 characters); empty: none"`
	Refresh   time.Duration `yaml:"refresh" doc:"dagq ui: how often an open page asks the server for news (a run page: one run record read per interval, shared by every viewer); 500ms to 1m"`
}

// Dashboard defaults and limits.
const (
	DefaultUIAddr    = "127.0.0.1:8080"
	DefaultUIRefresh = 2 * time.Second
	MinUIRefresh     = 500 * time.Millisecond
	MaxUIRefresh     = time.Minute
	// MinUITokenLen and MinUIPasswordLen bound ui.token and the password of
	// ui.basic_auth from below.
	MinUITokenLen    = 16
	MinUIPasswordLen = 8
)

// BasicUser returns the user and password of ui.basic_auth ("", "" when
// unset).
func (u UIConfig) BasicUser() (user, password string) {
	user, password, _ = strings.Cut(u.BasicAuth, ":")
	return user, password
}

// LoopbackAddr reports whether the listen address addr binds to a loopback
// interface only (127.0.0.0/8, ::1 or localhost). An empty host (":8080")
// binds every interface: not loopback.
func LoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Validate checks the ui keys alone (Config.Validate checks them too); its
// errors name the key and never quote ui.token or ui.basic_auth.
func (u UIConfig) Validate() error {
	var errs []error
	u.validate(func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	})
	return errors.Join(errs...)
}

func (u UIConfig) validate(bad func(key, format string, args ...any)) {
	switch msg := validListenAddr(u.Addr); {
	case u.Addr == "":
		bad("ui.addr", "is empty; valid: host:port, such as %s (this host only) or :8080 (every interface, with ui.token or ui.basic_auth)", DefaultUIAddr)
	case msg != "":
		bad("ui.addr", "%q %s; valid: host:port, such as %s or :8080", u.Addr, msg, DefaultUIAddr)
	}
	if u.Refresh < MinUIRefresh || u.Refresh > MaxUIRefresh {
		bad("ui.refresh", "%s is out of range; valid: %s to %s", FormatDuration(u.Refresh), FormatDuration(MinUIRefresh), FormatDuration(MaxUIRefresh))
	}
	// Never quote the secrets: say what is wrong with them.
	if t := u.Token; t != "" {
		switch {
		case strings.IndexFunc(t, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
			bad("ui.token", "holds white space or unprintable characters; valid: at least %d printable characters without spaces, e.g. from \"openssl rand -hex 24\"", MinUITokenLen)
		case len(t) < MinUITokenLen:
			bad("ui.token", "is %d characters; valid: at least %d, e.g. from \"openssl rand -hex 24\"", len(t), MinUITokenLen)
		}
	}
	if b := u.BasicAuth; b != "" {
		user, password, ok := strings.Cut(b, ":")
		switch {
		case !ok || user == "":
			bad("ui.basic_auth", "is not user:password; valid: a user name, a colon and a password of at least %d characters", MinUIPasswordLen)
		case strings.IndexFunc(user, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
			bad("ui.basic_auth", "the user name holds white space or unprintable characters; valid: user:password")
		case len(password) < MinUIPasswordLen:
			bad("ui.basic_auth", "the password is %d characters; valid: at least %d", len(password), MinUIPasswordLen)
		}
	}
}
