package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/ratehttp"
)

// Policy says which limits apply to which requests. It is plain data (the
// fields tagged yaml), so a file can carry it; the Go-only fields of Route
// make limits, costs and keys depend on the request. The zero value limits
// nothing.
//
// A request is matched to a Route by its method and route pattern (Echo's
// c.Path(), e.g. "/products/:id", or net/http's Request.Pattern, e.g.
// "GET /products/{id}"), never by its raw URL, so every counter scope is
// known when the policy is built.
type Policy struct {
	// Default limits apply to every route without limits of its own
	// (Flask-Limiter's default_limits), counted per route pattern, all
	// methods together. Empty: none.
	Default string `yaml:"default"`
	// Application limits apply on top of any other to every request that
	// is not exempt, counted once for the whole application
	// (Flask-Limiter's application_limits). Empty: none.
	Application string `yaml:"application"`
	// Strategy is the algorithm of the default and application limits and
	// of every Shared or Route that names none: "fixed-window" (or empty),
	// "sliding-window-counter", "moving-window" or "token-bucket".
	Strategy string `yaml:"strategy"`
	// Shared are limits with a name that several routes count together
	// (Flask-Limiter's shared_limit); a Route joins one by naming it.
	Shared []Shared `yaml:"shared"`
	// Routes are the per-route entries. At most one per method and path.
	Routes []Route `yaml:"routes"`
	// Shadow makes every limit a dry run (see Route.Shadow), so that a
	// whole new policy can be watched on live traffic before it is
	// enforced.
	Shadow bool `yaml:"shadow"`
}

// Shared is a named limit counted across every route that names it.
type Shared struct {
	// Scope names the shared counters, e.g. "products".
	Scope string `yaml:"scope"`
	// Limits is a limit string, e.g. "20 per minute".
	Limits string `yaml:"limits"`
	// Strategy overrides Policy.Strategy for these limits.
	Strategy string `yaml:"strategy"`
}

// Route is the policy of one route pattern, for one method or for all.
//
// A route that has limits of its own (Limits, Shared, Tiers or Dynamic)
// replaces the default limits, as Flask-Limiter's override_defaults; one
// that only sets a cost or a key keeps them.
type Route struct {
	// Method is the HTTP method ("GET"); empty matches every method not
	// given an entry of its own, and then all methods count together.
	Method string `yaml:"method"`
	// Path is the route pattern, e.g. "/products/:id" under Echo or
	// "GET /products/{id}" under http.ServeMux.
	Path string `yaml:"path"`
	// Limits is the route's limit string, e.g. "10 per minute; 200 per
	// day". With Tier or Dynamic, it is the fallback for unknown tiers.
	Limits string `yaml:"limits"`
	// Strategy overrides Policy.Strategy for the route's own limits.
	Strategy string `yaml:"strategy"`
	// Shared names Policy.Shared scopes the route counts in.
	Shared []string `yaml:"shared"`
	// Exempt routes are never limited, not even by application limits.
	Exempt bool `yaml:"exempt"`
	// Cost is what one request consumes; 0 means 1.
	Cost int64 `yaml:"cost"`
	// Tiers maps a tier name (as Tier returns it) to a limit string; ""
	// means unlimited. A tier missing from the map gets Limits.
	Tiers map[string]string `yaml:"tiers"`
	// Shadow makes the route's limits a dry run: every request is
	// allowed, and those the limits would have denied are counted in
	// ratemesh_http_shadow_denials_total{route,limit} (see shadow.go).
	Shadow bool `yaml:"shadow"`
	// CountStatuses makes the route count a request only when its
	// response status is one of these (e.g. [401]: failed logins only);
	// see CountWhen. Empty: every request counts, before the handler.
	CountStatuses []int `yaml:"count_when"`
	// CountInFlight bounds the requests of one client on this route that
	// a node lets run between the check and the count, with CountWhen or
	// CountStatuses; 0 means 1. See countwhen.go for the race it bounds.
	CountInFlight int `yaml:"count_in_flight"`

	// Tier names the caller's tier, e.g. from a JWT claim that the key
	// function attached to the request's context; Tiers turns it into
	// limits.
	Tier func(r *http.Request) string `yaml:"-"`
	// Dynamic returns the limit string of this request (Flask-Limiter's
	// callable limits); "" means unlimited. Results are parsed once and
	// cached by string. It takes precedence over Tier.
	Dynamic func(r *http.Request) string `yaml:"-"`
	// CostFunc returns the cost of this request instead of Cost; a
	// negative result counts as 0 (a peek).
	CostFunc func(r *http.Request) int64 `yaml:"-"`
	// Key identifies the client on this route instead of Config.Key, e.g.
	// the JWT subject on a route that requires a login.
	Key KeyFunc `yaml:"-"`
	// CountWhen makes the route count a request only when it returns
	// true for the response status (Flask-Limiter's deduct_when): the
	// check before the handler only looks, and denies once the limits are
	// spent; the count happens after the handler. It takes precedence
	// over CountStatuses.
	CountWhen func(status int) bool `yaml:"-"`
}

// ownLimits reports whether r replaces the default limits.
func (r *Route) ownLimits() bool {
	return r.Limits != "" || len(r.Shared) > 0 || len(r.Tiers) > 0 || r.Tier != nil || r.Dynamic != nil
}

// name is how errors name the route.
func (r *Route) name() string {
	if r.Method == "" {
		return r.Path
	}
	return r.Method + " " + r.Path
}

// group is a compiled limit string: its limits, strategy and header
// metadata, ready to become counters of any scope.
type group struct {
	limits   []bucket.Limit
	strategy bucket.Strategy
	metas    []meta
}

// compileGroup parses a limit string for the counters of kind (the
// header name of the group).
func compileGroup(kind, limits, strategy, fallback string) (group, error) {
	if strategy == "" {
		strategy = fallback
	}
	st, err := bucket.ParseStrategy(strategy)
	if err != nil {
		return group{}, fmt.Errorf("strategy %q: %w", strategy, err)
	}
	g, err := parseGroup(kind, limits)
	if err != nil {
		return group{}, err
	}
	g.strategy = st
	for _, l := range g.limits {
		if err := (bucket.Counter{Scope: kind, Limit: l, Strategy: st}).Validate(); err != nil {
			return group{}, fmt.Errorf("limits %.40q: %w", limits, err)
		}
	}
	return g, nil
}

// parseGroup parses limits ("" = none) and prepares their headers.
func parseGroup(kind, limits string) (group, error) {
	if strings.TrimSpace(limits) == "" {
		return group{}, nil
	}
	ls, err := ratehttp.ParseLimits(limits)
	if err != nil {
		return group{}, err
	}
	g := group{limits: ls, metas: make([]meta, len(ls))}
	for i, l := range ls {
		g.metas[i] = newMeta(kind, l, len(ls) > 1)
	}
	return g, nil
}

// appendTo appends the group's counters under scope.
func (g *group) appendTo(cs []bucket.Counter, ms []meta, scope string) ([]bucket.Counter, []meta) {
	for i, l := range g.limits {
		cs = append(cs, bucket.Counter{Scope: scope, Limit: l, Strategy: g.strategy})
		ms = append(ms, g.metas[i])
	}
	return cs, ms
}

// Scopes of the counters the policy creates. Route counters use the
// route's name ("GET /products", or "/products" for all methods), default
// counters the bare pattern, so none of them can meet.
const (
	scopeApp       = "app"
	scopeShared    = "shared:"
	scopeUnmatched = "*unmatched"
)

// errNoPath reports a route entry without a path.
var errNoPath = errors.New("path is empty")

// Validate reports the first error New would report for p: a bad limit
// string or strategy, a shared scope used but not defined, a route defined
// twice, more limits on a route than one check takes.
func (p Policy) Validate() error {
	_, err := compile(p)
	return err
}
