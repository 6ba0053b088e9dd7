package rls

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

// TestParseRefuses has one case per rule of the format: each names the
// file, the line, the descriptor path and what is wrong.
func TestParseRefuses(t *testing.T) {
	const head = "domain: d\ndescriptors:\n"
	cases := []struct {
		name, yaml, want string
	}{
		{"not YAML", "domain: d\ndescriptors: [\n", "f.yaml:2: error loading config file: yaml: did not find expected node content"},
		// The parser itself says "line 3" for these.
		{"unclosed flow mapping", head + "  - key: plan\n    rate_limit: {unit: minute, requests_per_unit: 2\n  - key: other\n",
			"f.yaml:4: error loading config file: yaml: did not find expected ',' or '}'"},
		{"unclosed quote", head + "  - key: plan\n    value: \"x\n  - key: other\n", "f.yaml:4: error loading config file: yaml: found unexpected end of stream"},
		{"indented too little", head + "  - key: plan\n   value: x\n", "f.yaml:4: error loading config file: yaml: did not find expected '-' indicator"},
		{"tab", head + "  - key: plan\n\tvalue: x\n", "f.yaml:4: error loading config file: yaml: found a tab character that violates indentation"},
		{"nested indented too little", head + "  - key: plan\n    rate_limit:\n      unit: minute\n     requests_per_unit: 2\n",
			"f.yaml:6: error loading config file: yaml: did not find expected key"},
		{"empty file", "", "f.yaml: config file cannot have empty domain (the file is empty)"},
		{"empty domain", "domain: ''\n", "f.yaml:1: config file cannot have empty domain"},
		{"no domain", "descriptors: []\n", "f.yaml:1: config file cannot have empty domain"},
		{"top level a list", "- domain: d\n", "f.yaml:1: the file must be a mapping with domain and descriptors, found a list"},
		{"two documents", "domain: a\n---\ndomain: b\n", "f.yaml:2: more than one YAML document in the file; put each domain in a file of its own"},
		{"empty key", head + "  - value: v\n", "f.yaml:3: d.descriptors[0]: descriptor has empty key"},
		{"duplicate key", head + "  - key: k\n    value: v\n  - key: k\n    value: v\n",
			"f.yaml:5: d.k_v: duplicate descriptor composite key 'd.k_v'"},
		{"duplicate nested key", head + "  - key: a\n    descriptors:\n      - key: b\n      - key: b\n",
			"f.yaml:6: d.a.b: duplicate descriptor composite key 'd.a.b'"},
		{"unknown top key", "domain: d\ndescriptor: []\n",
			"f.yaml:2: config error, unknown key 'descriptor' (expected one of: domain, descriptors)"},
		{"unknown descriptor key", head + "  - key: k\n    ratelimit: {unit: second}\n",
			"f.yaml:4: d.descriptors[0]: config error, unknown key 'ratelimit' (expected one of: " + sectionKeys(sectionDescriptor) + ")"},
		{"unknown rate_limit key", head + "  - key: k\n    rate_limit:\n      unit: day\n      requestsperunit: 5\n",
			"f.yaml:6: d.k: config error, unknown key 'requestsperunit' (expected one of: requests_per_unit, unit, unlimited, name, replaces)"},
		{"key at the wrong depth", head + "  - key: k\n    unit: day\n",
			"f.yaml:4: d.descriptors[0]: config error, unknown key 'unit' (expected one of: " + sectionKeys(sectionDescriptor) + ")"},
		{"unknown replaces key", head + "  - key: k\n    rate_limit: {unit: day, replaces: [{nam: x}]}\n",
			"f.yaml:4: d.k: config error, unknown key 'nam' (expected one of: name)"},
		{"non-string key", "0.25: d\n", "f.yaml:1: config error, key is not of type string: \"0.25\""},
		{"list of non-maps", head + "  - a\n  - b\n", "f.yaml:3: d: config error, descriptors[0] must be a mapping, found \"a\""},
		{"descriptors not a list", head + "  key: k\n", "f.yaml:3: d: descriptors must be a list, found a mapping"},
		{"bad unit", head + "  - key: k\n    rate_limit: {unit: foo, requests_per_unit: 1}\n",
			"f.yaml:4: d.k: invalid rate limit unit 'foo'; expected second, minute, hour, day, week, month or year"},
		{"no unit", head + "  - key: k\n    rate_limit: {requests_per_unit: 1}\n",
			"f.yaml:4: d.k: rate_limit has no unit; expected second, minute, hour, day, week, month or year (or unlimited: true)"},
		{"unlimited with unit", head + "  - key: k\n    rate_limit:\n      unlimited: true\n      unit: day\n",
			"f.yaml:6: d.k: should not specify rate limit unit when unlimited (found unit 'day')"},
		{"replaces itself", head + "  - key: k\n    rate_limit: {name: me, unit: day, replaces: [{name: me}]}\n",
			"f.yaml:4: d.k: replaces should not contain name of same descriptor (\"me\")"},
		{"replaces nothing", head + "  - key: k\n    rate_limit: {name: me, unit: day, replaces: [{name: }]}\n",
			"f.yaml:4: d.k: should not have an empty replaces entry"},
		{"share_threshold without wildcard", head + "  - key: k\n    value: v\n    share_threshold: true\n",
			"f.yaml:3: d.k_v: share_threshold can only be used with wildcard values (containing '*'), but found key 'd.k_v'"},
		{"negative requests_per_unit", head + "  - key: k\n    rate_limit: {unit: day, requests_per_unit: -1}\n",
			"f.yaml:4: d.k: requests_per_unit must be a whole number from 0 to 4294967295, found \"-1\""},
		{"requests_per_unit over 32 bits", head + "  - key: k\n    rate_limit: {unit: day, requests_per_unit: 4294967296}\n",
			"f.yaml:4: d.k: requests_per_unit must be a whole number from 0 to 4294967295, found \"4294967296\""},
		{"requests_per_unit a word", head + "  - key: k\n    rate_limit: {unit: day, requests_per_unit: five}\n",
			"f.yaml:4: d.k: requests_per_unit must be a whole number from 0 to 4294967295, found \"five\""},
		{"flag not a boolean", head + "  - key: k\n    shadow_mode: yes\n",
			"f.yaml:4: d.k: shadow_mode must be true or false, found \"yes\""},
		{"rate_limit a scalar", head + "  - key: k\n    rate_limit: 5/second\n", "f.yaml:4: d.k: rate_limit must be a mapping, found a scalar"},
		{"key a list", head + "  - key: [a]\n", "f.yaml:3: d.descriptors[0]: key must be a string, found a list"},
		{"repeated YAML key", "domain: a\ndomain: b\n", "f.yaml:2: config error, key 'domain' appears twice (first at line 1)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(File{Name: "f.yaml", Data: []byte(tc.yaml)})
			if err == nil {
				t.Fatalf("accepted, with rules %v", c.Rules())
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v, want *ConfigError", err, err)
			}
			if err.Error() != tc.want {
				t.Fatalf("error\n%s\nwant\n%s", err, tc.want)
			}
		})
	}
}

// TestParseRefusesDuplicateDomain: two files of one domain are refused,
// naming both.
func TestParseRefusesDuplicateDomain(t *testing.T) {
	_, err := Parse(File{"a.yaml", []byte("domain: d\n")}, File{"b.yaml", []byte("domain: e\n")}, File{"c.yaml", []byte("domain: d\n")})
	want := "c.yaml: duplicate domain 'd' in config file (already in a.yaml)"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}
}

// TestParseAliasBomb: aliases that would expand to 2^40 descriptors are
// refused once 4 nodes per byte of the file have been read.
func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("domain: d\ndescriptors:\n  - key: k0\n    descriptors: &a0 [{key: z}]\n")
	for i := 1; i <= 40; i++ {
		p := "*a" + strconv.Itoa(i-1)
		b.WriteString("  - key: k" + strconv.Itoa(i) + "\n    descriptors: &a" + strconv.Itoa(i) +
			" [{key: x, descriptors: " + p + "}, {key: y, descriptors: " + p + "}]\n")
	}
	_, err := Parse(File{"bomb.yaml", []byte(b.String())})
	want := "aliases expand the file to more than " + strconv.Itoa(nodeBudget(b.Len())) + " YAML nodes"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want the node budget", err)
	}
}

const fullConfig = `
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: remote_address
    value: 10.0.0.1
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: remote_address
    value: 10.0.0.2          # whitelisted: no limit
  - key: path
    value: /api/*
    share_threshold: true
    rate_limit: {unit: hour, requests_per_unit: 100}
  - key: path
    value: /img/*.png
    rate_limit: {unit: day, requests_per_unit: 5}
  - key: user
    detailed_metric: true
    rate_limit: {unit: week, requests_per_unit: 7, name: per_user}
    descriptors:
      - key: plan
        value: gold
        shadow_mode: true
        quota_mode: true
        rate_limit: {unit: month, requests_per_unit: 1000, replaces: [{name: per_user}]}
  - key: free
    rate_limit: {unlimited: true}
  - key: yearly
    metadata: {owner: {team: edge}}
    rate_limit: {unit: YEAR, requests_per_unit: 0}
`

// TestParseFullConfig loads every feature of the format and checks what
// each descriptor matches.
func TestParseFullConfig(t *testing.T) {
	c, err := Parse(File{"edge.yaml", []byte(fullConfig)})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		entries []string // key, value pairs
		want    string   // the rule's /rlconfig line, "" for none
	}{
		{[]string{"remote_address", "1.2.3.4"}, "edge.remote_address: unit=SECOND requests_per_unit=10, shadow_mode: false, quota_mode: false"},
		{[]string{"remote_address", "10.0.0.1"}, "edge.remote_address_10.0.0.1: unit=MINUTE requests_per_unit=3, shadow_mode: false, quota_mode: false"},
		{[]string{"remote_address", "10.0.0.2"}, ""},
		{[]string{"path", "/api/v1/users"}, "edge.path_/api/*: unit=HOUR requests_per_unit=100, shadow_mode: false, quota_mode: false"},
		{[]string{"path", "/img/a/b.png"}, "edge.path_/img/*.png: unit=DAY requests_per_unit=5, shadow_mode: false, quota_mode: false"},
		{[]string{"path", "/img/a/b.jpg"}, ""},
		{[]string{"path", "/ap"}, ""},
		{[]string{"user", "u1"}, "edge.user: unit=WEEK requests_per_unit=7, shadow_mode: false, quota_mode: false, name: \"per_user\""},
		{[]string{"user", "u1", "plan", "gold"}, "edge.user.plan_gold: unit=MONTH requests_per_unit=1000, shadow_mode: true, quota_mode: true, replaces: per_user"},
		{[]string{"user", "u1", "plan", "silver"}, ""},
		{[]string{"user", "u1", "plan", "gold", "extra", "x"}, ""},
		{[]string{"free", "x"}, "edge.free: unlimited, shadow_mode: false, quota_mode: false"},
		{[]string{"yearly", "x"}, "edge.yearly: unit=YEAR requests_per_unit=0, shadow_mode: false, quota_mode: false"},
		{[]string{"remote_address", "1.2.3.4", "more", "x"}, ""},
		{[]string{"unknown", "x"}, ""},
	}
	for _, tc := range cases {
		entries := entriesOf(tc.entries...)
		r := c.lookup("edge", entries, make([]*descNode, len(entries)))
		got := ""
		if r != nil {
			got = r.String()
		}
		if got != tc.want {
			t.Errorf("%v: rule %q, want %q", tc.entries, got, tc.want)
		}
	}
	if r := c.lookup("other", entriesOf("remote_address", "x"), make([]*descNode, 1)); r != nil {
		t.Errorf("unknown domain matched %v", r)
	}
	if got := len(strings.Split(strings.TrimSpace(c.Dump()), "\n")); got != 8 {
		t.Errorf("Dump has %d lines, want 8:\n%s", got, c.Dump())
	}
}

// TestUnitPeriods: a month is 30 days and a year 365, as in the
// reference.
func TestUnitPeriods(t *testing.T) {
	want := map[pb.RateLimitResponse_RateLimit_Unit]int64{
		pb.RateLimitResponse_RateLimit_SECOND: 1, pb.RateLimitResponse_RateLimit_MINUTE: 60,
		pb.RateLimitResponse_RateLimit_HOUR: 3600, pb.RateLimitResponse_RateLimit_DAY: 86400,
		pb.RateLimitResponse_RateLimit_WEEK: 7 * 86400, pb.RateLimitResponse_RateLimit_MONTH: 30 * 86400,
		pb.RateLimitResponse_RateLimit_YEAR: 365 * 86400,
	}
	for u, secs := range want {
		p, ok := unitPeriod(u)
		if !ok || int64(p.Seconds()) != secs {
			t.Errorf("%v: %v, want %ds", u, p, secs)
		}
	}
	if _, ok := unitPeriod(pb.RateLimitResponse_RateLimit_UNKNOWN); ok {
		t.Error("UNKNOWN has a period")
	}
}

// TestLoadPathDirectory: a directory's *.yaml and *.yml files are the
// config; dot files, other extensions and subdirectories are skipped.
func TestLoadPathDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yaml", "domain: a\n")
	write(t, dir, "b.yml", "domain: b\n")
	write(t, dir, ".hidden.yaml", "not: [yaml")
	write(t, dir, "README.md", "# notes")
	os.Mkdir(filepath.Join(dir, "..data"), 0o755)
	os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755)
	c, err := LoadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Domains(), ","); got != "a,b" {
		t.Fatalf("domains %s, want a,b", got)
	}
}

// TestLoadPathRefuses: unreadable inputs fail with the file named, and
// never block (a FIFO is not opened).
func TestLoadPathRefuses(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	dangling := filepath.Join(dir, "dangling")
	os.Mkdir(dangling, 0o755)
	os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dangling, "x.yaml"))
	fifo := filepath.Join(dir, "fifo")
	os.Mkdir(fifo, 0o755)
	if err := syscall.Mkfifo(filepath.Join(fifo, "x.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ path, want string }{
		{filepath.Join(dir, "missing"), filepath.Join(dir, "missing") + ": cannot read: no such file or directory"},
		{empty, empty + ": the directory has no .yaml or .yml files"},
		{dangling, filepath.Join(dangling, "x.yaml") + ": cannot read: no such file or directory"},
		{fifo, filepath.Join(fifo, "x.yaml") + ": not a regular file (p---------)"},
		{filepath.Join(fifo, "x.yaml"), filepath.Join(fifo, "x.yaml") + ": not a regular file (p---------)"},
	}
	for _, tc := range cases {
		_, err := LoadPath(tc.path)
		if err == nil || err.Error() != tc.want {
			t.Errorf("LoadPath(%s): %v, want %s", tc.path, err, tc.want)
		}
	}
}

func write(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
