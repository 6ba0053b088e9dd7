package counterapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// refusal is an operation's answer other than 200: its status and body.
type refusal struct {
	status int
	body   ErrorResponse
}

func (r *refusal) Error() string { return r.body.Error }

// bad is a 400 about one field.
func bad(field, msg string) *refusal {
	return &refusal{http.StatusBadRequest, ErrorResponse{Error: field + ": " + msg, Field: field}}
}

// unavailable is a 503: the operation could not be decided by the owner.
func unavailable(msg string) *refusal {
	return &refusal{http.StatusServiceUnavailable, ErrorResponse{Error: msg}}
}

// op is one operation on a decoded request.
type op func(ctx context.Context, req *Request) (Response, error)

// serve decodes the request body, refusing fields other than "key" and
// those allowed, runs h and answers.
func (a *api) serve(h op, allowed ...string) echo.HandlerFunc {
	return func(c echo.Context) error {
		req, err := decode(c.Request(), c.Response(), allowed)
		var out Response
		if err == nil {
			out, err = h(c.Request().Context(), req)
		}
		var r *refusal
		switch {
		case err == nil:
			return c.JSON(http.StatusOK, out)
		case errors.As(err, &r):
			if r.status == http.StatusServiceUnavailable {
				c.Response().Header().Set(echo.HeaderRetryAfter, "1")
			}
			return c.JSON(r.status, r.body)
		}
		return err
	}
}

// decode reads a Request of at most maxBody bytes with a valid key and no
// field but "key" and allowed.
func decode(r *http.Request, w http.ResponseWriter, allowed []string) (*Request, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &refusal{http.StatusRequestEntityTooLarge, ErrorResponse{Error: fmt.Sprintf("body: larger than %d bytes", maxBody), Field: "body"}}
		}
		return nil, bad("body", err.Error())
	}
	req, err := parse(body, allowed)
	if err != nil {
		return nil, err
	}
	return req, nil
}

// parse decodes body into a Request and validates its key and fields.
func parse(body []byte, allowed []string) (*Request, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, bad("body", "empty; send a JSON object such as {\"key\":\"k\"}")
	}
	// Fields are found case-insensitively by encoding/json; the check of
	// which were sent goes through a map of the raw object.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, bad("body", "invalid JSON object: "+err.Error())
	}
	for name := range raw {
		if name != "key" && !contains(allowed, name) {
			return nil, bad(clip(name), "unknown field for this operation; it takes "+strings.Join(append([]string{"key"}, allowed...), ", "))
		}
	}
	var req Request
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, bad(te.Field, "want "+te.Type.String()+", got JSON "+te.Value)
		}
		return nil, bad("body", "invalid JSON: "+err.Error())
	}
	switch {
	case req.Key == "":
		return nil, bad("key", "required, a non-empty string")
	case len(req.Key) > MaxKey:
		return nil, bad("key", fmt.Sprintf("%d bytes long, at most %d", len(req.Key), MaxKey))
	case !utf8.ValidString(req.Key):
		return nil, bad("key", "not valid UTF-8")
	}
	return &req, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// clip shortens a client's field name for an error message.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// period converts an expiry in seconds: required, positive, at most the
// API's MaxPeriod.
func (a *api) period(expiry *float64) (time.Duration, error) {
	if expiry == nil {
		return 0, bad("expiry", "required, in seconds")
	}
	s := *expiry
	if math.IsNaN(s) || s <= 0 {
		return 0, bad("expiry", fmt.Sprintf("%v seconds; want a positive number", s))
	}
	if s > a.maxPeriod.Seconds() {
		return 0, bad("expiry", fmt.Sprintf("%v seconds; at most %v (%v) is allowed", s, a.maxPeriod.Seconds(), a.maxPeriod))
	}
	d := time.Duration(math.Round(s * 1e9))
	if d <= 0 {
		return 0, bad("expiry", fmt.Sprintf("%v seconds is less than a nanosecond", s))
	}
	return d, nil
}

// amountOf is the request's amount: absent means 1; negative or above max
// is refused.
func amountOf(amount *int64, max int64) (int64, error) {
	if amount == nil {
		return 1, nil
	}
	if n := *amount; n < 0 || n > max {
		return 0, bad("amount", fmt.Sprintf("%d; want 0 to %d", n, max))
	}
	return *amount, nil
}
