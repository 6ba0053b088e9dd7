package nodeapi_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/fakecluster"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// A middleware whose Observer is the node's Stats shows its decisions in
// GET /v1/stats (16 shadow denials of a shadow route's flood, the one
// denial of the enforced route beside it) and, once shown, its policy in
// the policies and GET /v1/limits, also after SetPolicy.
func TestStatsShowMiddleware(t *testing.T) {
	n := fakecluster.New("shadow")
	stats := nodeapi.NewStats()
	mw, err := httpapi.New(httpapi.Config{Cluster: n, Observer: stats, Policy: httpapi.Policy{
		Routes: []httpapi.Route{
			{Method: "GET", Path: "/new", Limits: "5 per minute", Shadow: true},
			{Method: "GET", Path: "/old", Limits: "5 per minute"},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	stats.ShowPolicy(mw)
	e := echo.New()
	ok := func(c echo.Context) error { return c.String(http.StatusOK, "ok") }
	e.GET("/new", ok, mw.Handler)
	e.GET("/old", ok, mw.Handler)
	if err := nodeapi.RegisterService(e, n, nodeapi.ServiceConfig{Stats: stats}); err != nil {
		t.Fatal(err)
	}
	for range 21 {
		testkit.Do(e, "GET", "/new", "192.0.2.90:1")
	}
	codes := map[int]int{}
	for range 6 {
		codes[testkit.Do(e, "GET", "/old", "192.0.2.90:1").Code]++
	}
	if codes[200] != 5 || codes[429] != 1 {
		t.Fatalf("GET /old: %v, want 5 × 200 and 1 × 429", codes)
	}
	var st nodeapi.StatsResponse
	if err := json.Unmarshal(testkit.Do(e, "GET", "/v1/stats?scope=node", "127.0.0.1:1").Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	var allowed, shadow, denied int64
	for _, s := range st.Nodes[0].History {
		allowed, shadow, denied = allowed+s.Allowed, shadow+s.Shadow, denied+s.Denied
	}
	if want := []nodeapi.ShadowCount{{Route: "GET /new", Limit: "5 per 1 minute", Count: 16}}; !slices.Equal(st.Nodes[0].Shadow, want) || allowed != 10 || shadow != 16 || denied != 1 {
		t.Fatalf("stats: shadow rows %+v, history %d allowed, %d shadow-denied, %d denied; want %+v, 10, 16 and 1", st.Nodes[0].Shadow, allowed, shadow, denied, want)
	}
	// The key is hidden from a caller without a token.
	if len(st.TopDenied) != 1 || len(st.TopDenied[0].Key) != 13 || st.TopDenied[0].Route != "GET /old" || st.TopDenied[0].Count != 1 {
		t.Fatalf("top denied %+v, want one hidden key once on GET /old", st.TopDenied)
	}
	if len(st.Policies) != 1 || len(st.Policies[0].Routes) != 2 || st.Policies[0].Routes[0].Path != "/new" || !st.Policies[0].Routes[0].Shadow {
		t.Fatalf("policies %+v, want the middleware's two routes", st.Policies)
	}
	limits := func() []string {
		var lr nodeapi.LimitsResponse
		if err := json.Unmarshal(testkit.Do(e, "GET", "/v1/limits", "127.0.0.1:1").Body.Bytes(), &lr); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range lr.Limits {
			out = append(out, l.Scope+" "+l.Limit)
		}
		return out
	}
	if got, want := limits(), []string{"GET /new 5 per 1 minute", "GET /old 5 per 1 minute"}; !slices.Equal(got, want) {
		t.Fatalf("/v1/limits %q, want %q", got, want)
	}
	if err := mw.SetPolicy(httpapi.Policy{Routes: []httpapi.Route{{Method: "GET", Path: "/old", Limits: "9 per hour"}}}); err != nil {
		t.Fatal(err)
	}
	if got, want := limits(), []string{"GET /old 9 per 1 hour"}; !slices.Equal(got, want) {
		t.Fatalf("/v1/limits after SetPolicy %q, want %q", got, want)
	}
}
