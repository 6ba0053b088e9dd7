package httpapi_test

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ratemesh/ratemesh/demo"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// writePolicy writes content to policy.yaml in a temporary directory.
func writePolicy(t *testing.T, content string) string {
	t.Helper()
	return testkit.WriteTemp(t, "policy.yaml", content)
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
	p, err := httpapi.LoadPolicy(file, base)
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
	if p, err := httpapi.LoadPolicy(writePolicy(t, "# nothing\n"), base); err != nil || p.Default != base.Default || len(p.Routes) != len(base.Routes) {
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
		_, err := httpapi.LoadPolicy(file, demo.Policy())
		if err == nil || !strings.HasPrefix(err.Error(), filepath.Dir(file)+"/") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.content, err, tc.want)
		}
	}
	var pathErr *fs.PathError
	if _, err := httpapi.LoadPolicy(filepath.Join(t.TempDir(), "missing.yaml"), demo.Policy()); !errors.As(err, &pathErr) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v, want the *fs.PathError naming it", err)
	}
}

// The policy file sets shadow (globally and per route), count_when and
// count_in_flight, and names the line of a bad value.
func TestLoadPolicyShadowAndCountWhen(t *testing.T) {
	file := writePolicy(t, `shadow: true
routes:
  - method: POST
    path: /login
    limits: "5 per minute"
    count_when: [401, 403]
    count_in_flight: 2
  - method: GET
    path: /products
    shadow: true
`)
	p, err := httpapi.LoadPolicy(file, demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	login := route(t, p, "POST", "/login")
	if !p.Shadow || !slices.Equal(login.CountStatuses, []int{401, 403}) || login.CountInFlight != 2 || login.Shadow {
		t.Fatalf("policy shadow %v, /login %+v", p.Shadow, login)
	}
	if !route(t, p, "GET", "/products").Shadow {
		t.Fatal("GET /products is not shadow")
	}
	for _, tc := range []struct{ content, want string }{
		{"shadow: maybe\n", ":1: shadow: want true or false"},
		{"routes:\n  - path: /login\n    count_when: [4010]\n", `:2: route "POST /login": count_when: status 4010 is not 100 to 599`},
		{"routes:\n  - path: /login\n    count_in_flight: -1\n", `:2: route "POST /login": count_in_flight -1 is negative`},
	} {
		_, err := httpapi.LoadPolicy(writePolicy(t, tc.content), demo.Policy())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%q: error %v, want it to contain %s", tc.content, err, tc.want)
		}
	}
}

// An error in a document is a *PolicyError with its name and line, the
// same whether the document came from a file or from memory; the base
// policy comes back unchanged.
func TestParsePolicyErrorIsTyped(t *testing.T) {
	base := httpapi.Policy{Default: "1 per minute"}
	p, err := httpapi.ParsePolicy("inline", []byte("default: \"2 per minute\"\nroutes:\n  - path: /a\n    cost: -1\n"), base)
	var pe *httpapi.PolicyError
	if !errors.As(err, &pe) || pe.File != "inline" || pe.Line != 4 || pe.Msg != `cost "-1": -1 is negative` || err.Error() != `inline:4: cost "-1": -1 is negative` {
		t.Fatalf("error %#v (%v), want a *PolicyError at inline:4 saying the cost is negative", err, err)
	}
	if p.Default != "1 per minute" || len(p.Routes) != 0 {
		t.Fatalf("policy after the error: %+v, want the base", p)
	}
	p, err = httpapi.ParsePolicy("inline", []byte("default: \"2 per minute\"\n"), base)
	if err != nil || p.Default != "2 per minute" || base.Default != "1 per minute" {
		t.Fatalf("good document: %+v, %v; base %+v", p, err, base)
	}
}
