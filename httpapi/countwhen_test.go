package httpapi_test

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/fakecluster"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// loginServer limits POST /login (401 on a wrong password) to limit
// failures per client, counted only when the answer is 401; entered counts
// the handler's runs.
func loginServer(t *testing.T, limit string, entered *atomic.Int64, hold <-chan struct{}) *echo.Echo {
	t.Helper()
	n := fakecluster.New("countwhen")
	mw, err := httpapi.New(httpapi.Config{Cluster: n, Policy: httpapi.Policy{
		Routes: []httpapi.Route{{Method: "POST", Path: "/login", Limits: limit, CountStatuses: []int{401}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.POST("/login", func(c echo.Context) error {
		entered.Add(1)
		if hold != nil {
			<-hold
		}
		if c.Request().Header.Get("X-Password") != "right" {
			return echo.NewHTTPError(http.StatusUnauthorized, "wrong password")
		}
		return c.String(http.StatusOK, "welcome")
	}, mw.Handler)
	return e
}

// Only failures count: any number of good logins leave the quota whole;
// the failures spend it, and then the check before the handler denies,
// good password or not.
func TestCountWhenCountsOnlyMatchingAnswers(t *testing.T) {
	var entered atomic.Int64
	e := loginServer(t, "3 per minute", &entered, nil)
	p := "192.0.2.100:1"
	good := step{method: "POST", path: "/login", peer: p, header: []string{"X-Password", "right"}, code: 200,
		want: map[string]string{"X-RateLimit-Remaining": "3"}}
	bad := step{method: "POST", path: "/login", peer: p, code: 401}
	steps := repeat(10, good)
	for i := range 3 {
		s := bad
		s.want = map[string]string{"X-RateLimit-Remaining": itoa(3 - i)} // before this one's count
		steps = append(steps, s)
	}
	steps = append(steps,
		step{method: "POST", path: "/login", peer: p, code: 429, body: deny("3 per 1 minute", 60), want: map[string]string{"Retry-After": "60"}},
		step{method: "POST", path: "/login", peer: p, header: []string{"X-Password", "right"}, code: 429},
		// Another client is counted apart.
		step{method: "POST", path: "/login", peer: "192.0.2.101:1", code: 401, want: map[string]string{"X-RateLimit-Remaining": "3"}},
	)
	run(t, e, steps)
	if got := entered.Load(); got != 14 {
		t.Fatalf("handler ran %d times, want 14 (10 good, 3+1 bad)", got)
	}
}

// Parallel failures of one client cannot pass the check before any of
// them is counted: one node lets exactly the limit's worth reach the
// handler.
func TestCountWhenParallelFailuresBounded(t *testing.T) {
	var entered atomic.Int64
	hold := make(chan struct{})
	e := loginServer(t, "3 per minute", &entered, hold)
	const clients = 12
	codes := make(chan int, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() { codes <- testkit.Do(e, "POST", "/login", "192.0.2.102:1").Code })
	}
	// Let the requests in one at a time: each one that entered the
	// handler is released; the others wait at the door or are denied.
	deadline := time.After(5 * time.Second)
	got := map[int]int{}
	for got[401]+got[429]+got[503] < clients {
		select {
		case hold <- struct{}{}:
		case c := <-codes:
			got[c]++
		case <-deadline:
			t.Fatalf("answers so far %v, want 3×401 and 9×429", got)
		}
	}
	wg.Wait()
	if got[401] != 3 || got[429] != 9 || entered.Load() != 3 {
		t.Fatalf("answers %v, handler runs %d; want 3×401, 9×429, 3 runs", got, entered.Load())
	}
}

func TestCountWhenPolicyErrors(t *testing.T) {
	n := fakecluster.New("countwhen-bad")
	for _, tc := range []struct {
		route httpapi.Route
		want  string
	}{
		{httpapi.Route{Path: "/x", Limits: "1 per minute", CountStatuses: []int{4010}}, `policy: route "/x": count_when: status 4010 is not 100 to 599`},
		{httpapi.Route{Path: "/x", Limits: "1 per minute", CountStatuses: []int{401}, CountInFlight: -1}, `policy: route "/x": count_in_flight -1 is negative`},
	} {
		_, err := httpapi.New(httpapi.Config{Cluster: n, Policy: httpapi.Policy{Routes: []httpapi.Route{tc.route}}})
		if err == nil || err.Error() != tc.want {
			t.Fatalf("error %v, want %s", err, tc.want)
		}
	}
}
