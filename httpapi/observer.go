package httpapi

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
)

// Observer is told every decision of a middleware (Config.Observer), such
// as a node's stats recorder. It is called on the request's goroutine, so
// it must be quick and safe for concurrent use.
type Observer interface {
	// RecordAllowed is told a request allowed at now (a shadow route's
	// that its limits allowed, too).
	RecordAllowed(now time.Time)
	// RecordDenied is told a request of key denied at now on route (its
	// scope, e.g. "GET /products") by st, the status that denied it; st
	// is nil when the check returned none.
	RecordDenied(now time.Time, key, route string, st *bucket.Status)
	// RecordShadowDenied is told a request a shadow route let through
	// that limit (its string, "" if unknown) would have denied.
	RecordShadowDenied(now time.Time, route, limit string)
}

// PolicyCounter is one counter the middleware's policy creates, and the
// routes that count in it.
type PolicyCounter struct {
	Counter bucket.Counter
	// Routes are the route scopes that count in it ("GET /products"),
	// sorted; the application and shared limits are counted by several.
	Routes []string
	// Shadow reports that the counter's limits are a dry run: every
	// route that uses it is a shadow route.
	Shadow bool
}

// Policy returns the policy the middleware applies now, as it was given
// to New or SetPolicy. The caller must not change its slices or maps.
func (m *Middleware) Policy() Policy { return m.pol.Load().src }

// Counters lists every counter the policy creates, each once, in scope,
// period and amount order: those of the routes with an entry and of the
// route patterns seen so far without one. Dynamic routes contribute the
// counters of their tiers and fallback limits; a Dynamic function's own
// strings are not known in advance. Exempt routes count in none.
func (m *Middleware) Counters() []PolicyCounter {
	pol := m.pol.Load()
	byCounter := map[bucket.Counter]*PolicyCounter{}
	add := func(name string, shadow bool, cs []bucket.Counter) {
		for _, c := range cs {
			r := byCounter[c]
			if r == nil {
				r = &PolicyCounter{Counter: c, Shadow: shadow}
				byCounter[c] = r
			}
			// Shadow only if every route that uses it is: one enforcing
			// route makes the counter limit requests.
			r.Shadow = r.Shadow && shadow
			if !slices.Contains(r.Routes, name) {
				r.Routes = append(r.Routes, name)
			}
		}
	}
	for _, rt := range pol.allRoutes() {
		if rt.exempt {
			continue
		}
		add(rt.scope, rt.shadow, rt.counters)
		add(rt.scope, rt.shadow, dynamicCounters(&pol.src, rt))
	}
	out := make([]PolicyCounter, 0, len(byCounter))
	for _, r := range byCounter {
		slices.Sort(r.Routes)
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b PolicyCounter) int {
		return cmp.Or(strings.Compare(a.Counter.Scope, b.Counter.Scope), cmp.Compare(a.Counter.Limit.Period, b.Counter.Limit.Period), cmp.Compare(a.Counter.Limit.Amount, b.Counter.Limit.Amount))
	})
	return out
}

// dynamicCounters are the counters a dynamic route rt of p may add: those
// of its fallback limits and of its tiers.
func dynamicCounters(p *Policy, rt *route) []bucket.Counter {
	if rt.dynamic == nil {
		return nil
	}
	var cs []bucket.Counter
	for _, r := range p.Routes {
		if r.name() != rt.scope && strings.ToUpper(r.Method)+" "+r.Path != rt.scope {
			continue
		}
		strs := append([]string{r.Limits}, slices.Sorted(maps.Values(r.Tiers))...)
		for _, lim := range strs {
			g, err := parseGroup("route", lim)
			if err != nil {
				continue // validated at New; a bad string cannot be here
			}
			for _, l := range g.limits {
				cs = append(cs, bucket.Counter{Scope: rt.scope, Limit: l, Strategy: rt.strategy})
			}
		}
	}
	return cs
}

// allRoutes lists the compiled routes: those with an entry, and the
// default routes of the patterns seen so far.
func (c *compiled) allRoutes() []*route {
	var out []*route
	for _, pr := range c.paths {
		for _, r := range pr.byMethod {
			out = append(out, r)
		}
		if pr.any != nil {
			out = append(out, pr.any)
		}
	}
	c.defaultRoutes.Range(func(_, v any) bool {
		out = append(out, v.(*route))
		return true
	})
	return out
}
