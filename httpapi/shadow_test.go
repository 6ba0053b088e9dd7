package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/fakecluster"
)

// A shadow route under a flood answers only 200s, sends no rate-limit
// headers, and counts exactly the requests its limit would have denied,
// per route and limit; a debug request is told the verdict.
func TestShadowRouteAllowsAndCounts(t *testing.T) {
	n := fakecluster.New("shadow")
	reg := prometheus.NewRegistry()
	obs := &recorder{}
	e := server(t, n, httpapi.Config{Registerer: reg, Observer: obs, Policy: httpapi.Policy{
		Routes: []httpapi.Route{
			{Method: "GET", Path: "/new", Limits: "5 per minute", Shadow: true},
			{Method: "GET", Path: "/old", Limits: "5 per minute"},
		},
	}}, "GET", "/new", "GET", "/old")
	p := "192.0.2.90:1"
	noHeaders := map[string]string{"X-RateLimit-Limit": "", "RateLimit": "", "Retry-After": "", httpapi.HeaderShadow: ""}
	run(t, e, repeat(20, step{method: "GET", path: "/new", peer: p, code: 200, body: "ok", want: noHeaders}))
	run(t, e, []step{
		{method: "GET", path: "/new", peer: p, header: []string{httpapi.HeaderDebug, "1"}, code: 200,
			want: map[string]string{httpapi.HeaderShadow: `deny; limit="5 per 1 minute"; retry-after=60`}},
		{method: "GET", path: "/new", peer: "192.0.2.91:1", header: []string{httpapi.HeaderDebug, "1"}, code: 200,
			want: map[string]string{httpapi.HeaderShadow: "allow; remaining=4"}},
	})
	// The enforced route beside it still denies.
	run(t, e, append(repeat(5, step{method: "GET", path: "/old", peer: p, code: 200}),
		step{method: "GET", path: "/old", peer: p, code: 429}))
	if got := shadowDenials(t, reg, "GET /new", "5 per 1 minute"); got != 16 {
		t.Fatalf("shadow denials of GET /new = %v, want 16 (21 requests, 5 allowed)", got)
	}
	if got := counterValue(t, reg, "ratemesh_http_requests_total", "shadow_denied"); got != 16 {
		t.Fatalf("requests shadow_denied = %v, want 16", got)
	}
	if got := counterValue(t, reg, "ratemesh_http_requests_total", "denied"); got != 1 {
		t.Fatalf("requests denied = %v, want 1 (GET /old)", got)
	}
	// The observer was told the same: 11 allowed (5 + 1 on /new, 5 on
	// /old), 1 denied, 16 shadow denials of GET /new.
	obs.check(t, 11, []string{"ip:192.0.2.90|GET /old|5 per 1 minute"}, map[string]int{"GET /new|5 per 1 minute": 16})
}

// Policy.Shadow makes every limit a dry run, routes without an entry too.
func TestPolicyShadowCoversDefaults(t *testing.T) {
	n := fakecluster.New("shadow-all")
	reg := prometheus.NewRegistry()
	e := server(t, n, httpapi.Config{Registerer: reg, Policy: httpapi.Policy{
		Shadow:      true,
		Default:     "2 per minute",
		Application: "100 per minute",
		Routes:      []httpapi.Route{{Method: "GET", Path: "/own", Limits: "1 per minute"}},
	}}, "GET", "/own", "GET", "/other")
	p := "192.0.2.92:1"
	run(t, e, repeat(7, step{method: "GET", path: "/other", peer: p, code: http.StatusOK}))
	run(t, e, repeat(4, step{method: "GET", path: "/own", peer: p, code: http.StatusOK}))
	if got := shadowDenials(t, reg, "/other", "2 per 1 minute"); got != 5 {
		t.Fatalf("shadow denials of /other = %v, want 5", got)
	}
	if got := shadowDenials(t, reg, "GET /own", "1 per 1 minute"); got != 3 {
		t.Fatalf("shadow denials of GET /own = %v, want 3", got)
	}
}

// shadowDenials reads ratemesh_http_shadow_denials_total{route,limit}.
func shadowDenials(t *testing.T, reg *prometheus.Registry, route, limit string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ratemesh_http_shadow_denials_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["route"] == route && labels["limit"] == limit {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}
