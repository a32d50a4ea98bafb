package ui

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dagq/dagq/app"
	"github.com/dagq/dagq/app/config"
	"github.com/dagq/dagq/core/dag"
)

//go:embed assets templates
var embedded embed.FS

// RunFilter selects runs for Options.ListRuns (the run index's
// dag.ListRunsOptions).
type RunFilter struct {
	// State keeps runs in this state; empty: any.
	State dag.RunState
	// Job keeps runs of this job; empty: any.
	Job string
	// Since keeps runs created at or after it; zero: any.
	Since time.Time
	// Limit is the page size.
	Limit int
	// Cursor continues a listing where the previous page ended ("" from the
	// start).
	Cursor string
}

// RunRow is one run of a listing (the run index's dag.RunSummary).
type RunRow struct {
	RunID, Job            string
	State                 dag.RunState
	CreatedAt, FinishedAt time.Time
}

// WorkerRow is one worker of the worker registry (app.WorkerInfo).
type WorkerRow struct {
	ID, Host          string
	PID               int
	Version           string
	Queues            []string
	Concurrency       int
	InFlight          int
	StartedAt, SeenAt time.Time
	Stale             bool
}

// Options configures a Server. Runtime is required.
type Options struct {
	// Runtime is the dagq runtime the console looks into and acts through:
	// its Launcher (runs), Client (outputs), Ports (queues) and Config.
	Runtime *app.Runtime
	// Addr is the address the console listens on (default
	// config.DefaultUIAddr). It decides what New requires: a non-loopback
	// address needs Token or BasicAuth (or Insecure); on a loopback address
	// without either, only requests whose Host is a loopback name are
	// served (against DNS rebinding).
	Addr string
	// Insecure lets New serve a non-loopback address without Token or
	// BasicAuth.
	Insecure bool
	// ReadOnly refuses every action (terminate, redrive).
	ReadOnly bool
	// Token, when set, is a bearer token every request must carry
	// (Authorization: Bearer, or the cookie the login page sets).
	Token string
	// BasicAuth, when set, is "user:password" for HTTP basic
	// authentication. With Token too, either is accepted.
	BasicAuth string
	// Refresh is how often open pages ask for news (default
	// config.DefaultUIRefresh).
	Refresh time.Duration
	// ListRuns lists runs for the runs page. Nil means the Runtime's run
	// index (dag.Launcher.ListRuns); with NoIndex the runs page lists only
	// the runs this console knows (driven in this process, or opened here).
	ListRuns func(ctx context.Context, f RunFilter) ([]RunRow, string, error)
	// Workers lists the workers for the workers page. Nil means the
	// Runtime's worker registry (app.Runtime.Workers); with NoIndex the
	// page lists the workers seen in known runs.
	Workers func(ctx context.Context) ([]WorkerRow, error)
	// NoIndex keeps ListRuns and Workers nil: the console reads neither the
	// run index nor the worker registry (for stores without them, or tests).
	NoIndex bool
	// Logger receives the console's logs (default: the Runtime's).
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// FromConfig returns Options with the ui keys of cfg (addr, read_only,
// token, basic_auth, refresh) and rt.
func FromConfig(rt *app.Runtime, cfg config.UIConfig) Options {
	return Options{Runtime: rt, Addr: cfg.Addr, ReadOnly: cfg.ReadOnly, Token: cfg.Token, BasicAuth: cfg.BasicAuth, Refresh: cfg.Refresh}
}

// indexLister lists runs from rt's run index (dag.Launcher.ListRuns).
func indexLister(rt *app.Runtime) func(context.Context, RunFilter) ([]RunRow, string, error) {
	if rt == nil || rt.Launcher == nil {
		return nil
	}
	return func(ctx context.Context, f RunFilter) ([]RunRow, string, error) {
		rs, next, err := rt.Launcher.ListRuns(ctx, dag.ListRunsOptions{State: f.State, Job: f.Job, Since: f.Since, Limit: f.Limit, Cursor: f.Cursor})
		rows := make([]RunRow, len(rs))
		for i, r := range rs {
			rows[i] = RunRow{RunID: r.RunID, Job: r.Job, State: r.State, CreatedAt: r.CreatedAt, FinishedAt: r.FinishedAt}
		}
		return rows, next, err
	}
}

// registryLister lists workers from rt's worker registry (app.Runtime.Workers).
func registryLister(rt *app.Runtime) func(context.Context) ([]WorkerRow, error) {
	if rt == nil {
		return nil
	}
	return func(ctx context.Context) ([]WorkerRow, error) {
		ws, err := rt.Workers(ctx)
		rows := make([]WorkerRow, len(ws))
		for i, w := range ws {
			rows[i] = WorkerRow{ID: w.ID, Host: w.Host, PID: w.PID, Version: w.Version, Queues: w.Queues,
				Concurrency: w.Concurrency, InFlight: w.InFlight, StartedAt: w.StartedAt, SeenAt: w.SeenAt, Stale: w.Stale}
		}
		return rows, err
	}
}

// ErrInsecureBind is New's error for a non-loopback address without Token
// or BasicAuth (and without Insecure).
var ErrInsecureBind = errors.New("a dashboard on a non-loopback address needs authentication")

// Server is the console: an http.Handler. Serve runs it on a listener with
// its background work; ServeHTTP alone serves requests (tests).
type Server struct {
	rt       *app.Runtime
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	refresh  time.Duration
	loopback bool // the address binds loopback only
	openHost bool // no authentication: only loopback Host headers
	csrf     string
	session  string // the cookie value of a token login ("" without Token)
	basicU   string
	basicP   string

	pages  map[string]*template.Template
	static http.Handler
	asset  string // cache-busting version of the assets
	mux    *http.ServeMux

	runs    *runStore
	queues  *queueSampler
	started time.Time

	closeOnce sync.Once
}

// New checks opts and returns the console.
func New(opts Options) (*Server, error) {
	if opts.Runtime == nil {
		return nil, errors.New("ui: a Runtime is required")
	}
	if !opts.NoIndex {
		if opts.ListRuns == nil {
			opts.ListRuns = indexLister(opts.Runtime)
		}
		if opts.Workers == nil {
			opts.Workers = registryLister(opts.Runtime)
		}
	}
	if opts.Addr == "" {
		opts.Addr = config.DefaultUIAddr
	}
	if opts.Refresh <= 0 {
		opts.Refresh = config.DefaultUIRefresh
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = opts.Runtime.Logger
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ui := config.UIConfig{Addr: opts.Addr, Token: opts.Token, BasicAuth: opts.BasicAuth, Refresh: opts.Refresh}
	if err := ui.Validate(); err != nil {
		return nil, fmt.Errorf("ui: %w", err)
	}
	loopback := config.LoopbackAddr(opts.Addr)
	authed := opts.Token != "" || opts.BasicAuth != ""
	if !loopback && !authed && !opts.Insecure {
		return nil, fmt.Errorf("ui: %s: %w: set a token (%s, at least %d characters, e.g. from \"openssl rand -hex 24\") "+
			"or basic auth (%s=user:password) in the environment, listen on a loopback address such as %s, "+
			"or pass --insecure to serve it to anyone who can reach it",
			opts.Addr, ErrInsecureBind, config.EnvName("ui.token"), config.MinUITokenLen, config.EnvName("ui.basic_auth"), config.DefaultUIAddr)
	}
	s := &Server{
		rt:       opts.Runtime,
		opts:     opts,
		log:      opts.Logger.With("component", "ui"),
		now:      opts.Now,
		refresh:  opts.Refresh,
		loopback: loopback,
		openHost: loopback && !authed,
		csrf:     randomToken(),
		started:  opts.Now(),
	}
	if opts.Token != "" {
		s.session = sessionValue(opts.Token)
	}
	if opts.BasicAuth != "" {
		s.basicU, s.basicP, _ = strings.Cut(opts.BasicAuth, ":")
	}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	assets, _ := fs.Sub(embedded, "assets")
	s.asset = assetVersion(assets)
	s.static = http.StripPrefix("/static/", http.FileServer(http.FS(assets)))
	s.runs = newRunStore(s)
	s.queues = newQueueSampler(s)
	s.routes()
	return s, nil
}

// randomToken returns 32 random bytes in hex.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// Close releases what the console holds open (the dead-letter queues it
// samples). It does not close the Runtime.
func (s *Server) Close() {
	s.closeOnce.Do(s.queues.close)
}

// Listen opens a TCP listener on addr (host:port; port 0 picks one).
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ui: listen on %s: %w", addr, err)
	}
	return ln, nil
}

// URL returns the console's base URL on ln ("http://127.0.0.1:8080").
func URL(ln net.Listener) string {
	addr := ln.Addr().String()
	if host, port, err := net.SplitHostPort(addr); err == nil {
		ip := net.ParseIP(host)
		if ip != nil && ip.IsUnspecified() {
			addr = net.JoinHostPort("localhost", port)
		}
	}
	return "http://" + addr
}

// Serve serves the console on ln until ctx is done, then shuts down
// (letting requests in flight finish for up to 5 seconds) and closes the
// server. It samples the queue depths in the background meanwhile.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer s.Close()
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { s.queues.background(ctx) })
	wg.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	})
	err := hs.Serve(ln)
	stop()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("ui: serve: %w", err)
}
