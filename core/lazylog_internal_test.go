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

// Deriving a per-task logger from a lazy logger formats nothing and costs
// two allocations (logger and handler), however many attributes up to
// lazyInline; more attributes still work.
func TestLazyLoggerDerivationCost(t *testing.T) {
	var buf bytes.Buffer
	base := lazyLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError})))
	allocs := testing.AllocsPerRun(100, func() {
		l := withAttrs(base, slog.String("task_id", "t1"), slog.String("task", "noop"), slog.Int("attempt", 1),
			slog.String("run_id", "r"), slog.String("step_id", "s"), slog.String("message_id", "m"))
		l.Info("not written")
	})
	assert.LessOrEqual(t, allocs, 2.0)

	many := make([]slog.Attr, lazyInline+2)
	for i := range many {
		many[i] = slog.Int("k"+string(rune('a'+i)), i)
	}
	withAttrs(base, many...).Error("many")
	assert.Contains(t, buf.String(), "ka=0")
	assert.Contains(t, buf.String(), "kh=7")
}
