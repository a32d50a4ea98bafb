package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// FlagConfig is the flag that names the config file.
const FlagConfig = "config"

// flagSpecs binds command-line flags to keys. The flag's default and help are
// the key's, so a default is the same in the file, the environment and the
// CLI.
var flagSpecs = []struct{ flag, key string }{
	{"transport", "transport"},
	{"queue", "queue"},
	{"concurrency", "worker.concurrency"},
	{"metrics-addr", "worker.metrics_addr"},
	{"cancellation", "cancellation.enabled"},
	{"fail-fast", "executor.fail_fast"},
	{"log-level", "log.level"},
	{"log-format", "log.format"},
	{"launcher-queue", "launcher.queue"},
	{"launcher-concurrency", "launcher.concurrency"},
	{"launcher-heartbeat-interval", "launcher.heartbeat_interval"},
	{"launcher-stale-after", "launcher.stale_after"},
	{"sqs-queue-url", "sqs.queue_url"},
	{"sqs-run-queue-url", "sqs.run_queue_url"},
	{"sqs-region", "sqs.region"},
	{"sqs-endpoint", "sqs.endpoint"},
	{"s3-bucket", "s3.bucket"},
	{"s3-prefix", "s3.prefix"},
	{"s3-endpoint", "s3.endpoint"},
	{"addr", "ui.addr"},
	{"read-only", "ui.read_only"},
}

var flagOf = func() map[string]string {
	m := make(map[string]string, len(flagSpecs))
	for _, s := range flagSpecs {
		m[s.key] = s.flag
	}
	return m
}()

// FlagNames lists the flags that AddFlag knows, besides FlagConfig.
func FlagNames() []string {
	names := make([]string, len(flagSpecs))
	for i, s := range flagSpecs {
		names[i] = s.flag
	}
	return names
}

// AddConfigFlag defines --config on fs.
func AddConfigFlag(fs *pflag.FlagSet) {
	fs.String(FlagConfig, "", fmt.Sprintf("config file (default: $%s, else ./%s if present)", EnvConfig, DefaultFile))
}

// AddFlag defines the flags named (see FlagNames) on fs, with the default and
// description of their key. An unknown name panics: it is a programming error.
func AddFlag(fs *pflag.FlagSet, names ...string) {
	keys := keyIndex()
	for _, name := range names {
		var k Key
		for _, s := range flagSpecs {
			if s.flag == name {
				k = keys[s.key]
			}
		}
		if k.Path == "" {
			panic(fmt.Sprintf("config: no flag %q", name))
		}
		usage := fmt.Sprintf("%s (key %s, env %s)", k.Doc, k.Path, k.Env)
		def := reflect.ValueOf(Default()).FieldByIndex(k.index)
		switch {
		case k.typ == reflect.TypeFor[time.Duration]():
			d := time.Duration(def.Int())
			fs.Var(&flagValue[time.Duration]{v: &d, key: k.Path, typ: "duration", parse: parseFlagDuration}, name, usage)
			continue
		}
		switch k.typ.Kind() {
		case reflect.String:
			fs.String(name, def.String(), usage)
		case reflect.Bool:
			b := def.Bool()
			f := fs.VarPF(&flagValue[bool]{v: &b, key: k.Path, typ: "bool", parse: parseFlagBool}, name, "", usage)
			f.NoOptDefVal = "true"
		case reflect.Int:
			n := int(def.Int())
			fs.Var(&flagValue[int]{v: &n, key: k.Path, typ: "int", parse: parseFlagInt}, name, usage)
		default:
			panic(fmt.Sprintf("config: flag %q: unsupported type %v", name, k.typ))
		}
	}
}

// flagValue is a pflag.Value whose parse errors read like the
// configuration's own (what is wrong, what is valid, which key) instead of
// strconv's. Type is pflag's name of the type ("int", "duration", "bool"),
// so that viper and the help read the flag as before.
type flagValue[T any] struct {
	v     *T
	key   string
	typ   string
	parse func(string) (T, string)
}

func (f *flagValue[T]) String() string {
	switch v := any(*f.v).(type) {
	case time.Duration:
		return v.String()
	default:
		return fmt.Sprint(v)
	}
}

func (f *flagValue[T]) Set(s string) error {
	v, msg := f.parse(s)
	if msg != "" {
		return fmt.Errorf("%q %s (key %s)", s, msg, f.key)
	}
	*f.v = v
	return nil
}

func (f *flagValue[T]) Type() string { return f.typ }

func parseFlagInt(s string) (int, string) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, "is not an integer; valid: a whole number such as 4"
	}
	return n, ""
}

func parseFlagDuration(s string) (time.Duration, string) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, "is not a duration; write a number with a unit, e.g. 500ms, 30s, 5m, 1h"
	}
	return d, ""
}

func parseFlagBool(s string) (bool, string) {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return false, "is not a boolean; valid: true or false"
	}
	return b, ""
}

func keyIndex() map[string]Key {
	keys := Keys()
	m := make(map[string]Key, len(keys))
	for _, k := range keys {
		m[k.Path] = k
	}
	return m
}

// formatValue writes a leaf value as it would appear in a config file.
func formatValue(v reflect.Value) string {
	if v.Type() == reflect.TypeFor[time.Duration]() {
		return FormatDuration(time.Duration(v.Int()))
	}
	if v.Type() == poolLimitsType {
		return v.Interface().(PoolLimits).String()
	}
	switch v.Kind() {
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	default:
		return v.String()
	}
}

// FormatDuration writes d without trailing zero units: 5m rather than 5m0s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
