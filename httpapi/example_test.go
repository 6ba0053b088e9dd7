package httpapi_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/httpapi"
)

// *ratemesh.Node is what the middleware is built on.
var _ httpapi.Cluster = (*ratemesh.Node)(nil)

// The tutorial's Flask-Limiter setup, on Echo and a ratemesh node.
func Example() {
	node, err := ratemesh.New(ratemesh.LocalConfig())
	if err != nil {
		log.Fatal(err)
	}
	if err := node.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer node.Close(context.Background())

	ips := &httpapi.ClientIP{}
	mw, err := httpapi.New(httpapi.Config{
		Cluster: node,
		Key:     httpapi.APIKey("X-API-KEY", ips.Key), // API key, else IP
		Policy: httpapi.Policy{
			Default: "100 per hour",
			Shared:  []httpapi.Shared{{Scope: "products", Limits: "20 per minute"}},
			Routes: []httpapi.Route{
				{Method: "GET", Path: "/products", Limits: "5 per minute"},
				{Method: "GET", Path: "/flash-sale", Limits: "10 per minute; 200 per day"},
				{Method: "GET", Path: "/popular", Shared: []string{"products"}},
				{Method: "GET", Path: "/rb-products", Dynamic: func(r *http.Request) string {
					if r.Header.Get("X-API-KEY") == "admin123" {
						return "100 per minute"
					}
					return "10 per minute"
				}},
				{Method: "GET", Path: "/health", Exempt: true},
			},
		},
		// The tutorial's custom 429 handler.
		OnDeny: func(w http.ResponseWriter, _ *http.Request, d httpapi.Denial) {
			httpapi.WriteJSON(w, http.StatusTooManyRequests, map[string]string{
				"error": "Too many requests. Please try again later.",
				"limit": d.Limit.String(),
			})
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	e := echo.New()
	e.Use(mw.Handler)
	e.GET("/products", func(c echo.Context) error { return c.JSON(http.StatusOK, []string{"Amul Butter"}) })
}

// Echo's own RateLimiter, moved onto the cluster by changing its store.
func ExampleNewRateLimiterStore() {
	node, err := ratemesh.New(ratemesh.LocalConfig())
	if err != nil {
		log.Fatal(err)
	}
	e := echo.New()
	ips := &httpapi.ClientIP{}
	e.IPExtractor = ips.Extractor() // c.RealIP() no longer believes anyone's X-Forwarded-For
	// Before: middleware.RateLimiter(middleware.NewRateLimiterMemoryStore(20))
	store := httpapi.NewRateLimiterStore(node, bucket.Limit{Amount: 20, Period: time.Second})
	_ = store // e.Use(middleware.RateLimiter(store))
}
