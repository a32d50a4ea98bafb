package core

import (
	"context"
	"log/slog"
	"sync"
)

// lazyLogger returns a logger that writes exactly what l writes, but whose
// With and WithGroup only record their attributes and groups: they are
// handed to l's handler (WithAttrs, WithGroup, in order) when the derived
// logger first handles a record. The worker derives a logger per delivery
// and per task; with the usual level (info or above, or error) most of them
// never write, and a handler such as slog.TextHandler formats the
// attributes at WithAttrs time, which would otherwise cost more than a
// no-op task.
//
// Enabled is asked of l's handler before the derived attributes are
// applied, which is what every slog handler that derives its level from its
// parent does.
func lazyLogger(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(*lazyHandler); ok {
		return l
	}
	return slog.New(&lazyHandler{base: l.Handler()})
}

// lazyOp is one recorded WithAttrs (attrs) or WithGroup (group) call.
type lazyOp struct {
	attrs []slog.Attr
	group string
}

// lazyHandler is a handler derived from base by ops, built on first use.
// It is only used by pointer: every derivation makes a new one.
type lazyHandler struct {
	base slog.Handler
	ops  []lazyOp // never appended to in place: derived handlers copy

	once  sync.Once
	built slog.Handler
}

func (h *lazyHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.base.Enabled(ctx, level)
}

func (h *lazyHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.handler().Handle(ctx, r)
}

// handler returns base with ops applied, building it once.
func (h *lazyHandler) handler() slog.Handler {
	h.once.Do(func() {
		b := h.base
		for _, op := range h.ops {
			if op.attrs != nil {
				b = b.WithAttrs(op.attrs)
			} else {
				b = b.WithGroup(op.group)
			}
		}
		h.built = b
	})
	return h.built
}

func (h *lazyHandler) derive(op lazyOp) *lazyHandler {
	ops := make([]lazyOp, len(h.ops), len(h.ops)+1)
	copy(ops, h.ops)
	return &lazyHandler{base: h.base, ops: append(ops, op)}
}

func (h *lazyHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.derive(lazyOp{attrs: attrs})
}

func (h *lazyHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.derive(lazyOp{group: name})
}

// withAttrs is l.With for attributes: the same logger, without boxing the
// values in the key-value arguments of With.
func withAttrs(l *slog.Logger, attrs ...slog.Attr) *slog.Logger {
	if len(attrs) == 0 {
		return l
	}
	return slog.New(l.Handler().WithAttrs(attrs))
}
