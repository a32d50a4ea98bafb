package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dagq/dagq/app/config"
)

// configSeeds seed FuzzLoad: a config file, the index of a key (into
// config.Keys()) whose DAGQ_ variable is set, and that variable's value.
var configSeeds = []struct {
	file string
	key  uint8
	env  string
}{
	{"", 0, ""},
	{"transport: memory\n", 0, "sqs"},
	{"worker:\n  concurrency: 8\n  lease: 30s\n", 2, "many"},
	{"worker: 5\nlog:\nretry: [1]\n", 3, "30"},
	{"retry:\n  multiplier: [1, 2]\n  jitter: 2\n", 8, "0.5"},
	{"worker:\n  lease: 30\n  shutdown_timeout: soon\n", 4, "1h"},
	{"transport: sqs\nsqs:\n  queue_url: https://sqs.eu-west-1.amazonaws.com/1/q.fifo\n  run_queue_url: https://sqs.eu-west-1.amazonaws.com/1/r\n  region: us-east-1\n  fair_queue: off\ns3:\n  bucket: b\n", 0, ""},
	{"payload:\n  threshold: 99999999999999999999\n", 0, ""},
	{"log:\n  level: loud\n  format: xml\n", 0, ""},
	{"sqs:\n  wait_time: 1e9\n  queue_url: \"http://[::1\"\n", 0, ""},
	{"worker:\n  concurrency: 1.5\n  max_extensions: -0x10\n", 2, " 7 "},
	{"? [a, b]\n: c\n", 0, ""},
	{"&a {worker: *a}\n", 0, ""},
	{"- 1\n- 2\n", 0, ""},
	{"x: !!binary aGVsbG8=\nqueue: !!int 3\n", 1, "\x00"},
	{yamlBomb, 0, ""},
}

// yamlBomb is a billion-laughs config file.
const yamlBomb = `a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]
worker: {concurrency: *i}
`

// FuzzLoad checks that Load and Validate never panic or hang on any file and
// environment value, that their errors are clean lines naming a key or the
// file, and that an accepted configuration yields a valid retry policy and
// survives Render and Load unchanged.
func FuzzLoad(f *testing.F) {
	for _, s := range configSeeds {
		f.Add([]byte(s.file), s.key, s.env)
	}
	if b, err := os.ReadFile("../../examples/dagq.yaml"); err == nil {
		f.Add(b, uint8(0), "")
	}
	keys := config.Keys()
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, key uint8, env string) {
		if strings.ContainsRune(env, 0) {
			return // not representable in the environment
		}
		file := filepath.Join(dir, "dagq.yaml")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		k := keys[int(key)%len(keys)]
		t.Setenv(k.Env, env)
		cfg, loaded, err := config.Load(config.LoadOptions{File: file, Dir: dir})
		if err != nil {
			checkConfigMessage(t, err, keys, true)
			return
		}
		for _, w := range loaded.Warnings {
			checkConfigMessage(t, errors.New(w), keys, true)
		}
		if err := cfg.ValidateSources(loaded.Sources); err != nil {
			checkConfigMessage(t, err, keys, false)
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("Validate error does not match config.ErrInvalid: %v", err)
			}
			return
		}
		// Valid configuration: core accepts what it derives from it.
		if err := cfg.Retry.Policy().Validate(); err != nil {
			t.Fatalf("valid configuration, invalid retry policy %+v: %v", cfg.Retry, err)
		}
		out, err := config.Render(cfg)
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		if err := os.WriteFile(file, out, 0o600); err != nil {
			t.Fatal(err)
		}
		again, _, err := config.Load(config.LoadOptions{File: file, Dir: dir})
		if err != nil {
			t.Fatalf("rendered configuration does not load: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("Render and Load changed the configuration:\n%+v\n%+v\n%s", cfg, again, out)
		}
	})
}

// quotedRe matches a Go-quoted string (strconv.Quote, %q).
var quotedRe = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// checkConfigMessage fails unless every line of err is a clean message that
// names a key (or, for Load, the file or a variable).
func checkConfigMessage(t *testing.T, err error, keys []config.Key, load bool) {
	t.Helper()
	msg := err.Error()
	if strings.TrimSpace(msg) == "" {
		t.Fatal("empty error message")
	}
	// The user's own values appear quoted; look for Go internals outside them.
	bare := quotedRe.ReplaceAllString(msg, `""`)
	for _, bad := range []string{"&{", "panic", "goroutine ", "%!", "map[", "interface {}", "reflect", "<nil>"} {
		if strings.Contains(bare, bad) {
			t.Fatalf("error shows %q: %s", bad, msg)
		}
	}
	sections := map[string]bool{}
	for _, k := range keys {
		s, _, _ := strings.Cut(k.Path, ".")
		sections[s] = true
	}
lines:
	for _, line := range strings.Split(msg, "\n") {
		name, _, _ := strings.Cut(line, " ")
		name = strings.TrimSuffix(name, ":")
		for _, k := range keys {
			if name == k.Path {
				continue lines
			}
		}
		if sections[name] {
			continue
		}
		if load && (strings.HasPrefix(line, "config file ") || strings.HasPrefix(line, "environment variable ") || strings.Contains(line, ": unknown key ")) {
			continue
		}
		t.Fatalf("error line names no key: %q in\n%s", line, msg)
	}
}

// TestLoad_AliasBombRefusedQuickly: a billion-laughs config file is refused
// at once with a message naming the file.
func TestLoad_AliasBombRefusedQuickly(t *testing.T) {
	start := time.Now()
	_, _, err := config.Load(config.LoadOptions{File: writeFile(t, yamlBomb), Dir: t.TempDir()})
	if err == nil {
		t.Fatal("an alias bomb was accepted")
	}
	checkConfigMessage(t, err, config.Keys(), true)
	if !strings.Contains(err.Error(), "alias") {
		t.Errorf("message does not say what is wrong: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusing the bomb took %v", d)
	}
	t.Log(err)
}
