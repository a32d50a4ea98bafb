package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// fakeTracer records the hook calls; its "trace context" is the span name
// of the context it injects from.
type fakeTracer struct {
	mu    sync.Mutex
	spans []fakeSpan
}

type fakeSpan struct {
	core.SpanStart
	parent string // "" for a root
	ended  int
	err    error
}

type fakeSpanKey struct{}

func (f *fakeTracer) Start(ctx context.Context, s core.SpanStart) (context.Context, func(error)) {
	parent, _ := ctx.Value(fakeSpanKey{}).(string)
	f.mu.Lock()
	i := len(f.spans)
	f.spans = append(f.spans, fakeSpan{SpanStart: s, parent: parent})
	f.mu.Unlock()
	name := fmt.Sprintf("%s#%d", s.Kind, i)
	return context.WithValue(ctx, fakeSpanKey{}, name), func(err error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.spans[i].ended++
		f.spans[i].err = err
	}
}

func (f *fakeTracer) Inject(ctx context.Context, meta map[string]string) {
	if s, ok := ctx.Value(fakeSpanKey{}).(string); ok {
		meta["fake-parent"] = s
	}
}

func (f *fakeTracer) Extract(ctx context.Context, meta map[string]string) context.Context {
	if s, ok := meta["fake-parent"]; ok {
		return context.WithValue(ctx, fakeSpanKey{}, s)
	}
	return ctx
}

func (f *fakeTracer) all() []fakeSpan {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeSpan(nil), f.spans...)
}

// The hook sees one submit span per request, ended once with its own
// outcome, and one task span per handler run, child of the submit span
// through Meta; the handler's context is the task span's.
func TestTracerHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := &fakeTracer{}
		tr := memory.NewTransport()
		require.NoError(t, tr.CreateQueue("q", memory.QueueOptions{}))
		reg := core.NewRegistry()
		var handlerSpan string
		require.NoError(t, reg.HandleFunc("t", func(ctx context.Context, _ *core.Task) (json.RawMessage, error) {
			handlerSpan, _ = ctx.Value(fakeSpanKey{}).(string)
			return nil, nil
		}))
		w, err := core.NewWorker(core.WorkerOptions{
			Ports: core.Ports{
				Broker:      tr.Broker("q"),
				Results:     tr.ResultBackend(),
				Completions: tr.CompletionBus(),
				NoCancel:    true,
			},
			Registry: reg,
			Tracer:   ft,
			Logger:   slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		defer func() { cancel(); <-done }()
		c, err := core.NewClient(core.ClientOptions{
			Ports: core.Ports{
				Broker:      tr.Broker("q"),
				Results:     tr.ResultBackend(),
				Completions: tr.CompletionBus(),
				NoCancel:    true,
			},
			Tracer: ft,
		})
		require.NoError(t, err)
		defer c.Close()

		meta := map[string]string{"k": "v"}
		_, err = c.SubmitBatch(ctx, core.Request{Task: "t", ID: "ok", Meta: meta}, core.Request{Task: "t", ID: "bad id"})
		require.ErrorIs(t, err, ports.ErrInvalidArgument, "nothing sent")
		assert.Equal(t, map[string]string{"k": "v"}, meta)

		id, err := c.Submit(ctx, core.Request{Task: "t", RunID: "r", StepID: "s"})
		require.NoError(t, err)
		_, err = c.Wait(ctx, id)
		require.NoError(t, err)

		spans := ft.all()
		require.Len(t, spans, 4)
		for _, s := range spans {
			assert.Equal(t, 1, s.ended, "%+v ends once", s.SpanStart)
		}
		assert.Equal(t, core.SpanSubmit, spans[0].Kind)
		assert.Equal(t, "ok", spans[0].TaskID)
		assert.ErrorIs(t, spans[0].err, ports.ErrInvalidArgument)
		assert.ErrorIs(t, spans[1].err, ports.ErrInvalidArgument)
		assert.Equal(t, core.SpanStart{Kind: core.SpanSubmit, Name: "t", TaskID: id, RunID: "r", StepID: "s"}, spans[2].SpanStart)
		assert.NoError(t, spans[2].err)
		task := spans[3]
		assert.Equal(t, core.SpanTask, task.Kind)
		assert.Equal(t, "submit#2", task.parent, "extracted from Meta")
		assert.Equal(t, id, task.TaskID)
		assert.Equal(t, 1, task.Attempt)
		assert.Equal(t, w.ID(), task.WorkerID)
		assert.NoError(t, task.err)
		assert.Equal(t, "task#3", handlerSpan)
	})
}
