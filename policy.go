package ratemesh

import (
	"fmt"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
)

// FailPolicy says what a node decides when no owner of a key answers.
type FailPolicy uint8

// The fail policies. FailLocal, the zero value, is the default.
const (
	// FailLocal decides on the asking node's own counters, as
	// Flask-Limiter falls back to memory when its storage is down: limits
	// hold per node instead of per cluster until the owner answers again.
	FailLocal FailPolicy = iota
	// FailOpen allows the request.
	FailOpen
	// FailClosed denies it, with a retry-after of one second.
	FailClosed
)

// String returns "local", "open" or "closed".
func (p FailPolicy) String() string {
	switch p {
	case FailLocal:
		return "local"
	case FailOpen:
		return "open"
	case FailClosed:
		return "closed"
	}
	return fmt.Sprintf("FailPolicy(%d)", uint8(p))
}

// ParseFailPolicy reads "local", "open" or "closed"; "" means local.
func ParseFailPolicy(s string) (FailPolicy, error) {
	switch s {
	case "", "local":
		return FailLocal, nil
	case "open":
		return FailOpen, nil
	case "closed":
		return FailClosed, nil
	}
	return 0, fmt.Errorf("fail policy %q: want local, open or closed", s)
}

// decide answers req as the policy says, at now, on store for FailLocal.
func (p FailPolicy) decide(store *bucket.Store, now time.Time, req *rpc.CheckRequest, resp *rpc.CheckResponse) error {
	if p == FailLocal {
		var err error
		resp.Statuses, resp.Allowed, err = store.Check(now, req.Key, req.Counters, req.Cost, resp.Statuses[:0])
		return err
	}
	resp.Allowed = p == FailOpen
	resp.Statuses = resp.Statuses[:0]
	for _, c := range req.Counters {
		st := bucket.Status{Limit: c.Limit, Remaining: c.Limit.Amount, Reset: now}
		if !resp.Allowed {
			st = bucket.Status{Limit: c.Limit, Reset: now.Add(time.Second), RetryAfter: time.Second}
		}
		resp.Statuses = append(resp.Statuses, st)
	}
	return nil
}
