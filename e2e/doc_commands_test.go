//go:build linux

package e2e

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/docblocks"
)

// The tokens of the doc tests' own clusters.
const (
	docToken      = "doc-api-token-0123456789" // --api-token, of those that need one
	docAdminToken = "doc-admin-token-0123456789"
)

// goOwnEnv are variables of Go itself, which no code of the module reads.
var goOwnEnv = map[string]bool{"GODEBUG": true, "GOGC": true, "GOMAXPROCS": true, "GOMEMLIMIT": true, "GOFLAGS": true}

// assignment matches a leading NAME=value word of a command.
var assignment = regexp.MustCompile(`^([A-Z_][A-Z0-9_]*)=`)

// envAndArgs splits a command's words into the variables it sets and the
// rest.
func envAndArgs(words []string) (env, args []string) {
	for i, w := range words {
		if !assignment.MatchString(w) {
			return words[:i], words[i:]
		}
	}
	return words, nil
}

// skipShort skips, in -short mode as every test of the package, a test
// that runs no node but runs go and the scripts.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs go and the scripts: skipped in -short mode")
	}
}

// TestDocGoTestCommands checks every go test command of the shell blocks
// of README.md and docs/ with checkGoTestCommands: none runs a test.
func TestDocGoTestCommands(t *testing.T) {
	skipShort(t)
	pages, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, page := range append(pages, filepath.Join(repoRoot, "README.md")) {
		rel, _ := filepath.Rel(repoRoot, page)
		for _, b := range docblocks.Load(t, repoRoot, rel) {
			if b.Lang == "sh" {
				checked += checkGoTestCommands(t, b.Text)
			}
		}
	}
	if checked < 7 {
		t.Errorf("checked %d go test commands in the pages' shell blocks; they have more", checked)
	}
}

// checkGoTestCommands checks each `go test` command of an sh block without
// running a test: go test accepts its flags and packages (go test -n, which
// builds nothing), every flag is one of go test's or the testing
// package's, or after -args one the package's tests define, each
// alternative of -run and -bench names a test or benchmark of the
// packages, and every variable the command sets is read by the module's
// code (as a string literal) or is Go's own. A line standing for others
// ("...") is left out. It returns how many commands it checked.
func checkGoTestCommands(t *testing.T, block string) int {
	t.Helper()
	known := knownTestFlags(t)
	checked := 0
	for _, line := range docblocks.Commands(block) {
		words := docblocks.Words(line)
		env, args := envAndArgs(words)
		if len(args) < 2 || args[0] != "go" || args[1] != "test" || slices.Contains(words, "...") {
			continue
		}
		checked++
		checkEnvNames(t, line, env)
		testArgs, binArgs, _ := cutWord(args[2:], "-args")
		flags, pkgs := goTestFlags(t, known, line, testArgs)
		checkBinaryFlags(t, line, binArgs, pkgs)
		for _, kind := range []string{"run", "bench"} {
			if re, ok := flags[kind]; ok && re != "^$" {
				checkTestNames(t, line, kind, re, pkgs)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-n"}, args[2:]...)...)
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: go test -n: %v\n%s", line, err, lastLines(string(out), 5))
		}
		cancel()
	}
	return checked
}

// cutWord splits words at the first sep.
func cutWord(words []string, sep string) (before, after []string, found bool) {
	for i, w := range words {
		if w == sep {
			return words[:i], words[i+1:], true
		}
	}
	return words, nil, false
}

// checkBinaryFlags checks the flags after -args, which go to the test
// binary: each must be defined in a test file of pkgs (a flag of the
// tests, named as a string literal).
func checkBinaryFlags(t *testing.T, line string, args, pkgs []string) {
	t.Helper()
	for _, a := range args {
		name, ok := strings.CutPrefix(a, "-")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, "=")
		found := false
		for _, p := range pkgs {
			files, _ := filepath.Glob(filepath.Join(repoRoot, p, "*_test.go"))
			for _, f := range files {
				b, err := os.ReadFile(f)
				found = found || (err == nil && strings.Contains(string(b), `"`+name+`"`))
			}
		}
		if !found {
			t.Errorf("%s: -args -%s: no test of %v defines the flag", line, name, pkgs)
		}
	}
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// boolTestFlags are the go test and build flags that take no value.
var boolTestFlags = map[string]bool{"v": true, "benchmem": true, "short": true, "race": true, "failfast": true, "json": true,
	"cover": true, "x": true, "n": true, "a": true, "trimpath": true}

// goTestFlags reads the flags of go test's arguments (each must be known:
// one of go test, its build or the testing package) and the packages.
func goTestFlags(t *testing.T, known map[string]bool, line string, args []string) (flags map[string]string, pkgs []string) {
	t.Helper()
	flags = map[string]string{}
	for i := 0; i < len(args); i++ {
		name, ok := strings.CutPrefix(args[i], "-")
		if !ok {
			pkgs = append(pkgs, args[i])
			continue
		}
		name, value, inline := strings.Cut(name, "=")
		if !known[name] {
			t.Errorf("%s: -%s is not a flag of go test", line, name)
		}
		if !inline && !boolTestFlags[name] && i+1 < len(args) {
			i++
			value = args[i]
		}
		flags[name] = value
	}
	if len(pkgs) == 0 {
		pkgs = []string{"."}
	}
	return flags, pkgs
}

// helpFlag matches a flag in go help's text.
var helpFlag = regexp.MustCompile(`(?m)^\t-([a-z][a-z.]*)`)

// knownTestFlags are the flags go help test, testflag and build list.
func knownTestFlags(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	for _, topic := range []string{"test", "testflag", "build"} {
		out, err := exec.Command("go", "help", topic).Output()
		if err != nil {
			t.Fatalf("go help %s: %v", topic, err)
		}
		for _, m := range helpFlag.FindAllStringSubmatch(string(out), -1) {
			known[strings.TrimPrefix(m[1], "test.")] = true
		}
	}
	return known
}

// checkTestNames checks that each alternative of the -run or -bench
// pattern re names a Test or Benchmark function of pkgs' test files.
func checkTestNames(t *testing.T, line, kind, re string, pkgs []string) {
	t.Helper()
	prefix := map[string]string{"run": "Test", "bench": "Benchmark"}[kind]
	var names []string
	for _, p := range pkgs {
		fs := testFuncs(t, filepath.Join(repoRoot, p), prefix)
		if fs == nil {
			t.Errorf("%s: package %s has no %s functions", line, p, prefix)
		}
		names = append(names, fs...)
	}
	for _, alt := range strings.Split(re, "|") {
		r, err := regexp.Compile(alt)
		if err != nil {
			t.Errorf("%s: -%s %q: %v", line, kind, re, err)
			continue
		}
		found := false
		for _, n := range names {
			found = found || r.MatchString(n)
		}
		if !found {
			t.Errorf("%s: -%s %q: no %s function of %v matches %q", line, kind, re, prefix, pkgs, alt)
		}
	}
}

// testFuncs lists the functions of dir's test files whose names start
// with prefix.
func testFuncs(t *testing.T, dir, prefix string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, prefix) {
				names = append(names, fn.Name.Name)
			}
		}
	}
	return names
}

// checkEnvNames checks that every variable a command sets (NAME=value
// words) is Go's own or read by the module's code.
func checkEnvNames(t *testing.T, line string, assignments []string) {
	t.Helper()
	for _, a := range assignments {
		name, _, _ := strings.Cut(a, "=")
		if !goOwnEnv[name] && !moduleHasLiteral(t, name) {
			t.Errorf("%s: no code of the module reads %s", line, name)
		}
	}
}

// pageTest says whether a Go file is a test of the pages.
func pageTest(base string) bool {
	return strings.HasSuffix(base, "_test.go") && (strings.Contains(base, "doc") || base == "readme_test.go")
}

// moduleHasLiteral says whether a Go file of the module holds s as a
// string literal ("s"). The tests of the pages are not asked: what they
// name, they have read from a page.
func moduleHasLiteral(t *testing.T, s string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil || found {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "run" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if base := d.Name(); strings.HasSuffix(base, ".go") && !pageTest(base) {
			b, err := os.ReadFile(path)
			found = err == nil && strings.Contains(string(b), `"`+s+`"`)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
