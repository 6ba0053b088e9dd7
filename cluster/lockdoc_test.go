package cluster

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// docLockOrder is the lock order doc.go states, line by line: the indented
// lines under "# Lock order", each a level of mutexes named Type.field.
func docLockOrder(t *testing.T) [][]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(f.Doc.Text(), "# Lock order\n")
	if !ok {
		t.Fatal(`doc.go has no "# Lock order" section`)
	}
	var levels [][]string
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "\t") {
			levels = append(levels, strings.Split(strings.TrimSpace(line), ", "))
		} else if len(levels) > 0 {
			break
		}
	}
	return levels
}

// TestDocLockOrder checks that doc.go's lock order places every mutex of
// the package, once: a mutex added without a place in it, or one renamed
// or removed, fails here. Mutexes are found as struct fields of type
// sync.Mutex or sync.RWMutex; any other use of those types (a variable, a
// pointer, an embedded mutex) fails too, for the order to be placed by
// hand.
func TestDocLockOrder(t *testing.T) {
	var documented []string
	for _, level := range docLockOrder(t) {
		documented = append(documented, level...)
	}
	fset := token.NewFileSet()
	names, _ := filepath.Glob("*.go")
	isMutex := func(e ast.Expr) bool {
		if sel, ok := e.(*ast.SelectorExpr); ok {
			x, ok := sel.X.(*ast.Ident)
			return ok && x.Name == "sync" && (sel.Sel.Name == "Mutex" || sel.Sel.Name == "RWMutex")
		}
		return false
	}
	var fields []string
	uses := 0
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if e, ok := n.(ast.Expr); ok && isMutex(e) {
				uses++
			}
			if ts, ok := n.(*ast.TypeSpec); ok {
				if st, ok := ts.Type.(*ast.StructType); ok {
					for _, fl := range st.Fields.List {
						for _, id := range fl.Names {
							if isMutex(fl.Type) {
								fields = append(fields, ts.Name.Name+"."+id.Name)
							}
						}
					}
				}
			}
			return true
		})
	}
	if uses != len(fields) {
		t.Errorf("%d uses of sync.Mutex or sync.RWMutex, %d of them named struct fields: place the others in doc.go's lock order by hand", uses, len(fields))
	}
	slices.Sort(fields)
	slices.Sort(documented)
	if !slices.Equal(fields, documented) {
		t.Errorf("doc.go's lock order names %v,\nthe package's mutexes are %v", documented, fields)
	}
}
