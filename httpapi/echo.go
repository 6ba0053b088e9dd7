package httpapi

import "github.com/labstack/echo/v4"

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
		return next(c)
	}
}

// Extractor returns an echo.IPExtractor with the rules of x, so that
// echo.Context.RealIP (and Echo's own RateLimiter) stop believing
// forwarding headers from anyone: e.IPExtractor = ips.Extractor().
func (x *ClientIP) Extractor() echo.IPExtractor {
	return x.String
}
