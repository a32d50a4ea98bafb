// Package graph draws a job's DAG as Mermaid or Graphviz DOT text.
package graph

import (
	"fmt"
	"strings"

	"github.com/dagq/dagq/core"
)

// Formats lists the output formats of Render.
var Formats = []string{"mermaid", "dot"}

// Render draws job in format ("mermaid" or "dot").
func Render(job core.Job, format string) (string, error) {
	switch format {
	case "mermaid", "":
		return Mermaid(job), nil
	case "dot":
		return DOT(job), nil
	}
	return "", fmt.Errorf("unknown graph format %q; valid formats: %s", format, strings.Join(Formats, ", "))
}

// Mermaid draws job as a Mermaid flowchart (graph TD): one node per step,
// labelled with the step and its task, and an edge from every upstream to
// its downstream step, in declaration order.
func Mermaid(job core.Job) string {
	ids := mermaidIDs(job)
	var b strings.Builder
	b.WriteString("graph TD\n")
	for i, s := range job.Steps {
		fmt.Fprintf(&b, "  %s[\"%s<br/><i>%s</i>\"]\n", ids[i], mermaidText(s.Name), mermaidText(s.Task))
	}
	index := indexOf(job)
	for i, s := range job.Steps {
		for _, up := range s.Upstream {
			if u, ok := index[up]; ok {
				fmt.Fprintf(&b, "  %s --> %s\n", ids[u], ids[i])
			}
		}
	}
	return b.String()
}

// mermaidIDs gives each step a node ID: its name where Mermaid accepts it,
// otherwise a safe variant, unique in the graph.
func mermaidIDs(job core.Job) []string {
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
func DOT(job core.Job) string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %s {\n", dotQuote(job.Name))
	b.WriteString("  rankdir=TB;\n  node [shape=box, style=rounded];\n")
	for _, s := range job.Steps {
		fmt.Fprintf(&b, "  %s [label=%s];\n", dotQuote(s.Name), dotQuote(s.Name+"\n"+s.Task))
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

func indexOf(job core.Job) map[string]int {
	m := make(map[string]int, len(job.Steps))
	for i, s := range job.Steps {
		if _, dup := m[s.Name]; !dup {
			m[s.Name] = i
		}
	}
	return m
}
