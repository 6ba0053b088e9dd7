package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/clustertest"
)

// discard is a ResponseWriter that keeps nothing but its header map.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// benchServer is one node with GET /products limited (or exempt), keyed
// by client IP, with the tutorial's default on top.
func benchServer(b *testing.B, exempt bool) *echo.Echo {
	n := clustertest.StartNode(b, "bench", nil)
	mw, err := httpapi.New(httpapi.Config{Cluster: n, Policy: httpapi.Policy{
		Default: "100 per hour",
		Routes:  []httpapi.Route{{Method: "GET", Path: "/products", Limits: "1000000000 per minute", Exempt: exempt}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	e := echo.New()
	e.Use(mw.Handler)
	e.GET("/products", func(c echo.Context) error { return c.String(http.StatusOK, "[]") })
	return e
}

func benchServe(b *testing.B, e http.Handler, clients int) {
	reqs := make([]*http.Request, clients)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodGet, "/products", nil)
		reqs[i].RemoteAddr = fmt.Sprintf("10.%d.%d.%d:1234", i>>16&255, i>>8&255, i&255)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discard{h: make(http.Header)}
		i := 0
		for pb.Next() {
			clear(w.h)
			e.ServeHTTP(w, reqs[i%len(reqs)])
			i++
		}
	})
}

// BenchmarkMiddleware is the limited route on one node; compare with
// BenchmarkMiddlewareExempt, the same route with the limiter skipped.
func BenchmarkMiddleware(b *testing.B) {
	benchServe(b, benchServer(b, false), 10000)
}

// BenchmarkMiddlewareExempt is the baseline: same server, route exempt.
func BenchmarkMiddlewareExempt(b *testing.B) {
	benchServe(b, benchServer(b, true), 10000)
}

// BenchmarkMiddlewareDynamic adds a dynamic limit (scratch slices from the
// pool, the parse cache).
func BenchmarkMiddlewareDynamic(b *testing.B) {
	n := clustertest.StartNode(b, "bench-dyn", nil)
	mw, err := httpapi.New(httpapi.Config{Cluster: n, Policy: httpapi.Policy{
		Routes: []httpapi.Route{{Method: "GET", Path: "/products", Dynamic: func(*http.Request) string { return "1000000000 per minute" }}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	e := echo.New()
	e.Use(mw.Handler)
	e.GET("/products", func(c echo.Context) error { return c.String(http.StatusOK, "[]") })
	benchServe(b, e, 10000)
}

// BenchmarkMiddlewareNetHTTP is BenchmarkMiddleware through the net/http
// adapter on an http.ServeMux.
func BenchmarkMiddlewareNetHTTP(b *testing.B) {
	n := clustertest.StartNode(b, "bench-nethttp", nil)
	mw, err := httpapi.New(httpapi.Config{Cluster: n, Policy: httpapi.Policy{
		Default: "100 per hour",
		Routes:  []httpapi.Route{{Path: "GET /products", Limits: "1000000000 per minute"}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /products", mw.HTTP(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("[]")) })))
	benchServe(b, mux, 10000)
}
