package cluster

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// lockNesting is what doc.go says is locked under what: it must still be,
// or doc.go is out of date (and this test is blind).
var lockNesting = []string{"Cluster.handoffMu > Cluster.movingMu", "Cluster.movingMu > replicator.mu",
	"replicator.mu > peerSet.mu", "Cluster.rebuildMu > peerSet.mu", "Cluster.rebuildMu > membership.mu"}

// TestLockOrder type-checks the package's non-test files and follows every
// call made while a mutex may be held: none may lock a mutex of its line
// in doc.go's lock order or an earlier one (TestDocLockOrder checks that
// the order places every mutex). A branch that returns drops what it
// held; other branches and loops add theirs. A call through an interface
// reaches every method of the package that implements it; function values
// (Config.Fallback, callbacks given to other packages) and other packages'
// locks are not followed. A func literal runs where it is written, but one
// a go statement starts holds nothing.
func TestLockOrder(t *testing.T) {
	out, err := exec.Command("go", "list", "-export", "-deps", "-f", "{{.ImportPath}}={{.Export}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	exports := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if path, file, ok := strings.Cut(l, "="); ok {
			exports[path] = file
		}
	}
	fset := token.NewFileSet()
	names, _ := filepath.Glob("*.go")
	var files []*ast.File
	for _, name := range names {
		if !strings.HasSuffix(name, "_test.go") {
			f, err := parser.ParseFile(fset, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
	}
	w := &lockWalker{info: &types.Info{Defs: map[*ast.Ident]types.Object{}, Uses: map[*ast.Ident]types.Object{}},
		locks: map[*types.Var]string{}, decls: map[*types.Func]*ast.FuncDecl{}}
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) { return os.Open(exports[path]) })
	pkg, err := (&types.Config{Importer: imp}).Check("github.com/ratemesh/ratemesh/cluster", fset, files, w.info)
	if err != nil {
		t.Fatal(err)
	}
	rank := map[string]int{}
	for i, level := range docLockOrder(t) {
		for _, name := range level {
			rank[name] = i
		}
	}
	for _, name := range pkg.Scope().Names() {
		if st, ok := pkg.Scope().Lookup(name).Type().Underlying().(*types.Struct); ok {
			for f := range st.Fields() {
				if s := f.Type().String(); s == "sync.Mutex" || s == "sync.RWMutex" {
					w.locks[f] = name + "." + f.Name()
				}
			}
		}
	}
	for _, f := range files {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok {
				w.decls[w.info.Defs[fd.Name].(*types.Func)] = fd
			}
		}
	}
	events := map[any][]lockEvent{} // by function, or goroutine's func literal
	for fn, fd := range w.decls {
		w.events = nil
		w.block(fd.Body.List, lockSet{})
		events[fn] = w.events
	}
	for i := 0; i < len(w.goroutines); i++ { // a goroutine may start more
		w.events = nil
		w.block(w.goroutines[i].Body.List, lockSet{})
		events[w.goroutines[i]] = w.events
	}
	takes := map[any]lockSet{} // what each function locks, through its calls too
	for changed := true; changed; {
		changed = false
		for fn, evs := range events {
			if takes[fn] == nil {
				takes[fn] = lockSet{}
			}
			n := len(takes[fn])
			for _, ev := range evs {
				if ev.lock != "" {
					takes[fn][ev.lock] = true
				}
				maps.Copy(takes[fn], takes[ev.call])
			}
			changed = changed || len(takes[fn]) != n
		}
	}
	nested, reported := map[string]bool{}, map[string]bool{}
	for _, evs := range events {
		for _, ev := range evs {
			taken, via := lockSet{ev.lock: true}, ""
			if ev.call != nil {
				taken, via = takes[ev.call], " (through "+ev.call.Name()+")"
			}
			for held := range ev.held {
				for l := range taken {
					nested[held+" > "+l] = true
					msg := fset.Position(ev.pos).String() + ": locks " + l + via + " while " + held + " may be held"
					if rank[held] >= rank[l] && !reported[msg] {
						reported[msg] = true
						t.Error(msg)
					}
				}
			}
		}
	}
	for _, n := range lockNesting {
		if !nested[n] {
			t.Errorf("nothing takes %s any more: correct doc.go and lockNesting", n)
		}
	}
	for _, pos := range w.unknown {
		t.Errorf("%s: a mutex locked other than as a field (x.mu.Lock()): this test cannot follow it", fset.Position(pos))
	}
}

type lockSet map[string]bool

// lockEvent is a mutex locked, or a function of the package called, with
// the mutexes that may be held then.
type lockEvent struct {
	held lockSet
	lock string
	call *types.Func
	pos  token.Pos
}

type lockWalker struct {
	info       *types.Info
	locks      map[*types.Var]string // mutex fields, as "Type.field"
	decls      map[*types.Func]*ast.FuncDecl
	events     []lockEvent
	goroutines []*ast.FuncLit
	unknown    []token.Pos
}

// lockOp reports the mutex field x locks or unlocks, and the method.
func (w *lockWalker) lockOp(x ast.Expr) (mu, op string) {
	if call, ok := x.(*ast.CallExpr); ok {
		if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
			if field, ok := sel.X.(*ast.SelectorExpr); ok {
				if v, ok := w.info.Uses[field.Sel].(*types.Var); ok && w.locks[v] != "" {
					return w.locks[v], sel.Sel.Name
				}
			}
		}
	}
	return "", ""
}

// block walks stmts from held: it returns what may be held after them,
// and whether they return (or continue) before the end.
func (w *lockWalker) block(stmts []ast.Stmt, held lockSet) (lockSet, bool) {
	for _, s := range stmts {
		switch s := s.(type) {
		case *ast.ExprStmt:
			switch mu, op := w.lockOp(s.X); op {
			case "Lock", "RLock":
				w.events = append(w.events, lockEvent{held: held, lock: mu, pos: s.Pos()})
				held = union(held, lockSet{mu: true})
			case "Unlock", "RUnlock":
				held = union(held)
				delete(held, mu)
			default:
				w.expr(s.X, held)
			}
		case *ast.DeferStmt:
			if _, op := w.lockOp(s.Call); op == "" {
				w.expr(s.Call, held) // at return, with these held at least
			}
		case *ast.GoStmt:
			if lit, ok := s.Call.Fun.(*ast.FuncLit); ok {
				w.goroutines = append(w.goroutines, lit)
			}
		case *ast.ReturnStmt:
			w.expr(s, held)
			return held, true
		case *ast.BranchStmt:
			if s.Tok == token.CONTINUE || s.Tok == token.GOTO {
				return held, true
			}
		case *ast.AssignStmt, *ast.DeclStmt, *ast.IncDecStmt, *ast.SendStmt:
			w.expr(s, held)
		default: // a block, if, for, range, switch, select, label
			held = w.branches(s, held)
		}
	}
	return held, false
}

// branches walks each block, clause and head of s from held, twice (the
// second time what a loop's iteration left held meets the next), and
// returns what may be held after s.
func (w *lockWalker) branches(s ast.Stmt, held lockSet) lockSet {
	out := union(held)
	body := func(stmts []ast.Stmt) {
		if after, returns := w.block(stmts, out); !returns {
			out = union(out, after)
		}
	}
	for range 2 {
		ast.Inspect(s, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BlockStmt:
				body(n.List)
			case *ast.CaseClause:
				for _, e := range n.List {
					w.expr(e, out)
				}
				body(n.Body)
			case *ast.CommClause:
				if n.Comm != nil {
					body([]ast.Stmt{n.Comm})
				}
				body(n.Body)
			case ast.Expr:
				w.expr(n, out)
			case ast.Stmt:
				if n == s {
					return true
				}
				body([]ast.Stmt{n}) // an init, a post, an else if
			}
			return false
		})
	}
	return out
}

func union(sets ...lockSet) lockSet {
	out := lockSet{}
	for _, s := range sets {
		maps.Copy(out, s)
	}
	return out
}

// expr notes the calls n makes of the package's functions; a func literal
// in it runs here.
func (w *lockWalker) expr(n ast.Node, held lockSet) {
	ast.Inspect(n, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncLit:
			w.block(n.Body.List, held)
			return false
		case *ast.CallExpr:
			for _, fn := range w.callees(n.Fun) {
				w.events = append(w.events, lockEvent{held: held, call: fn, pos: n.Pos()})
			}
		}
		return true
	})
}

// callees are the functions of the package a call of fun may run.
func (w *lockWalker) callees(fun ast.Expr) []*types.Func {
	if sel, ok := ast.Unparen(fun).(*ast.SelectorExpr); ok {
		fun = sel.Sel
	}
	id, _ := ast.Unparen(fun).(*ast.Ident)
	fn, _ := w.info.Uses[id].(*types.Func)
	if fn == nil {
		return nil
	}
	recv := fn.Signature().Recv()
	switch {
	case w.decls[fn] != nil:
		return []*types.Func{fn}
	case recv == nil:
		return nil
	case fn.Pkg() != nil && fn.Pkg().Path() == "sync" && strings.HasSuffix(recv.Type().String(), "Mutex"):
		w.unknown = append(w.unknown, fun.Pos()) // not as lockOp sees it
		return nil
	case !types.IsInterface(recv.Type()):
		return nil
	}
	var out []*types.Func
	for m := range w.decls {
		if r := m.Signature().Recv(); r != nil && m.Name() == fn.Name() {
			if named, ok := types.Unalias(derefType(r.Type())).(*types.Named); ok && types.Implements(types.NewPointer(named), recv.Type().Underlying().(*types.Interface)) {
				out = append(out, m)
			}
		}
	}
	return out
}

func derefType(t types.Type) types.Type {
	if p, ok := t.(*types.Pointer); ok {
		return p.Elem()
	}
	return t
}
