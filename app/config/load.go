package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// LoadOptions says where Load looks besides the defaults and the environment.
type LoadOptions struct {
	// File is the config file path. Empty means the --config flag of Flags,
	// else $DAGQ_CONFIG, else ./dagq.yaml when it exists.
	File string
	// Flags, when set, is searched for the flags defined by AddFlag and
	// AddConfigFlag; those the user set override the other sources.
	Flags *pflag.FlagSet
	// Dir is where the default file is looked for (default: the working
	// directory).
	Dir string
}

// Loaded tells where a configuration came from.
type Loaded struct {
	// File is the config file read, empty when none was.
	File string
	// Warnings are problems that did not stop loading: unknown keys in the
	// file, unknown DAGQ_ environment variables.
	Warnings []string
	// Sources maps every key to where its value came from: "default",
	// "file", "env DAGQ_…" or "flag --…".
	Sources map[string]string
}

// Load builds the configuration from the defaults, the config file, the
// environment and the flags, in increasing precedence. It fails when a named
// config file is missing or unreadable, or when values have the wrong type
// (every such key is reported, with where its value came from). It does not
// range-check values: call Config.Validate.
func Load(opts LoadOptions) (Config, *Loaded, error) {
	keys := Keys()
	v := viper.New()
	def := reflect.ValueOf(Default())
	for _, k := range keys {
		v.SetDefault(k.Path, def.FieldByIndex(k.index).Interface())
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	loaded := &Loaded{Sources: make(map[string]string, len(keys))}
	var errs []error
	brokenSections := map[string]bool{} // sections the file sets to a non-mapping
	file, how, err := configFile(opts)
	if err != nil {
		return Config{}, loaded, err
	}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return Config{}, loaded, fmt.Errorf("config file %s (from %s) does not exist", file, how)
			}
			return Config{}, loaded, fmt.Errorf("config file %s: %w", file, err)
		}
		v.SetConfigType("yaml")
		if err := v.ReadConfig(strings.NewReader(string(data))); err != nil {
			return Config{}, loaded, yamlErr(file, data, err)
		}
		loaded.File = file
		loaded.Warnings = append(loaded.Warnings, unknownFileKeys(file, data, keys)...)
		bad := badSections(data, keys)
		for _, section := range slices.Sorted(maps.Keys(bad)) {
			brokenSections[section] = true
			errs = append(errs, &FieldError{Key: section, Source: "file " + file, Msg: bad[section]})
		}
	}
	loaded.Warnings = append(loaded.Warnings, unknownEnv(os.Environ(), keys)...)

	flagSet := map[string]string{} // key -> flag name, for flags the user set
	if opts.Flags != nil {
		for _, s := range flagSpecs {
			f := opts.Flags.Lookup(s.flag)
			if f == nil {
				continue
			}
			if err := v.BindPFlag(s.key, f); err != nil {
				return Config{}, loaded, fmt.Errorf("bind flag --%s: %w", s.flag, err)
			}
			if f.Changed {
				flagSet[s.key] = s.flag
			}
		}
	}

	var cfg Config
	out := reflect.ValueOf(&cfg).Elem()
	for _, k := range keys {
		if section, _, ok := strings.Cut(k.Path, "."); ok && brokenSections[section] {
			continue // reported once for the section
		}
		src := "default"
		switch {
		case flagSet[k.Path] != "":
			src = "flag --" + flagSet[k.Path]
		case os.Getenv(k.Env) != "":
			src = "env " + k.Env
		case loaded.File != "" && v.InConfig(k.Path):
			src = "file " + loaded.File
		}
		loaded.Sources[k.Path] = src
		val, err := convert(v.Get(k.Path), k.typ)
		if err != nil {
			errs = append(errs, &FieldError{Key: k.Path, Source: src, Msg: err.Error()})
			continue
		}
		out.FieldByIndex(k.index).Set(val)
	}
	if len(errs) > 0 {
		return Config{}, loaded, errors.Join(errs...)
	}
	return cfg, loaded, nil
}

// configFile picks the config file and says which source named it.
func configFile(opts LoadOptions) (path, how string, err error) {
	if opts.File != "" {
		return opts.File, "LoadOptions.File", nil
	}
	if opts.Flags != nil {
		if f := opts.Flags.Lookup(FlagConfig); f != nil && f.Value.String() != "" {
			return f.Value.String(), "--" + FlagConfig, nil
		}
	}
	if p := os.Getenv(EnvConfig); p != "" {
		return p, EnvConfig, nil
	}
	p := DefaultFile
	if opts.Dir != "" {
		p = opts.Dir + string(os.PathSeparator) + DefaultFile
	}
	if _, err := os.Stat(p); err == nil {
		return p, "default location", nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("config file %s: %w", p, err)
	}
	return "", "", nil
}

// yamlErr explains why the config file could not be read: one line per
// problem, each "config file <path>: line N: …", in YAML terms (a mapping,
// a list) rather than the decoder's Go types.
func yamlErr(file string, data []byte, err error) error {
	var doc yaml.Node
	if yerr := yaml.Unmarshal(data, &doc); yerr != nil {
		err = yerr
	} else if msg := shapeProblem(&doc); msg != "" {
		return fmt.Errorf("config file %s: %s", file, msg)
	}
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	lines := make([]string, 0, len(msgs))
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "While parsing config: ")
		m = strings.TrimPrefix(m, "yaml: ")
		switch {
		case strings.Contains(m, "excessive aliasing"):
			m = "aliases (*name) expand the file too much (a YAML alias bomb?); write the values out"
		case strings.HasPrefix(m, "invalid map key"):
			m = "a key is a list or a mapping; keys are names such as worker or queue"
		default:
			m = goTypes.Replace(m)
		}
		m = strings.ReplaceAll(m, "\n", `\n`) // one line per problem
		lines = append(lines, fmt.Sprintf("config file %s: %s", file, m))
	}
	return errors.New(strings.Join(lines, "\n"))
}

// goTypes names the Go types of the decoder's messages in YAML terms.
var goTypes = strings.NewReplacer(
	"map[string]interface {}", "a mapping",
	"map[interface {}]interface {}", "a mapping",
	"interface {}", "a value",
	"[]interface {}", "a list",
)

// shapeProblem says what keeps the parsed file from being a mapping of
// configuration keys, or "": a document that is not a mapping, or a key that
// is not a scalar.
func shapeProblem(doc *yaml.Node) string {
	if len(doc.Content) == 0 {
		return ""
	}
	root := doc.Content[0]
	switch {
	case root.Kind == yaml.ScalarNode && root.Tag == "!!null":
		return ""
	case root.Kind == yaml.AliasNode:
		root = root.Alias
	}
	if root == nil || root.Kind != yaml.MappingNode {
		what := "a value"
		if root != nil {
			what = yamlKind(root)
		}
		return fmt.Sprintf("line %d: the file is %s, not a mapping of keys; valid: lines of key: value, e.g. \"transport: memory\"",
			doc.Content[0].Line, what)
	}
	var bad string
	var walk func(n *yaml.Node, depth int)
	walk = func(n *yaml.Node, depth int) {
		if bad != "" || depth > 3 || n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				bad = fmt.Sprintf("line %d: a key is %s; keys are names such as worker or concurrency", k.Line, yamlKind(k))
				return
			}
			walk(n.Content[i+1], depth+1)
		}
	}
	walk(root, 0)
	return bad
}

// yamlKind names the kind of a YAML node for messages.
func yamlKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		return "the value " + strconv.Quote(n.Value)
	}
	return "a value"
}

// unknownFileKeys warns about every key of the YAML file that is not a
// configuration key, with its line and the closest valid key.
func unknownFileKeys(file string, data []byte, keys []Key) []string {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return nil
	}
	known := make(map[string]bool, len(keys))
	prefixes := make(map[string]bool)
	for _, k := range keys {
		known[k.Path] = true
		parts := strings.Split(k.Path, ".")
		for i := 1; i < len(parts); i++ {
			prefixes[strings.Join(parts[:i], ".")] = true
		}
	}
	var warnings []string
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			path := strings.ToLower(kn.Value)
			if prefix != "" {
				path = prefix + "." + path
			}
			switch {
			case known[path]:
			case prefixes[path]:
				walk(vn, path)
			default:
				msg := fmt.Sprintf("%s:%d: unknown key %q is ignored", file, kn.Line, path)
				if s := Suggest(path); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				warnings = append(warnings, msg)
			}
		}
	}
	walk(doc.Content[0], "")
	return warnings
}

// badSections reports the sections (worker, retry, …) that the file sets to
// something other than a mapping, with what is wrong and their keys.
func badSections(data []byte, keys []Key) map[string]string {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	children := map[string][]string{}
	secret := map[string]bool{} // sections holding a secret: their value is not quoted
	for _, k := range keys {
		if section, _, ok := strings.Cut(k.Path, "."); ok {
			children[section] = append(children[section], k.Path)
			secret[section] = secret[section] || k.Secret
		}
	}
	out := map[string]string{}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		name, v := strings.ToLower(m.Content[i].Value), m.Content[i+1]
		if _, ok := children[name]; !ok || v.Kind == yaml.MappingNode || v.Tag == "!!null" {
			continue
		}
		what := strconv.Quote(v.Value)
		switch {
		case v.Kind == yaml.SequenceNode:
			what = "a list"
		case secret[name]:
			what = "a value"
		}
		out[name] = fmt.Sprintf("line %d: %s is not a mapping; the section holds %s", v.Line, what, strings.Join(children[name], ", "))
	}
	return out
}

// unknownEnv warns about DAGQ_ variables that name no key.
// EnvTestPrefix starts the variables of dagq's own test setup
// (DAGQ_TEST_SQS_ENDPOINT, …); they are not settings and draw no warning.
const EnvTestPrefix = EnvPrefix + "_TEST_"

func unknownEnv(environ []string, keys []Key) []string {
	known := map[string]bool{EnvConfig: true}
	byEnv := make(map[string]string, len(keys))
	for _, k := range keys {
		known[k.Env] = true
		byEnv[k.Env] = k.Path
	}
	var warnings []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix+"_") || known[name] || strings.HasPrefix(name, EnvTestPrefix) {
			continue
		}
		msg := fmt.Sprintf("environment variable %s is not a dagq setting and is ignored", name)
		guess := strings.ToLower(strings.TrimPrefix(name, EnvPrefix+"_"))
		if s := suggestAmong(guess, envForms(byEnv)); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", EnvName(s))
		}
		warnings = append(warnings, msg)
	}
	sort.Strings(warnings)
	return warnings
}

// envForms maps the lower-case env suffix of each key (worker_concurrency)
// to the key, so that a misspelt variable finds its key.
func envForms(byEnv map[string]string) map[string]string {
	m := make(map[string]string, len(byEnv))
	for env, path := range byEnv {
		m[strings.ToLower(strings.TrimPrefix(env, EnvPrefix+"_"))] = path
	}
	return m
}

// convert turns a raw viper value into a value of type t.
func convert(raw any, t reflect.Type) (reflect.Value, error) {
	if t == reflect.TypeFor[time.Duration]() {
		d, err := toDuration(raw)
		return reflect.ValueOf(d), err
	}
	switch t.Kind() {
	case reflect.String:
		switch x := raw.(type) {
		case string:
			return reflect.ValueOf(x), nil
		case bool, int, int64, uint64, float64:
			return reflect.ValueOf(fmt.Sprint(x)), nil
		}
		return reflect.Value{}, fmt.Errorf("%s is not a string; valid: a single value such as %q", describe(raw), "text")
	case reflect.Bool:
		switch x := raw.(type) {
		case bool:
			return reflect.ValueOf(x), nil
		case string:
			b, err := strconv.ParseBool(strings.TrimSpace(x))
			if err == nil {
				return reflect.ValueOf(b), nil
			}
		}
		return reflect.Value{}, fmt.Errorf("%s is not a boolean; valid: true or false", describe(raw))
	case reflect.Int:
		switch x := raw.(type) {
		case int:
			return reflect.ValueOf(x), nil
		case int64:
			return reflect.ValueOf(int(x)), nil
		case uint64:
			if x <= math.MaxInt32 {
				return reflect.ValueOf(int(x)), nil
			}
		case float64:
			if x == math.Trunc(x) && math.Abs(x) <= math.MaxInt32 {
				return reflect.ValueOf(int(x)), nil
			}
		case string:
			n, err := strconv.Atoi(strings.TrimSpace(x))
			if err == nil {
				return reflect.ValueOf(n), nil
			}
		}
		return reflect.Value{}, fmt.Errorf("%s is not an integer; valid: a whole number such as 4", describe(raw))
	case reflect.Float64:
		switch x := raw.(type) {
		case float64:
			return reflect.ValueOf(x), nil
		case int:
			return reflect.ValueOf(float64(x)), nil
		case int64:
			return reflect.ValueOf(float64(x)), nil
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err == nil {
				return reflect.ValueOf(f), nil
			}
		}
		return reflect.Value{}, fmt.Errorf("%s is not a number; valid: a number such as 2 or 0.5", describe(raw))
	}
	return reflect.Value{}, fmt.Errorf("unsupported type %v", t)
}

func toDuration(raw any) (time.Duration, error) {
	switch x := raw.(type) {
	case time.Duration:
		return x, nil
	case int:
		if x == 0 {
			return 0, nil
		}
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(x))
		if err == nil {
			return d, nil
		}
		return 0, fmt.Errorf("%s is not a duration; write a number with a unit, e.g. 500ms, 30s, 5m, 1h", describe(raw))
	}
	return 0, fmt.Errorf("%s is not a duration; write a number with a unit, e.g. 500ms, 30s, 5m, 1h", describe(raw))
}

func describe(raw any) string {
	switch x := raw.(type) {
	case string:
		return strconv.Quote(x)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case nil:
		return "an empty value"
	default:
		return fmt.Sprint(x)
	}
}
