package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ratemesh/ratemesh/demo"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

// writePolicy writes content to policy.yaml in a temporary directory.
func writePolicy(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// route finds a route of p.
func route(t *testing.T, p httpapi.Policy, method, path string) httpapi.Route {
	t.Helper()
	for _, r := range p.Routes {
		if r.Method == method && r.Path == path {
			return r
		}
	}
	t.Fatalf("no route %s %s in %+v", method, path, p.Routes)
	return httpapi.Route{}
}

func TestLoadPolicyOverrides(t *testing.T) {
	file := writePolicy(t, `# overrides of the tutorial's policy
default: "50 per hour"
application: "1000 per minute"
strategy: sliding-window-counter
shared:
  - scope: products
    limits: "30 per minute"
  - scope: search
    limits: "3/second"
    strategy: token-bucket
routes:
  - method: get
    path: /products
    limits: "7 per minute"
    strategy: moving-window
  - method: GET
    path: /rb-products
    tiers: {admin: "200 per minute"}
  - path: /search
    shared: [search]
    cost: 2
  - path: /health
    exempt: false
`)
	base := demo.Policy()
	p, err := loadPolicy(file, base)
	if err != nil {
		t.Fatal(err)
	}
	if p.Default != "50 per hour" || p.Application != "1000 per minute" || p.Strategy != "sliding-window-counter" {
		t.Fatalf("top level: %+v", p)
	}
	if len(p.Shared) != 2 || p.Shared[0] != (httpapi.Shared{Scope: "products", Limits: "30 per minute"}) || p.Shared[1] != (httpapi.Shared{Scope: "search", Limits: "3/second", Strategy: "token-bucket"}) {
		t.Fatalf("shared: %+v", p.Shared)
	}
	if r := route(t, p, "GET", "/products"); r.Limits != "7 per minute" || r.Strategy != "moving-window" {
		t.Fatalf("/products: %+v", r)
	}
	if r := route(t, p, "GET", "/rb-products"); r.Limits != "10 per minute" || len(r.Tiers) != 1 || r.Tiers["admin"] != "200 per minute" {
		t.Fatalf("/rb-products: %+v", r)
	}
	if r := route(t, p, "", "/search"); len(r.Shared) != 1 || r.Shared[0] != "search" || r.Cost != 2 {
		t.Fatalf("/search: %+v", r)
	}
	if r := route(t, p, "GET", "/health"); r.Exempt {
		t.Fatalf("/health still exempt")
	}
	if len(p.Routes) != len(base.Routes)+1 {
		t.Fatalf("%d routes, want the tutorial's and /search", len(p.Routes))
	}
	if r := route(t, p, "GET", "/flash-sale"); r.Limits != "10 per minute; 200 per day" {
		t.Fatalf("/flash-sale changed: %+v", r)
	}
	// The base policy is not modified.
	if base.Default != "100 per hour" || route(t, base, "GET", "/products").Limits != "5 per minute" || !route(t, base, "GET", "/health").Exempt {
		t.Fatalf("base modified: %+v", base)
	}
	if p, err := loadPolicy(writePolicy(t, "# nothing\n"), base); err != nil || p.Default != base.Default || len(p.Routes) != len(base.Routes) {
		t.Fatalf("empty file: %+v, %v", p, err)
	}
}

func TestLoadPolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		content, want string
	}{
		{`default: "5 per fortnight"`, `policy.yaml:1: default "5 per fortnight": `},
		{"application: 10/minute\nstrategy: leaky\n", `policy.yaml:2: strategy "leaky": `},
		{"routes:\n  - path: /products\n    method: GET\n    limits: \"ten per minute\"\n", `policy.yaml:4: limits "ten per minute": `},
		{"routes:\n  - path: /products\n    limit: \"5/minute\"\n", `policy.yaml:3: unknown key "limit"`},
		{"routes:\n  - method: GET\n    path: /rb-products\n    tiers:\n      pro: \"x per y\"\n", `policy.yaml:5: tiers.pro "x per y": `},
		{"routes:\n  - path: /a\n    shared: [nope]\n", `policy.yaml:2: route "/a": shared "nope" is not defined`},
		{"routes:\n  - path: /a\n    limits: \"100000 per minute\"\n    strategy: moving-window\n", `policy.yaml:2: route "/a": limits "100000 per minute"`},
		{"routes:\n  - path: /a\n    cost: -3\n", `policy.yaml:3: cost "-3": -3 is negative`},
		{"routes:\n  - path: /a\n    cost: lots\n", `policy.yaml:3: cost "lots": `},
		{"routes:\n  - method: GET\n    limits: \"1/minute\"\n", `policy.yaml:2: route: path is missing`},
		{"shared:\n  - limits: \"1/minute\"\n", `policy.yaml:2: shared item: scope is missing`},
		{"shared:\n  - scope: s\n    limits: \"1 per blue moon\"\n", `policy.yaml:3: limits "1 per blue moon"`},
		{"routes: /products\n", `policy.yaml:1: routes: want a list`},
		{"default: [1, 2]\n", `policy.yaml:1: default: want a string`},
		{"- 1\n- 2\n", `policy.yaml:1: policy: want a mapping`},
		{"default: \"1/minute\n", `/policy.yaml:1: yaml: found unexpected end of stream`},
		{"routes:\n  - method: GET\n    path: /products\n    tiers: {free: \"1/minute\"\n  - path: /login\n", `/policy.yaml:4: yaml: did not find expected ',' or '}'`},
		{"strategy: moving-window\ndefault: \"100000 per hour\"\n", `policy.yaml:2: default: limits "100000 per hour"`},
		{"routes:\n  - method: GETT\n    path: /products\n", `/policy.yaml:2: method "GETT": not an HTTP method (want GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, CONNECT, TRACE); did you mean "GET"?`},
		{"routes:\n  - method: FETCH\n    path: /products\n", `/policy.yaml:2: method "FETCH": not an HTTP method (want GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, CONNECT, TRACE)`},
		{"routes:\n  - method: GET\n    path: /products\n    limits: \"5/minute\"\n  - path: /login\n  - method: get\n    path: /products\n    limits: \"6/minute\"\n",
			`/policy.yaml:6: route GET /products is given twice, at lines 2 and 6: merge the two entries`},
		{"routes:\n  - path: /a\n  - path: /a\n    exempt: true\n", `/policy.yaml:3: route /a (every method) is given twice, at lines 2 and 3: merge the two entries`},
	} {
		file := writePolicy(t, tc.content)
		_, err := loadPolicy(file, demo.Policy())
		if err == nil || !strings.HasPrefix(err.Error(), filepath.Dir(file)+"/") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.content, err, tc.want)
		}
	}
	if _, err := loadPolicy(filepath.Join(t.TempDir(), "missing.yaml"), demo.Policy()); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// A route of the policy that matches no route of the demo is loaded (the
// file is valid) but said at start: it limits nothing.
func TestUnservedPolicyRouteWarns(t *testing.T) {
	n := startedNode(t)
	h := &httpOptions{demo: true, jwtSecret: "js", headers: "all", policyFile: writePolicy(t,
		"routes:\n  - method: GET\n    path: /prodcts\n    limits: \"5/minute\"\n  - method: DELETE\n    path: /products\n    limits: \"1/minute\"\n  - path: /login\n    limits: \"3/minute\"\n")}
	var logs testlog.Buffer
	if _, _, err := h.handler(n, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: dropTime}))); err != nil {
		t.Fatal(err)
	}
	want := `level=WARN msg="a route of the policy matches no route the node serves: it limits nothing; did you mean \"/products\"?" route="GET /prodcts"` + "\n" +
		`level=WARN msg="a route of the policy matches no route the node serves: it limits nothing" route="DELETE /products"` + "\n"
	if got := logs.String(); got != want {
		t.Fatalf("log:\n%s\nwant:\n%s", got, want)
	}
}
