package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

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

// BenchmarkMiddleware is the limited route on one node; compare with
// BenchmarkMiddlewareExempt, the same route with the limiter skipped.
func BenchmarkMiddleware(b *testing.B) {
	testkit.BenchServe(b, benchServer(b, false), 10000)
}

// BenchmarkMiddlewareExempt is the baseline: same server, route exempt.
func BenchmarkMiddlewareExempt(b *testing.B) {
	testkit.BenchServe(b, benchServer(b, true), 10000)
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
	testkit.BenchServe(b, e, 10000)
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
	testkit.BenchServe(b, mux, 10000)
}
