// This test drives Echo's own middleware.RateLimiter (which needs
// golang.org/x/time, listed in go.mod) over NewRateLimiterStore; it runs
// with the other tests.

package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/fakecluster"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

var _ middleware.RateLimiterStore = (*httpapi.RateLimiterStore)(nil)

func TestEchoRateLimiterOneLineSwitch(t *testing.T) {
	n := fakecluster.New("echomw")
	ips := &httpapi.ClientIP{}
	e := echo.New()
	e.IPExtractor = ips.Extractor()
	e.Use(middleware.RateLimiter(httpapi.NewRateLimiterStore(n, bucket.Limit{Amount: 2, Period: time.Minute})))
	e.GET("/", ok)
	for i, want := range []int{200, 200, http.StatusTooManyRequests} {
		// A spoofed X-Forwarded-For does not make a new visitor.
		rec := testkit.Do(e, "GET", "/", "192.0.2.90:1", "X-Forwarded-For", "10.0.0."+itoa(i))
		if rec.Code != want {
			t.Fatalf("request %d: %d, want %d", i, rec.Code, want)
		}
	}
}

// UnservedRoutes names the routes of a policy no route of the app serves.
func TestUnservedRoutes(t *testing.T) {
	e := echo.New()
	e.GET("/products", ok)
	e.POST("/login", ok)
	e.GET("/products/:id", ok)
	p := httpapi.Policy{Routes: []httpapi.Route{
		{Method: "GET", Path: "/products"}, {Path: "/login"}, {Method: "GET", Path: "/products/:id"},
		{Method: "GET", Path: "/prodcts"}, {Method: "POST", Path: "/products"}, {Path: "/logout"},
	}}
	got := httpapi.UnservedRoutes(p, e.Routes())
	if len(got) != 3 || got[0].Path != "/prodcts" || got[1].Method != "POST" || got[1].Path != "/products" || got[2].Path != "/logout" {
		t.Fatalf("unserved: %+v, want GET /prodcts, POST /products and /logout", got)
	}
}
