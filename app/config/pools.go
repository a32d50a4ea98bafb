package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// PoolLimits is the pools key: the slots of each fleet-wide concurrency pool
// (core.PoolOptions.Limits). In a file it is a mapping, `pools: {db: 3}`;
// in the environment a list, DAGQ_POOLS="db=3,gpu=1".
type PoolLimits map[string]int

// String writes the limits as the environment form, sorted by name:
// "db=3,gpu=1" ("" when empty).
func (p PoolLimits) String() string {
	parts := make([]string, 0, len(p))
	for _, name := range slices.Sorted(maps.Keys(p)) {
		parts = append(parts, name+"="+strconv.Itoa(p[name]))
	}
	return strings.Join(parts, ",")
}

// ParsePoolLimits reads the environment form of the pools key,
// "name=N,name=N" (blanks around items are ignored; empty: no pools). It
// checks the form only; Config.Validate checks names and limits.
func ParsePoolLimits(s string) (PoolLimits, error) {
	out := PoolLimits{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, n, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		limit, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil || name == "" {
			return nil, fmt.Errorf("%q is not name=N; valid: pool limits such as db=3,gpu=1", item)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("pool %q is named twice; valid: each pool once, such as db=3,gpu=1", name)
		}
		out[name] = limit
	}
	return out, nil
}

// poolLimitsType is the type of the pools key.
var poolLimitsType = reflect.TypeFor[PoolLimits]()

// decodePoolLimits turns a raw value of the pools key (a mapping from the
// file, the environment's string, or a default) into PoolLimits.
func decodePoolLimits(raw any) (any, error) {
	switch x := raw.(type) {
	case PoolLimits:
		return x, nil
	case nil:
		return PoolLimits{}, nil
	case string:
		return ParsePoolLimits(x)
	case map[string]any:
		out := make(PoolLimits, len(x))
		for name, v := range x {
			n, err := decodeHook(nil, reflect.TypeFor[int](), v)
			if err != nil {
				return nil, fmt.Errorf("pool %q: %w", name, err)
			}
			out[name] = n.(int)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s is not a mapping of pool names to limits; valid: e.g. pools: {db: 3} in a file, DAGQ_POOLS=db=3,gpu=1 in the environment", describe(raw))
}

// poolKeyErrors checks the pool names of the config file's pools mapping n
// before the loader (viper) reads them, which would fold "DB" to a pool "db"
// that tasks naming "DB" never find, and split "d.b" into a mapping. It
// removes such names from values (the file's decoded top level), so that
// each is reported once, here.
func poolKeyErrors(n *yaml.Node, file string, values map[string]any) []error {
	var errs []error
	bad := func(k *yaml.Node, format string, args ...any) {
		errs = append(errs, &FieldError{Key: "pools", Source: "file " + file, Line: k.Line, Msg: fmt.Sprintf(format, args...)})
		for top, v := range values {
			if m, ok := v.(map[string]any); ok && strings.EqualFold(top, "pools") {
				delete(m, k.Value)
			}
		}
	}
	for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if err := core.ValidatePoolName(k.Value); err != nil {
			bad(k, "%s", strings.TrimPrefix(err.Error(), ports.ErrInvalidArgument.Error()+": "))
		} else if k.Value != strings.ToLower(k.Value) {
			bad(k, "pool name %q has upper-case letters, which the config file's keys cannot keep (they are read in lower case); "+
				"valid: a lower-case name such as %q, used in the job files and requests too", k.Value, strings.ToLower(k.Value))
		}
	}
	return errs
}

// poolsNode renders the pools key as a YAML mapping, sorted by name.
func poolsNode(p PoolLimits) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	for _, name := range slices.Sorted(maps.Keys(p)) {
		n.Content = append(n.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name},
			&yaml.Node{Kind: yaml.ScalarNode, Value: strconv.Itoa(p[name])})
	}
	return n
}

// Limits of the pool keys.
const (
	// MaxPoolPoll bounds worker.pool_poll: a re-check is a delayed message.
	MaxPoolPoll = ports.MaxDelay
)

// validatePools checks the pools key and worker.pool_lease, worker.pool_poll.
func (c Config) validatePools(bad func(key, format string, args ...any)) {
	for _, name := range slices.Sorted(maps.Keys(c.Pools)) {
		if err := core.ValidatePoolName(name); err != nil {
			bad("pools", "%s", strings.TrimPrefix(err.Error(), ports.ErrInvalidArgument.Error()+": "))
			continue
		}
		if n := c.Pools[name]; n < 1 || n > core.MaxPoolLimit {
			bad("pools", "pool %q has limit %d; valid: 1 to %d slots", name, n, core.MaxPoolLimit)
		}
	}
	w := c.Worker
	if w.PoolLease < core.MinPoolLease || w.PoolLease > ports.MaxLease {
		bad("worker.pool_lease", "%s is out of range; valid: %s to %s", FormatDuration(w.PoolLease),
			FormatDuration(core.MinPoolLease), FormatDuration(ports.MaxLease))
	}
	if w.PoolPoll <= 0 || w.PoolPoll > MaxPoolPoll {
		bad("worker.pool_poll", "%s is out of range; valid: more than 0s, at most %s", FormatDuration(w.PoolPoll),
			FormatDuration(MaxPoolPoll))
	}
}

// PoolOptions returns the pool keys as core.PoolOptions.
func (c Config) PoolOptions() core.PoolOptions {
	return core.PoolOptions{Limits: maps.Clone(c.Pools), Lease: c.Worker.PoolLease, Poll: c.Worker.PoolPoll}
}
