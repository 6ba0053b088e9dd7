package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/httpapi"
)

func TestNetHTTPMiddleware(t *testing.T) {
	n := startNode(t, "nethttp")
	mw, err := httpapi.New(httpapi.Config{Limiter: n, Policy: httpapi.Policy{
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
	nodes := startCluster(t, 3)
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
	if want := []bool{true, true, true, true, false, false}; !equalJSON(got, want) {
		t.Fatalf("allowed %v, want %v across the cluster", got, want)
	}
	if ok, err := stores[0].Allow("198.51.100.8"); !ok || err != nil {
		t.Fatalf("another visitor: %v %v", ok, err)
	}
	bad := httpapi.NewRateLimiterStore(nodes[0], bucket.Limit{Amount: 1, Period: 0})
	if ok, err := bad.Allow("x"); ok || err == nil {
		t.Fatalf("a bad limit: %v %v", ok, err)
	}
	closed := startNode(t, "store-closed")
	closed.Close(t.Context())
	if ok, err := httpapi.NewRateLimiterStore(closed, bucket.Limit{Amount: 1, Period: time.Minute}).Allow("x"); !ok || err != nil {
		t.Fatalf("a failing cluster must let the request through: %v %v", ok, err)
	}
}
