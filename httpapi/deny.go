package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh/bucket"
)

// Denial describes a request the limiter refused.
type Denial struct {
	// Key is the routing key (client identity) that was refused.
	Key string
	// Limit is the limit that denied (the longest wait when several did).
	Limit bucket.Limit
	// RetryAfter is how long until the request would pass.
	RetryAfter time.Duration
	// Statuses are every counter of the check, in policy order. Valid
	// only during the handler call.
	Statuses []bucket.Status

	// body is DefaultDenyHandler's JSON up to the retry_after value,
	// prepared with the policy for bodyLimit; used only while Limit is
	// still bodyLimit. buffers is the middleware's pool to finish it in.
	body      string
	bodyLimit bucket.Limit
	buffers   *sync.Pool
}

// DenyHandler answers a denied request. The rate-limit headers are set
// before it runs. The seed's custom handler, for instance:
//
//	func(c echo.Context, d httpapi.Denial) error {
//		return c.JSON(http.StatusTooManyRequests, map[string]string{
//			"error": "Too many requests. Please try again later.",
//			"limit": d.Limit.String(),
//		})
//	}
type DenyHandler func(c echo.Context, d Denial) error

// TooManyRequests is the body of the default 429 answer.
type TooManyRequests struct {
	Error      string `json:"error"`
	Limit      string `json:"limit"`
	RetryAfter int64  `json:"retry_after"`
}

// tooManyRequests is the message of DefaultDenyHandler.
const tooManyRequests = "Too many requests. Please try again later."

// DefaultDenyHandler answers 429 with
// {"error":"Too many requests. Please try again later.","limit":"5 per 1 minute","retry_after":60}.
func DefaultDenyHandler(c echo.Context, d Denial) error {
	if d.body != "" && d.buffers != nil && d.Limit == d.bodyLimit && plainJSON(c) {
		// The body the middleware prepared, finished in a pooled buffer:
		// what c.JSON writes, without encoding the struct per request.
		// The response copies the bytes, as io.Writer promises.
		bp := d.buffers.Get().(*[]byte)
		b := append((*bp)[:0], d.body...)
		b = strconv.AppendInt(b, ceilSeconds(d.RetryAfter), 10)
		b = append(b, "}\n"...)
		err := c.JSONBlob(http.StatusTooManyRequests, b)
		*bp = b
		d.buffers.Put(bp)
		return err
	}
	return c.JSON(http.StatusTooManyRequests, TooManyRequests{
		Error:      tooManyRequests,
		Limit:      d.Limit.String(),
		RetryAfter: ceilSeconds(d.RetryAfter),
	})
}

// plainJSON reports whether c.JSON would write Echo's default compact
// encoding: the default serializer, not in debug mode, and no query (that
// might ask for ?pretty).
func plainJSON(c echo.Context) bool {
	e := c.Echo()
	if e == nil || e.Debug || c.Request().URL.RawQuery != "" {
		return false
	}
	switch e.JSONSerializer.(type) {
	case *echo.DefaultJSONSerializer, echo.DefaultJSONSerializer:
		return true
	}
	return false
}

// denyBodyPrefix is DefaultDenyHandler's JSON body for limit l, up to the
// retry_after value.
func denyBodyPrefix(l bucket.Limit) string {
	lim, _ := json.Marshal(l.String()) // a string always encodes
	return `{"error":"` + tooManyRequests + `","limit":` + string(lim) + `,"retry_after":`
}

// KeyErrorHandler answers a request whose client could not be identified.
type KeyErrorHandler func(c echo.Context, err error) error

// errorBody is the JSON of every error answer of this package.
type errorBody struct {
	Error string `json:"error"`
}

// DefaultKeyErrorHandler answers a KeyError with its status and
// {"error": message} (a bad token: 401 with a Bearer challenge); any other
// error with 403, as Echo's RateLimiter does.
func DefaultKeyErrorHandler(c echo.Context, err error) error {
	var ke *KeyError
	if errors.As(err, &ke) {
		if ke.Status == http.StatusUnauthorized {
			// RFC 6750: no error code when no credentials were sent.
			challenge := "Bearer"
			if ke.Err != nil {
				challenge = `Bearer error="invalid_token"`
			}
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, challenge)
		}
		return c.JSON(ke.Status, errorBody{Error: ke.Message})
	}
	return c.JSON(http.StatusForbidden, errorBody{Error: "cannot identify client"})
}
