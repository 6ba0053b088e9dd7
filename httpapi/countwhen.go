package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
)

// A route with Route.CountWhen (or CountStatuses) counts a request only
// when its response says so, e.g. only failed logins. The check before the
// handler only looks (cost 0) and denies once a limit has less than the
// cost left; the count (cost) happens after the handler, on the key's
// owner, whatever the client does meanwhile.
//
// The race: requests of one client that pass the look before any of them
// is counted all run, so more than the limit's worth of failures could
// reach the handler. It is bounded: a node lets at most CountInFlight
// (default 1) requests of one client per route run between the look and
// the count, waiting the others at the door. A request that passes the
// look saw a limit not yet spent, so those that run once it is spent were
// all in flight at the instant of the count that spent it: at most
// nodes × CountInFlight − 1 of them. With the default, one node lets
// exactly the limit through per window, a cluster of N nodes at most
// limit + N − 1.

// maxCountWait bounds how long a request waits for the one of the same
// client in flight before it is refused (503, Retry-After: 1).
const maxCountWait = 10 * time.Second

// maxStatus is the largest status a count rule may name.
const maxStatus = 599

// countRule compiles the count-when fields of r: the predicate (nil: count
// every request before the handler) and the in-flight bound.
func countRule(r *Route) (func(int) bool, int, error) {
	if r.CountInFlight < 0 {
		return nil, 0, fmt.Errorf("count_in_flight %d is negative", r.CountInFlight)
	}
	inFlight := max(r.CountInFlight, 1)
	if r.CountWhen != nil {
		return r.CountWhen, inFlight, nil
	}
	if len(r.CountStatuses) == 0 {
		return nil, 0, nil
	}
	statuses := slices.Clone(r.CountStatuses)
	for _, s := range statuses {
		if s < 100 || s > maxStatus {
			return nil, 0, fmt.Errorf("count_when: status %d is not 100 to %d", s, maxStatus)
		}
	}
	return func(status int) bool { return slices.Contains(statuses, status) }, inFlight, nil
}

// spend turns the look of a count-when route into the decision a count of
// cost would get: a limit with less than cost left denies until it resets.
func spend(res *ratemesh.Result, cost int64, now time.Time) {
	for i := range res.Statuses {
		st := &res.Statuses[i]
		if st.Remaining < cost {
			res.Allowed = false
			if st.RetryAfter <= 0 {
				st.RetryAfter = max(st.Reset.Sub(now), time.Second)
			}
		}
	}
}

// lookThenOwe checks req of a count-when route without consuming (once
// the request of the same client and route before it has been counted),
// answers as the middleware does, and when the handler may run returns r
// owing req's count, as Serve describes.
func (m *Middleware) lookThenOwe(w http.ResponseWriter, r *http.Request, rt *route, req ratemesh.Request, metas []meta) (*http.Request, bool) {
	release, err := m.gates.acquire(r.Context(), rt.scope+"\x00"+req.Key, rt.inFlight)
	if err != nil {
		m.metrics.checkError.Inc()
		writeCheckFailed(w)
		return r, true
	}
	cost := req.Cost
	req.Cost = 0
	res, err := m.cluster.Check(r.Context(), req)
	if err == nil {
		spend(&res, cost, m.now())
	}
	if !m.answer(w, r, rt, req.Key, res, err, metas) {
		release()
		return r, true
	}
	return owe(r, rt, req.Key, req.Counters, cost, release), false
}

// pending is the count a count-when request owes once it has answered.
type pending struct {
	route    *route
	key      string
	counters []bucket.Counter // a copy: the request's may be pooled
	cost     int64
	release  func()
	once     sync.Once
}

// pendingKey is the context key of a request's pending count.
type pendingKey struct{}

// Finish counts a request of a count-when route whose handler has
// answered with status, if the route's rule matches it, and lets the next
// request of the same client in. HTTP and Handler call it; a router that
// uses Serve must call it, with the request Serve returned, after the
// handler (a deferred call is best). It does nothing for other requests
// and on a second call.
func (m *Middleware) Finish(r *http.Request, status int) {
	p, _ := r.Context().Value(pendingKey{}).(*pending)
	if p == nil {
		return
	}
	p.once.Do(func() {
		defer p.release()
		if !p.route.countWhen(status) {
			return
		}
		// A client that hangs up right after its failed login is counted
		// all the same.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), maxCountWait)
		defer cancel()
		_, err := m.cluster.Check(ctx, ratemesh.Request{Key: p.key, Counters: p.counters, Cost: p.cost})
		if err != nil {
			m.metrics.checkError.Inc()
			m.log.Warn(m.now(), "count-failed", "ratemesh: counting a request after its handler failed", "route", p.route.scope, "err", err)
		}
	})
}

// owe attaches the count r owes to its context.
func owe(r *http.Request, rt *route, key string, counters []bucket.Counter, cost int64, release func()) *http.Request {
	p := &pending{route: rt, key: key, counters: slices.Clone(counters), cost: cost, release: release}
	return r.WithContext(context.WithValue(r.Context(), pendingKey{}, p))
}

// owes reports whether r carries a count to make after its handler.
func owes(r *http.Request) bool {
	_, ok := r.Context().Value(pendingKey{}).(*pending)
	return ok
}

// gates bounds the requests of one client and route in flight between
// check and count on this node. Entries live only while a request holds
// or waits for them, so the map is bounded by the requests in flight.
type gates struct {
	mu sync.Mutex
	m  map[string]*gate
}

// gate is the semaphore of one client and route.
type gate struct {
	sem  chan struct{}
	refs int
}

// acquire waits, within ctx and maxCountWait, for a place among the n
// requests of id in flight. release gives it back.
func (g *gates) acquire(ctx context.Context, id string, n int) (release func(), err error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = make(map[string]*gate)
	}
	e := g.m[id]
	if e == nil {
		e = &gate{sem: make(chan struct{}, n)}
		g.m[id] = e
	}
	e.refs++
	g.mu.Unlock()
	t := time.NewTimer(maxCountWait)
	defer t.Stop()
	select {
	case e.sem <- struct{}{}:
		return func() { <-e.sem; g.unref(id, e) }, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
		err = fmt.Errorf("another request of the client was in flight for %v", maxCountWait)
	}
	g.unref(id, e)
	return nil, err
}

// unref drops one reference to id's gate, and the gate with the last.
func (g *gates) unref(id string, e *gate) {
	g.mu.Lock()
	if e.refs--; e.refs == 0 {
		delete(g.m, id)
	}
	g.mu.Unlock()
}

// statusWriter records the status a handler answers with.
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

// WriteHeader records the first status.
func (s *statusWriter) WriteHeader(code int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
