package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/logevery"
	"github.com/ratemesh/ratemesh/internal/ratehttp"
)

// Config configures a Middleware.
type Config struct {
	// Cluster decides the checks; usually a *ratemesh.Node. Required.
	Cluster Cluster
	// Policy says which limits apply where.
	Policy Policy
	// Key identifies the client of routes without a Route.Key. nil means
	// the TCP peer address (the zero ClientIP).
	Key KeyFunc
	// Headers switches header families off; the zero value writes all.
	Headers Headers
	// OnDeny answers denied requests; nil means DefaultDenyHandler.
	OnDeny DenyHandler
	// OnKeyError answers requests whose client cannot be identified; nil
	// means DefaultKeyErrorHandler.
	OnKeyError KeyErrorHandler
	// Logger receives check failures; nil discards them.
	Logger *slog.Logger
	// Registerer receives the middleware's metrics (usually the node's
	// Registry); nil keeps them unexported.
	Registerer prometheus.Registerer
	// Now is the clock the headers count seconds to reset with; nil means
	// time.Now.
	Now func() time.Time
	// Observer is told every decision (a node's stats recorder, for its
	// /v1/stats and dashboard); nil tells no one.
	Observer Observer
}

// Middleware limits HTTP requests by a Policy. It is safe for concurrent
// use; build it once at startup.
type Middleware struct {
	cluster  Cluster
	pol      atomic.Pointer[compiled] // the policy; SetPolicy swaps it
	key      KeyFunc
	headers  Headers
	onDeny   DenyHandler
	onKeyErr KeyErrorHandler
	log      *logevery.Logger
	failOpen bool // the node's fail policy is open: a failed check passes
	now      func() time.Time
	metrics  *httpMetrics
	obs      Observer  // nil: none
	gates    gates     // count-when requests in flight, per client and route
	scratch  sync.Pool // *scratch, for requests with dynamic limits
	bodies   sync.Pool // *[]byte, for DefaultDenyHandler's bodies
}

// scratch holds the counters of one request with dynamic limits.
type scratch struct {
	counters []bucket.Counter
	metas    []meta
	statuses []bucket.Status // the check's result, while limit runs
}

// New validates cfg, parses every limit string of the policy once, and
// returns the middleware.
func New(cfg Config) (*Middleware, error) {
	if cfg.Cluster == nil {
		return nil, errors.New("httpapi: Config.Cluster is nil")
	}
	pol, err := compile(cfg.Policy)
	if err != nil {
		return nil, err
	}
	metrics, err := newHTTPMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	m := &Middleware{
		cluster:  cfg.Cluster,
		key:      cfg.Key,
		headers:  cfg.Headers,
		onDeny:   cfg.OnDeny,
		onKeyErr: cfg.OnKeyError,
		failOpen: cfg.Cluster.FailPolicy() == ratemesh.FailOpen,
		now:      cfg.Now,
		metrics:  metrics,
		obs:      cfg.Observer,
	}
	m.pol.Store(pol)
	if m.key == nil {
		m.key = (&ClientIP{}).Key
	}
	if m.onDeny == nil {
		m.onDeny = DefaultDenyHandler
	}
	if m.onKeyErr == nil {
		m.onKeyErr = DefaultKeyErrorHandler
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m.log = logevery.New(cfg.Logger, DefaultLogInterval)
	if m.now == nil {
		m.now = time.Now
	}
	m.scratch.New = func() any { return new(scratch) }
	m.bodies.New = func() any { b := make([]byte, 0, 128); return &b }
	return m, nil
}

// SetPolicy replaces the policy: it is validated and compiled as New does,
// and takes effect at once and whole for the next request, while requests
// already past their check finish under the policy they were checked by.
// On an error the policy stays as it was. Counters live on in the cluster:
// a limit p keeps goes on counting where it was.
func (m *Middleware) SetPolicy(p Policy) error {
	pol, err := compile(p)
	if err != nil {
		return err
	}
	m.pol.Store(pol)
	return nil
}

// HTTP is the net/http middleware. Routes are matched by Request.Pattern,
// which http.ServeMux sets when this wraps a handler registered on it
// (mux.Handle("GET /x", mw.HTTP(h)), with the Policy path "GET /x");
// wrapping the whole mux, Pattern is empty and the default and application
// limits apply.
func (m *Middleware) HTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, done := m.Serve(w, r, r.Pattern)
		if done {
			return
		}
		if !owes(r) {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() { m.Finish(r, sw.status) }()
		next.ServeHTTP(sw, r)
	})
}

// Serve is the middleware for any router, and the core of HTTP and
// Handler: it applies the policy of the route pattern (the router's, never
// the raw URL) to r, sets the rate-limit headers on w and, when the
// request is refused, answers it. done reports that it answered and the
// handler must not run. Otherwise the caller runs the handler with out:
// r, or r with the context the key function returned, and then calls
// Finish(out, status) (needed on count-when routes).
func (m *Middleware) Serve(w http.ResponseWriter, r *http.Request, pattern string) (out *http.Request, done bool) {
	pol := m.pol.Load()
	rt := pol.lookup(r.Method, pattern)
	if rt.exempt {
		m.metrics.exempt.Inc()
		return r, false
	}
	return m.limit(w, r, pol, rt)
}

// limit checks request r against route rt of pol, as Serve describes.
func (m *Middleware) limit(w http.ResponseWriter, r *http.Request, pol *compiled, rt *route) (*http.Request, bool) {
	keyFn := rt.key
	if keyFn == nil {
		keyFn = m.key
	}
	key, ctx, err := keyFn(r)
	if err != nil {
		m.metrics.keyError.Inc()
		m.onKeyErr(w, r, err)
		return r, true
	}
	if ctx != nil {
		// Before the dynamic limits: a Tier may read what the key
		// function attached (a token's claims).
		r = r.WithContext(ctx)
	}
	s := m.scratch.Get().(*scratch)
	defer m.scratch.Put(s)
	counters, metas := rt.counters, rt.metas
	if rt.dynamic != nil {
		counters, metas = m.addDynamic(r, pol, rt, s)
	}
	if len(counters) == 0 {
		m.metrics.unlimited.Inc()
		return r, false
	}
	cost := rt.cost
	if rt.costFunc != nil {
		cost = max(rt.costFunc(r), 0)
	}
	if cap(s.statuses) < len(counters) {
		s.statuses = make([]bucket.Status, 0, len(counters))
	}
	req := ratemesh.Request{Key: key, Counters: counters, Cost: cost, StatusBuf: s.statuses}
	if rt.countWhen == nil {
		res, err := m.cluster.Check(r.Context(), req)
		return r, !m.answer(w, r, rt, key, res, err, metas)
	}
	return m.lookThenOwe(w, r, rt, req, metas)
}

// answer applies the result of r's check: headers, metrics, the deny
// handler. It reports whether the handler may run.
func (m *Middleware) answer(w http.ResponseWriter, r *http.Request, rt *route, key string, res ratemesh.Result, err error, metas []meta) bool {
	if err != nil {
		// The node has applied its fail policy already; see failure.go
		// for why what is left is refused.
		m.metrics.checkError.Inc()
		if r.Context().Err() == nil {
			// A client that hung up is no news.
			m.log.Warn(m.now(), "check-failed", "ratemesh: rate-limit check failed", "route", rt.scope, "allowed", m.failOpen, "err", err)
		}
		if !m.failOpen {
			writeCheckFailed(w)
		}
		return m.failOpen
	}
	i := -1
	if len(res.Statuses) == len(metas) {
		i = ratehttp.Pick(res.Statuses, res.Allowed)
	}
	if rt.shadow {
		m.shadowAnswer(w, r, rt, &res, i)
		return true
	}
	if i >= 0 {
		m.headers.write(w.Header(), &metas[i], &res.Statuses[i], res.Allowed, m.now)
	}
	if res.Allowed {
		m.metrics.allowed.Inc()
		if m.obs != nil {
			m.obs.RecordAllowed(m.now())
		}
		return true
	}
	m.metrics.denied.Inc()
	if m.obs != nil {
		m.obs.RecordDenied(m.now(), key, rt.scope, ratehttp.At(res.Statuses, i))
	}
	// res.Statuses is the pooled buffer: Denial documents that its
	// Statuses are valid only during the handler call.
	d := Denial{Key: key, Statuses: res.Statuses}
	if i >= 0 {
		d.Limit = res.Statuses[i].Limit
		d.RetryAfter = ratehttp.RetryAfter(&res.Statuses[i])
		d.body, d.bodyLimit, d.buffers = metas[i].denyBody, metas[i].limit, &m.bodies
	}
	m.onDeny(w, r, d)
	return false
}

// addDynamic builds the counters of a request with dynamic limits (route
// r of pol) in s.
func (m *Middleware) addDynamic(req *http.Request, pol *compiled, r *route, s *scratch) ([]bucket.Counter, []meta) {
	cs := append(s.counters[:0], r.counters...)
	ms := append(s.metas[:0], r.metas...)
	if lim := r.dynamic(req); lim != "" {
		g, fresh, err := pol.dynamic.Get(lim)
		if err != nil {
			if fresh {
				m.log.Warn(m.now(), "bad-dynamic-limit", "ratemesh: bad dynamic limit; only the route's static limits apply", "route", r.scope, "err", err)
			}
		} else {
			for i, l := range g.limits {
				cs = append(cs, bucket.Counter{Scope: r.scope, Limit: l, Strategy: r.strategy})
				ms = append(ms, g.metas[i])
			}
		}
	}
	s.counters, s.metas = cs, ms
	return cs, ms
}

// DefaultLogInterval is how often one class of event (a failed check, a
// bad dynamic limit) may log a line: a client repeating a failing request
// must not turn into a flood of log.
const DefaultLogInterval = logevery.DefaultInterval
