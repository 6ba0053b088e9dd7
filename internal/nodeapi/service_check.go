package nodeapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/ratehttp"
	"github.com/ratemesh/ratemesh/internal/textcut"
)

// maxServiceKey bounds the routing key of a /v1/check.
const maxServiceKey = 512

// maxServiceScope bounds a /v1/check scope: with its "check:" prefix it
// stays within bucket.MaxScopeLen.
const maxServiceScope = bucket.MaxScopeLen - len("check:")

// CheckKeyPrefix is put before the key of every /v1/check to make its
// routing key: the API's counters live apart from the middleware's, so a
// client of the API cannot fill the counter table of a key the middleware
// limits ("apikey:alice") and switch its limits off. GET
// /v1/cluster/owner?key=check|K names the owner of K's API counters.
const CheckKeyPrefix = "check|"

// CheckRequest is one check of POST /v1/check.
type CheckRequest struct {
	// Key is the routing key, e.g. "user:42". Required.
	Key string `json:"key"`
	// Limits is a limit string, e.g. "10 per minute; 200 per day".
	// Required.
	Limits string `json:"limits"`
	// Cost is what the check consumes; absent means 1, 0 peeks.
	Cost *int64 `json:"cost,omitempty"`
	// Strategy is the algorithm; empty means "fixed-window".
	Strategy string `json:"strategy,omitempty"`
	// Scope names the counters, so that one key can hold several
	// independent sets of the same limits; empty means "default". Counted
	// apart from the middleware's scopes.
	Scope string `json:"scope,omitempty"`
}

// CheckLimit is the state of one limit after a check.
type CheckLimit struct {
	Limit      string `json:"limit"`       // e.g. "10 per 1 minute"
	Remaining  int64  `json:"remaining"`   // requests left in the window
	Reset      int64  `json:"reset"`       // epoch seconds when the quota is whole again
	RetryAfter int64  `json:"retry_after"` // seconds to wait; 0 when allowed
}

// CheckResponse answers one check of POST /v1/check.
type CheckResponse struct {
	Allowed bool         `json:"allowed"`
	Key     string       `json:"key"`
	Limits  []CheckLimit `json:"limits"`
	// Node is the member that decided (the key's owner, or this node
	// under the fail policy, then with Fallback set).
	Node     string `json:"node"`
	Fallback bool   `json:"fallback,omitempty"`
}

// FieldErrorResponse is the body of a 400 of the service API: the message
// and the field it is about ("cost", or "[2].limits" inside a batch).
type FieldErrorResponse struct {
	Error string `json:"error"`
	Field string `json:"field"`
}

// badField is a validation failure of one field.
type badField struct{ field, msg string }

func (e *badField) Error() string { return e.field + ": " + e.msg }

func (s *service) check(c echo.Context) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, s.maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return c.JSON(http.StatusRequestEntityTooLarge, FieldErrorResponse{Error: fmt.Sprintf("body: larger than %d bytes", s.maxBody), Field: "body"})
		}
		return c.JSON(http.StatusBadRequest, FieldErrorResponse{Error: "body: " + err.Error(), Field: "body"})
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	batch := len(trimmed) > 0 && trimmed[0] == '['
	var reqs []CheckRequest
	if batch {
		reqs, err = s.decodeBatch(trimmed)
	} else {
		reqs = make([]CheckRequest, 1)
		err = decodeStrict(trimmed, &reqs[0], "")
	}
	var counters [][]bucket.Counter
	if err == nil {
		counters, err = s.validate(reqs, batch)
	}
	if err != nil {
		var bf *badField
		if errors.As(err, &bf) {
			return c.JSON(http.StatusBadRequest, FieldErrorResponse{Error: bf.Error(), Field: bf.field})
		}
		return c.JSON(http.StatusBadRequest, FieldErrorResponse{Error: "body: " + err.Error(), Field: "body"})
	}
	out := make([]CheckResponse, len(reqs))
	for i := range reqs {
		cost := int64(1)
		if reqs[i].Cost != nil {
			cost = *reqs[i].Cost
		}
		res, err := s.node.Check(c.Request().Context(), ratemesh.Request{Key: CheckKeyPrefix + reqs[i].Key, Counters: counters[i], Cost: cost})
		if err != nil {
			if c.Request().Context().Err() == nil { // not a client that hung up
				s.logs.Warn(s.now(), "check-failed", "ratemesh: /v1/check failed", "err", err)
			}
			c.Response().Header().Set(echo.HeaderRetryAfter, "1")
			return c.JSON(http.StatusServiceUnavailable, httpapi.ErrorResponse{Error: "check failed: " + err.Error()})
		}
		s.record(CheckKeyPrefix+reqs[i].Key, &res)
		out[i] = CheckResponse{Allowed: res.Allowed, Key: reqs[i].Key, Node: res.Node, Fallback: res.Fallback, Limits: make([]CheckLimit, len(res.Statuses))}
		for j := range res.Statuses {
			st := &res.Statuses[j]
			out[i].Limits[j] = CheckLimit{
				Limit:      st.Limit.String(),
				Remaining:  max(st.Remaining, 0),
				Reset:      ratehttp.EpochCeil(st.Reset),
				RetryAfter: ratehttp.CeilSeconds(ratehttp.RetryAfter(st)),
			}
		}
	}
	if batch {
		return c.JSON(http.StatusOK, out)
	}
	return c.JSON(http.StatusOK, out[0])
}

// decodeBatch decodes a JSON array of checks, naming a bad field with
// its index ("[2].cost"). It reads the array item by item and stops at
// the first item over the cap, before decoding the rest.
func (s *service) decodeBatch(data []byte) ([]CheckRequest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // the '[' the caller saw
		return nil, &badField{"body", "invalid JSON: " + err.Error()}
	}
	var reqs []CheckRequest
	for dec.More() {
		if len(reqs) == s.maxBatch {
			return nil, &badField{"body", fmt.Sprintf("batch of more than %d checks (the cap)", s.maxBatch)}
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, &badField{"body", "invalid JSON: " + err.Error()}
		}
		reqs = append(reqs, CheckRequest{})
		if err := decodeStrict(raw, &reqs[len(reqs)-1], fmt.Sprintf("[%d].", len(reqs)-1)); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil { // ']'
		return nil, &badField{"body", "invalid JSON: " + err.Error()}
	}
	if dec.More() || len(reqs) == 0 {
		if len(reqs) == 0 {
			return nil, &badField{"body", "empty batch"}
		}
		return nil, &badField{"body", "trailing data after the JSON value"}
	}
	return reqs, nil
}

// clip cuts a name the client chose to bucket.MaxQuoted bytes (at a rune
// boundary) and marks the cut with "…", before an error repeats it: the
// reply must not be a multiple of the request.
func clip(s string) string {
	if len(s) <= bucket.MaxQuoted {
		return s
	}
	return textcut.Prefix(s, bucket.MaxQuoted) + "…"
}

// decodeStrict decodes one JSON value, refusing unknown fields, wrong
// types and trailing data, and names the field at fault.
func decodeStrict(data []byte, v any, prefix string) error {
	if len(data) == 0 {
		return &badField{"body", "empty"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &badField{prefix + te.Field, "want " + te.Type.String() + ", got JSON " + te.Value}
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return &badField{prefix + clip(strings.Trim(f, `"`)), "unknown field"}
		}
		field := "body"
		if prefix != "" {
			field = strings.TrimSuffix(prefix, ".")
		}
		return &badField{field, "invalid JSON: " + err.Error()}
	}
	if dec.More() {
		return &badField{"body", "trailing data after the JSON value"}
	}
	return nil
}

// validate checks every request before any is counted, so that a bad one
// fails the whole batch, and builds their counters. The moving-window hits
// of the whole batch share one budget (ServiceConfig.MaxMovingWindowHits):
// each hit is 8 bytes kept for the window, and a batch of a thousand
// checks must not pin a thousand times what one may.
func (s *service) validate(reqs []CheckRequest, batch bool) ([][]bucket.Counter, error) {
	out := make([][]bucket.Counter, len(reqs))
	var hits int64
	for i := range reqs {
		prefix := ""
		if batch {
			prefix = fmt.Sprintf("[%d].", i)
		}
		cs, err := s.counters(&reqs[i])
		if err != nil {
			var bf *badField
			if errors.As(err, &bf) {
				bf.field = prefix + bf.field
			}
			return nil, err
		}
		out[i] = cs
		if hits += movingHits(&reqs[i], cs, s.maxHits); hits > s.maxHits {
			return nil, &badField{strings.TrimSuffix(prefix, "."), fmt.Sprintf("the batch would log more than %d moving-window hits (cost × moving-window limits, summed)", s.maxHits)}
		}
	}
	return out, nil
}

// movingHits is what r would log in moving-window counters, or max+1 if
// that is more than max (the product could overflow).
func movingHits(r *CheckRequest, cs []bucket.Counter, max int64) int64 {
	cost := int64(1)
	if r.Cost != nil {
		cost = *r.Cost
	}
	var n int64
	for i := range cs {
		if cs[i].Strategy == bucket.MovingWindow {
			n++
		}
	}
	if n > 0 && cost > max/n {
		return max + 1
	}
	return n * cost
}

// counters validates one request and returns its counters.
func (s *service) counters(r *CheckRequest) ([]bucket.Counter, error) {
	switch {
	case r.Key == "":
		return nil, &badField{"key", "missing"}
	case len(r.Key) > maxServiceKey:
		return nil, &badField{"key", fmt.Sprintf("longer than %d bytes", maxServiceKey)}
	case strings.TrimSpace(r.Limits) == "":
		return nil, &badField{"limits", "missing"}
	case len(r.Scope) > maxServiceScope:
		return nil, &badField{"scope", fmt.Sprintf("longer than %d bytes", maxServiceScope)}
	case r.Cost != nil && *r.Cost < 0:
		return nil, &badField{"cost", fmt.Sprintf("%d is negative", *r.Cost)}
	}
	st, err := bucket.ParseStrategy(r.Strategy)
	if err != nil {
		return nil, &badField{"strategy", err.Error()} // it quotes a little of the strategy
	}
	limits, _, err := s.limits.Get(r.Limits)
	if err != nil {
		return nil, &badField{"limits", err.Error()}
	}
	if len(limits) > bucket.MaxCountersPerCheck {
		return nil, &badField{"limits", fmt.Sprintf("%d limits, at most %d", len(limits), bucket.MaxCountersPerCheck)}
	}
	scope := r.Scope
	if scope == "" {
		scope = "default"
	}
	cs := make([]bucket.Counter, len(limits))
	for i, l := range limits {
		if err := l.ValidatePeriod(s.maxPeriod); err != nil {
			return nil, &badField{"limits", err.Error()}
		}
		cs[i] = bucket.Counter{Scope: "check:" + scope, Limit: l, Strategy: st}
		if err := cs[i].Validate(); err != nil {
			return nil, &badField{"limits", fmt.Sprintf("%s with %s: %v", l, st, err)}
		}
	}
	return cs, nil
}
