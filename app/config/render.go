package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Redacted replaces the value of a secret key when a configuration is
// printed. An empty secret is printed empty, so that "not set" stays visible.
const Redacted = "<redacted>"

// Render writes cfg (or any struct built like Config: yaml tags name the keys,
// `secret:"true"` marks secrets) as YAML in declaration order, durations as
// "30s", with every non-empty secret replaced by Redacted.
func Render(cfg any) ([]byte, error) {
	n, err := node(reflect.ValueOf(cfg))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// RenderJSON is Render as indented JSON (keys sorted, as JSON objects are).
func RenderJSON(cfg any) ([]byte, error) {
	n, err := node(reflect.ValueOf(cfg))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func node(v reflect.Value) (*yaml.Node, error) {
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil, fmt.Errorf("config: render: %v is not a struct", v.Type())
	}
	m := &yaml.Node{Kind: yaml.MappingNode}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		var val *yaml.Node
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]():
			sub, err := node(fv)
			if err != nil {
				return nil, err
			}
			val = sub
		case f.Type == poolLimitsType:
			val = poolsNode(fv.Interface().(PoolLimits))
		case f.Tag.Get("secret") == "true" && !fv.IsZero():
			val = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: Redacted}
		default:
			val = &yaml.Node{Kind: yaml.ScalarNode, Tag: scalarTag(fv), Value: formatValue(fv)}
		}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name}, val)
	}
	return m, nil
}

// scalarTag is the tag of a value's node: "!!str" for strings (and
// durations), so that one that reads as another type is quoted; none for
// numbers and booleans, which the encoder then writes plainly (a float that
// is whole, such as 2, would otherwise come out as "!!float 2").
func scalarTag(v reflect.Value) string {
	if v.Type() == reflect.TypeFor[time.Duration]() {
		return "!!str"
	}
	switch v.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		return ""
	default:
		return "!!str"
	}
}

// Values returns every key's value as written in a file, secrets redacted.
func Values(cfg Config) map[string]string {
	v := reflect.ValueOf(cfg)
	out := make(map[string]string)
	for _, k := range Keys() {
		fv := v.FieldByIndex(k.index)
		switch {
		case k.Secret && !fv.IsZero():
			out[k.Path] = Redacted
		default:
			out[k.Path] = formatValue(fv)
		}
	}
	return out
}
