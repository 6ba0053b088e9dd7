package httpapi

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
)

// Routes is where routes are mounted with the middleware (the demo's, the
// node's HTTP API); *echo.Echo and *echo.Group both qualify.
type Routes interface {
	GET(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route
	POST(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route
	DELETE(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route
}

// Handler is the Echo middleware: e.Use(mw.Handler), or per group or
// route. Requests are matched to the policy by method and c.Path(), so it
// must run after routing (Use, not Pre). It is Serve over Echo's request
// and response; a context the key function attached reaches the handler
// through c.Request().
func (m *Middleware) Handler(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		r, done := m.Serve(c.Response(), req, c.Path())
		if done {
			return nil
		}
		if r != req {
			c.SetRequest(r)
		}
		if !owes(r) {
			return next(c)
		}
		var err error
		// Deferred, so that a handler that panics still frees its place.
		defer func() { m.Finish(r, echoStatus(c, err)) }()
		err = next(c)
		return err
	}
}

// Extractor returns an echo.IPExtractor with the rules of x, so that
// echo.Context.RealIP (and Echo's own RateLimiter) stop believing
// forwarding headers from anyone: e.IPExtractor = ips.Extractor().
func (x *ClientIP) Extractor() echo.IPExtractor {
	return x.String
}

// echoStatus is the status of the answer to c once its handler has
// returned err: the one written, else the one Echo's error handler will
// write.
func echoStatus(c echo.Context, err error) int {
	if c.Response().Committed || err == nil {
		return c.Response().Status
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return he.Code
	}
	return http.StatusInternalServerError
}

// UnservedRoutes lists the routes of p that match no route of an Echo app
// (e.Routes()): a typo such as "/prodcts", or a method the path is not
// served under. Such a route limits nothing; call it once the app's routes
// are registered and warn about what it returns. A route without a method
// matches a path served under any method.
func UnservedRoutes(p Policy, served []*echo.Route) []Route {
	var out []Route
	for _, r := range p.Routes {
		found := false
		for _, s := range served {
			if s.Path == r.Path && (r.Method == "" || s.Method == r.Method || s.Method == echo.RouteNotFound) {
				found = true
				break
			}
		}
		if !found {
			out = append(out, r)
		}
	}
	return out
}
