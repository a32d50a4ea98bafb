package core

import (
	"context"
	"log/slog"
	"slices"
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

// lazyHandler is a handler derived from its parent (or, at the root, from
// base) by one WithAttrs (attrs) or WithGroup (group) call, built on first
// use. It is only used by pointer: every derivation makes a new one.
type lazyHandler struct {
	base   slog.Handler
	parent *lazyHandler // nil: derived from base directly (or the root)
	attrs  []slog.Attr  // owned; nil for a group (and at the root)
	group  string

	once  sync.Once
	built slog.Handler
}

func (h *lazyHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.base.Enabled(ctx, level)
}

func (h *lazyHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.handler().Handle(ctx, r)
}

// handler returns the handler h stands for, building it (and its parents)
// once.
func (h *lazyHandler) handler() slog.Handler {
	h.once.Do(func() {
		b := h.base
		if h.parent != nil {
			b = h.parent.handler()
		}
		switch {
		case h.attrs != nil:
			b = b.WithAttrs(h.attrs)
		case h.group != "":
			b = b.WithGroup(h.group)
		}
		h.built = b
	})
	return h.built
}

// deriveAttrs returns h with attrs added. It copies attrs: callers may keep
// using their slice.
func (h *lazyHandler) deriveAttrs(attrs []slog.Attr) *lazyHandler {
	return &lazyHandler{base: h.base, parent: h.link(), attrs: slices.Clone(attrs)}
}

// link is what a derivation of h names as its parent: nil for the root,
// which adds nothing to base.
func (h *lazyHandler) link() *lazyHandler {
	if h.parent == nil && h.attrs == nil && h.group == "" {
		return nil
	}
	return h
}

func (h *lazyHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.deriveAttrs(attrs)
}

func (h *lazyHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &lazyHandler{base: h.base, parent: h.link(), group: name}
}

// withAttrs is l.With for attributes: the same logger, without boxing the
// values in the key-value arguments of With.
func withAttrs(l *slog.Logger, attrs ...slog.Attr) *slog.Logger {
	if len(attrs) == 0 {
		return l
	}
	if h, ok := l.Handler().(*lazyHandler); ok {
		return slog.New(h.deriveAttrs(attrs))
	}
	return slog.New(l.Handler().WithAttrs(slices.Clone(attrs))) // handlers may keep the slice
}
