package cli_test

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/dagq/dagq/app/cli"
)

// The documentation checked against the command tree, relative to this
// package. The configuration keys are checked by app/config's
// TestKeysDocumented, the ports by ports/doc_test.go.
const (
	repoRoot = "../.."
	readme   = "README.md"
	cliDoc   = "docs/cli.md"
)

// docFiles are the files whose "dagq <command>" mentions must name
// existing commands.
func docFiles(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, docs, "no docs/*.md under %s", repoRoot)
	files := []string{readme, "app/README.md"}
	for _, d := range docs {
		rel, err := filepath.Rel(repoRoot, d)
		require.NoError(t, err)
		files = append(files, filepath.ToSlash(rel))
	}
	return files
}

func readDoc(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, name))
	require.NoError(t, err)
	return strings.Split(string(data), "\n")
}

// commandTree is the dagq command tree: every available command by its path
// without the leading "dagq" ("run", "config show"), and the paths of the
// leaves, the commands users run (a group such as "config" is documented
// through its subcommands).
type commandTree struct {
	root   *cobra.Command
	paths  map[string]*cobra.Command
	leaves []string
}

func newCommandTree(t *testing.T) commandTree {
	t.Helper()
	root := cli.NewCommand(nil)
	tree := commandTree{root: root, paths: map[string]*cobra.Command{}}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		subs := available(c)
		if c != root {
			path := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
			tree.paths[path] = c
			if len(subs) == 0 {
				tree.leaves = append(tree.leaves, path)
			}
		}
		for _, s := range subs {
			walk(s)
		}
	}
	walk(root)
	require.Contains(t, tree.paths, "run", "the command tree lacks dagq run: is NewCommand still the root?")
	return tree
}

// available returns c's subcommands that a user can run (not hidden, not
// deprecated, not cobra's help).
func available(c *cobra.Command) []*cobra.Command {
	var subs []*cobra.Command
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			subs = append(subs, s)
		}
	}
	return subs
}

// mentionRE finds "dagq" as a word; a mention is it followed by blanks and
// what may be a command path.
var mentionRE = regexp.MustCompile(`\bdagq\b`)

// wordRE is a word that can be a command name: anything else (a flag, an
// argument such as JOBFILE or job.yaml, a path) ends the command path.
var wordRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// resolve reads the command path at the start of words (the text after
// "dagq"): it returns the path of the command the words name ("" when they
// name none, as in "dagq --help" or "dagq JOBFILE"), or, when a word where
// a command is expected names none ("dagq frobnicate", "dagq config shw"),
// stale with the path as far as it was read plus that word.
func (tree commandTree) resolve(words []string) (path, stale string) {
	cur := tree.root
	var read []string
	for _, w := range words {
		// A mention ends at punctuation: `"dagq launch" waits`, "dagq status d-1,".
		trimmed := strings.TrimRight(w, `"'.,;:)]}`+"`")
		last := trimmed != w
		// "dagq run/launch/status" lists commands: each must exist.
		alts := strings.Split(trimmed, "/")
		if slices.ContainsFunc(alts, func(a string) bool { return !wordRE.MatchString(a) }) {
			break
		}
		subs := available(cur)
		if len(subs) == 0 {
			break // a leaf: the rest are its arguments
		}
		var next *cobra.Command
		for _, a := range alts {
			i := slices.IndexFunc(subs, func(s *cobra.Command) bool { return s.Name() == a || s.HasAlias(a) })
			switch {
			case i >= 0:
				if next == nil {
					next = subs[i]
				}
			case cur == tree.root && a == "help":
				// cobra's help command, added when the root executes.
			default:
				return "", strings.Join(append(read, a), " ")
			}
		}
		if next == nil {
			return "help", ""
		}
		cur = next
		read = append(read, cur.Name())
		if last || len(alts) > 1 {
			break
		}
	}
	return strings.Join(read, " "), ""
}

// mention is one "dagq …" in a document.
type mention struct {
	line  int    // 1-based
	text  string // "dagq run JOBFILE …", as written
	words []string
}

// codeMentions returns the "dagq …" mentions inside code of a Markdown
// document: inline code spans and fenced code blocks, where "dagq" starts
// the code, a line or a clause ("$ dagq run", "(dagq status RUNID)",
// "follow it with: dagq status …"). Prose is left alone, outside code ("dagq
// runs jobs") and inside it ("no other dagq process can see them").
func codeMentions(lines []string) []mention {
	var out []mention
	add := func(i int, code string) {
		// Each "dagq" starts a mention that ends at the next one.
		locs := mentionRE.FindAllStringIndex(code, -1)
		for j, loc := range locs {
			end := len(code)
			if j+1 < len(locs) {
				end = locs[j+1][0]
			}
			rest := code[loc[1]:end]
			if rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
				continue // dagq.yaml, dagq-bench, dagq:
			}
			if r, _ := utf8.DecodeLastRuneInString(code[:loc[0]]); loc[0] > 0 && !unicode.IsSpace(r) && !strings.ContainsRune("\"'(`[", r) {
				continue // part of a name: my-dagq, ./app/cmd/dagq
			}
			if before := strings.TrimRight(code[:loc[0]], " \t"); before != "" {
				if r, _ := utf8.DecodeLastRuneInString(before); unicode.IsLetter(r) || unicode.IsDigit(r) {
					continue // prose in an output example: "no other dagq process can see them"
				}
			}
			out = append(out, mention{line: i + 1, text: strings.TrimSpace(code[loc[0]:end]), words: strings.Fields(rest)})
		}
	}
	fenced := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			add(i, l)
			continue
		}
		for _, span := range codeSpans(l) {
			add(i, span)
		}
	}
	return out
}

var spanRE = regexp.MustCompile("`([^`]+)`")

// codeSpans returns the single-backtick code spans of one line.
func codeSpans(line string) []string {
	var spans []string
	for _, m := range spanRE.FindAllStringSubmatch(line, -1) {
		spans = append(spans, m[1])
	}
	return spans
}

// TestDocsNameOnlyCommands fails when README.md, app/README.md or a
// docs/*.md names, in code, a dagq command that does not exist (renamed or
// removed): every `dagq <command> …` must start with an existing command
// path; flags and arguments after it are not checked.
func TestDocsNameOnlyCommands(t *testing.T) {
	tree := newCommandTree(t)
	checked := 0
	for _, doc := range docFiles(t) {
		for _, m := range codeMentions(readDoc(t, doc)) {
			path, stale := tree.resolve(m.words)
			if stale != "" {
				t.Errorf("%s:%d: %q names the command \"dagq %s\", which does not exist (commands: %s)",
					doc, m.line, m.text, stale, strings.Join(slices.Sorted(maps.Keys(tree.paths)), ", "))
			}
			if path != "" {
				checked++
			}
		}
	}
	// Guard against a parser that silently finds nothing.
	require.Greater(t, checked, 20, "found almost no `dagq <command>` mentions in the docs: is the parser broken?")
}

// TestCommandsDocumented fails when a dagq command is missing from the
// command reference (docs/cli.md: its overview, the first code block, and
// a "## dagq <command>" section, or one of its group) or from the README's
// command table (a row whose first cell names `dagq <command>`).
func TestCommandsDocumented(t *testing.T) {
	tree := newCommandTree(t)

	// docs/cli.md: the overview block and the section headings.
	lines := readDoc(t, cliDoc)
	overview := map[string]bool{}
	headings := map[string]bool{}
	inFirst, seenFirst := false, false
	for _, l := range lines {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "```") {
			if !seenFirst {
				inFirst, seenFirst = true, true
			} else if inFirst {
				inFirst = false
			}
			continue
		}
		if inFirst && strings.HasPrefix(trimmed, "dagq ") {
			if path, _ := tree.resolve(strings.Fields(trimmed)[1:]); path != "" {
				overview[path] = true
			}
		}
		if h, ok := strings.CutPrefix(strings.TrimLeft(trimmed, "#"), " dagq "); ok && strings.HasPrefix(trimmed, "#") {
			if path, _ := tree.resolve(strings.Fields(h)); path != "" {
				headings[path] = true
			}
		}
	}
	require.NotEmpty(t, overview, "%s: no command overview found (the first code block, lines \"dagq <command> …\")", cliDoc)

	// README.md: rows of the command table.
	rows := map[string]bool{}
	for _, l := range readDoc(t, readme) {
		if !strings.HasPrefix(l, "|") {
			continue
		}
		cells := strings.Split(l, "|")
		if len(cells) < 3 {
			continue
		}
		for _, span := range codeSpans(cells[1]) {
			if words, ok := strings.CutPrefix(span, "dagq "); ok {
				if path, _ := tree.resolve(strings.Fields(words)); path != "" {
					rows[path] = true
				}
			}
		}
	}
	require.NotEmpty(t, rows, "%s: no command table found (rows whose first cell is `dagq <command> …`)", readme)

	for _, path := range tree.leaves {
		if !overview[path] {
			t.Errorf("%s: command \"dagq %s\" is missing from the command overview (the first code block: a line \"dagq %s …  what it does\")", cliDoc, path, path)
		}
		if !hasSection(headings, path) {
			t.Errorf("%s: command \"dagq %s\" has no section: add a heading \"## dagq %s\" (or one of its group's)", cliDoc, path, path)
		}
		if !rows[path] {
			t.Errorf("%s: command \"dagq %s\" has no row in the command table (first cell `dagq %s …`)", readme, path, path)
		}
	}
}

// hasSection reports whether path or one of its groups has a heading.
func hasSection(headings map[string]bool, path string) bool {
	for words := strings.Fields(path); len(words) > 0; words = words[:len(words)-1] {
		if headings[strings.Join(words, " ")] {
			return true
		}
	}
	return false
}

// TestDocsMentionParser pins down how "dagq …" mentions are read: the
// command path of the first, and the first stale command of any.
func TestDocsMentionParser(t *testing.T) {
	tree := newCommandTree(t)
	for text, want := range map[string][2]string{ // path, stale
		"dagq run JOBFILE --fail-fast":           {"run", ""},
		"dagq run job.yaml":                      {"run", ""},
		"dagq config show -o json":               {"config show", ""},
		"dagq queue init --config dagq.yaml":     {"queue init", ""},
		"dagq terminate long-1 --wait":           {"terminate", ""},
		`there "dagq launch" waits for its run`:  {"launch", ""},
		"dagq status d-1, dagq terminate d-1":    {"status", ""},
		"dagq status d-1, dagq termin8 d-1":      {"status", "termin8"}, // the second mention is its own
		"dagq run/launch/status/config/version,": {"run", ""},
		"dagq help run":                          {"help", ""},
		"dagq --help":                            {"", ""},
		"dagq JOBFILE":                           {"", ""},
		"so no other dagq process can see them":  {"", ""}, // prose, not a mention
		"bucket my-dagq exists":                  {"", ""}, // a name, not a mention
		"dagq frobnicate RUNID":                  {"", "frobnicate"},
		"dagq config shw":                        {"", "config shw"},
		"dagq queue create":                      {"", "queue create"},
		"dagq run/launch/bench":                  {"", "bench"},
	} {
		var got [2]string
		for i, m := range codeMentions([]string{"`" + text + "`"}) {
			path, stale := tree.resolve(m.words)
			if i == 0 {
				got[0] = path
			}
			if got[1] == "" {
				got[1] = stale
			}
		}
		require.Equal(t, want, got, text)
	}
}
