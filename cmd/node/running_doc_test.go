package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// flagDoc is a flag as --help describes it.
type flagDoc struct {
	env string
	def string // as --help prints it; "" when it prints none (a zero value)
}

var (
	helpFlag    = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)[^\n]*\n((?:    \t[^\n]*(?:\n|$))+)`)
	helpEnv     = regexp.MustCompile(`\(env (RATEMESH_[A-Z0-9_]+)\)`)
	helpDefault = regexp.MustCompile(`\(default "?(.*?)"?\)\s*$`)
)

// helpFlags reads every flag, its variable and its default from the usage
// the flag set itself prints.
func helpFlags(t *testing.T) map[string]flagDoc {
	t.Helper()
	var out bytes.Buffer
	if _, err := parseOptions([]string{"--help"}, func(string) string { return "" }, &out); err == nil {
		t.Fatal("--help did not stop")
	}
	flags := map[string]flagDoc{}
	for _, m := range helpFlag.FindAllStringSubmatch(out.String(), -1) {
		var d flagDoc
		if e := helpEnv.FindStringSubmatch(m[2]); e != nil {
			d.env = e[1]
		}
		if v := helpDefault.FindStringSubmatch(m[2]); v != nil {
			d.def = v[1]
		}
		flags[m[1]] = d
	}
	if len(flags) < 30 {
		t.Fatalf("read %d flags from --help:\n%s", len(flags), out.String())
	}
	return flags
}

// docRow is one flag of running.md's tables.
var docRow = regexp.MustCompile("(?m)^\\| (`--[^|]+)\\|([^|]*)\\|([^|]*)\\|")

// TestRunningDocListsEveryFlag: the tables of running.md's section Flags
// list every flag of the node and no other, each with its variable and, where the
// table gives a literal default, the flag's default.
func TestRunningDocListsEveryFlag(t *testing.T) {
	flags := helpFlags(t)
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "running.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Flags\n")
	if !ok {
		t.Fatal("running.md has no section ## Flags")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	seen := map[string]bool{}
	for _, row := range docRow.FindAllStringSubmatch(section, -1) {
		names, envs := ticked(row[1]), ticked(row[2])
		if len(names) != len(envs) {
			t.Errorf("running.md: row %s: %d flags, %d variables", row[1], len(names), len(envs))
			continue
		}
		for i, name := range names {
			name = strings.TrimPrefix(name, "--")
			f, ok := flags[name]
			switch {
			case !ok:
				t.Errorf("running.md: --%s is not a flag of the node", name)
			case seen[name]:
				t.Errorf("running.md: --%s is listed twice", name)
			case envs[i] != f.env:
				t.Errorf("running.md: --%s: variable %s, the flag's is %s", name, envs[i], f.env)
			case !sameDefault(strings.TrimSpace(row[3]), f.def):
				t.Errorf("running.md: --%s: default %s, the flag's is %q", name, strings.TrimSpace(row[3]), f.def)
			}
			seen[name] = true
		}
	}
	for name := range flags {
		if !seen[name] {
			t.Errorf("running.md: --%s (%s) is missing from the tables of flags", name, flags[name].env)
		}
	}
}

// ticked lists the `quoted` names of a table cell.
func ticked(cell string) []string {
	var out []string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// sameDefault compares a table's default with the flag's. Only a cell
// that is one literal (`10s`, `true`) is compared; prose such as "the RPC
// address" or a reference to another flag is not. Durations compare by
// value (`24h` is 24h0m0s); a flag without a printed default is false, 0
// or empty.
func sameDefault(cell, def string) bool {
	lit := ticked(cell)
	if len(lit) != 1 || cell != "`"+lit[0]+"`" || strings.HasPrefix(lit[0], "--") {
		return true
	}
	if def == "" {
		return lit[0] == "false" || lit[0] == "0"
	}
	if a, err := time.ParseDuration(lit[0]); err == nil {
		b, err := time.ParseDuration(def)
		return err == nil && a == b
	}
	return lit[0] == def
}
