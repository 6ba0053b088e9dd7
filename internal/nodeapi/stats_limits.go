package nodeapi

import (
	"context"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/ratehttp"
)

// PolicyStats is an HTTP policy as configured, for /v1/stats.
type PolicyStats struct {
	Default     string        `json:"default,omitempty"`
	Application string        `json:"application,omitempty"`
	Strategy    string        `json:"strategy,omitempty"`
	Shadow      bool          `json:"shadow,omitempty"`
	Shared      []SharedStats `json:"shared,omitempty"`
	Routes      []RouteStats  `json:"routes"`
}

// SharedStats is a shared limit as configured.
type SharedStats struct {
	Scope    string `json:"scope"`
	Limits   string `json:"limits"`
	Strategy string `json:"strategy,omitempty"`
}

// RouteStats is a route of the policy as configured: its data fields, and
// which Go functions it has.
type RouteStats struct {
	Method    string            `json:"method,omitempty"`
	Path      string            `json:"path"`
	Limits    string            `json:"limits,omitempty"`
	Strategy  string            `json:"strategy,omitempty"`
	Shared    []string          `json:"shared,omitempty"`
	Exempt    bool              `json:"exempt,omitempty"`
	Shadow    bool              `json:"shadow,omitempty"`
	Cost      int64             `json:"cost,omitempty"`
	Tiers     map[string]string `json:"tiers,omitempty"`
	CountWhen []int             `json:"count_when,omitempty"`
	// Funcs names the Go functions the route has: dynamic, tier, cost,
	// key, count_when.
	Funcs []string `json:"funcs,omitempty"`
}

// policyStats describes the policy s shows, if any.
func (s *Stats) policyStats() []PolicyStats {
	src := s.shown()
	if src == nil {
		return []PolicyStats{}
	}
	p := src.Policy()
	return []PolicyStats{describePolicy(&p)}
}

// describePolicy turns p into its JSON description.
func describePolicy(p *httpapi.Policy) PolicyStats {
	ps := PolicyStats{Default: p.Default, Application: p.Application, Strategy: p.Strategy, Shadow: p.Shadow, Routes: []RouteStats{}}
	for _, sh := range p.Shared {
		ps.Shared = append(ps.Shared, SharedStats(sh))
	}
	for _, r := range p.Routes {
		rs := RouteStats{Method: r.Method, Path: r.Path, Limits: r.Limits, Strategy: r.Strategy, Shared: r.Shared,
			Exempt: r.Exempt, Shadow: r.Shadow, Cost: r.Cost, Tiers: r.Tiers, CountWhen: r.CountStatuses}
		for name, set := range map[string]bool{"dynamic": r.Dynamic != nil, "tier": r.Tier != nil, "cost": r.CostFunc != nil, "key": r.Key != nil, "count_when": r.CountWhen != nil} {
			if set {
				rs.Funcs = append(rs.Funcs, name)
			}
		}
		slices.Sort(rs.Funcs)
		ps.Routes = append(ps.Routes, rs)
	}
	return ps
}

// LimitsResponse is the body of GET /v1/limits.
type LimitsResponse struct {
	Node string `json:"node"` // the member that answered
	// Key is the routing key asked about ("" without ?key=), Owner the
	// member that owns it.
	Key    string     `json:"key,omitempty"`
	Owner  string     `json:"owner,omitempty"`
	Limits []KeyLimit `json:"limits"`
}

// KeyLimit is one counter of the policy, and with ?key= the key's state in
// it on its owner.
type KeyLimit struct {
	// Routes are the routes that count in it ("GET /products"); the
	// application and shared limits are counted by several.
	Routes   []string `json:"routes"`
	Scope    string   `json:"scope"` // the counter's scope
	Limit    string   `json:"limit"`
	Strategy string   `json:"strategy"`
	Shadow   bool     `json:"shadow,omitempty"`
	// Remaining and Reset (epoch seconds) are the key's state, looked at
	// without consuming; absent without ?key=, and Reset absent while the
	// quota is whole.
	Remaining *int64 `json:"remaining,omitempty"`
	Reset     *int64 `json:"reset,omitempty"`
}

func (s *service) limitsHandler(c echo.Context) error {
	key := c.QueryParam("key")
	if len(key) > maxServiceKey {
		return c.JSON(http.StatusBadRequest, FieldErrorResponse{Error: "key: longer than 512 bytes", Field: "key"})
	}
	rows := s.stats.limitRows()
	out := LimitsResponse{Node: s.node.Name(), Key: key, Limits: make([]KeyLimit, len(rows))}
	for i, r := range rows {
		out.Limits[i] = KeyLimit{Routes: r.Routes, Scope: r.Counter.Scope, Limit: r.Counter.Limit.String(), Strategy: r.Counter.Strategy.String(), Shadow: r.Shadow}
	}
	if key == "" {
		return c.JSON(http.StatusOK, out)
	}
	if m, ok := s.node.Owner(key); ok {
		out.Owner = m.Name
	}
	if err := s.peekAll(c.Request().Context(), key, rows, out.Limits); err != nil {
		c.Response().Header().Set(echo.HeaderRetryAfter, "1")
		return c.JSON(http.StatusServiceUnavailable, httpapi.ErrorResponse{Error: "check failed: " + err.Error()})
	}
	return c.JSON(http.StatusOK, out)
}

// peekAll looks at key's state in every row, at most
// bucket.MaxCountersPerCheck counters per check, consuming nothing.
func (s *service) peekAll(ctx context.Context, key string, rows []httpapi.PolicyCounter, out []KeyLimit) error {
	for start := 0; start < len(rows); start += bucket.MaxCountersPerCheck {
		end := min(start+bucket.MaxCountersPerCheck, len(rows))
		cs := make([]bucket.Counter, 0, end-start)
		for _, r := range rows[start:end] {
			cs = append(cs, r.Counter)
		}
		res, err := s.node.Check(ctx, ratemesh.Request{Key: key, Counters: cs, Cost: 0})
		if err != nil {
			return err
		}
		for j := range res.Statuses {
			st := &res.Statuses[j]
			rem, reset := max(st.Remaining, 0), ratehttp.EpochCeil(st.Reset)
			out[start+j].Remaining = &rem
			if rem < st.Limit.Amount {
				out[start+j].Reset = &reset
			}
		}
	}
	return nil
}

// limitRows lists every counter of the policy s shows (see
// httpapi.Middleware.Counters); nil without one.
func (s *Stats) limitRows() []httpapi.PolicyCounter {
	src := s.shown()
	if src == nil {
		return nil
	}
	return src.Counters()
}
