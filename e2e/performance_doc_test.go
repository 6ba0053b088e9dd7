//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/docblocks"
)

// perfPage is the page of the benchmarks.
const perfPage = "docs/performance.md"

var (
	// inlineCode is a code span of a page's prose.
	inlineCode = regexp.MustCompile("`([^`]+)`")
	// commandSpan is a command of the page: go test or a script of the
	// repository, after the variables it sets.
	commandSpan = regexp.MustCompile(`^(?:[A-Z_0-9]+=\S+ )*(?:go test |\./scripts/)`)
)

// perfCommands lists the commands of docs/performance.md: every line of its
// sh blocks and every code span of its prose that is a command.
func perfCommands(t *testing.T) (blockLines, inline []string) {
	t.Helper()
	for _, b := range docblocks.Load(t, repoRoot, perfPage) {
		for _, m := range inlineCode.FindAllStringSubmatch(b.Before, -1) {
			// A span may go on over a line break, which Markdown reads as a space.
			if span := strings.Join(strings.Fields(m[1]), " "); commandSpan.MatchString(span) {
				inline = append(inline, span)
			}
		}
		if b.Lang == "sh" {
			blockLines = append(blockLines, docblocks.Commands(b.Text)...)
		}
	}
	return blockLines, inline
}

// TestPerformanceDocCommands checks every command of docs/performance.md
// without running a benchmark: the machine is shared, and a benchmark's
// figures are the page's, not a test's. A go test command is checked by
// checkGoTestCommands (those of the blocks by TestDocGoTestCommands, with
// every page's); a script must exist and parse (bash -n), read every
// variable the command sets (or pass it to the nodes, a variable of
// theirs), and know the scenarios a command names. The scripts whose
// work is go test (scale.sh, bench.sh go) run with a go that writes down
// how it was called, and those calls are checked as go test commands. A
// line standing for others ("...") only has its variables checked. The
// quick look, run for real, is TestPerformanceDocQuickLook.
func TestPerformanceDocCommands(t *testing.T) {
	skipShort(t)
	blockLines, inline := perfCommands(t)
	var goTests []string      // of the page, and those the scripts run
	seen := map[string]bool{} // the table repeats commands of the blocks
	for i, line := range append(blockLines, inline...) {
		if seen[line] {
			continue
		}
		seen[line] = true
		env, args := envAndArgs(docblocks.Words(line))
		switch {
		case len(args) > 0 && args[0] == "...":
			checkEnvNames(t, line, env)
		case len(args) > 1 && args[0] == "go" && args[1] == "test":
			if i >= len(blockLines) { // TestDocGoTestCommands checks the blocks'
				goTests = append(goTests, line)
			}
		case len(args) > 0 && strings.HasPrefix(args[0], "./scripts/"):
			goTests = append(goTests, checkScriptCommand(t, line, env, args)...)
		default:
			t.Errorf("%s: %q is a command TestPerformanceDocCommands does not check: give it a check", perfPage, line)
		}
	}
	checked := checkGoTestCommands(t, strings.Join(goTests, "\n"))
	if len(blockLines) < 9 || len(inline) < 12 || len(seen) < 15 || checked < 8 {
		t.Errorf("%s: checked %d go test commands and %d in all, of %d block lines and %d in the prose; the page has more: update this test with the page",
			perfPage, checked, len(seen), len(blockLines), len(inline))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", filepath.Join(repoRoot, "scripts", "costcentres.py"), "1.0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("scripts/costcentres.py on no samples: %v\n%s", err, out)
	}
}

// checkScriptCommand checks a command that runs a script of the
// repository (env: the variables it sets; args: the script and its
// arguments). It returns the go test commands the script runs, if its
// work is go test.
func checkScriptCommand(t *testing.T, line string, env, args []string) []string {
	t.Helper()
	script := filepath.Join(repoRoot, args[0])
	text, err := os.ReadFile(script)
	if err != nil {
		t.Errorf("%s: %v", line, err)
		return nil
	}
	lib, err := os.ReadFile(filepath.Join(repoRoot, "scripts", "lib.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Errorf("%s: bash -n: %v\n%s", line, err, out)
	}
	for _, a := range env {
		name, value, _ := strings.Cut(a, "=")
		read := regexp.MustCompile(`\$\{?` + name + `\b`)
		switch {
		case read.Match(text) || read.Match(lib):
		case strings.HasPrefix(name, "RATEMESH_") && moduleHasLiteral(t, name):
			// The nodes read it from the environment the script passes on.
		default:
			t.Errorf("%s: %s reads no %s", line, args[0], name)
		}
		if name == "SCENARIOS" {
			checkScenarios(t, line, string(text), value)
		}
	}
	if args[0] == "./scripts/scale.sh" || (args[0] == "./scripts/bench.sh" && len(args) > 1 && args[1] == "go") {
		return goCalls(t, line)
	}
	return nil
}

// scenarioList is the list of scenarios bench.sh gives when it refuses one.
var scenarioList = regexp.MustCompile(`unknown scenario '\$name' \(want: ([^)]*)\)`)

// checkScenarios checks that bench.sh knows every scenario of SCENARIOS.
func checkScenarios(t *testing.T, line, script, scenarios string) {
	t.Helper()
	m := scenarioList.FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("%s: the script lists no scenarios", line)
	}
	known := strings.Fields(m[1])
	for _, s := range strings.Fields(scenarios) {
		if !slices.Contains(known, s) {
			t.Errorf("%s: no scenario %q (the script knows %v)", line, s, known)
		}
	}
}

// goCalls runs a script's command with a go that writes down each call
// (the node's RATEMESH_ variables it was given, then its arguments, quoted)
// and prints "ok", and returns the calls as command lines.
func goCalls(t *testing.T, line string) []string {
	t.Helper()
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	writeFile(t, filepath.Join(dir, "go"), fmt.Sprintf(`#!/bin/bash
{
	env | grep '^RATEMESH_' | sort | tr '\n' ' '
	printf 'go'
	for a in "$@"; do printf " '%%s'" "$a"; done
	echo
} >>%s
echo ok
`, calls))
	if err := os.Chmod(filepath.Join(dir, "go"), 0o755); err != nil {
		t.Fatal(err)
	}
	runScript(t, repoRoot, fmt.Sprintf("PATH=%s:$PATH\n%s", dir, line))
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatalf("%s called no go: %v", line, err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// reportRow is a row of bench.sh's table: scenario, nodes, threads and
// connections, req/s, p50, p99, 2xx, 429, errors.
var reportRow = regexp.MustCompile(`(?m)^(\S+) +\d+ +\d+/\d+ +(\d+) +\d+ +\d+ +\d+ +\d+ +(\d+) `)

// TestPerformanceDocQuickLook runs the quick look of docs/performance.md,
// the one benchmark command of the page short enough for a test (a second
// of load for each of four scenarios), as written, with one wrk thread and
// three connections (variables the command leaves to their defaults) to
// keep the shared machine's load low. Every scenario it names must report
// requests served and no errors.
func TestPerformanceDocQuickLook(t *testing.T) {
	nodeBinary(t)
	for _, c := range []string{"wrk", "curl"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s is not installed: the quick look of %s is not run", c, perfPage)
		}
	}
	blockLines, _ := perfCommands(t)
	var quick string
	for _, l := range blockLines {
		if strings.Contains(l, "DURATION=1s") {
			quick = l
		}
	}
	env, _ := envAndArgs(docblocks.Words(quick))
	var scenarios []string
	for _, a := range env {
		if v, ok := strings.CutPrefix(a, "SCENARIOS="); ok {
			scenarios = strings.Fields(v)
		}
	}
	if len(scenarios) == 0 || len(scenarios) > 4 {
		t.Fatalf("%s: the quick look (%q) names %d scenarios, want 1 to 4 (a test runs it)", perfPage, quick, len(scenarios))
	}
	out := runScript(t, repoRoot, "export THREADS=1 CONNS=3\n"+quick)
	rows := map[string][]string{}
	for _, m := range reportRow.FindAllStringSubmatch(out, -1) {
		rows[m[1]] = m
	}
	for _, s := range scenarios {
		m := rows[s]
		if m == nil {
			t.Errorf("%s: the quick look reports no %s:\n%s", perfPage, s, out)
			continue
		}
		if rps, _ := strconv.Atoi(m[2]); rps == 0 || m[3] != "0" {
			t.Errorf("%s: the quick look's %s: %s req/s and %s errors:\n%s", perfPage, s, m[2], m[3], out)
		}
	}
}
