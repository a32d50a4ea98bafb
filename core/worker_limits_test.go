package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/adapters/memory"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// Envelopes that break a limit of the wire format (docs/semantics.md, "Size
// limits" and "Poison messages"), sent straight to the queue as a foreign
// producer would: never executed; a failed result naming the field when the
// task ID can hold one, the dead-letter queue when it cannot.

const wlDLQ = "tasks-dlq"

// newWlWorld is a wmWorld whose task queue redrives to wlDLQ after
// maxReceives receives.
func newWlWorld(t *testing.T, maxReceives int) *wmWorld {
	t.Helper()
	tr := memory.NewTransport()
	require.NoError(t, tr.CreateQueue(wlDLQ, memory.QueueOptions{}))
	require.NoError(t, tr.CreateQueue(wmQueue, memory.QueueOptions{MaxReceives: maxReceives, DeadLetterQueue: wlDLQ}))
	return &wmWorld{t: t, tr: tr, producer: tr.Broker(wmQueue), results: tr.ResultBackend(), cancels: tr.CancelChannel()}
}

// s3LikeResults refuses, as the S3 result backend does before any request,
// a task ID whose object key "<prefix>results/<id>" is longer than S3's
// 1,024 bytes, and says so through ports.KeyLimiter.
type s3LikeResults struct {
	ports.ResultBackend
	max int
}

func (r s3LikeResults) MaxKeyLen() int { return r.max }

func (r s3LikeResults) Put(ctx context.Context, res ports.Result) error {
	if len(res.TaskID) > r.max {
		return fmt.Errorf("s3: put result: %w: object key is %d bytes; S3 allows 1024", ports.ErrInvalidArgument, len(res.TaskID)+1024-r.max)
	}
	return r.ResultBackend.Put(ctx, res)
}

func (r s3LikeResults) Get(ctx context.Context, id string) (ports.Result, error) {
	if len(id) > r.max {
		return ports.Result{}, fmt.Errorf("s3: get result: %w: object key is %d bytes; S3 allows 1024", ports.ErrInvalidArgument, len(id)+1024-r.max)
	}
	return r.ResultBackend.Get(ctx, id)
}

// waitDLQ waits (on the fake clock) until the dead-letter queue holds n
// messages.
func waitDLQ(t *testing.T, tr *memory.Transport, n int) {
	t.Helper()
	for range 10000 {
		s, err := tr.Stats(wlDLQ)
		require.NoError(t, err)
		if s.Visible >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the dead-letter queue never got %d message(s)", n)
}

// The report of issue 13: a valid envelope with a 1,509-byte task ID ran
// its handler on every delivery ("storing the result failed", then "task
// succeeded") until the redrive policy moved it. Now it is never executed:
// no result can be stored under its ID, so it is handed back, with backoff,
// until it reaches the DLQ, and each delivery counts as rejected.
func TestWorkerMemory_OverLimitIDNeverRunsEndsInDLQ(t *testing.T) {
	for _, tc := range []struct {
		name    string
		results func(ports.ResultBackend) ports.ResultBackend
	}{
		{"memory results", nil},
		{"S3-like results", func(r ports.ResultBackend) ports.ResultBackend {
			return s3LikeResults{ResultBackend: r, max: 1024 - len("dagq/results/")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const maxReceives = 3
				m := newWlWorld(t, maxReceives)
				var runs atomic.Int32
				reg := core.NewRegistry()
				require.NoError(t, reg.HandleFunc("a", func(context.Context, *core.Task) (json.RawMessage, error) {
					runs.Add(1)
					return json.RawMessage(`1`), nil
				}))
				obs := newObsRecorder()
				w := m.startWorker(reg, func(o *core.WorkerOptions) {
					o.Observer = obs
					if tc.results != nil {
						o.Ports.Results = tc.results(o.Ports.Results)
					}
				})
				id := strings.Repeat("i", 1509)
				body := fmt.Sprintf(`{"v":1,"id":%q,"task":"a","attempt":1,"args":{}}`, id)
				require.NoError(t, m.producer.Send(context.Background(), ports.Message{ID: id, Body: []byte(body)}))
				m.submit(wkEnv("good", "a"))

				waitDLQ(t, m.tr, 1)
				require.Equal(t, ports.StateSucceeded, m.result("good").State, "the worker goes on")
				require.NoError(t, w.stop())

				require.EqualValues(t, 1, runs.Load(), "only the good task ran")
				m.noResult(id)
				require.Equal(t, memory.QueueStats{}, m.stats(), "the task queue is empty")
				c := obs.counts()
				require.Equal(t, maxReceives, c.rejected, "every delivery of it was rejected")
				require.Equal(t, 1, c.taskReceived["a"], "never a task: only the good one was")
				for _, f := range obs.finishes {
					require.NotEqual(t, id, f.info.ID, "never a task, so never an outcome such as succeeded")
				}
				refused := w.logs.WithErr(wire.ErrLimit)
				require.Len(t, refused, maxReceives, "one error per delivery")
				require.Contains(t, fmt.Sprint(refused[0].Attrs["err"]), `task ID (field "id") is 1509 bytes; the limit is 128`)
			})
		})
	}
}

// An envelope whose task ID can hold a result but another field breaks a
// limit is never executed: its failed result names the field, its size and
// the limit, and its message is acked.
func TestWorkerMemory_OverLimitFieldFailsWithoutRunning(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	labels := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(`"k%d":"v"`, i)
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	cases := []struct {
		name, fields, want string
	}{
		{"task name", `"task":"` + long(129) + `"`, `task name (field "task") is 129 bytes; the limit is 128`},
		{"label key", `"task":"a","labels":{"` + long(129) + `":"v"}`, `label key (field "labels") is 129 bytes; the limit is 128`},
		{"label value", `"task":"a","labels":{"k":"` + long(1025) + `"}`, `label "k" (field "labels") is 1025 bytes; the limit is 1024`},
		{"labels", `"task":"a","labels":` + labels(65), `labels (field "labels") has 65 entries; the limit is 64`},
		{"meta", `"task":"a","meta":` + labels(65), `meta (field "meta") has 65 entries; the limit is 64`},
		{"run ID", `"task":"a","run":"` + long(129) + `"`, `run ID (field "run") is 129 bytes; the limit is 128`},
		{"step ID", `"task":"a","step":"` + long(129) + `"`, `step ID (field "step") is 129 bytes; the limit is 128`},
		{"reply-to", `"task":"a","reply_to":"` + long(1025) + `"`, `reply-to address (field "reply_to") is 1025 bytes; the limit is 1024`},
		{"param name", `"task":"a","params":{"` + long(129) + `":"v"}`, `param name (field "params") is 129 bytes; the limit is 128`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := newWlWorld(t, 3)
				reg := core.NewRegistry()
				require.NoError(t, reg.HandleFunc("a", wkNever(t)))
				obs := newObsRecorder()
				w := m.startWorker(reg, func(o *core.WorkerOptions) { o.Observer = obs })
				body := `{"v":1,"id":"t1","attempt":1,` + tc.fields + `}`
				require.NoError(t, m.producer.Send(context.Background(), ports.Message{ID: "t1", Body: []byte(body)}))

				r := m.result("t1")
				require.NoError(t, w.stop())
				require.Equal(t, ports.StateFailed, r.State)
				require.Contains(t, r.Error, tc.want)
				require.True(t, strings.HasPrefix(r.Error, "message refused, not run: "), r.Error)
				require.Zero(t, r.Attempts)
				require.True(t, r.StartedAt.IsZero(), "never executed")
				require.Equal(t, memory.QueueStats{}, m.stats(), "acked")
				s, err := m.tr.Stats(wlDLQ)
				require.NoError(t, err)
				require.Zero(t, s.Visible, "not dead-lettered")
				c := obs.counts()
				require.Equal(t, 1, c.rejected)
				require.Empty(t, c.taskReceived)
			})
		})
	}
}
