package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/fakecluster"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

// step is one request and what must come back.
type step struct {
	method, path, peer string
	header             []string
	code               int
	body               string            // exact, "" = not checked
	want               map[string]string // exact header values; "" = must be absent
}

// run serves the steps in order through e.
func run(t *testing.T, e http.Handler, steps []step) {
	t.Helper()
	for i, s := range steps {
		rec := testkit.Do(e, s.method, s.path, s.peer, s.header...)
		if rec.Code != s.code {
			t.Fatalf("step %d %s %s: status %d, want %d (body %s)", i, s.method, s.path, rec.Code, s.code, rec.Body)
		}
		if s.body != "" && rec.Body.String() != s.body {
			t.Fatalf("step %d %s %s: body %q, want %q", i, s.method, s.path, rec.Body, s.body)
		}
		for k, v := range s.want {
			if got := rec.Header().Get(k); got != v {
				t.Fatalf("step %d %s %s: header %s = %q, want %q", i, s.method, s.path, k, got, v)
			}
		}
	}
}

// repeat makes n copies of s.
func repeat(n int, s step) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// server builds an Echo server limited by policy on node, serving "ok" on
// the given method/path pairs.
func server(t *testing.T, lim httpapi.Cluster, cfg httpapi.Config, routes ...string) *echo.Echo {
	t.Helper()
	cfg.Cluster = lim
	mw, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.Use(mw.Handler)
	for i := 0; i+1 < len(routes); i += 2 {
		e.Add(routes[i], routes[i+1], ok)
	}
	return e
}

const denied = `{"error":"Too many requests. Please try again later.","limit":"%s","retry_after":%d}` + "\n"

func deny(limit string, retry int) string {
	return strings.Replace(strings.Replace(denied, "%s", limit, 1), "%d", itoa(retry), 1)
}

func itoa(n int) string {
	var b []byte
	if n == 0 {
		return "0"
	}
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

func TestDefaultsReplacedByRouteLimitsAppOnTop(t *testing.T) {
	n := fakecluster.New("defaults")
	e := server(t, n, httpapi.Config{Policy: httpapi.Policy{
		Default:     "3 per hour",
		Application: "7 per minute",
		Routes:      []httpapi.Route{{Method: "GET", Path: "/own", Limits: "4 per minute"}},
	}}, "GET", "/own", "GET", "/a", "GET", "/b")
	p := "192.0.2.10:1"
	var steps []step
	// /a has the default (3 per hour, its own counter) under the app limit.
	steps = append(steps,
		step{method: "GET", path: "/a", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "2", "RateLimit-Policy": `"default";q=3;w=3600`, "RateLimit": `"default";r=2;t=3600`}},
		step{method: "GET", path: "/a", peer: p, code: 200},
		step{method: "GET", path: "/a", peer: p, code: 200, want: map[string]string{"X-RateLimit-Remaining": "0"}},
		step{method: "GET", path: "/a", peer: p, code: 429, body: deny("3 per 1 hour", 3600), want: map[string]string{"Retry-After": "3600"}},
		// /b counts its own default (2 left; the app limit has 3).
		step{method: "GET", path: "/b", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "2"}},
		// /own replaces the default: 4 per minute, but the app limit (7,
		// 5 used) now has least remaining.
		step{method: "GET", path: "/own", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": "7", "X-RateLimit-Remaining": "2", "RateLimit-Policy": `"app";q=7;w=60`}},
		step{method: "GET", path: "/own", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": "7", "X-RateLimit-Remaining": "1"}},
		step{method: "GET", path: "/own", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": "7", "X-RateLimit-Remaining": "0"}},
		step{method: "GET", path: "/own", peer: p, code: 429, body: deny("7 per 1 minute", 60)},
		step{method: "GET", path: "/b", peer: p, code: 429, body: deny("7 per 1 minute", 60)},
	)
	run(t, e, steps)
	// Another client is untouched.
	run(t, e, []step{{method: "GET", path: "/own", peer: "192.0.2.11:1", code: 200, want: map[string]string{"X-RateLimit-Limit": "4", "X-RateLimit-Remaining": "3"}}})
}

func TestPerMethodSharedAndExempt(t *testing.T) {
	n := fakecluster.New("method")
	e := server(t, n, httpapi.Config{Policy: httpapi.Policy{
		Default: "100 per hour",
		Shared:  []httpapi.Shared{{Scope: "grp", Limits: "3 per minute"}},
		Routes: []httpapi.Route{
			{Method: "POST", Path: "/items", Limits: "1 per minute"},
			{Path: "/items", Limits: "2 per minute"}, // every other method, together
			{Method: "GET", Path: "/x", Shared: []string{"grp"}},
			{Method: "GET", Path: "/y", Shared: []string{"grp"}},
			{Method: "GET", Path: "/free", Exempt: true},
		},
	}}, "POST", "/items", "GET", "/items", "PUT", "/items", "GET", "/x", "GET", "/y", "GET", "/free")
	p := "192.0.2.20:1"
	steps := []step{
		{method: "POST", path: "/items", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": "1"}},
		{method: "POST", path: "/items", peer: p, code: 429, body: deny("1 per 1 minute", 60)},
		{method: "GET", path: "/items", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "1"}},
		{method: "PUT", path: "/items", peer: p, code: 200, want: map[string]string{"X-RateLimit-Remaining": "0"}},
		{method: "GET", path: "/items", peer: p, code: 429},
		{method: "GET", path: "/x", peer: p, code: 200, want: map[string]string{"RateLimit-Policy": `"grp";q=3;w=60`, "X-RateLimit-Remaining": "2"}},
		{method: "GET", path: "/y", peer: p, code: 200, want: map[string]string{"X-RateLimit-Remaining": "1"}},
		{method: "GET", path: "/x", peer: p, code: 200, want: map[string]string{"X-RateLimit-Remaining": "0"}},
		{method: "GET", path: "/y", peer: p, code: 429, body: deny("3 per 1 minute", 60)},
	}
	steps = append(steps, repeat(150, step{method: "GET", path: "/free", peer: p, code: 200, body: "ok",
		want: map[string]string{"X-RateLimit-Limit": "", "RateLimit": "", "Retry-After": ""}})...)
	run(t, e, steps)
}

func TestDynamicLimitsAndCost(t *testing.T) {
	n := fakecluster.New("dynamic")
	var logs testlog.Buffer
	e := server(t, n, httpapi.Config{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Policy: httpapi.Policy{
			Default: "1 per hour",
			Routes: []httpapi.Route{
				{Method: "GET", Path: "/dyn", Dynamic: func(r *http.Request) string {
					return map[string]string{"gold": "5 per minute", "free": "2 per minute", "bad": "2 per fortnight"}[r.URL.Query().Get("plan")]
				}},
				{Method: "GET", Path: "/tier", Limits: "1 per minute", Tiers: map[string]string{"pro": "3 per minute", "root": ""},
					Tier: func(r *http.Request) string { return r.Header.Get("X-Tier") }},
				{Method: "POST", Path: "/upload", Limits: "10 per minute", Cost: 4},
				{Method: "POST", Path: "/bulk", Limits: "10 per minute", CostFunc: func(r *http.Request) int64 { return int64(len(r.URL.Query().Get("n"))) }},
			},
		}}, "GET", "/dyn", "GET", "/tier", "POST", "/upload", "POST", "/bulk")
	p := "192.0.2.30:1"
	steps := []step{
		{method: "GET", path: "/dyn?plan=free", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "1"}},
		{method: "GET", path: "/dyn?plan=free", peer: p, code: 200},
		{method: "GET", path: "/dyn?plan=free", peer: p, code: 429, body: deny("2 per 1 minute", 60)},
		// Another limit string is another counter of the route.
		{method: "GET", path: "/dyn?plan=gold", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4"}},
		// "" is unlimited, and replaces the default: no headers.
		{method: "GET", path: "/dyn?plan=none", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": ""}},
		{method: "GET", path: "/dyn?plan=none", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": ""}},
		// A bad string is logged (once) and leaves the request unlimited.
		{method: "GET", path: "/dyn?plan=bad", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": ""}},
		{method: "GET", path: "/dyn?plan=bad", peer: p, code: 200},
		{method: "GET", path: "/tier", peer: p, header: []string{"X-Tier", "pro"}, code: 200, want: map[string]string{"X-RateLimit-Limit": "3"}},
		{method: "GET", path: "/tier", peer: p, header: []string{"X-Tier", "unknown"}, code: 200, want: map[string]string{"X-RateLimit-Limit": "1", "X-RateLimit-Remaining": "0"}},
		{method: "GET", path: "/tier", peer: p, code: 429, body: deny("1 per 1 minute", 60)},
		{method: "GET", path: "/tier", peer: p, header: []string{"X-Tier", "root"}, code: 200, want: map[string]string{"X-RateLimit-Limit": ""}},
		{method: "POST", path: "/upload", peer: p, code: 200, want: map[string]string{"X-RateLimit-Remaining": "6"}},
		{method: "POST", path: "/upload", peer: p, code: 200, want: map[string]string{"X-RateLimit-Remaining": "2"}},
		// A denied request costs nothing: remaining stays 2.
		{method: "POST", path: "/upload", peer: p, code: 429, want: map[string]string{"X-RateLimit-Remaining": "2", "Retry-After": "60"}},
		{method: "POST", path: "/bulk?n=xxxxxxx", peer: p, code: 200, want: map[string]string{"X-RateLimit-Remaining": "3"}},
		{method: "POST", path: "/bulk?n=xxxx", peer: p, code: 429, want: map[string]string{"X-RateLimit-Remaining": "3"}},
		{method: "POST", path: "/bulk?n=xxx", peer: p, code: 200, want: map[string]string{"X-RateLimit-Remaining": "0"}},
		// Cost 0 peeks.
		{method: "POST", path: "/bulk", peer: p, code: 200, want: map[string]string{"X-RateLimit-Remaining": "0"}},
	}
	run(t, e, steps)
	if got := strings.Count(logs.String(), "bad dynamic limit"); got != 1 {
		t.Fatalf("bad dynamic limit logged %d times, want 1:\n%s", got, logs.String())
	}
}

func TestStrategyPerRoute(t *testing.T) {
	n := fakecluster.New("strategy")
	e := server(t, n, httpapi.Config{Policy: httpapi.Policy{
		Strategy: "moving-window",
		Routes: []httpapi.Route{
			{Method: "GET", Path: "/tb", Limits: "2 per minute", Strategy: "token-bucket"},
			{Method: "GET", Path: "/mw", Limits: "2 per minute"},
		},
	}}, "GET", "/tb", "GET", "/mw")
	p := "192.0.2.40:1"
	run(t, e, []step{
		// A token bucket is whole again half a minute after one token.
		{method: "GET", path: "/tb", peer: p, code: 200, want: map[string]string{"RateLimit": `"route";r=1;t=30`}},
		{method: "GET", path: "/tb", peer: p, code: 200, want: map[string]string{"RateLimit": `"route";r=0;t=60`}},
		{method: "GET", path: "/tb", peer: p, code: 429, want: map[string]string{"Retry-After": "30"}},
		{method: "GET", path: "/mw", peer: p, code: 200, want: map[string]string{"RateLimit": `"route";r=1;t=60`}},
		{method: "GET", path: "/mw", peer: p, code: 200},
		{method: "GET", path: "/mw", peer: p, code: 429, want: map[string]string{"Retry-After": "60"}},
	})
}

func TestHeadersPickAndSwitch(t *testing.T) {
	n := fakecluster.New("headers")
	pol := httpapi.Policy{Routes: []httpapi.Route{{Method: "GET", Path: "/f", Limits: "3 per minute; 5 per hour"}}}
	e := server(t, n, httpapi.Config{Policy: pol}, "GET", "/f")
	p := "192.0.2.50:1"
	steps := []step{
		{method: "GET", path: "/f", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "2", "RateLimit-Policy": `"route-60";q=3;w=60`, "RateLimit": `"route-60";r=2;t=60`}},
		{method: "GET", path: "/f", peer: p, code: 200},
		{method: "GET", path: "/f", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0"}},
		// The minute denies: the headers describe it, though the hour has 2 left.
		{method: "GET", path: "/f", peer: p, code: 429, body: deny("3 per 1 minute", 60), want: map[string]string{"X-RateLimit-Limit": "3", "RateLimit-Policy": `"route-60";q=3;w=60`, "Retry-After": "60"}},
	}
	run(t, e, steps)

	for _, tc := range []struct {
		h    httpapi.Headers
		want map[string]string
	}{
		{httpapi.Headers{NoLegacy: true}, map[string]string{"X-RateLimit-Limit": "", "X-RateLimit-Reset": "", "Retry-After": "60", "RateLimit": `"route-60";r=0;t=60`}},
		{httpapi.Headers{NoRetryAfter: true}, map[string]string{"X-RateLimit-Limit": "3", "Retry-After": "", "RateLimit-Policy": `"route-60";q=3;w=60`}},
		{httpapi.Headers{NoDraft: true}, map[string]string{"X-RateLimit-Remaining": "0", "Retry-After": "60", "RateLimit": "", "RateLimit-Policy": ""}},
	} {
		e := server(t, n, httpapi.Config{Policy: pol, Headers: tc.h}, "GET", "/f")
		run(t, e, []step{{method: "GET", path: "/f", peer: p, code: 429, want: tc.want}})
	}
}

func TestParseHeaders(t *testing.T) {
	for in, want := range map[string]httpapi.Headers{
		"all":                      {},
		"legacy,retry-after,draft": {},
		"":                         {NoLegacy: true, NoRetryAfter: true, NoDraft: true},
		"none":                     {NoLegacy: true, NoRetryAfter: true, NoDraft: true},
		"draft":                    {NoLegacy: true, NoRetryAfter: true},
		" legacy , retry-after":    {NoDraft: true},
	} {
		got, err := httpapi.ParseHeaders(in)
		if err != nil || got != want {
			t.Errorf("ParseHeaders(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if _, err := httpapi.ParseHeaders("legacy,ietf"); err == nil || !strings.Contains(err.Error(), `"ietf"`) {
		t.Fatalf("ParseHeaders(legacy,ietf) error = %v", err)
	}
}

func TestCustomDenyHandler(t *testing.T) {
	n := fakecluster.New("deny")
	e := server(t, n, httpapi.Config{
		Policy: httpapi.Policy{Default: "1 per minute"},
		OnDeny: func(w http.ResponseWriter, _ *http.Request, d httpapi.Denial) {
			httpapi.WriteJSON(w, http.StatusTooManyRequests, map[string]string{"error": "Too many requests. Please try again later.", "limit": d.Limit.String()})
		},
	}, "GET", "/d")
	run(t, e, []step{
		{method: "GET", path: "/d", peer: "192.0.2.60:1", code: 200},
		{method: "GET", path: "/d", peer: "192.0.2.60:1", code: 429, body: `{"error":"Too many requests. Please try again later.","limit":"1 per 1 minute"}` + "\n", want: map[string]string{"Retry-After": "60"}},
	})
}

// failing is a Cluster whose every check fails with err, under the fail
// policy policy.
type failing struct {
	err    error
	policy ratemesh.FailPolicy
}

func (f failing) Check(context.Context, ratemesh.Request) (ratemesh.Result, error) {
	return ratemesh.Result{}, f.err
}

func (f failing) FailPolicy() ratemesh.FailPolicy { return f.policy }

// A check that fails is never a free pass: a full counter table, too many
// hits, a node that has not joined, an owner's error or a timeout get a
// 503 with Retry-After, unless the node's fail policy is open. (Before,
// every failure let the request through: filling a key's counter table
// through /v1/check switched its limits off.)
func TestCheckErrorRefusedUnlessFailOpen(t *testing.T) {
	full := &bucket.FullError{Bound: "MaxKeys", Max: 10}
	for _, tc := range []struct {
		name   string
		err    error
		policy ratemesh.FailPolicy
		code   int
	}{
		{"store-full", full, ratemesh.FailLocal, 503},
		{"too-many-counters", bucket.ErrTooManyCounters, ratemesh.FailLocal, 503},
		{"too-many-hits", bucket.ErrTooManyHits, ratemesh.FailClosed, 503},
		{"not-joined", ratemesh.ErrNotJoined, ratemesh.FailLocal, 503},
		{"timeout", context.DeadlineExceeded, ratemesh.FailClosed, 503},
		{"store-full-open", full, ratemesh.FailOpen, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			e := server(t, failing{tc.err, tc.policy}, httpapi.Config{Policy: httpapi.Policy{Default: "1 per minute"}, Registerer: reg}, "GET", "/c")
			st := step{method: "GET", path: "/c", peer: "192.0.2.71:1", code: tc.code, body: "ok"}
			if tc.code == 503 {
				st.body = `{"error":"rate limit check failed; try again later"}` + "\n"
				st.want = map[string]string{"Retry-After": "1"}
			}
			run(t, e, repeat(3, st))
			if got := counterValue(t, reg, "ratemesh_http_requests_total", "check_error"); got != 3 {
				t.Fatalf("check_error = %v, want 3", got)
			}
		})
	}
}

// counterValue reads one labelled counter from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

func TestPolicyErrors(t *testing.T) {
	tier := func(*http.Request) string { return "" }
	for _, tc := range []struct {
		p    httpapi.Policy
		want string
	}{
		{httpapi.Policy{Default: "5 per fortnight"}, `default: limits "5 per fortnight"`},
		{httpapi.Policy{Application: "many"}, `application: limits "many"`},
		{httpapi.Policy{Strategy: "leaky"}, `strategy "leaky"`},
		{httpapi.Policy{Routes: []httpapi.Route{{Path: "/a", Limits: "1/minute", Strategy: "nope"}}}, `route "/a": strategy "nope"`},
		{httpapi.Policy{Routes: []httpapi.Route{{Path: "/a", Shared: []string{"missing"}}}}, `route "/a": shared "missing" is not defined`},
		{httpapi.Policy{Routes: []httpapi.Route{{Method: "GET", Path: "/a"}, {Method: "get", Path: "/a"}}}, `route "GET /a": defined twice`},
		{httpapi.Policy{Routes: []httpapi.Route{{Path: "/a", Cost: -1}}}, `route "/a": cost -1 is negative`},
		{httpapi.Policy{Routes: []httpapi.Route{{Path: "/a", Tiers: map[string]string{"x": "1/minute"}}}}, `tiers need a Tier function`},
		{httpapi.Policy{Routes: []httpapi.Route{{Path: "/a", Tier: tier, Tiers: map[string]string{"x": "1 per eon"}}}}, `tier "x": limits "1 per eon"`},
		{httpapi.Policy{Routes: []httpapi.Route{{Path: "/a", Limits: "100000 per minute", Strategy: "moving-window"}}}, `route "/a": limits "100000 per minute"`},
		{httpapi.Policy{Shared: []httpapi.Shared{{Scope: "s", Limits: "1/minute"}, {Scope: "s", Limits: "2/minute"}}}, `shared "s": defined twice`},
		{httpapi.Policy{Routes: []httpapi.Route{{Limits: "1/minute"}}}, `path is empty`},
	} {
		err := tc.p.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error containing %q", tc.p, err, tc.want)
		}
		if _, err2 := httpapi.New(httpapi.Config{Cluster: failing{}, Policy: tc.p}); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("New and Validate disagree: %v vs %v", err2, err)
		}
	}
	if _, err := httpapi.New(httpapi.Config{}); err == nil {
		t.Fatal("New without a Cluster succeeded")
	}
}
