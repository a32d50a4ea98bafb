package ui

import (
	"cmp"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/dagq/dagq/core/dag"
)

// Geometry of the DAG drawing (SVG user units = CSS pixels).
const (
	nodeW   = 156
	nodeH   = 44
	gapX    = 44
	gapY    = 16
	padding = 14
	// labelMax bounds the characters of a node's name line.
	labelMax = 18
)

// graphNode is one step of the drawing.
type graphNode struct {
	Name, Label, Task string
	State             dag.StepState
	// Reused: the step did not run in this re-execution (its output is an
	// earlier run's).
	Reused     bool
	X, Y       int
	Layer, Row int
}

// graphEdge is one upstream → step edge.
type graphEdge struct {
	From, To string
	Path     string // SVG path data
	State    dag.StepState
}

// graphLayout is a drawn DAG.
type graphLayout struct {
	Width, Height int
	Nodes         []graphNode
	Edges         []graphEdge
	NodeW, NodeH  int
}

// layout draws steps left to right: a step's column (layer) is the length
// of the longest path to it from a root, so every edge points right; within
// a column steps are ordered to keep edges short (median of their
// neighbours' rows, in sweeps down and up the columns), ties in declaration
// order. Upstreams that name no step are ignored.
func layout(steps []dag.StepRecord) graphLayout {
	n := len(steps)
	index := make(map[string]int, n)
	for i, s := range steps {
		index[s.Name] = i
	}
	ups := make([][]int, n)
	downs := make([][]int, n)
	for i, s := range steps {
		for _, u := range s.Upstream {
			if j, ok := index[u]; ok && j != i {
				ups[i] = append(ups[i], j)
				downs[j] = append(downs[j], i)
			}
		}
	}
	// Longest path from a root; a cycle (never in a valid job) is cut.
	layer := make([]int, n)
	state := make([]byte, n) // 0 new, 1 visiting, 2 done
	var depth func(i int) int
	depth = func(i int) int {
		switch state[i] {
		case 1:
			return 0
		case 2:
			return layer[i]
		}
		state[i] = 1
		d := 0
		for _, u := range ups[i] {
			d = max(d, depth(u)+1)
		}
		layer[i], state[i] = d, 2
		return d
	}
	layers := 0
	for i := range n {
		layers = max(layers, depth(i)+1)
	}
	cols := make([][]int, layers)
	for i := range n {
		cols[layer[i]] = append(cols[layer[i]], i)
	}
	row := make([]float64, n)
	place := func(col []int) {
		for r, i := range col {
			row[i] = float64(r)
		}
	}
	for _, c := range cols {
		place(c)
	}
	// order sorts a column by the median row of each step's neighbours in
	// the adjacent column, keeping the current order for steps without.
	order := func(col []int, nb [][]int) {
		key := make(map[int]float64, len(col))
		for _, i := range col {
			if len(nb[i]) == 0 {
				key[i] = row[i]
				continue
			}
			rs := make([]float64, 0, len(nb[i]))
			for _, j := range nb[i] {
				rs = append(rs, row[j])
			}
			slices.Sort(rs)
			m := len(rs) / 2
			if len(rs)%2 == 0 {
				key[i] = (rs[m-1] + rs[m]) / 2
			} else {
				key[i] = rs[m]
			}
		}
		slices.SortStableFunc(col, func(a, b int) int { return cmp.Compare(key[a], key[b]) })
		place(col)
	}
	for range 2 {
		for l := 1; l < layers; l++ {
			order(cols[l], ups)
		}
		for l := layers - 2; l >= 0; l-- {
			order(cols[l], downs)
		}
	}
	for l := 1; l < layers; l++ {
		order(cols[l], ups)
	}

	tallest := 0
	for _, c := range cols {
		tallest = max(tallest, len(c))
	}
	g := graphLayout{
		Width:  2*padding + layers*nodeW + max(layers-1, 0)*gapX,
		Height: 2*padding + tallest*nodeH + max(tallest-1, 0)*gapY,
		NodeW:  nodeW, NodeH: nodeH,
	}
	if n == 0 {
		g.Width, g.Height = 2*padding+nodeW, 2*padding+nodeH
	}
	pos := make([]graphNode, n)
	for l, c := range cols {
		offset := (tallest - len(c)) * (nodeH + gapY) / 2
		for r, i := range c {
			s := steps[i]
			pos[i] = graphNode{
				Name: s.Name, Label: truncate(s.Name, labelMax), Task: truncate(s.Task, labelMax+4), State: s.State,
				Reused: s.ReusedFrom != "",
				X:      padding + l*(nodeW+gapX), Y: padding + offset + r*(nodeH+gapY), Layer: l, Row: r,
			}
		}
	}
	g.Nodes = pos
	for i := range n {
		for _, j := range ups[i] {
			a, b := pos[j], pos[i]
			x1, y1 := a.X+nodeW, a.Y+nodeH/2
			x2, y2 := b.X-6, b.Y+nodeH/2 // room for the arrow head
			bend := max((x2-x1)/2, 12)
			g.Edges = append(g.Edges, graphEdge{
				From: a.Name, To: b.Name, State: a.State,
				Path: fmt.Sprintf("M%d %d C%d %d %d %d %d %d", x1, y1, x1+bend, y1, x2-bend, y2, x2, y2),
			})
		}
	}
	return g
}

// truncate cuts s to n runes, ending it with "…" when cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
