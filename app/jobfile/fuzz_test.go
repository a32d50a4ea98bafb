package jobfile_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dagq/dagq/app/jobfile"
	"github.com/dagq/dagq/core/dag"
)

// fuzzSeeds are job files, good and bad, that seed FuzzParse (plain `go test`
// runs each of them as a test case).
var fuzzSeeds = []string{
	"",
	"null",
	"[]",
	"name: x",
	"name: x\nsteps: []",
	"name: j\nsteps:\n  - name: a\n    task: echo\n",
	"name: j\nparams: {a: b, n: 3}\nsteps:\n  - {name: a, task: echo, args: \"${a}\"}\n  - {name: b, task: echo, upstream: [a], args: {k: [1, 2.5, true, null]}}\n",
	"name: j\nsteps:\n  - name: a\n    task: echo\n    retry: {max_attempts: 3, initial_backoff: 10ms, max_backoff: 1s, multiplier: 2, jitter: 0.1}\n    timeout: 1m30s\n",
	"name: j\nsteps:\n  - name: a\n    task: echo\n    timeout: 30\n",
	"name: j\nsteps:\n  - name: a\n    task: echo\n    retry: {max_attempts: x}\n",
	"name: j\nsteps:\n  - name: a\n    task: echo\n    upstream: [b]\n  - name: b\n    task: echo\n    upstream: [a]\n",
	"name: j\nsteps:\n  - name: a\n    task: echo\n  - name: a\n    task: echo\n",
	"name: j\nsteps:\n  - name: a\n    taks: echo\n",
	"name: j\nsteps:\n  - name: a\n    task: echo\n    args: &x {k: v}\n  - name: b\n    task: echo\n    args: {<<: *x, j: w}\n",
	"name: j\nsteps:\n  - name: a\n    task: echo\n    args: {[1, 2]: v}\n",
	"name: j\nsteps:\n  - name: a\n    task: echo\n    args: !!binary aGVsbG8=\n",
	"name: j\nsteps:\n  - name: a\n    task: echo\n    args: 1e400\n",
	"name: j\nsteps:\n  - name: a\n    task: echo\n    args: .nan\n",
	"name: j\nsteps: {a: b}\n",
	"name: j\nsteps:\n  - just a string\n",
	"name: j\nsteps:\n  - name: a\n    task: echo\n---\nname: k\n",
	"name: [unclosed\n",
	"\tname: tab",
	// An alias that refers to its own anchor, and an alias bomb.
	"name: j\nsteps:\n  - name: a\n    task: echo\n    args: &a [*a]\n",
	billionLaughs,
}

// billionLaughs expands to 10^9 "lol"s if aliases are followed naively.
const billionLaughs = `name: bomb
steps:
  - name: a
    task: echo
    args:
      a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]
      b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
      d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
      e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
      f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
      g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
      h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
      i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]
`

// FuzzParse checks that Parse and Validate never panic or hang, that their
// errors are clean messages about the file, and that whatever parses has
// JSON arguments and either validates or is refused naming the step.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	examples, _ := filepath.Glob("../../examples/jobs/*.yaml")
	for _, p := range examples {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := jobfile.Parse("job.yaml", data, jobfile.Options{})
		if err != nil {
			checkMessage(t, err)
			return
		}
		total := 0
		for _, s := range file.Job.Steps {
			if len(s.Args) > 0 && !json.Valid(s.Args) {
				t.Fatalf("step %q: args are not JSON: %q", s.Name, s.Args)
			}
			total += len(s.Args)
			if s.Retry != nil {
				_ = s.Retry.Validate() // may refuse, must not panic
			}
		}
		// Arguments grow at most linearly with the file plus the alias budget
		// (no alias bombs).
		if limit := 8 * (len(data) + jobfile.MaxAliasExpansion); total > limit {
			t.Fatalf("%d bytes of args from a %d-byte file", total, len(data))
		}
		err = file.Validate(nil)
		if err == nil {
			return
		}
		checkMessage(t, err)
		if !errors.Is(err, dag.ErrInvalidJob) {
			t.Fatalf("Validate error does not match dag.ErrInvalidJob: %v", err)
		}
	})
}

// quotedRe matches a Go-quoted string (strconv.Quote, %q).
var quotedRe = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// checkMessage fails unless every line of err names the file and none shows
// Go internals.
func checkMessage(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	if strings.TrimSpace(msg) == "" {
		t.Fatal("empty error message")
	}
	// The user's own values appear quoted; look for Go internals outside them.
	bare := quotedRe.ReplaceAllString(msg, `""`)
	for _, bad := range []string{"&{", "panic", "goroutine ", "%!", "jobfile.", "reflect", "<nil>"} {
		if strings.Contains(bare, bad) {
			t.Fatalf("error shows %q: %s", bad, msg)
		}
	}
	for _, line := range strings.Split(msg, "\n") {
		if !strings.HasPrefix(line, "job.yaml") {
			t.Fatalf("error line does not name the file: %q in\n%s", line, msg)
		}
	}
}

// TestParse_AliasBombRefusedQuickly: a billion-laughs file is refused fast,
// with a message, instead of expanding to gigabytes.
func TestParse_AliasBombRefusedQuickly(t *testing.T) {
	start := time.Now()
	_, err := jobfile.Parse("job.yaml", []byte(billionLaughs), jobfile.Options{})
	if err == nil {
		t.Fatal("an alias bomb was accepted")
	}
	checkMessage(t, err)
	if !strings.Contains(err.Error(), "alias") {
		t.Errorf("message does not say what is wrong: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusing the bomb took %v", d)
	}
}

// TestParse_SelfReferentialAlias: an anchor whose value refers to itself is
// refused instead of recursing forever.
func TestParse_SelfReferentialAlias(t *testing.T) {
	_, err := jobfile.Parse("job.yaml", []byte("name: j\nsteps:\n  - name: a\n    task: echo\n    args: &a [*a]\n"), jobfile.Options{})
	if err == nil {
		t.Fatal("a self-referential alias was accepted")
	}
	checkMessage(t, err)
	t.Log(err)
}
