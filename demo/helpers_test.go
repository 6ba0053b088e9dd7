package demo_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ratemesh/ratemesh/internal/clustertest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, clustertest.LeakOptions()...)
}

// step is one request and what must come back.
type step struct {
	method, path, peer string
	header             []string
	body               string // request body
	code               int
	want               string            // exact response body; "" = not checked
	headers            map[string]string // exact header values; "" = must be absent
}

// roundRobin sends each request to the next server in turn.
type roundRobin struct {
	servers []http.Handler
	next    int
}

// do serves one step and checks it.
func (rr *roundRobin) do(t *testing.T, s step) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(s.method, s.path, strings.NewReader(s.body))
	req.RemoteAddr = s.peer
	if s.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(s.header); i += 2 {
		req.Header.Set(s.header[i], s.header[i+1])
	}
	rec := httptest.NewRecorder()
	srv := rr.next % len(rr.servers)
	rr.servers[srv].ServeHTTP(rec, req)
	rr.next++
	if rec.Code != s.code {
		t.Fatalf("%s %s from %s (server %d): status %d, want %d; body %s", s.method, s.path, s.peer, srv, rec.Code, s.code, rec.Body)
	}
	if s.want != "" && rec.Body.String() != s.want {
		t.Fatalf("%s %s from %s (server %d): body %q, want %q", s.method, s.path, s.peer, srv, rec.Body, s.want)
	}
	for k, v := range s.headers {
		if got := rec.Header().Get(k); got != v {
			t.Fatalf("%s %s from %s (server %d): %s = %q, want %q", s.method, s.path, s.peer, srv, k, got, v)
		}
	}
	return rec
}

// run serves steps in order.
func (rr *roundRobin) run(t *testing.T, steps ...step) {
	t.Helper()
	for _, s := range steps {
		rr.do(t, s)
	}
}

// times makes n copies of s, numbering the remaining quota in the headers
// when count is set: the i-th copy expects remaining = count-1-i.
func times(n int, s step, count int) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
		if count > 0 {
			out[i].headers = map[string]string{}
			for k, v := range s.headers {
				out[i].headers[k] = v
			}
			out[i].headers["X-RateLimit-Remaining"] = fmt.Sprint(count - 1 - i)
		}
	}
	return out
}
