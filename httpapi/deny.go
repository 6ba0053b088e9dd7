package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/ratehttp"
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
// before it runs. The tutorial's custom handler, for instance:
//
//	func(w http.ResponseWriter, r *http.Request, d httpapi.Denial) {
//		httpapi.WriteJSON(w, http.StatusTooManyRequests, map[string]string{
//			"error": "Too many requests. Please try again later.",
//			"limit": d.Limit.String(),
//		})
//	}
type DenyHandler func(w http.ResponseWriter, r *http.Request, d Denial)

// TooManyRequestsResponse is the body of the default 429 answer.
type TooManyRequestsResponse struct {
	Error      string `json:"error"`
	Limit      string `json:"limit"`
	RetryAfter int64  `json:"retry_after"`
}

// tooManyRequests is the message of DefaultDenyHandler.
const tooManyRequests = "Too many requests. Please try again later."

// DefaultDenyHandler answers 429 with
// {"error":"Too many requests. Please try again later.","limit":"5 per 1 minute","retry_after":60}.
func DefaultDenyHandler(w http.ResponseWriter, _ *http.Request, d Denial) {
	if d.body != "" && d.buffers != nil && d.Limit == d.bodyLimit {
		// The body the middleware prepared, finished in a pooled buffer:
		// what WriteJSON writes, without encoding the struct per
		// request. The writer copies the bytes, as io.Writer promises.
		bp := d.buffers.Get().(*[]byte)
		b := append((*bp)[:0], d.body...)
		b = strconv.AppendInt(b, ratehttp.CeilSeconds(d.RetryAfter), 10)
		b = append(b, "}\n"...)
		writeJSONBytes(w, http.StatusTooManyRequests, b) // a client that hung up is no news
		*bp = b
		d.buffers.Put(bp)
		return
	}
	WriteJSON(w, http.StatusTooManyRequests, TooManyRequestsResponse{
		Error:      tooManyRequests,
		Limit:      d.Limit.String(),
		RetryAfter: ratehttp.CeilSeconds(d.RetryAfter),
	})
}

// denyBodyPrefix is DefaultDenyHandler's JSON body for limit l, up to the
// retry_after value.
func denyBodyPrefix(l bucket.Limit) string {
	lim, _ := json.Marshal(l.String()) // a string always encodes
	return `{"error":"` + tooManyRequests + `","limit":` + string(lim) + `,"retry_after":`
}

// KeyErrorHandler answers a request whose client could not be identified.
type KeyErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

// DefaultKeyErrorHandler answers a KeyError with its status and
// {"error": message} (a bad token: 401 with a Bearer challenge); any other
// error with 403, as Echo's RateLimiter does.
func DefaultKeyErrorHandler(w http.ResponseWriter, _ *http.Request, err error) {
	var ke *KeyError
	if errors.As(err, &ke) {
		if ke.Status == http.StatusUnauthorized {
			// RFC 6750: no error code when no credentials were sent.
			challenge := "Bearer"
			if ke.Err != nil {
				challenge = `Bearer error="invalid_token"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
		}
		WriteJSON(w, ke.Status, ErrorResponse{Error: ke.Message})
		return
	}
	WriteJSON(w, http.StatusForbidden, ErrorResponse{Error: "cannot identify client"})
}
