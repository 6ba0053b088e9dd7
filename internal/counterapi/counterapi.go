// Package counterapi is a node's counter API: the operations of a rate
// limit storage such as the reference's Redis one (increment a key's counter
// with an expiry, read it, clear it, and a moving window's acquire and
// read), for clients that keep their own limits and want the cluster to
// hold the counts (the Python package clients/python/ratemesh_limits).
//
// Each operation is one check, forwarded to the key's owner and decided
// there exactly and atomically, on counters of a key space of their own
// (routing key KeyPrefix + key). An increment is a check of a
// bucket.Tally (bucket.ElasticTally when elastic) that counts every hit; a
// moving window is a bucket.MovingWindow counter. Both are bucket entries,
// so handoffs, replicas and the data directory carry them as they carry any
// limit's counts.
package counterapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
)

// KeyPrefix is put before every key of the counter API to make its routing
// key: its counters live apart from the middleware's and /v1/check's.
const KeyPrefix = "counter|"

// scope names the API's counters inside a routing key's entry.
const scope = "counter"

// MaxKey bounds a key in bytes, as /v1/check bounds its keys.
const MaxKey = 512

// maxBody bounds a request body: a key and three numbers.
const maxBody = 4 << 10

// maxAmount bounds one increment, far below what would make a count
// overflow.
const maxAmount = 1 << 40

// tallyAmount is the Amount of every tally: it counts everything, as a
// storage's counter does.
const tallyAmount = math.MaxInt64

// Node is what the counter API needs from a node. *ratemesh.Node
// satisfies it.
type Node interface {
	// Check decides req on the owner of req.Key.
	Check(ctx context.Context, req ratemesh.Request) (ratemesh.Result, error)
	// Reset forgets every counter of a routing key, cluster-wide.
	Reset(ctx context.Context, key string) error
}

// Routes is where Register mounts the API; *echo.Echo and *echo.Group both
// qualify.
type Routes interface {
	POST(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route
}

// Config configures the counter API. The zero value is usable.
type Config struct {
	// MaxPeriod bounds an expiry, as httpapi.ServiceConfig.MaxPeriod bounds
	// the periods of /v1/check. 0 means bucket.DefaultMaxClientPeriod (24h).
	MaxPeriod time.Duration
	// Now is the clock of the answers' instants; nil means time.Now.
	Now func() time.Time
}

// Register mounts the counter API on r:
//
//	POST /v1/counters/incr     {"key","expiry","amount","elastic"} → {"key","count","expiry","node"}
//	POST /v1/counters/get      {"key"}                             → {"key","count","expiry","node"}
//	POST /v1/counters/clear    {"key"}                             → {"key","node"}
//	POST /v1/counters/acquire  {"key","limit","expiry","amount"}   → {"key","acquired","count","node"}
//	POST /v1/counters/window   {"key","limit","expiry"}            → {"key","start","count","node"}
//
// Expiries are seconds; instants are Unix seconds. Bad input is 400 with
// {"error","field"}; a node that could not have the operation decided by
// the key's owner answers 503 with {"error"}. The node's API token guards
// these routes as it guards every /v1/ route.
func Register(r Routes, node Node, cfg Config) error {
	if node == nil {
		return errors.New("counterapi: Register: node is nil")
	}
	a := &api{node: node, maxPeriod: cfg.MaxPeriod, now: cfg.Now}
	if a.maxPeriod <= 0 {
		a.maxPeriod = bucket.DefaultMaxClientPeriod
	}
	if a.now == nil {
		a.now = time.Now
	}
	r.POST("/v1/counters/incr", a.serve(a.incr, "amount", "elastic", "expiry"))
	r.POST("/v1/counters/get", a.serve(a.get))
	r.POST("/v1/counters/clear", a.serve(a.clear))
	r.POST("/v1/counters/acquire", a.serve(a.acquire, "amount", "expiry", "limit"))
	r.POST("/v1/counters/window", a.serve(a.window, "expiry", "limit"))
	return nil
}

type api struct {
	node      Node
	maxPeriod time.Duration
	now       func() time.Time
}

// Request is the body of every operation; each reads the fields it names
// in Register's table and refuses the others.
type Request struct {
	// Key names the counter. Required, at most MaxKey bytes.
	Key string `json:"key"`
	// Expiry is in seconds: how long a count lasts after the hit that
	// started it (after every hit, when Elastic), or a moving window's
	// length. Positive, at most Config.MaxPeriod.
	Expiry *float64 `json:"expiry,omitempty"`
	// Amount is what an increment adds or how many entries an acquire
	// takes; absent means 1, 0 only reads.
	Amount *int64 `json:"amount,omitempty"`
	// Elastic makes an increment push the expiry.
	Elastic bool `json:"elastic,omitempty"`
	// Limit is how many entries a moving window holds, at most
	// bucket.MaxMovingWindowAmount.
	Limit *int64 `json:"limit,omitempty"`
}

// Response is the body of every operation's answer.
type Response struct {
	Key string `json:"key"`
	// Count is the counter after an increment or read, or the entries in
	// a moving window.
	Count int64 `json:"count"`
	// Expiry is when the count expires, in Unix seconds; the current time
	// when there is no count (incr, get).
	Expiry *float64 `json:"expiry,omitempty"`
	// Acquired reports whether an acquire took its entries (acquire).
	Acquired *bool `json:"acquired,omitempty"`
	// Start is the time of the newest entry still in the moving window,
	// in Unix seconds, or the current time when the window is empty
	// (window): the reference storages' "window start".
	Start *float64 `json:"start,omitempty"`
	// Node is the member that decided.
	Node string `json:"node"`
}

// ErrorResponse is the body of a refusal: what was wrong, and with a 400
// the field it is about.
type ErrorResponse struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func (a *api) incr(ctx context.Context, req *Request) (Response, error) {
	p, err := a.period(req.Expiry)
	if err != nil {
		return Response{}, err
	}
	amount, err := amountOf(req.Amount, maxAmount)
	if err != nil {
		return Response{}, err
	}
	ctr := bucket.Counter{Scope: scope, Limit: bucket.Limit{Amount: tallyAmount, Period: p}, Strategy: bucket.Tally}
	if req.Elastic {
		ctr.Strategy = bucket.ElasticTally
	}
	return a.tally(ctx, req.Key, ctr, amount)
}

func (a *api) get(ctx context.Context, req *Request) (Response, error) {
	// A tally is named by its scope alone: any period reads it.
	ctr := bucket.Counter{Scope: scope, Limit: bucket.Limit{Amount: tallyAmount, Period: time.Second}, Strategy: bucket.Tally}
	return a.tally(ctx, req.Key, ctr, 0)
}

// tally runs a check of ctr with cost and answers the count and expiry.
func (a *api) tally(ctx context.Context, key string, ctr bucket.Counter, cost int64) (Response, error) {
	res, err := a.check(ctx, key, ctr, cost)
	if err != nil {
		return Response{}, err
	}
	if !res.Allowed {
		return Response{}, bad("amount", "the count would overflow")
	}
	st := res.Statuses[0]
	return Response{Key: key, Count: tallyAmount - st.Remaining, Expiry: unix(st.Reset), Node: res.Node}, nil
}

func (a *api) clear(ctx context.Context, req *Request) (Response, error) {
	if err := a.node.Reset(ctx, KeyPrefix+req.Key); err != nil {
		return Response{}, unavailable("clear failed: " + err.Error())
	}
	return Response{Key: req.Key}, nil
}

func (a *api) acquire(ctx context.Context, req *Request) (Response, error) {
	ctr, err := a.moving(req)
	if err != nil {
		return Response{}, err
	}
	amount, err := amountOf(req.Amount, bucket.MaxMovingWindowHitsPerCheck)
	if err != nil {
		return Response{}, err
	}
	// More than the window ever holds is refused, without counting.
	over := amount > ctr.Limit.Amount
	if over {
		amount = 0
	}
	res, err := a.check(ctx, req.Key, ctr, amount)
	if err != nil {
		return Response{}, err
	}
	acquired := res.Allowed && !over
	return Response{Key: req.Key, Count: ctr.Limit.Amount - res.Statuses[0].Remaining, Acquired: &acquired, Node: res.Node}, nil
}

func (a *api) window(ctx context.Context, req *Request) (Response, error) {
	ctr, err := a.moving(req)
	if err != nil {
		return Response{}, err
	}
	res, err := a.check(ctx, req.Key, ctr, 0)
	if err != nil {
		return Response{}, err
	}
	st := res.Statuses[0]
	out := Response{Key: req.Key, Count: ctr.Limit.Amount - st.Remaining, Node: res.Node}
	// Reset is the newest entry's time plus the window, or now if empty.
	out.Start = unix(st.Reset)
	if out.Count > 0 {
		*out.Start -= ctr.Limit.Period.Seconds()
	}
	return out, nil
}

// moving builds the moving-window counter of an acquire or window request.
func (a *api) moving(req *Request) (bucket.Counter, error) {
	p, err := a.period(req.Expiry)
	if err != nil {
		return bucket.Counter{}, err
	}
	if req.Limit == nil {
		return bucket.Counter{}, bad("limit", "required")
	}
	if l := *req.Limit; l < 0 || l > bucket.MaxMovingWindowAmount {
		return bucket.Counter{}, bad("limit", fmt.Sprintf("a moving window holds 0 to %d entries, got %d", bucket.MaxMovingWindowAmount, l))
	}
	return bucket.Counter{Scope: scope, Limit: bucket.Limit{Amount: *req.Limit, Period: p}, Strategy: bucket.MovingWindow}, nil
}

// check runs one check of ctr on key's owner.
func (a *api) check(ctx context.Context, key string, ctr bucket.Counter, cost int64) (ratemesh.Result, error) {
	res, err := a.node.Check(ctx, ratemesh.Request{Key: KeyPrefix + key, Counters: []bucket.Counter{ctr}, Cost: cost})
	if err == nil && res.Fallback {
		// The fail policy decided without the owner: not a count.
		err = errors.New("no owner of the key answered")
	}
	if err != nil {
		return res, unavailable("counter operation failed: " + err.Error())
	}
	return res, nil
}

func unix(t time.Time) *float64 {
	s := float64(t.UnixNano()) / 1e9
	return &s
}
