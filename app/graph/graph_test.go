package graph_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/graph"
	"github.com/dagq/dagq/core"
)

var diamond = core.Job{Name: "diamond", Steps: []core.Step{
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
	job := core.Job{Name: "j", Steps: []core.Step{
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
	require.Contains(t, graph.DOT(core.Job{Name: `q"x`, Steps: []core.Step{{Name: "a", Task: `t\"`}}}),
		`digraph "q\"x" {`)
}

func TestRenderUnknownFormat(t *testing.T) {
	_, err := graph.Render(diamond, "png")
	require.EqualError(t, err, `unknown graph format "png"; valid formats: mermaid, dot`)
	out, err := graph.Render(diamond, "")
	require.NoError(t, err)
	require.Equal(t, graph.Mermaid(diamond), out)
}
