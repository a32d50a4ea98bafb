package graph_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/graph"
	"github.com/dagq/dagq/core/dag"
)

var diamond = dag.Job{Name: "diamond", Steps: []dag.Step{
	{Name: "a", Task: "echo"},
	{Name: "b", Task: "transform", Upstream: []string{"a"}},
	{Name: "c", Task: "transform", Upstream: []string{"a"}},
	{Name: "d", Task: "concat", Upstream: []string{"b", "c"}},
}}

func TestMermaid(t *testing.T) {
	require.Equal(t, `graph TD
  a["a<br/><i>echo</i>"]
  b["b<br/><i>transform</i>"]
  c["c<br/><i>transform</i>"]
  d["d<br/><i>concat</i>"]
  a --> b
  a --> c
  b --> d
  c --> d
`, graph.Mermaid(diamond))
}

func TestMermaid_UnsafeNames(t *testing.T) {
	job := dag.Job{Name: "j", Steps: []dag.Step{
		{Name: "end", Task: `say "hi"`},
		{Name: "load-db", Task: "x<y>", Upstream: []string{"end"}},
		{Name: "load_db", Task: "t", Upstream: []string{"load-db"}},
		{Name: "1st", Task: "t"},
	}}
	require.Equal(t, `graph TD
  step_end["end<br/><i>say #quot;hi#quot;</i>"]
  load_db["load-db<br/><i>x#lt;y#gt;</i>"]
  load_db_2["load_db<br/><i>t</i>"]
  step_1st["1st<br/><i>t</i>"]
  step_end --> load_db
  load_db --> load_db_2
`, graph.Mermaid(job))
}

func TestDOT(t *testing.T) {
	out, err := graph.Render(diamond, "dot")
	require.NoError(t, err)
	require.Equal(t, `digraph "diamond" {
  rankdir=TB;
  node [shape=box, style=rounded];
  "a" [label="a\necho"];
  "b" [label="b\ntransform"];
  "c" [label="c\ntransform"];
  "d" [label="d\nconcat"];
  "a" -> "b";
  "a" -> "c";
  "b" -> "d";
  "c" -> "d";
}
`, out)
	require.Contains(t, graph.DOT(dag.Job{Name: `q"x`, Steps: []dag.Step{{Name: "a", Task: `t\"`}}}),
		`digraph "q\"x" {`)
}

func TestRenderUnknownFormat(t *testing.T) {
	_, err := graph.Render(diamond, "png")
	require.EqualError(t, err, `unknown graph format "png"; valid formats: mermaid, dot`)
	out, err := graph.Render(diamond, "")
	require.NoError(t, err)
	require.Equal(t, graph.Mermaid(diamond), out)
}

// failedRun is a failed run of diamond: b failed after 3 attempts, so d,
// downstream of it, was skipped; a and c succeeded.
var failedRun = dag.RunRecord{RunID: "r1", Job: "diamond", State: dag.RunFailed, Steps: []dag.StepRecord{
	{Name: "a", Task: "echo", State: dag.StepSucceeded, Attempts: 1},
	{Name: "b", Task: "transform", State: dag.StepFailed, Attempts: 3, Error: "boom"},
	{Name: "c", Task: "transform", State: dag.StepSucceeded, Attempts: 1},
	{Name: "d", Task: "concat", State: dag.StepSkipped, Error: `upstream "b" failed`},
}}

// A failed run's graph marks the failed step with the failed class and its
// downstream step with the skipped class.
func TestMermaid_FailedRun(t *testing.T) {
	out, err := graph.RenderWith(diamond, "mermaid", graph.Options{Run: &failedRun})
	require.NoError(t, err)
	require.Equal(t, `graph TD
  %% run r1 of job diamond: failed
  a["a<br/><i>echo</i><br/>succeeded"]
  b["b<br/><i>transform</i><br/>failed, 3 attempts"]
  c["c<br/><i>transform</i><br/>succeeded"]
  d["d<br/><i>concat</i><br/>skipped"]
  a --> b
  a --> c
  b --> d
  c --> d
  classDef succeeded fill:#c8e6c9,stroke:#2e7d32,color:#1b5e20
  classDef failed fill:#ffcdd2,stroke:#c62828,color:#b71c1c
  classDef skipped fill:#e0e0e0,stroke:#9e9e9e,color:#616161
  class a,c succeeded
  class b failed
  class d skipped
`, out)
}

// Running steps are blue, cancelled orange; queued and pending ones, and
// steps the run does not have, get no class.
func TestMermaid_RunningRun(t *testing.T) {
	job := dag.Job{Name: "j", Steps: []dag.Step{
		{Name: "end", Task: "t"}, {Name: "q", Task: "t"}, {Name: "p", Task: "t"}, {Name: "x", Task: "t"}, {Name: "new", Task: "t"},
	}}
	run := dag.RunRecord{RunID: "r2", Job: "j", State: dag.RunRunning, Steps: []dag.StepRecord{
		{Name: "end", State: dag.StepRunning, Attempts: 2},
		{Name: "q", State: dag.StepQueued},
		{Name: "p", State: dag.StepPending},
		{Name: "x", State: dag.StepCancelled, Attempts: 1},
	}}
	out, err := graph.RenderWith(job, "mermaid", graph.Options{Run: &run})
	require.NoError(t, err)
	require.Equal(t, `graph TD
  %% run r2 of job j: running
  step_end["end<br/><i>t</i><br/>running, 2 attempts"]
  q["q<br/><i>t</i><br/>queued"]
  p["p<br/><i>t</i><br/>pending"]
  x["x<br/><i>t</i><br/>cancelled"]
  new["new<br/><i>t</i>"]
  classDef cancelled fill:#ffe0b2,stroke:#ef6c00,color:#e65100
  classDef running fill:#bbdefb,stroke:#1565c0,color:#0d47a1
  class x cancelled
  class step_end running
`, out)
}

func TestDOT_FailedRun(t *testing.T) {
	out, err := graph.RenderWith(diamond, "dot", graph.Options{Run: &failedRun})
	require.NoError(t, err)
	require.Equal(t, `digraph "diamond" {
  rankdir=TB;
  node [shape=box, style=rounded];
  label="run r1 of job diamond: failed";
  labelloc=t;
  "a" [label="a\necho\nsucceeded", style="rounded,filled", fillcolor="#c8e6c9", color="#2e7d32", fontcolor="#1b5e20"];
  "b" [label="b\ntransform\nfailed, 3 attempts", style="rounded,filled", fillcolor="#ffcdd2", color="#c62828", fontcolor="#b71c1c"];
  "c" [label="c\ntransform\nsucceeded", style="rounded,filled", fillcolor="#c8e6c9", color="#2e7d32", fontcolor="#1b5e20"];
  "d" [label="d\nconcat\nskipped", style="rounded,filled", fillcolor="#e0e0e0", color="#9e9e9e", fontcolor="#616161"];
  "a" -> "b";
  "a" -> "c";
  "b" -> "d";
  "c" -> "d";
}
`, out)
	pending := dag.RunRecord{RunID: "r3", Job: "diamond", State: dag.RunQueued, Steps: []dag.StepRecord{{Name: "a", State: dag.StepPending}}}
	out, err = graph.RenderWith(diamond, "dot", graph.Options{Run: &pending})
	require.NoError(t, err)
	require.Contains(t, out, "  \"a\" [label=\"a\\necho\\npending\"];\n", "a pending step keeps the default look")
	require.Contains(t, out, "  \"b\" [label=\"b\\ntransform\"];\n", "a step not in the run is drawn plain")
}
