package rls

import (
	"strings"
	"testing"
)

// TestRoutingKey: descriptors that differ get different keys, even when
// the reference's "key_value" joining would make them equal; a
// share_threshold wildcard makes every matching value one key; long
// values are hashed into a bounded key.
func TestRoutingKey(t *testing.T) {
	c, err := Parse(File{"edge.yaml", []byte(fullConfig)})
	if err != nil {
		t.Fatal(err)
	}
	key := func(kv ...string) string {
		e := entriesOf(kv...)
		nodes := make([]*descNode, len(e))
		c.lookup("edge", e, nodes)
		return routingKey(nil, "edge", e, nodes)
	}
	if got, want := key("remote_address", "1.2.3.4"), "rls:4:edge|14:remote_address=7:1.2.3.4"; got != want {
		t.Errorf("key %q, want %q", got, want)
	}
	if a, b := key("a_b", "c"), key("a", "b_c"); a == b {
		t.Errorf("a_b=c and a=b_c share key %q", a)
	}
	if a, b := key("path", "/api/x"), key("path", "/api/y"); a != b || !strings.Contains(a, "=6:/api/*") {
		t.Errorf("share_threshold values have keys %q and %q, want one with the pattern", a, b)
	}
	if a, b := key("path", "/img/x.png"), key("path", "/img/y.png"); a == b {
		t.Errorf("a wildcard without share_threshold shares key %q", a)
	}
	long := strings.Repeat("v", 1<<20)
	k1, k2 := key("user", long), key("user", long+"w")
	if len(k1) != 128+1+64 || k1 == k2 {
		t.Errorf("1 MiB values give keys of %d bytes, equal %v; want %d bytes, different", len(k1), k1 == k2, 128+1+64)
	}
}

// TestMetricKey: the rule's path, the request's values with
// detailed_metric, and the wildcard pattern for a shared counter.
func TestMetricKey(t *testing.T) {
	c, err := Parse(File{"edge.yaml", []byte(fullConfig + `
  - key: tenant
    value_to_metric: true
    descriptors:
      - key: route
        rate_limit: {unit: second, requests_per_unit: 1}
`)})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		entries []string
		want    string
	}{
		{[]string{"remote_address", "1.2.3.4"}, "edge.remote_address"},
		{[]string{"user", "u1"}, "edge.user_u1"},
		{[]string{"path", "/api/v1"}, "edge.path_/api/*"},
		{[]string{"tenant", "acme", "route", "r1"}, "edge.tenant_acme.route"},
	}
	for _, tc := range cases {
		e := entriesOf(tc.entries...)
		nodes := make([]*descNode, len(e))
		r := c.lookup("edge", e, nodes)
		if r == nil {
			t.Fatalf("%v: no rule", tc.entries)
		}
		if got := metricKey(r, "edge", e, nodes); got != tc.want {
			t.Errorf("%v: metric key %q, want %q", tc.entries, got, tc.want)
		}
	}
}

// TestWildcardMatch covers prefix, suffix, middle and several stars.
func TestWildcardMatch(t *testing.T) {
	cases := []struct {
		pattern, value string
		want           bool
	}{
		{"foo*", "foo", true}, {"foo*", "foobar", true}, {"foo*", "fo", false},
		{"*", "", true}, {"bar*b", "barb", true}, {"bar*b", "bar", false}, {"bar*b", "barxxb", true},
		{"a*b*c", "abc", true}, {"a*b*c", "axbyc", true}, {"a*b*c", "acb", false}, {"a*a", "a", false},
	}
	for _, tc := range cases {
		if got := wildcardMatch(strings.Split(tc.pattern, "*"), tc.value); got != tc.want {
			t.Errorf("%q matches %q: %v, want %v", tc.pattern, tc.value, got, tc.want)
		}
	}
}

// TestMatch: a rule applies at a descriptor's last entry only; a key
// without a value matches any value the others do not.
func TestMatch(t *testing.T) {
	cfg := mustConfig(t, `domain: edge
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 1}
    descriptors:
      - key: plan
        value: gold
        rate_limit: {unit: minute, requests_per_unit: 10}
      - key: plan
        rate_limit: {unit: minute, requests_per_unit: 5}
`)
	for _, tc := range []struct {
		domain  string
		entries []string
		want    string
	}{
		{"edge", []string{"user", "bob", "plan", "silver"}, "edge.user.plan"},
		{"edge", []string{"user", "alice", "plan", "gold"}, "edge.user.plan_gold"},
		{"edge", []string{"user", "bob"}, "edge.user"},
		{"edge", []string{"plan", "gold"}, ""},
		{"other", []string{"user", "bob"}, ""},
	} {
		got := ""
		if r := cfg.Match(tc.domain, entriesOf(tc.entries...)); r != nil {
			got = r.Path
		}
		if got != tc.want {
			t.Errorf("Match(%s, %v): %q, want %q", tc.domain, tc.entries, got, tc.want)
		}
	}
}
