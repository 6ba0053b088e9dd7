package demo_test

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ratemesh/ratemesh/internal/clustertest"
)

// Across three nodes, each request to the next: the 6th failed login of a
// client within a minute is denied, good password or not; another client's
// successful logins, however many, never count.
func TestLoginFailuresLimitedAcrossNodes(t *testing.T) {
	rr := servers(t, clustertest.StartNamed(t, 3))
	attacker, user := "192.0.2.20:5000", "192.0.2.21:5000"
	wrong := `{"username":"free","password":"wrong"}`
	right := `{"username":"free","password":"free-demo"}`
	rr.run(t, times(12, step{method: "POST", path: "/login", peer: user, body: right, code: 200,
		headers: map[string]string{"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "5"}}, 0)...)
	for i := range 5 {
		rr.run(t, step{method: "POST", path: "/login", peer: attacker, body: wrong, code: 401,
			headers: map[string]string{"X-RateLimit-Remaining": fmt.Sprint(5 - i)}})
	}
	rr.run(t,
		step{method: "POST", path: "/login", peer: attacker, body: wrong, code: 429, want: tutorial429("5 per 1 minute"), headers: map[string]string{"Retry-After": "60"}},
		step{method: "POST", path: "/login", peer: attacker, body: right, code: 429},
		// The user's quota is whole after 12 good logins: 5 failures pass.
		step{method: "POST", path: "/login", peer: user, body: wrong, code: 401, headers: map[string]string{"X-RateLimit-Remaining": "5"}},
		step{method: "POST", path: "/login", peer: user, body: right, code: 200, headers: map[string]string{"X-RateLimit-Remaining": "4"}},
	)
}

// Parallel failed logins of one client over three nodes: each node lets
// one of them run between check and count at a time, so at most 5 + 3 − 1
// reach the handler (httpapi's countwhen.go), however many are sent.
func TestParallelLoginFailuresBounded(t *testing.T) {
	rr := servers(t, clustertest.StartNamed(t, 3))
	const attempts = 30
	codes := make(chan int, attempts)
	var wg sync.WaitGroup
	for i := range attempts {
		wg.Go(func() {
			req := httptest.NewRequest("POST", "/login", strings.NewReader(`{"username":"free","password":"wrong"}`))
			req.RemoteAddr = "192.0.2.22:5000"
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			rr.servers[i%len(rr.servers)].ServeHTTP(rec, req)
			codes <- rec.Code
		})
	}
	wg.Wait()
	close(codes)
	got := map[int]int{}
	for c := range codes {
		got[c]++
	}
	t.Logf("answers %v", got)
	if got[401] < 5 || got[401] > 7 || got[401]+got[429] != attempts {
		t.Fatalf("answers %v: want 5 to 7 failures let through, the rest 429", got)
	}
}
