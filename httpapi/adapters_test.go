package httpapi_test

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/httpapi/jwtauth"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/fakecluster"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

func TestNetHTTPMiddleware(t *testing.T) {
	n := clustertest.StartNode(t, "nethttp", nil)
	mw, err := httpapi.New(httpapi.Config{Cluster: n, Policy: httpapi.Policy{
		Default: "3 per minute",
		Routes: []httpapi.Route{
			{Path: "GET /items/{id}", Limits: "2 per minute"},
			{Path: "GET /health", Exempt: true},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello " + r.PathValue("id"))) })
	mux := http.NewServeMux()
	mux.Handle("GET /items/{id}", mw.HTTP(hello))
	mux.Handle("GET /health", mw.HTTP(hello))
	p := "192.0.2.80:1"
	steps := []step{
		{method: "GET", path: "/items/1", peer: p, code: 200, body: "hello 1", want: map[string]string{"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "1", "RateLimit": `"route";r=1;t=60`}},
		{method: "GET", path: "/items/2", peer: p, code: 200, want: map[string]string{"X-RateLimit-Remaining": "0"}},
		{method: "GET", path: "/items/3", peer: p, code: 429, body: deny("2 per 1 minute", 60), want: map[string]string{"Retry-After": "60"}},
	}
	steps = append(steps, repeat(5, step{method: "GET", path: "/health", peer: p, code: 200, want: map[string]string{"X-RateLimit-Limit": ""}})...)
	run(t, mux, steps)

	// Around the whole mux there is no pattern: the default applies.
	all := mw.HTTP(mux)
	run(t, all, []step{
		{method: "GET", path: "/nothing", peer: "192.0.2.81:1", code: 404, want: map[string]string{"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "2"}},
		{method: "GET", path: "/health", peer: "192.0.2.81:1", code: 200, want: map[string]string{"X-RateLimit-Remaining": "1"}},
	})
}

// echoStore is Echo's middleware.RateLimiterStore, spelled out so that the
// test needs no extra module.
type echoStore interface {
	Allow(identifier string) (bool, error)
}

func TestRateLimiterStore(t *testing.T) {
	nodes := clustertest.StartNamed(t, 3)
	stores := make([]echoStore, len(nodes))
	for i, n := range nodes {
		stores[i] = httpapi.NewRateLimiterStore(n, bucket.Limit{Amount: 4, Period: time.Minute})
	}
	var got []bool
	for i := 0; i < 6; i++ {
		ok, err := stores[i%3].Allow("198.51.100.7")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ok)
	}
	if want := []bool{true, true, true, true, false, false}; !testkit.EqualJSON(got, want) {
		t.Fatalf("allowed %v, want %v across the cluster", got, want)
	}
	if ok, err := stores[0].Allow("198.51.100.8"); !ok || err != nil {
		t.Fatalf("another visitor: %v %v", ok, err)
	}
	bad := httpapi.NewRateLimiterStore(nodes[0], bucket.Limit{Amount: 1, Period: 0})
	if ok, err := bad.Allow("x"); ok || err == nil {
		t.Fatalf("a bad limit: %v %v", ok, err)
	}
	closed := clustertest.StartNode(t, "store-closed", nil)
	closed.Close(t.Context())
	if ok, err := httpapi.NewRateLimiterStore(closed, bucket.Limit{Amount: 1, Period: time.Minute}).Allow("x"); ok || !errors.Is(err, ratemesh.ErrClosed) {
		t.Fatalf("a failing cluster must refuse the request (fail policy local): %v %v", ok, err)
	}
	open := clustertest.StartNode(t, "store-open", func(c *ratemesh.Config) { c.FailPolicy = ratemesh.FailOpen })
	open.Close(t.Context())
	if ok, err := httpapi.NewRateLimiterStore(open, bucket.Limit{Amount: 1, Period: time.Minute}).Allow("x"); !ok || err != nil {
		t.Fatalf("a failing cluster with fail policy open lets the request through: %v %v", ok, err)
	}
}

// alikePolicy exercises every path of the middleware: defaults, own,
// shared and exempt routes, dynamic limits, tiers from token claims,
// costs and key errors.
func alikePolicy(jwtKey httpapi.KeyFunc) httpapi.Policy {
	return httpapi.Policy{
		Default:     "3 per hour",
		Application: "40 per minute",
		Shared:      []httpapi.Shared{{Scope: "grp", Limits: "3 per minute"}},
		Routes: []httpapi.Route{
			{Method: "GET", Path: "/own", Limits: "2 per minute; 5 per hour"},
			{Method: "GET", Path: "/x", Shared: []string{"grp"}},
			{Method: "GET", Path: "/y", Shared: []string{"grp"}},
			{Method: "GET", Path: "/free", Exempt: true},
			{Method: "GET", Path: "/dyn", Dynamic: func(r *http.Request) string {
				return map[string]string{"gold": "3 per minute", "free": "1 per minute"}[r.URL.Query().Get("plan")]
			}},
			{Method: "GET", Path: "/orders", Key: jwtKey, Limits: "1 per minute", Tiers: map[string]string{"paid": "2 per minute"},
				Tier: func(r *http.Request) string { return jwtauth.ClaimString(r.Context(), "tier") }},
			{Method: "POST", Path: "/cost", Limits: "5 per minute", CostFunc: func(r *http.Request) int64 { return int64(len(r.URL.Query().Get("n"))) }},
			{Method: "GET", Path: "/strict", Limits: "9 per minute", Key: httpapi.APIKey("X-API-KEY", nil)},
		},
	}
}

// TestAdaptersAnswerAlike serves the same requests through the Echo and the
// net/http adapters, each on its own node with the same frozen clock, and
// requires the same status, headers and body from both.
func TestAdaptersAnswerAlike(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	secret := []byte("alike")
	v, err := jwtauth.New(jwtauth.Config{Secret: secret, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	jwtKey := httpapi.JWTKey(v, nil)
	paths := []string{"/a", "/own", "/x", "/y", "/free", "/dyn", "/orders", "/cost", "/strict"}
	// One handler for both, showing what the key function attached.
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("hello " + jwtauth.ClaimString(r.Context(), "sub")))
	})
	build := func(name string) *httpapi.Middleware {
		n := fakecluster.New(name)
		n.SetClock(clock)
		mw, err := httpapi.New(httpapi.Config{Cluster: n, Policy: alikePolicy(jwtKey), Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		return mw
	}
	e := echo.New()
	e.Use(build("alike-echo").Handler)
	mux := http.NewServeMux()
	std := build("alike-nethttp")
	for _, p := range paths {
		e.Any(p, echo.WrapHandler(hello))
		mux.Handle(p, std.HTTP(hello))
	}

	token := func(tier string) []string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "tier": tier, "exp": now.Add(time.Hour).Unix()}).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return []string{"Authorization", "Bearer " + tok}
	}
	type req struct {
		method, path string
		header       []string
		n            int // times
	}
	p := "192.0.2.200:1"
	codes := map[int]int{}
	for _, r := range []req{
		{"GET", "/a", nil, 4}, {"GET", "/own", nil, 3}, {"GET", "/x", nil, 2}, {"GET", "/y", nil, 2},
		{"GET", "/free", nil, 2}, {"GET", "/dyn?plan=free", nil, 2}, {"GET", "/dyn?plan=gold", nil, 1}, {"GET", "/dyn", nil, 1},
		{"GET", "/orders", token("paid"), 3}, {"GET", "/orders", token("free"), 1}, {"GET", "/orders", nil, 1},
		{"GET", "/orders", []string{"Authorization", "Bearer x.y.z"}, 1},
		{"POST", "/cost?n=xxx", nil, 2}, {"POST", "/cost", nil, 1},
		{"GET", "/strict", nil, 1}, {"GET", "/strict", []string{"X-API-KEY", "k"}, 1},
	} {
		for i := range r.n {
			a := testkit.Do(e, r.method, r.path, p, r.header...)
			b := testkit.Do(mux, r.method, r.path, p, r.header...)
			what := fmt.Sprintf("%s %s #%d", r.method, r.path, i)
			if a.Code != b.Code || a.Body.String() != b.Body.String() {
				t.Fatalf("%s: Echo %d %q, net/http %d %q", what, a.Code, a.Body, b.Code, b.Body)
			}
			if !maps.EqualFunc(a.Header(), b.Header(), slices.Equal) {
				t.Fatalf("%s: headers differ:\nEcho     %v\nnet/http %v", what, a.Header(), b.Header())
			}
			if r.path == "/orders" && a.Code == http.StatusOK && a.Body.String() != "hello alice" {
				t.Fatalf("%s: body %q: the token's claims did not reach the handler", what, a.Body)
			}
			codes[a.Code]++
		}
	}
	if want := map[int]int{200: 19, 401: 3, 429: 6}; !maps.Equal(codes, want) {
		t.Fatalf("answers %v, want %v", codes, want)
	}
}

// Echo's identifier is the client address as c.RealIP() gives it; the
// store keys it as ClientIP.Key does, so that one holder of a /64 gets one
// quota, not one per address or zone id. (Before: 4 of 4 allowed.)
func TestRateLimiterStoreKeysIPv6ByPrefix(t *testing.T) {
	n := fakecluster.New("store-v6")
	s := httpapi.NewRateLimiterStore(n, bucket.Limit{Amount: 1, Period: time.Minute})
	for _, tc := range []struct {
		id      string
		allowed bool
	}{
		{"2001:db8:0:7::1", true},
		{"2001:db8:0:7:ffff::2", false}, // the same /64
		{"2001:db8:0:7::1%eth0", false}, // a zone id is no new client
		{"2001:db8:0:8::1", true},       // the next /64
		{"198.51.100.7", true},
		{"::ffff:198.51.100.7", false}, // IPv4-mapped: the same client
		{"not an address", true},       // other identifiers as they are
	} {
		if ok, err := s.Allow(tc.id); ok != tc.allowed || err != nil {
			t.Fatalf("Allow(%q) = %v, %v; want %v", tc.id, ok, err, tc.allowed)
		}
	}
}
