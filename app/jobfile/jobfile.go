// Package jobfile reads job files: YAML descriptions of a dag.Job.
//
//	name: diamond
//	params:            # optional run parameters (strings), Task.Params
//	  greeting: hello
//	max_concurrent: 4  # optional: at most 4 steps of a run in flight (0: no limit)
//	steps:
//	  - name: a
//	    task: echo
//	    args: "${greeting}, dagq"   # any YAML value, passed to the task as JSON
//	  - name: b
//	    task: transform
//	    upstream: [a]
//	    args: {op: upper}
//	    retry:                      # optional; missing fields keep the default policy
//	      max_attempts: 5
//	      initial_backoff: 100ms
//	      max_backoff: 2s
//	      multiplier: 2
//	      jitter: 0.1
//	    timeout: 30s                # optional, covers every attempt
//	    pool: db                    # optional fleet-wide concurrency pool (config pools: {db: 3})
//
// Unknown fields are errors. Errors name the file, the line and the step;
// Parse reports every problem of a file at once, its job's (File.Validate)
// with its shape's (unknown fields, types, durations).
package jobfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dagq/dagq/app/internal/yamlpos"
	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/core/dag"
)

// File is a parsed job file.
type File struct {
	// Path is the file name used in messages.
	Path string
	// Job is the job the file describes.
	Job dag.Job
	// Params are the file's run parameters (nil when it has none).
	Params map[string]string
	// lines maps step names to the line of their entry.
	lines map[string]int
}

// Options tune Parse.
type Options struct {
	// DefaultRetry fills the fields a step's retry block leaves out (default
	// core.DefaultRetryPolicy). The dagq command passes the configured retry
	// policy.
	DefaultRetry *core.RetryPolicy
	// KnownTask reports whether a task name is registered; Parse uses it
	// only when the file has shape errors, to report the job's problems
	// (File.Validate) with them. nil: task names are not checked.
	KnownTask func(task string) bool
}

// Load reads and parses the job file at path.
func Load(path string, opts Options) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("job file: %w", err)
	}
	return Parse(path, data, opts)
}

// The YAML shapes. Field order is the order of the valid-field lists in
// messages.
type jobDoc struct {
	Name          string            `yaml:"name"`
	Params        map[string]string `yaml:"params"`
	MaxConcurrent int               `yaml:"max_concurrent"`
	Steps         []stepDoc         `yaml:"steps"`
}

type stepDoc struct {
	Name     string    `yaml:"name"`
	Task     string    `yaml:"task"`
	Args     yaml.Node `yaml:"args"`
	Upstream []string  `yaml:"upstream"`
	Retry    *retryDoc `yaml:"retry"`
	Timeout  duration  `yaml:"timeout"`
	Pool     string    `yaml:"pool"`
}

type retryDoc struct {
	MaxAttempts    *int      `yaml:"max_attempts"`
	InitialBackoff *duration `yaml:"initial_backoff"`
	MaxBackoff     *duration `yaml:"max_backoff"`
	Multiplier     *float64  `yaml:"multiplier"`
	Jitter         *float64  `yaml:"jitter"`
}

// fieldLists names the valid fields of each YAML shape, for messages.
var fieldLists = map[string]string{
	"jobDoc":   "name, params, max_concurrent, steps",
	"stepDoc":  "name, task, args, upstream, retry, timeout, pool",
	"retryDoc": "max_attempts, initial_backoff, max_backoff, multiplier, jitter",
}

// duration is a time.Duration written "30s" in YAML.
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		v, err := time.ParseDuration(n.Value)
		if err == nil {
			*d = duration(v)
			return nil
		}
	}
	// A TypeError lets the decoder carry on and report every problem.
	return &yaml.TypeError{Errors: []string{fmt.Sprintf(
		"line %d: %s is not a duration; write a number with a unit, e.g. 500ms, 30s, 5m", n.Line, quoteNode(n))}}
}

func quoteNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "the value"
}

// Parse parses a job file's content; name is used in messages. It checks the
// file's shape (unknown fields, types, durations) but not the job itself:
// call File.Validate for that. When the shape is wrong, the error holds the
// job's problems too (File.Validate with opts.KnownTask), so that one
// unknown field does not hide the rest.
func Parse(name string, data []byte, opts Options) (*File, error) {
	f := &File{Path: name, lines: map[string]int{}}

	// The node tree locates steps for messages; it also catches syntax errors.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		if line, col, msg, ok := yamlpos.Locate(data, err); ok {
			return nil, fmt.Errorf("%s:%s: %s", name, yamlpos.Position(line, col), msg)
		}
		return nil, f.yamlError(err, nil)
	}
	spans := stepSpans(&root)
	for _, s := range spans {
		if s.name != "" {
			if _, dup := f.lines[s.name]; !dup {
				f.lines[s.name] = s.line
			}
		}
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: the job file is empty", name)
	}

	var doc jobDoc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var errs []error
	if err := dec.Decode(&doc); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, f.yamlError(err, spans)
		}
		// Unknown fields and wrong types: the decoder filled in the rest,
		// so the job's own problems are reported with them.
		errs = append(errs, unjoin(f.yamlError(err, spans))...)
	}

	def := core.DefaultRetryPolicy
	if opts.DefaultRetry != nil {
		def = *opts.DefaultRetry
	}
	var x expander // one alias budget for the whole file
	f.Job.Name = doc.Name
	f.Job.MaxConcurrent = doc.MaxConcurrent
	f.Params = doc.Params
	for i, sd := range doc.Steps {
		step := dag.Step{
			Name:     sd.Name,
			Task:     sd.Task,
			Upstream: sd.Upstream,
			Timeout:  time.Duration(sd.Timeout),
			Pool:     sd.Pool,
		}
		if sd.Args.Kind != 0 {
			v, err := x.nodeValue(&sd.Args, false)
			if err == nil {
				step.Args, err = json.Marshal(v)
			}
			if err != nil {
				line, msg := sd.Args.Line, err.Error()
				if sub := lineRe.FindStringSubmatch(msg); sub != nil { // the line of the value at fault
					line, _ = strconv.Atoi(sub[1])
					msg = sub[2]
				}
				msg = strings.TrimPrefix(msg, "json: ")
				if v, ok := strings.CutPrefix(msg, "unsupported value: "); ok {
					msg = v + " cannot be passed as JSON; valid: finite numbers"
				}
				errs = append(errs, fmt.Errorf("%s:%d: step %s: args: %s", name, line, stepLabel(sd.Name, i), msg))
				step.Args = nil
			}
		}
		if sd.Retry != nil {
			p := def
			r := sd.Retry
			if r.MaxAttempts != nil {
				p.MaxAttempts = *r.MaxAttempts
			}
			if r.InitialBackoff != nil {
				p.InitialBackoff = time.Duration(*r.InitialBackoff)
			}
			if r.MaxBackoff != nil {
				p.MaxBackoff = time.Duration(*r.MaxBackoff)
			}
			if r.Multiplier != nil {
				p.Multiplier = *r.Multiplier
			}
			if r.Jitter != nil {
				p.Jitter = *r.Jitter
			}
			step.Retry = &p
		}
		f.Job.Steps = append(f.Job.Steps, step)
	}
	if len(errs) > 0 {
		if err := f.Validate(opts.KnownTask); err != nil {
			errs = append(errs, unjoin(err)...)
		}
		return nil, joinByLine(name, errs)
	}
	return f, nil
}

// joinByLine joins errs (each "name:line: …" or "name: …") in the order of
// their lines, those without a line first.
func joinByLine(name string, errs []error) error {
	lineOf := func(err error) int {
		rest, ok := strings.CutPrefix(err.Error(), name+":")
		if !ok {
			return 0
		}
		digits, _, _ := strings.Cut(rest, ":")
		n, _ := strconv.Atoi(digits)
		return n
	}
	slices.SortStableFunc(errs, func(a, b error) int { return lineOf(a) - lineOf(b) })
	return errors.Join(errs...)
}

func stepLabel(name string, i int) string {
	if name == "" {
		return fmt.Sprintf("#%d", i+1)
	}
	return strconv.Quote(name)
}

// Validate checks the job (dag.Job.Validate) and returns every problem,
// each prefixed with the file and the line of the step it concerns. known
// reports whether a task name is registered (nil: task names are not
// checked).
func (f *File) Validate(known func(task string) bool) error {
	err := f.Job.Validate(known)
	if err == nil {
		return nil
	}
	var errs []error
	for _, e := range unjoin(err) {
		var je *dag.JobError
		if errors.As(e, &je) && je.Step != "" {
			if line, ok := f.lines[je.Step]; ok {
				errs = append(errs, fmt.Errorf("%s:%d: %w", f.Path, line, e))
				continue
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", f.Path, e))
	}
	return errors.Join(errs...)
}

// ErrUnknownParam is matched (errors.Is) by RunParams' error for a parameter
// the job file does not declare.
var ErrUnknownParam = errors.New("unknown parameter")

// RunParams returns the run's parameters: the file's params with overrides
// (dagq run -p NAME=VALUE) applied, nil when both are empty. Only declared
// parameters can be overridden: every other name fails, all at once, with
// an error matching ErrUnknownParam that lists the declared ones — a typo
// in a name would otherwise leave the default in place without a word.
func (f *File) RunParams(overrides map[string]string) (map[string]string, error) {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(overrides)) {
		if _, ok := f.Params[k]; ok {
			continue
		}
		declared := fmt.Sprintf("job %q declares no parameters", f.Job.Name)
		if len(f.Params) > 0 {
			declared = fmt.Sprintf("job %q declares: %s", f.Job.Name, strings.Join(slices.Sorted(maps.Keys(f.Params)), ", "))
		}
		errs = append(errs, fmt.Errorf("%s: %w %q: %s (declare it under params: with its default)",
			f.Path, ErrUnknownParam, k, declared))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(f.Params) == 0 {
		return nil, nil
	}
	params := maps.Clone(f.Params)
	maps.Copy(params, overrides)
	return params, nil
}

// StepLine returns the line of the step's entry in the file (0 if unknown).
func (f *File) StepLine(step string) int { return f.lines[step] }

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// span is a step entry's place in the file.
type span struct {
	name       string
	line, last int // first line; last line before the next step (0: to the end)
}

// stepSpans finds the entries of the steps list in the node tree.
func stepSpans(root *yaml.Node) []span {
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	m := root.Content[0]
	var seq *yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "steps" && m.Content[i+1].Kind == yaml.SequenceNode {
			seq = m.Content[i+1]
		}
	}
	if seq == nil {
		return nil
	}
	spans := make([]span, len(seq.Content))
	for i, item := range seq.Content {
		spans[i].line = item.Line
		if i > 0 {
			spans[i-1].last = item.Line - 1
		}
		if item.Kind == yaml.MappingNode {
			for k := 0; k+1 < len(item.Content); k += 2 {
				if item.Content[k].Value == "name" {
					spans[i].name = item.Content[k+1].Value
				}
			}
		}
	}
	return spans
}

var (
	lineRe    = regexp.MustCompile(`(?s)^(?:yaml: )?line (\d+): (.*)$`)
	unknownRe = regexp.MustCompile(`(?s)^field (.+) not found in type \S*\.(\w+)$`)
	intoRe    = regexp.MustCompile("(?s)^cannot unmarshal (!\\S*)(?: `(.*)`)? into (.+)$")
	// goTypeRe finds the Go types of this package in the decoder's other
	// messages, to name them in YAML terms.
	goTypeRe = regexp.MustCompile(`(?:\[\])?\*?jobfile\.\w+|map\[string\]string|\[\]string`)
)

// yamlError rewrites the decoder's errors as "file:line: step "x": message".
func (f *File) yamlError(err error, spans []span) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var errs []error
	for _, m := range msgs {
		line := 0
		if sub := lineRe.FindStringSubmatch(m); sub != nil {
			line, _ = strconv.Atoi(sub[1])
			m = sub[2]
		}
		if sub := unknownRe.FindStringSubmatch(m); sub != nil {
			m = fmt.Sprintf("unknown field %q (valid fields: %s)", sub[1], fieldLists[sub[2]])
		} else if sub := intoRe.FindStringSubmatch(m); sub != nil {
			what := kindName(sub[1])
			if sub[2] != "" {
				what = strconv.Quote(sub[2]) + " is " + what
			}
			m = fmt.Sprintf("%s, expected %s", what, goTypeName(sub[3]))
		} else {
			m = goTypeRe.ReplaceAllStringFunc(m, goTypeName)
		}
		m = strings.ReplaceAll(m, "\n", `\n`) // one line per problem
		where := f.Path
		if line > 0 {
			where = fmt.Sprintf("%s:%d", f.Path, line)
		}
		for i, s := range spans {
			if line >= s.line && (s.last == 0 || line <= s.last) {
				where += ": step " + stepLabel(s.name, i)
				break
			}
		}
		errs = append(errs, fmt.Errorf("%s: %s", where, m))
	}
	return errors.Join(errs...)
}

func kindName(tag string) string {
	if !strings.HasPrefix(tag, "!!") {
		return "a value tagged " + tag
	}
	tag = strings.TrimPrefix(tag, "!!")
	switch tag {
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	case "str":
		return "a string"
	case "int", "float":
		return "a number"
	}
	return "a " + tag
}

func goTypeName(t string) string {
	switch {
	case t == "[]string":
		return "a list of strings"
	case t == "[]jobfile.stepDoc":
		return "a list of steps"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	case t == "int":
		return "an integer"
	case t == "float64":
		return "a number"
	case t == "string":
		return "a string"
	case strings.HasSuffix(t, "Doc"), strings.HasPrefix(t, "jobfile."):
		return "a mapping"
	}
	return t
}

// MaxAliasExpansion bounds what YAML aliases (*name) may add to the
// arguments of one job file: the bytes of the scalars and the number of
// values reached through an alias, summed over the file. It keeps a tiny file
// of nested aliases (a "billion laughs") from expanding to gigabytes; a file
// above it is refused with a message naming the step.
const MaxAliasExpansion = 1 << 20

// expander converts YAML nodes into values encoding/json can marshal,
// following aliases within the MaxAliasExpansion budget of its file.
type expander struct {
	aliased int                 // bytes added through aliases so far
	active  map[*yaml.Node]bool // anchors being expanded (cycle check)
}

// expanding marks the anchored node n as being expanded (an alias to it met
// meanwhile is a cycle) and returns the function that unmarks it, a no-op
// when n was marked already.
func (x *expander) expanding(n *yaml.Node) func() {
	if x.active == nil {
		x.active = map[*yaml.Node]bool{}
	}
	if x.active[n] {
		return func() {}
	}
	x.active[n] = true
	return func() { delete(x.active, n) }
}

// nodeValue converts a YAML node into a value encoding/json can marshal.
// inAlias is true below an alias: every value there counts against the
// budget.
func (x *expander) nodeValue(n *yaml.Node, inAlias bool) (any, error) {
	if inAlias {
		x.aliased += 1 + len(n.Value)
		if x.aliased > MaxAliasExpansion {
			return nil, fmt.Errorf("line %d: aliases expand the arguments to more than %d bytes (MaxAliasExpansion); write the values out or use fewer aliases",
				n.Line, MaxAliasExpansion)
		}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return x.nodeValue(n.Content[0], inAlias)
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, fmt.Errorf("line %d: alias *%s names no anchor", n.Line, n.Value)
		}
		if x.active[n.Alias] {
			return nil, fmt.Errorf("line %d: alias *%s is inside the value of its own anchor &%s (a cycle)", n.Line, n.Value, n.Value)
		}
		defer x.expanding(n.Alias)()
		return x.nodeValue(n.Alias, true)
	case yaml.SequenceNode:
		if n.Anchor != "" {
			// An alias inside the anchor's own value is a cycle.
			defer x.expanding(n)()
		}
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := x.nodeValue(c, inAlias)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		if n.Anchor != "" {
			defer x.expanding(n)()
		}
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				merged, err := x.nodeValue(v, inAlias)
				if err != nil {
					return nil, err
				}
				if mm, ok := merged.(map[string]any); ok {
					for mk, mv := range mm {
						if _, set := out[mk]; !set {
							out[mk] = mv
						}
					}
				}
				continue
			}
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: mapping keys must be scalars", k.Line)
			}
			val, err := x.nodeValue(v, inAlias)
			if err != nil {
				return nil, err
			}
			out[k.Value] = val
		}
		return out, nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil, nil
		case "!!bool", "!!int", "!!float":
			var v any
			if err := n.Decode(&v); err != nil {
				return nil, fmt.Errorf("line %d: %v", n.Line, err)
			}
			return v, nil
		default: // strings, timestamps, binary: their text
			return n.Value, nil
		}
	}
	return nil, fmt.Errorf("line %d: unsupported YAML value", n.Line)
}
