package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
)

// The tasks of the text-stats job: two independent steps over the text, and
// a summary of their outputs.
var (
	Upper   = core.NewTaskType[string, string]("service-upper")
	Words   = core.NewTaskType[string, int]("service-words")
	Summary = core.NewTaskType[struct{}, string]("service-summary")
)

// Registry returns the registry of the service's tasks.
func Registry() *core.Registry {
	reg := core.NewRegistry()
	Upper.MustRegister(reg, func(_ context.Context, s string) (string, error) { return strings.ToUpper(s), nil })
	Words.MustRegister(reg, func(_ context.Context, s string) (int, error) { return len(strings.Fields(s)), nil })
	Summary.MustRegister(reg, func(ctx context.Context, _ struct{}) (string, error) {
		upper, err := core.Input[string](ctx, "upper")
		if err != nil {
			return "", err
		}
		words, err := core.Input[int](ctx, "words")
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s (%d words)", upper, words), nil
	})
	return reg
}

// TextStats is the job POST /jobs starts: upper and words run in parallel,
// summary once both succeeded.
func TextStats(text string) dag.Job {
	arg, _ := json.Marshal(text)
	return dag.Job{Name: "text-stats", Steps: []dag.Step{
		{Name: "upper", Task: Upper.Name, Args: arg},
		{Name: "words", Task: Words.Name, Args: arg},
		{Name: "summary", Task: Summary.Name, Upstream: []string{"upper", "words"}},
	}}
}

// Service serves the HTTP API: it starts runs on its Executor and keeps
// their outcomes in memory (one replica; a fleet would launch runs with the
// DAG layer's Launcher and read them from the StateStore).
type Service struct {
	exec *dag.Executor
	ctx  context.Context // the runs' context, cancelled by Close
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu   sync.Mutex
	runs map[string]*run
}

type run struct {
	done   chan struct{} // closed when result is set
	result dag.RunResult
	err    error
}

// RunView is the JSON of GET /jobs/{id}.
type RunView struct {
	RunID   string                     `json:"run_id"`
	State   dag.RunState               `json:"state"`
	Outputs map[string]json.RawMessage `json:"outputs,omitempty"`
	Error   string                     `json:"error,omitempty"`
}

// NewService returns a service running jobs on exec.
func NewService(exec *dag.Executor) *Service {
	ctx, stop := context.WithCancel(context.Background())
	return &Service{exec: exec, ctx: ctx, stop: stop, runs: make(map[string]*run)}
}

// Close interrupts the runs in progress (their steps are cancelled) and
// waits for them to end.
func (s *Service) Close() {
	s.stop()
	s.wg.Wait()
}

// Handler returns the HTTP API.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /jobs", s.submit)
	mux.HandleFunc("GET /jobs/{id}", s.get)
	return mux
}

func (s *Service) submit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Text string `json:"text"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		http.Error(w, "body: want {\"text\": \"...\"}: "+err.Error(), http.StatusBadRequest)
		return
	}
	id := core.NewTaskID()
	rn := &run{done: make(chan struct{})}
	s.mu.Lock()
	s.runs[id] = rn
	s.mu.Unlock()
	s.wg.Go(func() {
		rn.result, rn.err = s.exec.Run(s.ctx, TextStats(req.Text), dag.RunOptions{RunID: id})
		close(rn.done)
	})
	writeJSON(w, http.StatusAccepted, map[string]string{"run_id": id})
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	rn, ok := s.runs[r.PathValue("id")]
	s.mu.Unlock()
	if !ok {
		http.Error(w, "no such run", http.StatusNotFound)
		return
	}
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			http.Error(w, "wait: not a duration, e.g. 10s", http.StatusBadRequest)
			return
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-rn.done:
		case <-t.C:
		case <-r.Context().Done():
		}
	}
	view := RunView{RunID: r.PathValue("id"), State: dag.RunRunning}
	select {
	case <-rn.done:
		view.State = rn.result.State
		view.Outputs = make(map[string]json.RawMessage)
		for _, st := range rn.result.Steps {
			if st.Output != nil {
				view.Outputs[st.Name] = st.Output
			}
		}
		if err := rn.result.Err(); err != nil {
			view.Error = err.Error()
		}
		if rn.err != nil {
			view.Error = rn.err.Error()
		}
	default:
	}
	writeJSON(w, http.StatusOK, view)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
