package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
	"go.uber.org/goleak"
)

// threeNodes runs --nodes 3 on port 0 until the test ends and returns
// their HTTP addresses once all three see each other.
func threeNodes(t *testing.T, args ...string) []string {
	t.Helper()
	// Registered first, so it runs after the other cleanups.
	t.Cleanup(func() { goleak.VerifyNone(t, clustertest.LeakOptions()...) })
	file := filepath.Join(t.TempDir(), "addrs.json")
	var logs testlog.Buffer
	stop := serveInBackground(t, append([]string{"--nodes", "3", "--name", "cli", "--gossip-port", "0", "--rpc-port", "0",
		"--http-port", "0", "--gossip-profile", "local", "--addr-file", file}, args...), &logs)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	testkit.Eventually(t, 15*time.Second, "the address file", func() bool {
		_, err := os.Stat(file)
		return err == nil
	})
	var addrs []string
	for _, n := range readAddrFile(t, file).Nodes {
		addrs = append(addrs, n.HTTP)
	}
	token := ""
	for i, a := range args {
		if a == "--api-token" && i+1 < len(args) {
			token = args[i+1]
		}
	}
	for _, a := range addrs {
		testkit.Eventually(t, 15*time.Second, a+" sees 3 live members", func() bool {
			out, code := cli(t, "members", "--addr", a, "--token", token)
			return code == 0 && strings.Count(out, " alive ") == 3
		})
	}
	return addrs
}

// cli runs the binary's command line and returns what it printed and its
// exit code.
func cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errs bytes.Buffer
	if m, _ := modeOf(args); m == modeNode {
		t.Fatalf("%q is not a subcommand", args)
	}
	code := dispatch(args, func(string) string { return "" }, &out, &errs)
	return out.String() + errs.String(), code
}

// flood sends n requests of key to GET /products, round robin over addrs.
func flood(t *testing.T, addrs []string, key string, n int) (codes []int) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	for i := range n {
		code, _, _ := get(t, c, "GET", "http://"+addrs[i%len(addrs)]+"/products", "X-API-KEY", key)
		codes = append(codes, code)
	}
	return codes
}

// After a flood of apikey:alice over three nodes (8 requests, "5 per
// minute"), `limits --key` shows her spent quota on its owner and `top`
// her 3 denials, merged from the three nodes that each saw one.
func TestCLILimitsAndTopAfterFlood(t *testing.T) {
	testkit.SkipInShort(t, "a node and its CLI for seconds")
	addrs := threeNodes(t, "--admin-token", "admin-0123456789abcdef")
	if got := fmt.Sprint(flood(t, addrs, "alice", 8)); got != "[200 200 200 200 200 429 429 429]" {
		t.Fatalf("flood answers %s, want 5×200 then 3×429", got)
	}
	out, code := cli(t, "limits", "--key", "apikey:alice", "--addr", addrs[0])
	if code != 0 || !regexp.MustCompile(`(?m)^GET /products +5 per 1 minute +fixed-window +0 +in (5[0-9]s|1m[01]s) `).MatchString(out) ||
		!regexp.MustCompile(`(?m)^POST /login +5 per 1 minute +fixed-window +5 `).MatchString(out) {
		t.Fatalf("limits --key apikey:alice (exit %d):\n%s", code, out)
	}
	// Without a token the key is hidden: each node (no --secret) hashes
	// it its own way, so the three denials are three rows of one. A
	// node's stats are built at most once a second: a view of the moment
	// before the flood may be shown until then.
	hashedRow := regexp.MustCompile(`(?m)^#[0-9a-f]{12} +1 +5 per 1 minute +GET /products +in `)
	testkit.Eventually(t, 5*time.Second, "top without a token shows three hashed rows of 1", func() bool {
		out, code = cli(t, "top", "--addr", addrs[1])
		return code == 0 && !strings.Contains(out, "alice") && len(hashedRow.FindAllString(out, -1)) == 3
	}, &out)
	testkit.Eventually(t, 5*time.Second, "top with the admin token shows alice's 3 denials", func() bool {
		out, code = cli(t, "top", "--admin-token", "admin-0123456789abcdef", "--addr", addrs[1])
		return code == 0 && regexp.MustCompile(`(?m)^apikey:alice +3 +5 per 1 minute +GET /products +in `).MatchString(out) && strings.Contains(out, "(3 nodes)")
	}, &out)
	out, code = cli(t, "top", "--json", "--node", "--admin-token", "admin-0123456789abcdef", "--addr", addrs[2])
	var top struct {
		Cluster []nodeapi.TopKey `json:"cluster"`
		Nodes   []nodeTop        `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &top); err != nil || code != 0 {
		t.Fatalf("top --json (exit %d): %v\n%s", code, err, out)
	}
	if len(top.Cluster) != 1 || top.Cluster[0].Key != "apikey:alice" || top.Cluster[0].Count != 3 || len(top.Nodes) != 3 {
		t.Fatalf("top --json: %+v", top)
	}
	for _, n := range top.Nodes {
		if len(n.Top) != 1 || n.Top[0].Count != 1 {
			t.Fatalf("node %s's top %+v, want alice once", n.Node, n.Top)
		}
	}
	// reset needs the admin token, and then alice passes again.
	if out, code := cli(t, "reset", "apikey:alice", "--addr", addrs[0]); code != 1 || !strings.Contains(out, "--admin-token") {
		t.Fatalf("reset without token (exit %d): %s", code, out)
	}
	if out, code := cli(t, "reset", "apikey:alice", "--admin-token", "admin-wrong-0123456789", "--addr", addrs[0]); code != 1 ||
		out != "ratemesh-node reset: 401 Unauthorized: admin token wrong: it is not this node's admin token\n" {
		t.Fatalf("reset with a wrong token (exit %d): %q", code, out)
	}
	if out, code := cli(t, "reset", "apikey:alice", "--admin-token", "admin-0123456789abcdef", "--addr", addrs[0]); code != 0 || out != "apikey:alice reset on every member (asked cli-0)\n" {
		t.Fatalf("reset (exit %d): %q", code, out)
	}
	if codes := flood(t, addrs, "alice", 1); codes[0] != 200 {
		t.Fatalf("after reset: %v", codes)
	}
}

// With --api-token, the CLI needs the token for /v1/stats and /v1/limits
// too, and the node asked passes it on to the others for their stats.
func TestCLIWithAPIToken(t *testing.T) {
	testkit.SkipInShort(t, "a node and its CLI for seconds")
	addrs := threeNodes(t, "--api-token", tokenA)
	if out, code := cli(t, "top", "--addr", addrs[0]); code != 1 || !strings.Contains(out, "401 Unauthorized") {
		t.Fatalf("top without a token: exit %d, %s", code, out)
	}
	flood(t, addrs, "bob", 7)
	var out string
	var code int
	testkit.Eventually(t, 5*time.Second, "top with the token shows bob's 2 denials", func() bool {
		out, code = cli(t, "top", "--node", "--token", tokenA, "--addr", addrs[0])
		return code == 0 && !strings.Contains(out, "no answer") && regexp.MustCompile(`(?m)^apikey:bob +2 +5 per 1 minute `).MatchString(out)
	}, &out)
	if out, code := cli(t, "limits", "--key", "apikey:bob", "--token", tokenA, "--addr", addrs[2]); code != 0 || !regexp.MustCompile(`(?m)^GET /products +5 per 1 minute +fixed-window +0 `).MatchString(out) {
		t.Fatalf("limits with the token (exit %d):\n%s", code, out)
	}
}

// members, owner and check print what the API says, as tables or JSON.
func TestCLIMembersOwnerCheck(t *testing.T) {
	testkit.SkipInShort(t, "a node and its CLI for seconds")
	addrs := threeNodes(t)
	out, code := cli(t, "members", "--json", "--addr", addrs[0])
	var ms []nodeapi.MemberStats
	if err := json.Unmarshal([]byte(out), &ms); err != nil || code != 0 || len(ms) != 3 {
		t.Fatalf("members --json (exit %d): %v\n%s", code, err, out)
	}
	share := 0.0
	for _, m := range ms {
		share += m.RingShare
	}
	if share < 0.999 || share > 1.001 {
		t.Fatalf("ring shares sum to %v, want 1", share)
	}
	out, code = cli(t, "owner", "check|user:42", "--json", "--addr", addrs[1])
	var o nodeapi.OwnerResponse
	if err := json.Unmarshal([]byte(out), &o); err != nil || code != 0 || o.Owner.Name == "" {
		t.Fatalf("owner (exit %d): %v\n%s", code, err, out)
	}
	for i, want := range []string{"allowed", "allowed", "denied"} {
		out, code = cli(t, "check", "user:42", "2 per minute", "--addr", addrs[i])
		if code != 0 || !strings.HasPrefix(out, "user:42 "+want+" by "+o.Owner.Name+"\n") {
			t.Fatalf("check %d (exit %d):\n%s", i, code, out)
		}
	}
	// A peek at the spent key is not "allowed": it says what the next hit
	// would get.
	out, code = cli(t, "check", "user:42", "2 per minute", "--cost", "0", "--addr", addrs[0])
	if code != 0 || !strings.HasPrefix(out, "user:42 peeked at by "+o.Owner.Name+" (cost 0, nothing counted): the next hit would be denied\n") ||
		!regexp.MustCompile(`(?m)^2 per 1 minute +0 `).MatchString(out) {
		t.Fatalf("check --cost 0 (exit %d):\n%s", code, out)
	}
	out, _ = cli(t, "check", "user:43", "2 per minute", "--cost", "0", "--addr", addrs[0])
	if !strings.Contains(out, " (cost 0, nothing counted): the next hit would be allowed\n") || !regexp.MustCompile(`(?m)^2 per 1 minute +2 `).MatchString(out) {
		t.Fatalf("check --cost 0 of a fresh key:\n%s", out)
	}
	// The client flags may come before the command.
	if out, code = cli(t, "--addr", addrs[2], "--json", "members"); code != 0 || json.Unmarshal([]byte(out), &ms) != nil || len(ms) != 3 {
		t.Fatalf("--addr X --json members (exit %d):\n%s", code, out)
	}
	// --format reads the JSON without jq: the scripts count live members so.
	if out, code = cli(t, "members", "--addr", addrs[1], "--format", `{{range .}}{{if eq .state "alive"}}.{{end}}{{end}}`); code != 0 || out != "..." {
		t.Fatalf("members --format (exit %d): %q", code, out)
	}
	if out, code = cli(t, "owner", "check|user:42", "--addr", addrs[1], "--format", "{{.owner.name}}"); code != 0 || out != o.Owner.Name {
		t.Fatalf("owner --format (exit %d): %q, want %q", code, out, o.Owner.Name)
	}
	// These nodes have no admin token: reset says the endpoint is off.
	out, code = cli(t, "reset", "user:42", "--admin-token", "some-admin-token-0123", "--addr", addrs[0])
	if want := "ratemesh-node reset: the admin endpoint of " + addrs[0] + " is off: the node was started without --admin-token (RATEMESH_ADMIN_TOKEN), which reset needs\n"; code != 1 || out != want {
		t.Fatalf("reset on a node without an admin token (exit %d): %q, want %q", code, out, want)
	}
}

// TestHelpNamesEveryCommand: the usage of --help, which docs/running.md
// runs, names every command of the binary.
func TestHelpNamesEveryCommand(t *testing.T) {
	var out bytes.Buffer
	parseOptions([]string{"--help"}, func(string) string { return "" }, &out)
	usage, _, _ := strings.Cut(out.String(), "\n\n")
	for name := range cliCommands() {
		if !regexp.MustCompile(`(?m)^ +ratemesh-node (\S+\|)*` + name + `[| ]`).MatchString(usage) {
			t.Errorf("--help does not name %s:\n%s", name, usage)
		}
	}
}

// Usage errors exit 2 with a message; words that are not subcommands, and
// flags alone, leave the binary to run a node as before.
func TestCLIUsage(t *testing.T) {
	for _, args := range [][]string{{"owner"}, {"check", "k"}, {"members", "--addr", "nohost"}, {"top", "extra"}} {
		if out, code := cli(t, args...); code != 2 || !strings.Contains(out, "ratemesh-node "+args[0]+": ") {
			t.Fatalf("%q: exit %d, %s", args, code, out)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"memebrs"}, "ratemesh-node: unknown command \"memebrs\"; did you mean \"members\"?\n"},
		{[]string{"--addr", "127.0.0.1:1", "ownr", "k"}, "ratemesh-node: unknown command \"ownr\"; did you mean \"owner\"?\n"},
		{[]string{"helthcheck"}, "ratemesh-node: unknown command \"helthcheck\"; did you mean \"healthcheck\"?\n"},
		{[]string{"serve"}, "ratemesh-node: unknown command \"serve\" (commands: check, healthcheck, json, limits, members, owner, reset, top; a node takes flags only)\n"},
	} {
		if out, code := cli(t, tc.args...); code != 2 || out != tc.want {
			t.Errorf("%q: exit %d, %q, want %q", tc.args, code, out, tc.want)
		}
	}
	for _, args := range [][]string{nil, {"--nodes", "3"}, {"--help"}, {"--name", "members"}, {"--bind", "0.0.0.0"}} {
		if m, _ := modeOf(args); m != modeNode {
			t.Fatalf("%q would run as mode %d, not a node", args, m)
		}
	}
	var help bytes.Buffer
	if _, err := parseOptions([]string{"--help"}, func(string) string { return "" }, &help); !strings.Contains(help.String(), "\n       ratemesh-node healthcheck [--url URL]\n       ratemesh-node --version\n") {
		t.Fatalf("--help (%v) lacks healthcheck and --version:\n%s", err, help.String())
	}
	env := map[string]string{"RATEMESH_BIND": "0.0.0.0", "RATEMESH_HTTP_PORT": "9000"}
	if got := localHTTPAddr(func(k string) string { return env[k] }); got != "127.0.0.1:9000" {
		t.Fatalf("local address %q", got)
	}
	if out, code := cli(t, "members", "--addr", "127.0.0.1:1"); code != 1 || !strings.Contains(out, "connection refused") {
		t.Fatalf("no node: exit %d, %s", code, out)
	}
}

// --version prints one line: the version set at build time, else the
// module's, else dev and the commit the binary was built from.
func TestCLIVersion(t *testing.T) {
	for _, arg := range []string{"--version", "-version", "version"} {
		out, code := cli(t, arg)
		if code != 0 || !regexp.MustCompile(`^ratemesh-node dev( \([0-9a-f]{1,12}(\+modified)?\))?\n$`).MatchString(out) {
			t.Fatalf("%s: exit %d, %q", arg, code, out)
		}
	}
	info := func(v string, settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Version: v}, Settings: settings}, true
		}
	}
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "0123456789abcdef0123"}
	for _, tc := range []struct {
		set  string
		info func() (*debug.BuildInfo, bool)
		want string
	}{
		{"v1.4.0", info("v1.3.0"), "v1.4.0"},
		{"dev", info("v1.3.0"), "v1.3.0"},
		{"dev", info("(devel)", rev), "dev (0123456789ab)"},
		{"dev", info("(devel)", rev, debug.BuildSetting{Key: "vcs.modified", Value: "true"}), "dev (0123456789ab+modified)"},
		{"dev", info("(devel)"), "dev"},
		{"", func() (*debug.BuildInfo, bool) { return nil, false }, "dev"},
	} {
		if got := binaryVersion(tc.set, tc.info); got != tc.want {
			t.Errorf("binaryVersion(%q): %q, want %q", tc.set, got, tc.want)
		}
	}
}

// json FILE prints a JSON file through --format (the scripts read
// --addr-file so), or indented without it; errors name the file.
func TestCLIJSONFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "addrs.json")
	os.WriteFile(file, []byte(`{"pid":4242042,"nodes":[{"name":"a","http":"127.0.0.1:8081"},{"name":"b","http":"127.0.0.1:8082"}]}`), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"json", file, "--format", "{{.pid}}"}, 0, "4242042"},
		{[]string{"json", file, "--format", `{{range .nodes}}{{.http}}{{"\n"}}{{end}}`}, 0, "127.0.0.1:8081\n127.0.0.1:8082\n"},
		{[]string{"json", file}, 0, "{\n  \"pid\": 4242042,\n  \"nodes\": [\n    {\n      \"name\": \"a\",\n      \"http\": \"127.0.0.1:8081\"\n    },\n    {\n      \"name\": \"b\",\n      \"http\": \"127.0.0.1:8082\"\n    }\n  ]\n}\n"},
		{[]string{"json", file, "--format", "{{.port}}"}, 1, "ratemesh-node json: " + file + `: --format: template: --format:1:2: executing "--format" at <.port>: map has no entry for key "port"` + "\n"},
		{[]string{"json", file, "--format", "{{.pid"}, 2, "ratemesh-node json: --format: template: --format:1: unclosed action\n"},
		{[]string{"json", filepath.Join(filepath.Dir(file), "none.json")}, 1, "ratemesh-node json: open " + filepath.Join(filepath.Dir(file), "none.json") + ": no such file or directory\n"},
	} {
		if out, code := cli(t, tc.args...); code != tc.code || out != tc.want {
			t.Errorf("%q: exit %d, %q, want %d, %q", tc.args, code, out, tc.code, tc.want)
		}
	}
}
