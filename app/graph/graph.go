// Package graph draws a job's DAG as Mermaid or Graphviz DOT text,
// optionally coloured by the step states of a run.
package graph

import (
	"fmt"
	"strings"

	"github.com/dagq/dagq/core/dag"
)

// Formats lists the output formats of Render.
var Formats = []string{"mermaid", "dot"}

// Options of RenderWith.
type Options struct {
	// Run, when set, colours every step by its state in the run (matched by
	// step name), adds the state to its label and names the run at the top.
	// Queued and pending steps keep the default colours.
	Run *dag.RunRecord
}

// Render draws job in format ("mermaid" or "dot").
func Render(job dag.Job, format string) (string, error) {
	return RenderWith(job, format, Options{})
}

// RenderWith draws job in format ("mermaid" or "dot") with o.
func RenderWith(job dag.Job, format string, o Options) (string, error) {
	switch format {
	case "mermaid", "":
		return mermaid(job, o), nil
	case "dot":
		return dot(job, o), nil
	}
	return "", fmt.Errorf("unknown graph format %q; valid formats: %s", format, strings.Join(Formats, ", "))
}

// Style is how a step state is drawn.
type Style struct {
	// Class is the Mermaid class (classDef) of the state's steps.
	Class string
	// Fill, Stroke and Text are colours (#rrggbb).
	Fill, Stroke, Text string
}

// Styles are the colours of the step states: succeeded green, failed red,
// skipped grey, cancelled orange, running blue. Queued and pending steps
// have none (the default colours).
var Styles = map[dag.StepState]Style{
	dag.StepSucceeded: {Class: "succeeded", Fill: "#c8e6c9", Stroke: "#2e7d32", Text: "#1b5e20"},
	dag.StepFailed:    {Class: "failed", Fill: "#ffcdd2", Stroke: "#c62828", Text: "#b71c1c"},
	dag.StepSkipped:   {Class: "skipped", Fill: "#e0e0e0", Stroke: "#9e9e9e", Text: "#616161"},
	dag.StepCancelled: {Class: "cancelled", Fill: "#ffe0b2", Stroke: "#ef6c00", Text: "#e65100"},
	dag.StepRunning:   {Class: "running", Fill: "#bbdefb", Stroke: "#1565c0", Text: "#0d47a1"},
}

// styleOrder is the order of the classDef and class lines.
var styleOrder = []dag.StepState{dag.StepSucceeded, dag.StepFailed, dag.StepSkipped, dag.StepCancelled, dag.StepRunning}

// runSteps returns the run's step records by name (nil without a run).
func runSteps(o Options) map[string]dag.StepRecord {
	if o.Run == nil {
		return nil
	}
	m := make(map[string]dag.StepRecord, len(o.Run.Steps))
	for _, s := range o.Run.Steps {
		m[s.Name] = s
	}
	return m
}

// runTitle describes the run: "run r1 of job diamond: failed".
func runTitle(r *dag.RunRecord) string {
	return fmt.Sprintf("run %s of job %s: %s", r.RunID, r.Job, r.State)
}

// stateText is a step's state for its label: "failed", "failed, 3
// attempts".
func stateText(s dag.StepRecord) string {
	if s.Attempts > 1 {
		return fmt.Sprintf("%s, %d attempts", s.State, s.Attempts)
	}
	return string(s.State)
}

// Mermaid draws job as a Mermaid flowchart (graph TD): one node per step,
// labelled with the step and its task, and an edge from every upstream to
// its downstream step, in declaration order.
func Mermaid(job dag.Job) string { return mermaid(job, Options{}) }

// mermaid draws job; with a run, each node's label gets its state, and
// after the edges come a classDef per state present and class lines that
// give the steps their state's class.
func mermaid(job dag.Job, o Options) string {
	ids := mermaidIDs(job)
	steps := runSteps(o)
	var b strings.Builder
	b.WriteString("graph TD\n")
	if o.Run != nil {
		fmt.Fprintf(&b, "  %%%% %s\n", strings.ReplaceAll(runTitle(o.Run), "\n", " "))
	}
	for i, s := range job.Steps {
		label := mermaidText(s.Name) + "<br/><i>" + mermaidText(s.Task) + "</i>"
		if rs, ok := steps[s.Name]; ok {
			label += "<br/>" + mermaidText(stateText(rs))
		}
		fmt.Fprintf(&b, "  %s[\"%s\"]\n", ids[i], label)
	}
	index := indexOf(job)
	for i, s := range job.Steps {
		for _, up := range s.Upstream {
			if u, ok := index[up]; ok {
				fmt.Fprintf(&b, "  %s --> %s\n", ids[u], ids[i])
			}
		}
	}
	if steps == nil {
		return b.String()
	}
	byState := map[dag.StepState][]string{}
	for i, s := range job.Steps {
		if rs, ok := steps[s.Name]; ok {
			byState[rs.State] = append(byState[rs.State], ids[i])
		}
	}
	for _, st := range styleOrder {
		if len(byState[st]) > 0 {
			y := Styles[st]
			fmt.Fprintf(&b, "  classDef %s fill:%s,stroke:%s,color:%s\n", y.Class, y.Fill, y.Stroke, y.Text)
		}
	}
	for _, st := range styleOrder {
		if len(byState[st]) > 0 {
			fmt.Fprintf(&b, "  class %s %s\n", strings.Join(byState[st], ","), Styles[st].Class)
		}
	}
	return b.String()
}

// mermaidIDs gives each step a node ID: its name where Mermaid accepts it,
// otherwise a safe variant, unique in the graph.
func mermaidIDs(job dag.Job) []string {
	ids := make([]string, len(job.Steps))
	used := make(map[string]bool, len(job.Steps))
	for i, s := range job.Steps {
		id := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
				return r
			}
			return '_'
		}, s.Name)
		switch strings.ToLower(id) {
		case "", "end", "graph", "subgraph", "style", "class", "click", "flowchart", "default":
			id = "step_" + id
		}
		if id[0] >= '0' && id[0] <= '9' {
			id = "step_" + id
		}
		for base, n := id, 2; used[id]; n++ {
			id = fmt.Sprintf("%s_%d", base, n)
		}
		used[id] = true
		ids[i] = id
	}
	return ids
}

// mermaidText escapes text for a quoted Mermaid label.
func mermaidText(s string) string {
	r := strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;", "\n", " ")
	return r.Replace(s)
}

// DOT draws job as a Graphviz digraph, top to bottom.
func DOT(job dag.Job) string { return dot(job, Options{}) }

// dot draws job; with a run, the graph is labelled with it and each node
// gets its state in its label and its state's colours (style filled).
func dot(job dag.Job, o Options) string {
	steps := runSteps(o)
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %s {\n", dotQuote(job.Name))
	b.WriteString("  rankdir=TB;\n  node [shape=box, style=rounded];\n")
	if o.Run != nil {
		fmt.Fprintf(&b, "  label=%s;\n  labelloc=t;\n", dotQuote(runTitle(o.Run)))
	}
	for _, s := range job.Steps {
		rs, ok := steps[s.Name]
		if !ok {
			fmt.Fprintf(&b, "  %s [label=%s];\n", dotQuote(s.Name), dotQuote(s.Name+"\n"+s.Task))
			continue
		}
		label := dotQuote(s.Name + "\n" + s.Task + "\n" + stateText(rs))
		if y, styled := Styles[rs.State]; styled {
			fmt.Fprintf(&b, "  %s [label=%s, style=\"rounded,filled\", fillcolor=%s, color=%s, fontcolor=%s];\n",
				dotQuote(s.Name), label, dotQuote(y.Fill), dotQuote(y.Stroke), dotQuote(y.Text))
		} else {
			fmt.Fprintf(&b, "  %s [label=%s];\n", dotQuote(s.Name), label)
		}
	}
	index := indexOf(job)
	for _, s := range job.Steps {
		for _, up := range s.Upstream {
			if _, ok := index[up]; ok {
				fmt.Fprintf(&b, "  %s -> %s;\n", dotQuote(up), dotQuote(s.Name))
			}
		}
	}
	b.WriteString("}\n")
	return b.String()
}

func dotQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func indexOf(job dag.Job) map[string]int {
	m := make(map[string]int, len(job.Steps))
	for i, s := range job.Steps {
		if _, dup := m[s.Name]; !dup {
			m[s.Name] = i
		}
	}
	return m
}
