package ports_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// interfaces returns the exported interface types of package ports and the
// package's doc comment.
func interfaces(t *testing.T) ([]string, string) {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	require.NoError(t, err)
	var names []string
	var doc string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, parser.ParseComments)
		require.NoError(t, err)
		if f.Doc != nil {
			doc += f.Doc.Text()
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, s := range g.Specs {
				ts := s.(*ast.TypeSpec)
				if _, ok := ts.Type.(*ast.InterfaceType); ok && ts.Name.IsExported() {
					names = append(names, ts.Name.Name)
				}
			}
		}
	}
	sort.Strings(names)
	return names, doc
}

// Every port is documented in the package doc and in docs/ports.md's table,
// and the table names no port that does not exist.
func TestDocs_EveryPortDocumented(t *testing.T) {
	names, doc := interfaces(t)
	require.Len(t, names, 13, "six ports, two handles and five optional capabilities: update docs/ports.md and ports/doc.go when this changes")
	md, err := os.ReadFile("../docs/ports.md")
	require.NoError(t, err)
	var table []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Za-z]+)` \\|").FindAllStringSubmatch(string(md), -1) {
		table = append(table, m[1])
	}
	sort.Strings(table)
	require.Equal(t, names, table, "docs/ports.md's table lists exactly the interfaces of package ports")
	for _, n := range names {
		require.Contains(t, doc, "["+n+"]", "the package doc names %s", n)
	}
	for _, m := range regexp.MustCompile(`\[([A-Z][A-Za-z]+)\]`).FindAllStringSubmatch(doc, -1) {
		if strings.HasPrefix(m[1], "Err") || slices.Contains([]string{"BatchError", "DeadLetterQueue"}, m[1]) {
			continue
		}
		require.Contains(t, names, m[1], "the package doc names a port that does not exist")
	}
}
