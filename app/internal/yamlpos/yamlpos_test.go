package yamlpos_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/dagq/dagq/app/internal/yamlpos"
)

func TestLocate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		doc       string
		line, col int
		msg       string
	}{
		{"misindented key in a list item", "name: j\nsteps:\n  - name: a\n    task: echo\n   upstream: [x]\n", 5, 4, "did not find expected '-' indicator"},
		{"misindented key, short", "name: j\nsteps:\n  - name: a\n   task: echo\n", 4, 4, "did not find expected '-' indicator"},
		{"unclosed flow list", "a: 1\nb: 2\nc: 3\nd: [1, 2\ne: 5\n", 4, 5, "did not find expected ',' or ']'"},
		{"unclosed quote", "a: 1\nb: 2\nc: 3\nd: \"abc\ne: 5\n", 4, 4, "found unexpected end of stream"},
		{"tab indentation", "a: 1\nb: 2\nc: 3\nd:\n\t- x\n", 5, 1, "found character that cannot start any token"},
		{"deeper key", "worker:\n  concurrency: 4\n  lease: 30s\nretry:\n  max_attempts: 3\n    jitter: 0.1\n", 6, 11, "mapping values are not allowed in this context"},
		{"bad token", "a: 1\nb: 2\nc: @x\n", 3, 4, "found character that cannot start any token"},
		{"multi-byte characters before the problem", "a: 1\nb: \"é\" x: 2\n", 2, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n yaml.Node
			err := yaml.Unmarshal([]byte(tc.doc), &n)
			require.Error(t, err)
			line, col, msg, ok := yamlpos.Locate([]byte(tc.doc), err)
			require.True(t, ok, err.Error())
			require.Equal(t, tc.line, line, "line of %v", err)
			if tc.msg != "" {
				require.Equal(t, tc.col, col, "column of %v", err)
				require.Equal(t, tc.msg, msg)
			}
		})
	}
}

func TestLocate_NotASyntaxError(t *testing.T) {
	_, _, _, ok := yamlpos.Locate(nil, errors.New("boom"))
	require.False(t, ok)
	var v struct{ A int }
	err := yaml.Unmarshal([]byte("a: x\n"), &v)
	require.Error(t, err)
	_, _, _, ok = yamlpos.Locate([]byte("a: x\n"), err)
	require.False(t, ok, "a type error has its own, right, line")
}

func TestLocate_LongDocumentKeepsTheDecodersLine(t *testing.T) {
	doc := strings.Repeat("a: 1\n", yamlpos.MaxLines) + "b: @\n"
	var n yaml.Node
	err := yaml.Unmarshal([]byte(doc), &n)
	require.Error(t, err)
	line, _, _, ok := yamlpos.Locate([]byte(doc), err)
	require.True(t, ok)
	require.Positive(t, line)
}
