package nodeapi_test

import (
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// BenchmarkMiddlewareStats is BenchmarkMiddleware with the node's Stats
// recording every decision, as ratemesh-node runs it: the price of the
// dashboard on the hot path.
func BenchmarkMiddlewareStats(b *testing.B) {
	n := clustertest.StartNode(b, "bench-stats", nil)
	mw, err := httpapi.New(httpapi.Config{Cluster: n, Observer: nodeapi.NewStats(), Policy: httpapi.Policy{
		Default: "100 per hour",
		Routes:  []httpapi.Route{{Method: "GET", Path: "/products", Limits: "1000000000 per minute"}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	e := echo.New()
	e.Use(mw.Handler)
	e.GET("/products", func(c echo.Context) error { return c.String(http.StatusOK, "[]") })
	testkit.BenchServe(b, e, 10000)
}
