package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// The first argument decides what the binary is; a client command may
// follow client flags, and a node's flags are passed on as given.
func TestModeOf(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		mode     mode
		wantArgs []string
	}{
		{nil, modeNode, nil},
		{[]string{"--nodes", "3"}, modeNode, []string{"--nodes", "3"}},
		{[]string{"--name", "members"}, modeNode, []string{"--name", "members"}},
		{[]string{"--help"}, modeNode, []string{"--help"}},
		{[]string{"--version"}, modeVersion, []string{"--version"}},
		{[]string{"-version"}, modeVersion, []string{"-version"}},
		{[]string{"version"}, modeVersion, []string{"version"}},
		{[]string{"healthcheck", "--timeout", "1s"}, modeHealthcheck, []string{"healthcheck", "--timeout", "1s"}},
		{[]string{"members", "--addr", "127.0.0.1:1"}, modeClient, []string{"members", "--addr", "127.0.0.1:1"}},
		{[]string{"--addr", "127.0.0.1:1", "owner", "k"}, modeClient, []string{"owner", "--addr", "127.0.0.1:1", "k"}},
		{[]string{"--json", "top"}, modeClient, []string{"top", "--json"}},
		{[]string{"serve"}, modeUnknown, []string{"serve"}},
		{[]string{"--addr", "127.0.0.1:1", "ownr"}, modeUnknown, []string{"ownr", "--addr", "127.0.0.1:1"}},
	} {
		m, args := modeOf(tc.args)
		if m != tc.mode || !slices.Equal(args, tc.wantArgs) {
			t.Errorf("modeOf(%q) = %d, %q; want %d, %q", tc.args, m, args, tc.mode, tc.wantArgs)
		}
	}
}

// dispatch runs each mode and returns its exit code: the version, a
// health check with bad flags, an unknown command, a node asked for help.
func TestDispatch(t *testing.T) {
	env := func(string) string { return "" }
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string // prefix
		stderr string // substring
	}{
		{[]string{"--version"}, 0, "ratemesh-node ", ""},
		{[]string{"healthcheck", "--no-such-flag"}, 2, "", "flag provided but not defined: -no-such-flag"},
		{[]string{"serve"}, 2, "", `ratemesh-node: unknown command "serve"`},
		{[]string{"--help"}, 0, "", "Usage:"},
		{[]string{"members", "--no-such-flag"}, 2, "", "flag provided but not defined"},
	} {
		var out, errs bytes.Buffer
		code := dispatch(tc.args, env, &out, &errs)
		if code != tc.code || !strings.HasPrefix(out.String(), tc.stdout) || !strings.Contains(errs.String(), tc.stderr) {
			t.Errorf("dispatch(%q): exit %d, stdout %q, stderr %.200q; want %d, %q…, …%q…", tc.args, code, out.String(), errs.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
}
