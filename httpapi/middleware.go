package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
)

// Config configures a Middleware.
type Config struct {
	// Limiter decides the checks; usually a *ratemesh.Node. Required.
	Limiter Limiter
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
}

// Middleware limits HTTP requests by a Policy. It is safe for concurrent
// use; build it once at startup.
type Middleware struct {
	lim      Limiter
	pol      *compiled
	key      KeyFunc
	headers  Headers
	onDeny   DenyHandler
	onKeyErr KeyErrorHandler
	log      *slog.Logger
	now      func() time.Time
	metrics  *httpMetrics
	scratch  sync.Pool // *scratch, for requests with dynamic limits
	bodies   sync.Pool // *[]byte, for DefaultDenyHandler's bodies
	echo     *echo.Echo
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
	if cfg.Limiter == nil {
		return nil, errors.New("httpapi: Config.Limiter is nil")
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
		lim:      cfg.Limiter,
		pol:      pol,
		key:      cfg.Key,
		headers:  cfg.Headers,
		onDeny:   cfg.OnDeny,
		onKeyErr: cfg.OnKeyError,
		log:      cfg.Logger,
		now:      cfg.Now,
		metrics:  metrics,
		echo:     echo.New(),
	}
	if m.key == nil {
		m.key = (&ClientIP{}).Key
	}
	if m.onDeny == nil {
		m.onDeny = DefaultDenyHandler
	}
	if m.onKeyErr == nil {
		m.onKeyErr = DefaultKeyErrorHandler
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.scratch.New = func() any { return new(scratch) }
	m.bodies.New = func() any { b := make([]byte, 0, 128); return &b }
	return m, nil
}

// Handler is the Echo middleware: e.Use(mw.Handler), or per group or route.
// Requests are matched to the policy by method and c.Path(), so it must run
// after routing (Use, not Pre).
func (m *Middleware) Handler(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := m.pol.lookup(c.Request().Method, c.Path())
		if r.exempt {
			m.metrics.exempt.Inc()
			return next(c)
		}
		if done, err := m.limit(c, r); done {
			return err
		}
		return next(c)
	}
}

// HTTP is the net/http middleware, for servers that are not Echo. Routes
// are matched by Request.Pattern, which http.ServeMux sets when this wraps
// a handler registered on it (mux.Handle("GET /x", mw.HTTP(h)), with the
// Policy path "GET /x"); wrapping the whole mux, Pattern is empty and the
// default and application limits apply. Key functions see an echo.Context
// over the request.
func (m *Middleware) HTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		c := m.echo.AcquireContext()
		c.Reset(req, w)
		c.SetPath(req.Pattern)
		defer m.echo.ReleaseContext(c)
		r := m.pol.lookup(req.Method, req.Pattern)
		if !r.exempt {
			done, err := m.limit(c, r)
			if err != nil {
				m.echo.HTTPErrorHandler(err, c)
			}
			if done {
				return
			}
		} else {
			m.metrics.exempt.Inc()
		}
		next.ServeHTTP(w, req)
	})
}

// limit checks request c against route r, sets the headers and, when the
// request is refused, answers it. done reports that the request must not
// reach the handler.
func (m *Middleware) limit(c echo.Context, r *route) (done bool, err error) {
	keyFn := r.key
	if keyFn == nil {
		keyFn = m.key
	}
	key, err := keyFn(c)
	if err != nil {
		m.metrics.keyError.Inc()
		return true, m.onKeyErr(c, err)
	}
	s := m.scratch.Get().(*scratch)
	defer m.scratch.Put(s)
	counters, metas := r.counters, r.metas
	if r.dynamic != nil {
		counters, metas = m.addDynamic(c, r, s)
	}
	if len(counters) == 0 {
		m.metrics.unlimited.Inc()
		return false, nil
	}
	cost := r.cost
	if r.costFunc != nil {
		cost = max(r.costFunc(c), 0)
	}
	if cap(s.statuses) < len(counters) {
		s.statuses = make([]bucket.Status, 0, len(counters))
	}
	res, err := m.lim.Check(c.Request().Context(), ratemesh.Request{Key: key, Counters: counters, Cost: cost, StatusBuf: s.statuses})
	if err != nil {
		// The node has applied its fail policy already; what is left
		// must not become a 500 for the client.
		m.metrics.checkError.Inc()
		if c.Request().Context().Err() == nil {
			// A client that hung up is no news; logging each one would
			// let clients flood the log.
			m.log.Warn("ratemesh: rate-limit check failed; request allowed", "route", r.scope, "err", err)
		}
		return false, nil
	}
	i := -1
	if len(res.Statuses) == len(metas) {
		i = pick(res.Statuses, res.Allowed)
	}
	if i >= 0 {
		m.headers.write(c.Response().Header(), &metas[i], &res.Statuses[i], res.Allowed, m.now)
	}
	if res.Allowed {
		m.metrics.allowed.Inc()
		return false, nil
	}
	m.metrics.denied.Inc()
	// res.Statuses is the pooled buffer: Denial documents that its
	// Statuses are valid only during the handler call.
	d := Denial{Key: key, Statuses: res.Statuses}
	if i >= 0 {
		d.Limit = res.Statuses[i].Limit
		d.RetryAfter = retryAfter(&res.Statuses[i])
		d.body, d.bodyLimit, d.buffers = metas[i].denyBody, metas[i].limit, &m.bodies
	}
	return true, m.onDeny(c, d)
}

// addDynamic builds the counters of a request with dynamic limits in s.
func (m *Middleware) addDynamic(c echo.Context, r *route, s *scratch) ([]bucket.Counter, []meta) {
	cs := append(s.counters[:0], r.counters...)
	ms := append(s.metas[:0], r.metas...)
	if lim := r.dynamic(c); lim != "" {
		d, fresh := m.pol.dynamicGroup(lim)
		if d.err != nil {
			if fresh {
				m.log.Error("ratemesh: bad dynamic limit; route unlimited for it", "route", r.scope, "limits", lim, "err", d.err)
			}
		} else {
			for i, l := range d.g.limits {
				cs = append(cs, bucket.Counter{Scope: r.scope, Limit: l, Strategy: r.strategy})
				ms = append(ms, d.g.metas[i])
			}
		}
	}
	s.counters, s.metas = cs, ms
	return cs, ms
}
