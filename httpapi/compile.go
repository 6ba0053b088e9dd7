package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/ratehttp"
)

// maxDefaultRoutes bounds the default routes the compiled policy caches
// at run time, one per route pattern without an entry. Patterns are few;
// past the bound a route is built on every request. The dynamic limit
// strings are cached within ratehttp's bounds.
const maxDefaultRoutes = 4096

// route is the compiled policy of one method and pattern. Read-only after
// it is built.
type route struct {
	exempt bool
	// counters and metas are the static counters (application, default or
	// own and shared); with dynamic, the dynamic ones are appended per
	// request.
	counters []bucket.Counter
	metas    []meta
	dynamic  func(*http.Request) string
	scope    string // scope of the dynamic counters
	strategy bucket.Strategy
	cost     int64
	costFunc func(*http.Request) int64
	key      KeyFunc
	shadow   bool // a dry run: see shadow.go
	// countWhen, when set, defers the count until the handler has
	// answered (see countwhen.go); inFlight bounds the requests of one
	// key between check and count on this node.
	countWhen func(status int) bool
	inFlight  int
}

// pathRoutes are the entries of one pattern.
type pathRoutes struct {
	byMethod map[string]*route
	any      *route
}

// compiled is a Policy ready for the hot path. It is never changed once
// built, but for its caches; SetPolicy replaces it whole.
type compiled struct {
	src      Policy // as configured, for Policy and Counters
	app      group
	defaults group
	strategy bucket.Strategy
	paths    map[string]*pathRoutes
	shadow   bool // Policy.Shadow, for routes without an entry

	defaultRoutes sync.Map // pattern -> *route, for patterns without an entry
	nDefault      atomic.Int64
	dynamic       *ratehttp.LimitCache[group] // parsed dynamic limit strings
}

// parseDynamic parses a dynamic limit string for dynamic's cache.
func parseDynamic(s string) (group, error) { return parseGroup("route", s) }

// compile validates p and precomputes every static counter.
func compile(p Policy) (*compiled, error) {
	c := &compiled{src: p, paths: make(map[string]*pathRoutes), dynamic: ratehttp.NewLimitCache(parseDynamic)}
	st, err := bucket.ParseStrategy(p.Strategy)
	if err != nil {
		return nil, fmt.Errorf("policy: strategy %q: %w", p.Strategy, err)
	}
	c.strategy, c.shadow = st, p.Shadow
	if c.app, err = compileGroup("app", p.Application, "", p.Strategy); err != nil {
		return nil, fmt.Errorf("policy: application: %w", err)
	}
	if c.defaults, err = compileGroup("default", p.Default, "", p.Strategy); err != nil {
		return nil, fmt.Errorf("policy: default: %w", err)
	}
	shared := make(map[string]group, len(p.Shared))
	for _, s := range p.Shared {
		if s.Scope == "" {
			return nil, fmt.Errorf("policy: shared: scope is empty")
		}
		if _, dup := shared[s.Scope]; dup {
			return nil, fmt.Errorf("policy: shared %q: defined twice", s.Scope)
		}
		g, err := compileGroup(s.Scope, s.Limits, s.Strategy, p.Strategy)
		if err != nil {
			return nil, fmt.Errorf("policy: shared %q: %w", s.Scope, err)
		}
		shared[s.Scope] = g
	}
	for i := range p.Routes {
		r := p.Routes[i] // a copy: the method is normalized
		r.Method = strings.ToUpper(r.Method)
		cr, err := c.compileRoute(&r, shared, p.Strategy)
		if err != nil {
			return nil, fmt.Errorf("policy: route %q: %w", r.name(), err)
		}
		cr.shadow = cr.shadow || p.Shadow
		pr := c.paths[r.Path]
		if pr == nil {
			pr = &pathRoutes{}
			c.paths[r.Path] = pr
		}
		m := r.Method
		if m == "" {
			if pr.any != nil {
				return nil, fmt.Errorf("policy: route %q: defined twice", r.name())
			}
			pr.any = cr
			continue
		}
		if pr.byMethod == nil {
			pr.byMethod = make(map[string]*route)
		}
		if pr.byMethod[m] != nil {
			return nil, fmt.Errorf("policy: route %q: defined twice", r.name())
		}
		pr.byMethod[m] = cr
	}
	return c, nil
}

// compileRoute builds the route of one entry.
func (c *compiled) compileRoute(r *Route, shared map[string]group, strategy string) (*route, error) {
	if r.Path == "" {
		return nil, errNoPath
	}
	if r.Exempt {
		return &route{exempt: true}, nil
	}
	if r.Cost < 0 {
		return nil, fmt.Errorf("cost %d is negative", r.Cost)
	}
	cr := &route{cost: r.Cost, costFunc: r.CostFunc, key: r.Key, scope: r.name(), shadow: r.Shadow}
	if cr.cost == 0 {
		cr.cost = 1
	}
	var err error
	if cr.countWhen, cr.inFlight, err = countRule(r); err != nil {
		return nil, err
	}
	cr.counters, cr.metas = c.app.appendTo(nil, nil, scopeApp)
	if !r.ownLimits() {
		cr.counters, cr.metas = c.defaults.appendTo(cr.counters, cr.metas, r.Path)
		return cr, checkCount(cr)
	}
	for _, name := range r.Shared {
		g, ok := shared[name]
		if !ok {
			return nil, fmt.Errorf("shared %q is not defined", name)
		}
		cr.counters, cr.metas = g.appendTo(cr.counters, cr.metas, scopeShared+name)
	}
	own, err := compileGroup("route", r.Limits, r.Strategy, strategy)
	if err != nil {
		return nil, err
	}
	cr.strategy = own.strategy
	switch {
	case r.Dynamic != nil:
		cr.dynamic = r.Dynamic
	case r.Tier != nil:
		cr.dynamic, err = tierFunc(r, own.strategy)
		if err != nil {
			return nil, err
		}
	case len(r.Tiers) > 0:
		return nil, fmt.Errorf("tiers need a Tier function")
	default:
		cr.counters, cr.metas = own.appendTo(cr.counters, cr.metas, cr.scope)
	}
	return cr, checkCount(cr)
}

// tierFunc turns Tiers into a dynamic limit function, validating every
// limit string now so that a bad one stops the start, not a request.
func tierFunc(r *Route, st bucket.Strategy) (func(*http.Request) string, error) {
	tiers := make(map[string]string, len(r.Tiers))
	for name, limits := range r.Tiers {
		g, err := parseGroup("route", limits)
		if err != nil {
			return nil, fmt.Errorf("tier %q: %w", name, err)
		}
		for _, l := range g.limits {
			if err := (bucket.Counter{Scope: "route", Limit: l, Strategy: st}).Validate(); err != nil {
				return nil, fmt.Errorf("tier %q: limits %q: %w", name, limits, err)
			}
		}
		tiers[name] = limits
	}
	tier, fallback := r.Tier, r.Limits
	return func(req *http.Request) string {
		if s, ok := tiers[tier(req)]; ok {
			return s
		}
		return fallback
	}, nil
}

// checkCount rejects routes with more static counters than one check takes.
func checkCount(r *route) error {
	if len(r.counters) > bucket.MaxCountersPerCheck {
		return fmt.Errorf("%d limits apply, at most %d can", len(r.counters), bucket.MaxCountersPerCheck)
	}
	return nil
}

// lookup returns the route of a request. pattern is the Echo route pattern
// (or net/http's Request.Pattern); it is never a raw URL, so the set of
// patterns, and of cached default routes, is bounded by the routes served.
func (c *compiled) lookup(method, pattern string) *route {
	if pr := c.paths[pattern]; pr != nil {
		if r := pr.byMethod[method]; r != nil {
			return r
		}
		if pr.any != nil {
			return pr.any
		}
	}
	if v, ok := c.defaultRoutes.Load(pattern); ok {
		return v.(*route)
	}
	scope := pattern
	if scope == "" {
		scope = scopeUnmatched
	}
	r := &route{cost: 1, scope: scope, shadow: c.shadow}
	r.counters, r.metas = c.app.appendTo(nil, nil, scopeApp)
	r.counters, r.metas = c.defaults.appendTo(r.counters, r.metas, scope)
	if c.nDefault.Load() < maxDefaultRoutes {
		if v, loaded := c.defaultRoutes.LoadOrStore(pattern, r); loaded {
			return v.(*route)
		}
		c.nDefault.Add(1)
	}
	return r
}
