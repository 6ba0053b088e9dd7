package httpapi_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/fakecluster"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// SetPolicy swaps the policy for the next request; a bad one is refused
// and the policy stays; Policy reports the one applied.
func TestSetPolicy(t *testing.T) {
	n := fakecluster.New("setpolicy")
	mw, err := httpapi.New(httpapi.Config{Cluster: n, Policy: httpapi.Policy{Routes: []httpapi.Route{{Method: "GET", Path: "/a", Limits: "2 per minute"}}}})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.GET("/a", ok, mw.Handler)
	p := "192.0.2.80:1"
	run(t, e, append(repeat(2, step{method: "GET", path: "/a", peer: p, code: 200, want: map[string]string{"X-Ratelimit-Limit": "2"}}),
		step{method: "GET", path: "/a", peer: p, code: 429}))
	three := httpapi.Policy{Routes: []httpapi.Route{{Method: "GET", Path: "/a", Limits: "3 per minute"}}}
	if err := mw.SetPolicy(three); err != nil {
		t.Fatal(err)
	}
	// A new limit is a new counter: three more.
	run(t, e, append(repeat(3, step{method: "GET", path: "/a", peer: p, code: 200, want: map[string]string{"X-Ratelimit-Limit": "3"}}),
		step{method: "GET", path: "/a", peer: p, code: 429}))
	err = mw.SetPolicy(httpapi.Policy{Default: "5 per fortnight"})
	if err == nil || !strings.Contains(err.Error(), `default: limits "5 per fortnight"`) {
		t.Fatalf("SetPolicy of a bad policy: %v, want the error New gives", err)
	}
	if got := mw.Policy(); got.Routes[0].Limits != "3 per minute" {
		t.Fatalf("Policy after a refused SetPolicy: %+v, want the 3 per minute one", got)
	}
	run(t, e, []step{{method: "GET", path: "/a", peer: p, code: 429, want: map[string]string{"X-Ratelimit-Limit": "3"}}})
}

// Requests racing with SetPolicy each see one policy whole: every answer's
// limit header is one of the two policies', on every route. Run with
// -race.
func TestSetPolicyIsAtomic(t *testing.T) {
	n := fakecluster.New("atomic")
	policy := func(limit int) httpapi.Policy {
		return httpapi.Policy{Default: fmt.Sprintf("%d per minute", limit), Routes: []httpapi.Route{{Method: "GET", Path: "/a", Limits: fmt.Sprintf("%d per minute", limit+1)}}}
	}
	mw, err := httpapi.New(httpapi.Config{Cluster: n, Policy: policy(10)})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.Use(mw.Handler)
	e.GET("/a", ok)
	e.GET("/b", ok)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := mw.SetPolicy(policy(10 + 10*(i%2))); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for i := range 400 {
		path := []string{"/a", "/b"}[i%2]
		rec := testkit.Do(e, "GET", path, fmt.Sprintf("198.51.100.%d:1", i%250))
		want := []string{"10", "20"}
		if path == "/a" {
			want = []string{"11", "21"}
		}
		if got := rec.Header().Get("X-Ratelimit-Limit"); rec.Code != 200 || !slices.Contains(want, got) {
			t.Fatalf("request %d to %s: %d with limit %q, want 200 and one of %q", i, path, rec.Code, got, want)
		}
	}
	close(stop)
	wg.Wait()
}

// Counters lists each counter of the policy once with the routes counting
// in it, for a node's GET /v1/limits: application and shared counters
// under every route that counts in them, a default route once seen, an
// exempt route nowhere.
func TestCounters(t *testing.T) {
	n := fakecluster.New("counters")
	mw, err := httpapi.New(httpapi.Config{Cluster: n, Policy: httpapi.Policy{
		Default:     "3 per hour",
		Application: "100 per minute",
		Shared:      []httpapi.Shared{{Scope: "grp", Limits: "7 per minute"}},
		Routes: []httpapi.Route{
			{Method: "GET", Path: "/a", Limits: "1 per second", Shared: []string{"grp"}},
			{Method: "GET", Path: "/b", Shared: []string{"grp"}, Shadow: true},
			{Path: "/health", Exempt: true},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.Use(mw.Handler)
	e.GET("/other", ok)
	testkit.Do(e, "GET", "/other", "192.0.2.81:1")
	var got []string
	for _, c := range mw.Counters() {
		got = append(got, fmt.Sprintf("%s|%s|%s|%v", c.Counter.Scope, c.Counter.Limit, strings.Join(c.Routes, ","), c.Shadow))
	}
	want := []string{
		"/other|3 per 1 hour|/other|false",
		"GET /a|1 per 1 second|GET /a|false",
		"app|100 per 1 minute|/other,GET /a,GET /b|false",
		"shared:grp|7 per 1 minute|GET /a,GET /b|false",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Counters:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
