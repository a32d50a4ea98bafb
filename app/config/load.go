package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/dagq/dagq/app/internal/yamlpos"
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
	// Lines maps the keys set in the config file to the line of their value
	// (for messages; the file's value may be overridden, see Sources).
	Lines map[string]int
}

// Load builds the configuration from the defaults, the config file, the
// environment and the flags, in increasing precedence. It fails when a named
// config file is missing or unreadable, or when values have the wrong type
// (every such key is reported, with where its value came from, and with
// them the problems Config.Validate finds in the other keys, so that a wrong
// type hides nothing). It does not range-check values otherwise: call
// Config.ValidateLoaded (or Validate).
//
// Viper does the precedence, the environment (AutomaticEnv; every key has a
// default, so Unmarshal sees its variable) and the decoding; decodeHook gives
// the types and the messages. The file is parsed once, into a YAML tree whose
// lines the warnings and errors name, and viper gets its decoded values.
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
	file, how, err := configFile(opts)
	if err != nil {
		return Config{}, loaded, err
	}
	if file != "" {
		values, lines, warnings, sectionErrs, err := readFile(file, how, keys)
		if err != nil {
			return Config{}, loaded, err
		}
		if err := v.MergeConfigMap(values); err != nil {
			return Config{}, loaded, fmt.Errorf("config file %s: %w", file, err)
		}
		loaded.File, loaded.Lines, loaded.Warnings, errs = file, lines, warnings, sectionErrs
	}
	warnings, envErrs := checkEnv(os.Environ(), keys)
	loaded.Warnings = append(loaded.Warnings, warnings...)
	errs = append(errs, envErrs...)

	for _, k := range keys {
		var f *pflag.Flag // the key's flag, when the caller defined it
		if opts.Flags != nil && k.Flag != "" {
			if f = opts.Flags.Lookup(k.Flag); f != nil {
				if err := v.BindPFlag(k.Path, f); err != nil {
					return Config{}, loaded, fmt.Errorf("bind flag --%s: %w", k.Flag, err)
				}
			}
		}
		switch {
		case f != nil && f.Changed:
			loaded.Sources[k.Path] = "flag --" + k.Flag
		case os.Getenv(k.Env) != "":
			loaded.Sources[k.Path] = "env " + k.Env
		case loaded.File != "" && v.InConfig(k.Path):
			loaded.Sources[k.Path] = "file " + loaded.File
		default:
			loaded.Sources[k.Path] = "default"
		}
	}

	var cfg Config
	if err := v.Unmarshal(&cfg, func(c *mapstructure.DecoderConfig) {
		c.TagName, c.DecodeHook, c.WeaklyTypedInput = "yaml", decodeHook, false
	}); err != nil {
		errs = append(errs, fieldErrors(err, loaded.Sources, loaded.Lines)...)
	}
	if len(errs) > 0 {
		return Config{}, loaded, errors.Join(append(errs, otherProblems(cfg, loaded, keys, errs)...)...)
	}
	return cfg, loaded, nil
}

// otherProblems returns the validation errors of the keys that have none in
// errs (the loading errors), with those keys at their defaults: one wrong
// type does not hide every other problem.
func otherProblems(cfg Config, loaded *Loaded, keys []Key, errs []error) []error {
	failed := map[string]bool{}
	for _, err := range errs {
		var fe *FieldError
		if !errors.As(err, &fe) {
			return nil // not about one key: nothing to compare with
		}
		failed[fe.Key] = true
	}
	cv, def := reflect.ValueOf(&cfg).Elem(), reflect.ValueOf(Default())
	for _, k := range keys {
		if failed[k.Path] || failed[section(k.Path)] {
			cv.FieldByIndex(k.index).Set(def.FieldByIndex(k.index))
		}
	}
	var out []error
	for _, err := range unjoinErrs(cfg.ValidateLoaded(loaded)) {
		var fe *FieldError
		if errors.As(err, &fe) && (failed[fe.Key] || failed[section(fe.Key)]) {
			continue
		}
		out = append(out, err)
	}
	return out
}

func section(key string) string {
	s, _, _ := strings.Cut(key, ".")
	return s
}

func unjoinErrs(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
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

// readFile parses the config file once and returns its values for viper
// (without the sections that are not mappings), a warning for every unknown
// key (with its line and the closest valid key) and an error for every such
// section that is not empty.
func readFile(file, how string, keys []Key) (values map[string]any, lines map[string]int, warnings []string, errs []error, err error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil, nil, fmt.Errorf("config file %s (from %s) does not exist", file, how)
	} else if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("config file %s: %w", file, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		if line, col, msg, ok := yamlpos.Locate(data, err); ok {
			return nil, nil, nil, nil, fmt.Errorf("config file %s:%s: %s", file, yamlpos.Position(line, col), msg)
		}
		return nil, nil, nil, nil, yamlErr(file, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil, nil, nil, nil // an empty file
	}
	if err := doc.Decode(&values); err != nil {
		if msg := shapeProblem(doc.Content[0]); msg != "" {
			return nil, nil, nil, nil, fmt.Errorf("config file %s: %s", file, msg)
		}
		return nil, nil, nil, nil, yamlErr(file, err)
	}

	known := make(map[string]bool, len(keys))
	sections := map[string][]string{} // section -> its keys
	secret := map[string]bool{}       // sections holding a secret: their value is not quoted
	for _, k := range keys {
		known[k.Path] = true
		if section, _, ok := strings.Cut(k.Path, "."); ok {
			sections[section] = append(sections[section], k.Path)
			secret[section] = secret[section] || k.Secret
		}
	}
	var walk func(n *yaml.Node, prefix string)
	lines = map[string]int{}
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			path := strings.ToLower(kn.Value)
			if prefix != "" {
				path = prefix + "." + path
			}
			switch {
			case known[path]:
				lines[path] = vn.Line
				if path == "pools" {
					errs = append(errs, poolKeyErrors(vn, file, values)...)
				}
			case sections[path] == nil:
				msg := fmt.Sprintf("%s:%d: unknown key %q is ignored", file, kn.Line, path)
				if s := Suggest(path); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				warnings = append(warnings, msg)
			case vn.Kind == yaml.MappingNode:
				walk(vn, path)
			default:
				// Viper would read a section that is not a mapping in place
				// of its keys (even an empty one, which means unset).
				delete(values, kn.Value)
				if vn.Tag == "!!null" {
					continue
				}
				what := strconv.Quote(vn.Value)
				switch {
				case vn.Kind == yaml.SequenceNode:
					what = "a list"
				case secret[path]:
					what = "a value"
				}
				errs = append(errs, &FieldError{Key: path, Source: "file " + file, Line: vn.Line,
					Msg: fmt.Sprintf("%s is not a mapping; the section holds %s", what, strings.Join(sections[path], ", "))})
			}
		}
	}
	walk(doc.Content[0], "")
	return values, lines, warnings, errs, nil
}

// yamlErr explains why the config file could not be read: one line per
// problem, each "config file <path>: line N: …", in YAML terms (a mapping,
// a list) rather than the decoder's Go types.
func yamlErr(file string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	lines := make([]string, 0, len(msgs))
	for _, m := range msgs {
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

// shapeProblem says what keeps the parsed document root from being a mapping
// of configuration keys, or "": a root that is not a mapping, or a key that
// is not a scalar.
func shapeProblem(root *yaml.Node) string {
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return ""
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Sprintf("line %d: the file is %s, not a mapping of keys; valid: lines of key: value, e.g. \"transport: memory\"",
			root.Line, yamlKind(root))
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

// EnvTestPrefix starts the variables of dagq's own test setup
// (DAGQ_TEST_SQS_ENDPOINT, …); they are not settings and draw no warning.
const EnvTestPrefix = EnvPrefix + "_TEST_"

// checkEnv warns about DAGQ_ variables that name no key, with the closest
// key's variable. A non-empty variable named after a section (DAGQ_WORKER)
// is an error: viper would read it in place of every key of the section.
func checkEnv(environ []string, keys []Key) (warnings []string, errs []error) {
	known := map[string]bool{EnvConfig: true}
	forms := make(map[string]string, len(keys)) // worker_concurrency -> worker.concurrency
	for _, k := range keys {
		known[k.Env] = true
		forms[strings.ToLower(strings.TrimPrefix(k.Env, EnvPrefix+"_"))] = k.Path
	}
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix+"_") || known[name] || strings.HasPrefix(name, EnvTestPrefix) {
			continue
		}
		guess := strings.ToLower(strings.TrimPrefix(name, EnvPrefix+"_"))
		did := ""
		if s := suggestAmong(guess, forms); s != "" {
			did = fmt.Sprintf(" (did you mean %s?)", EnvName(s))
		}
		if val != "" && slices.ContainsFunc(keys, func(k Key) bool { return strings.HasPrefix(k.Path, guess+".") }) {
			errs = append(errs, fmt.Errorf("environment variable %s is not a dagq setting but names the section %s, which hides every %s.* key from the file and the defaults; unset it and set one variable per key%s",
				name, guess, guess, did))
			continue
		}
		warnings = append(warnings, fmt.Sprintf("environment variable %s is not a dagq setting and is ignored%s", name, did))
	}
	sort.Strings(warnings)
	return warnings, errs
}

// decodeHook turns a raw value (from the file, the environment, a flag or a
// default) into the type of its field, refusing what does not fit with what
// would be valid, where mapstructure would truncate 1.5 to 1.
func decodeHook(_, to reflect.Type, raw any) (any, error) {
	s, isString := raw.(string)
	s = strings.TrimSpace(s)
	switch {
	case to == poolLimitsType:
		return decodePoolLimits(raw)
	case to == reflect.TypeFor[time.Duration]():
		switch x := raw.(type) {
		case time.Duration:
			return x, nil
		case int:
			if x == 0 {
				return time.Duration(0), nil
			}
		}
		if d, err := time.ParseDuration(s); isString && err == nil {
			return d, nil
		}
		return nil, fmt.Errorf("%s is not a duration; write a number with a unit, e.g. 500ms, 30s, 5m, 1h", describe(raw))
	case to.Kind() == reflect.String:
		switch raw.(type) {
		case string, bool, int, int64, uint64, float64:
			return fmt.Sprint(raw), nil
		}
		return nil, fmt.Errorf("%s is not a string; valid: a single value such as %q", describe(raw), "text")
	case to.Kind() == reflect.Bool:
		if b, ok := raw.(bool); ok {
			return b, nil
		}
		if b, err := strconv.ParseBool(s); isString && err == nil {
			return b, nil
		}
		return nil, fmt.Errorf("%s is not a boolean; valid: true or false", describe(raw))
	case to.Kind() == reflect.Int: // counts and sizes in bytes (payload.threshold)
		switch x := raw.(type) {
		case int:
			return x, nil
		case int64:
			return int(x), nil
		case uint64:
			if x <= math.MaxInt32 {
				return int(x), nil
			}
		case float64:
			if x == math.Trunc(x) && math.Abs(x) <= math.MaxInt32 {
				return int(x), nil
			}
		case string:
			if n, err := strconv.Atoi(s); err == nil {
				return n, nil
			}
		}
		return nil, fmt.Errorf("%s is not an integer; valid: a whole number such as 4", describe(raw))
	case to.Kind() == reflect.Float64:
		switch x := raw.(type) {
		case float64:
			return x, nil
		case int:
			return float64(x), nil
		case int64:
			return float64(x), nil
		case string:
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				return f, nil
			}
		}
		return nil, fmt.Errorf("%s is not a number; valid: a number such as 2 or 0.5", describe(raw))
	}
	return raw, nil // Config and its sections
}

// fieldErrors turns the decoding errors of viper's Unmarshal into
// FieldErrors naming the key and where its value came from.
func fieldErrors(err error, sources map[string]string, lines map[string]int) []error {
	switch e := err.(type) {
	case *mapstructure.DecodeError:
		return []error{&FieldError{Key: e.Name(), Source: sources[e.Name()], Line: lines[e.Name()], Msg: e.Unwrap().Error()}}
	case interface{ Unwrap() []error }:
		var out []error
		for _, e := range e.Unwrap() {
			out = append(out, fieldErrors(e, sources, lines)...)
		}
		return out
	case interface{ Unwrap() error }:
		return fieldErrors(e.Unwrap(), sources, lines)
	}
	return []error{err}
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
