package ui

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/core/dag"
)

func steps(edges map[string][]string, order ...string) []dag.StepRecord {
	out := make([]dag.StepRecord, len(order))
	for i, n := range order {
		out[i] = dag.StepRecord{Name: n, Task: "t", Upstream: edges[n], State: dag.StepPending}
	}
	return out
}

// A step's column is its longest path from a root; every edge points right;
// no two nodes overlap.
func TestLayout_Layers(t *testing.T) {
	g := layout(steps(map[string][]string{
		"b": {"a"}, "c": {"a"}, "d": {"b", "c"}, "e": {"a", "d"}, "x": {"nope"},
	}, "a", "b", "c", "d", "e", "x"))
	layer := map[string]int{}
	for _, n := range g.Nodes {
		layer[n.Name] = n.Layer
	}
	require.Equal(t, map[string]int{"a": 0, "b": 1, "c": 1, "d": 2, "e": 3, "x": 0}, layer, "x's unknown upstream is ignored")
	require.Len(t, g.Edges, 6)
	checkGeometry(t, g)
}

func TestLayout_FiftyStepsAndACycle(t *testing.T) {
	edges := map[string][]string{}
	var order []string
	for c := range 10 {
		for i := range 5 {
			name := fmt.Sprintf("c%d_%d", c, i)
			order = append(order, name)
			if i > 0 {
				edges[name] = []string{fmt.Sprintf("c%d_%d", c, i-1)}
			}
		}
	}
	edges["join"] = []string{"c0_4", "c5_4", "c9_4"}
	order = append(order, "join")
	g := layout(steps(edges, order...))
	require.Len(t, g.Nodes, 51)
	checkGeometry(t, g)
	require.Equal(t, 2*padding+6*nodeW+5*gapX, g.Width)

	// A cycle (never in a valid job) is cut, not looped over.
	g = layout(steps(map[string][]string{"a": {"b"}, "b": {"a"}}, "a", "b"))
	require.Len(t, g.Nodes, 2)
	require.Equal(t, 1, layout(nil).Width/(2*padding+nodeW))
}

func checkGeometry(t *testing.T, g graphLayout) {
	t.Helper()
	at := map[string]graphNode{}
	for _, n := range g.Nodes {
		at[n.Name] = n
		require.GreaterOrEqual(t, n.X, 0)
		require.LessOrEqual(t, n.X+nodeW, g.Width)
		require.LessOrEqual(t, n.Y+nodeH, g.Height)
	}
	for _, e := range g.Edges {
		require.Less(t, at[e.From].X, at[e.To].X, "edge %s → %s points right", e.From, e.To)
	}
	for i, a := range g.Nodes {
		for _, b := range g.Nodes[i+1:] {
			overlap := a.X < b.X+nodeW && b.X < a.X+nodeW && a.Y < b.Y+nodeH && b.Y < a.Y+nodeH
			require.False(t, overlap, "%s and %s overlap", a.Name, b.Name)
		}
	}
}
