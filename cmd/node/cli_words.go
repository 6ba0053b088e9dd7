package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/ratemesh/ratemesh/internal/suggest"
)

// What the first words of the command line mean before a subcommand runs:
// --version, the client flags that may come before the subcommand's name
// (`ratemesh-node --addr X members`), and a word that names no command,
// which is refused with the nearest command's name.

// cliFlag reports whether name is a flag every subcommand takes, which
// may come before the subcommand's name, and whether it has a value.
func cliFlag(name string) (known, hasValue bool) {
	switch name {
	case "addr", "token", "admin-token", "timeout", "format":
		return true, true
	case "json":
		return true, false
	}
	return false, false
}

// commandNames lists the subcommands, healthcheck included, sorted.
func commandNames() []string {
	names := []string{healthcheckCommand}
	for name := range cliCommands() {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// commandFirst moves a subcommand named after leading client flags to the
// front: ["--addr", "X", "members"] becomes ["members", "--addr", "X"].
// args are returned as they are when a leading flag is not a client flag
// (the command line of a node) or no word follows the flags.
func commandFirst(args []string) []string {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "-" && args[i] != "--" {
		name, _, inline := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		known, hasValue := cliFlag(name)
		switch {
		case !known:
			return args
		case hasValue && !inline:
			i += 2
		default:
			i++
		}
	}
	if i == 0 || i >= len(args) {
		return args
	}
	out := append([]string{args[i]}, args[:i]...)
	return append(out, args[i+1:]...)
}

// unknownCommand is the error for a first word that names no command.
func unknownCommand(word string) string {
	names := commandNames()
	msg := fmt.Sprintf("unknown command %q", word)
	if near := suggest.Nearest(word, names); near != "" {
		return msg + fmt.Sprintf("; did you mean %q?", near)
	}
	return msg + " (commands: " + strings.Join(names, ", ") + "; a node takes flags only)"
}

// isVersionFlag reports whether arg asks for the version.
func isVersionFlag(arg string) bool {
	return arg == "--version" || arg == "-version" || arg == "version"
}

// printVersion prints the binary's version line.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "ratemesh-node %s\n", binaryVersion(version, debug.ReadBuildInfo))
}

// binaryVersion is the version set at build time (-X main.version), else
// the module version Go recorded (go install ...@v1.2.3), else "dev" with
// the commit Go recorded from the checkout it was built in, if any.
func binaryVersion(set string, info func() (*debug.BuildInfo, bool)) string {
	if set != "" && set != "dev" {
		return set
	}
	bi, ok := info()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+modified"
	}
	return "dev (" + rev + ")"
}
