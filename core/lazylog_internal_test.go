package core

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
)

// A lazy logger writes what the logger it wraps writes, derivations included.
func TestLazyLoggerWritesTheSame(t *testing.T) {
	write := func(l *slog.Logger) {
		w := l.With("worker", "w1")
		j := withAttrs(w, slog.String("task_id", "t1"), slog.Int("attempt", 2))
		j.Debug("not written")
		j.WithGroup("g").With("k", "v").Info("in a group", "x", 1)
		d := j.With("duration", 3)
		d.Info("done", "err", "none")
		w.Warn("worker line")
		d.Info("again")
	}
	var eager, lazy bytes.Buffer
	opts := &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	write(slog.New(slog.NewTextHandler(&eager, opts)))
	write(lazyLogger(slog.New(slog.NewTextHandler(&lazy, opts))))
	assert.Equal(t, eager.String(), lazy.String())
	assert.Contains(t, lazy.String(), "g.k=v")
	assert.NotContains(t, lazy.String(), "not written")
}

// Deriving from a lazy logger hands nothing to the wrapped handler until a
// record is written, and then only once; many attributes work.
func TestLazyLoggerDerivesOnFirstRecord(t *testing.T) {
	var buf bytes.Buffer
	var derived int
	inner := &countingHandler{Handler: slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}), derived: &derived}
	base := lazyLogger(slog.New(inner))
	many := make([]slog.Attr, 8)
	for i := range many {
		many[i] = slog.Int("k"+string(rune('a'+i)), i)
	}
	l := withAttrs(withAttrs(base, slog.String("task_id", "t1"), slog.Int("attempt", 1)), many...)
	l.Debug("not written")
	assert.Zero(t, derived, "nothing derived before a record is written")
	l.Info("written")
	l.Info("again")
	assert.Equal(t, 2, derived, "each derivation applied once")
	assert.Contains(t, buf.String(), "msg=written task_id=t1 attempt=1 ka=0")
	assert.Contains(t, buf.String(), "kh=7")
}

// countingHandler counts the WithAttrs calls it and its derivations get.
type countingHandler struct {
	slog.Handler
	derived *int
}

func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	*h.derived++
	return &countingHandler{Handler: h.Handler.WithAttrs(as), derived: h.derived}
}
