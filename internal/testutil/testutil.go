// Package testutil holds test helpers shared by dagq's packages: a log sink
// that records slog records with their attributes, a quiet logger, and a
// goroutine count per synctest bubble. It is internal: only dagq's tests use
// it.
package testutil

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// LogRecord is one recorded log record.
type LogRecord struct {
	Level slog.Level
	Msg   string
	Attrs map[string]any // the record's attributes and those of Logger.With
}

// LogSink records log records with their attributes (including those added
// by Logger.With).
type LogSink struct {
	mu   sync.Mutex
	recs []LogRecord
}

// Records returns what was logged so far.
func (s *LogSink) Records() []LogRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.recs)
}

// Where returns the records match accepts. Tests select records by level
// and attributes, not by message wording.
func (s *LogSink) Where(match func(LogRecord) bool) []LogRecord {
	var out []LogRecord
	for _, r := range s.Records() {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// WithAttr returns the records that carry the attribute key.
func (s *LogSink) WithAttr(key string) []LogRecord {
	return s.Where(func(r LogRecord) bool {
		_, ok := r.Attrs[key]
		return ok
	})
}

// WithErr returns the records whose "err" attribute wraps target.
func (s *LogSink) WithErr(target error) []LogRecord {
	return s.Where(func(r LogRecord) bool {
		err, _ := r.Attrs["err"].(error)
		return errors.Is(err, target)
	})
}

type logHandler struct {
	sink  *LogSink
	attrs []slog.Attr
}

func (h *logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	m := make(map[string]any, len(h.attrs)+r.NumAttrs())
	for _, a := range h.attrs {
		m[a.Key] = a.Value.Any()
	}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	h.sink.mu.Lock()
	h.sink.recs = append(h.sink.recs, LogRecord{Level: r.Level, Msg: r.Message, Attrs: m})
	h.sink.mu.Unlock()
	return nil
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{sink: h.sink, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *logHandler) WithGroup(string) slog.Handler { return h }

// NewLogger returns a logger that records into the returned sink; when the
// test fails, the records are printed with t.Logf.
func NewLogger(t testing.TB) (*slog.Logger, *LogSink) {
	sink := &LogSink{}
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range sink.Records() {
				t.Logf("%v %s %v", r.Level, r.Msg, r.Attrs)
			}
		}
	})
	return slog.New(&logHandler{sink: sink}), sink
}

// QuietLogger discards everything.
func QuietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// BubbleGoroutines counts the goroutines of the caller's synctest bubble
// whose stack contains marker (e.g. "dagq/core.(*Client)");
// runtime.NumGoroutine would count other tests' too. It panics outside a
// bubble.
func BubbleGoroutines(marker string) int {
	buf := make([]byte, 64<<10)
	self := string(buf[:runtime.Stack(buf, false)])
	header, _, _ := strings.Cut(self, "\n")
	_, bubble, ok := strings.Cut(header, "synctest bubble ")
	if !ok {
		panic("BubbleGoroutines: not in a synctest bubble")
	}
	bubble = strings.TrimSuffix(bubble, "]:")
	var all []byte
	for n := 1 << 20; ; n *= 2 {
		all = make([]byte, n)
		if m := runtime.Stack(all, true); m < n {
			all = all[:m]
			break
		}
	}
	count := 0
	for _, g := range strings.Split(string(all), "\n\n") {
		h, _, _ := strings.Cut(g, "\n")
		inBubble := strings.HasSuffix(h, "synctest bubble "+bubble+"]:") || strings.Contains(h, "synctest bubble "+bubble+",")
		if inBubble && strings.Contains(g, marker) {
			count++
		}
	}
	return count
}
