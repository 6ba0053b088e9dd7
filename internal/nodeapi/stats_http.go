package nodeapi

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	dto "github.com/prometheus/client_model/go"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/nodeapi/ui"
	"github.com/ratemesh/ratemesh/internal/ratehttp"
)

// Bounds of the cluster view of GET /v1/stats.
const (
	// peerStatsTimeout bounds the wait for one member's stats: a member
	// that does not answer in time is shown with an error.
	peerStatsTimeout = time.Second
	// maxPeerStats bounds a member's /v1/stats body.
	maxPeerStats = 1 << 20
	// ringShareSamples is how many keys the ring shares are estimated
	// from: within about 1.5 points of the true share.
	ringShareSamples = 4096
)

// StatsResponse is the body of GET /v1/stats.
type StatsResponse struct {
	Node  string `json:"node"`  // the member that answered
	Time  int64  `json:"time"`  // epoch milliseconds
	Scope string `json:"scope"` // "cluster" or "node"
	// Members are the members as the answering node sees them.
	Members []MemberStats `json:"members"`
	// Nodes are the members' own stats, the answering node first; with
	// scope=node only its own.
	Nodes []NodeStats `json:"nodes"`
	// TopDenied are the keys denied most over Nodes.
	TopDenied []TopKey `json:"top_denied"`
	// Policies are the HTTP policies of the answering node, as configured.
	Policies []PolicyStats `json:"policies"`
}

// MemberStats is a member and its share of the ring.
type MemberStats struct {
	MemberResponse
	// RingShare is the fraction of routing keys the member owns,
	// estimated from ringShareSamples keys.
	RingShare float64 `json:"ring_share"`
}

// NodeStats is one member's activity and metrics.
type NodeStats struct {
	Name string `json:"name"`
	// Error says why the member's stats are missing.
	Error string `json:"error,omitempty"`
	// Warnings are the member's ServiceConfig.Warnings, as on its /readyz.
	Warnings []string `json:"warnings,omitempty"`
	NodeActivity
	Metrics NodeMetrics `json:"metrics"`
}

// NodeMetrics are a node's cluster metrics since it started.
type NodeMetrics struct {
	Checks          map[string]int64 `json:"checks"` // by where decided: local, forwarded, served, deny_cached
	Forwarded       int64            `json:"forwarded"`
	ForwardP50      float64          `json:"forward_p50_ms"`
	ForwardP99      float64          `json:"forward_p99_ms"`
	Fallbacks       int64            `json:"fallbacks"`
	Failovers       int64            `json:"failovers"`
	HandoffSent     int64            `json:"handoff_sent"`
	HandoffReceived int64            `json:"handoff_received"`
	HandoffKept     int64            `json:"handoff_kept"`
	// Replication counts key states replicated to successors, by result
	// (sent, failed, dropped, received, promoted), when the node
	// replicates.
	Replication map[string]int64 `json:"replication,omitempty"`
}

// peerClient fetches other members' stats. No keep-alive: the fetches
// are a second apart at most, and an idle connection would outlive the
// node.
func peerClient() *http.Client {
	return &http.Client{Timeout: peerStatsTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
}

func (s *service) statsHandler(c echo.Context) error {
	scope := c.QueryParam("scope")
	if scope == "" {
		scope = "cluster"
	}
	if scope != "cluster" && scope != "node" {
		return c.JSON(http.StatusBadRequest, FieldErrorResponse{Error: "scope: want cluster or node", Field: "scope"})
	}
	local := s.cache.local.get(s.now, s.localStats)
	out := StatsResponse{Node: s.node.Name(), Time: s.now().UnixMilli(), Scope: scope, Members: local.shares}
	show := s.showsKeys(s.now(), c)
	out.Nodes = append(out.Nodes, local.own)
	out.Nodes[0].Warnings = s.currentWarnings() // as of now, like /readyz, not of the cached second
	if !show {
		out.Nodes = s.hideKeys(out.Nodes)
	}
	if scope == "cluster" {
		out.Nodes = append(out.Nodes, s.peerStats(c, local.members, show)...)
	}
	top := newTopK(len(out.Nodes) * statsTopShown)
	for _, n := range out.Nodes {
		top.merge(n.TopDenied)
	}
	out.TopDenied = top.top(statsTopShown)
	out.Policies = s.stats.policyStats()
	return c.JSON(http.StatusOK, out)
}

// peerStats are the other members' stats, fetched at most once a second
// for the callers who may see client keys (show) and once for the others,
// each time with the Authorization header of the caller that found the
// fetch due: the members share their tokens, and the caller's opens
// theirs (and shows them the keys, or not, alike). A wrong admin token
// passed on counts against this node's admin-token budget at each member,
// at most once a second. The fetch is shared by every caller of the
// second, so it does not end with the request that started it;
// peerStatsTimeout bounds it.
func (s *service) peerStats(c echo.Context, members []ratemesh.Member, show bool) []NodeStats {
	auth, class := c.Request().Header.Get(echo.HeaderAuthorization), 0
	if show {
		class = 1
	}
	ctx := context.WithoutCancel(c.Request().Context())
	return s.cache.peers[class].get(s.now, func() []NodeStats { return s.fetchPeers(ctx, members, auth) })
}

// localStats reads this node's part of /v1/stats.
func (s *service) localStats() localStats {
	members := s.node.Members()
	return localStats{members: members, shares: s.ringShares(members), own: s.own(s.now())}
}

// own is this node's stats.
func (s *service) own(now time.Time) NodeStats {
	return NodeStats{Name: s.node.Name(), NodeActivity: s.stats.activity(now), Metrics: s.nodeMetrics()}
}

// fetchPeers gets the stats of every other member in the ring, in
// parallel, in the members' order, presenting auth (an Authorization
// header; "" none).
func (s *service) fetchPeers(ctx context.Context, members []ratemesh.Member, auth string) []NodeStats {
	var out []NodeStats
	for _, m := range members {
		if !m.Self && (m.State == ratemesh.StateAlive || m.State == ratemesh.StateSuspect) {
			out = append(out, NodeStats{Name: m.Name})
		}
	}
	var wg sync.WaitGroup
	i := 0
	for _, m := range members {
		if m.Self || (m.State != ratemesh.StateAlive && m.State != ratemesh.StateSuspect) {
			continue
		}
		ns := &out[i]
		i++
		wg.Go(func() {
			if err := s.fetchPeer(ctx, m.HTTPAddr, auth, ns); err != nil {
				*ns = NodeStats{Name: m.Name, Error: err.Error()}
			}
		})
	}
	wg.Wait()
	return out
}

// fetchPeer reads the node-scope stats of the member at addr into ns.
func (s *service) fetchPeer(ctx context.Context, addr, auth string, ns *NodeStats) error {
	if addr == "" {
		return fmt.Errorf("no HTTP address")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/stats?scope=node", nil)
	if err != nil {
		return err
	}
	if auth != "" {
		req.Header.Set(echo.HeaderAuthorization, auth)
	}
	resp, err := s.peers.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /v1/stats: %s", resp.Status)
	}
	var body StatsResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPeerStats)).Decode(&body); err != nil {
		return fmt.Errorf("GET /v1/stats: %w", err)
	}
	if len(body.Nodes) == 0 {
		return fmt.Errorf("GET /v1/stats: no node in the answer")
	}
	*ns = body.Nodes[0]
	return nil
}

// ringShares lists the members with the share of sample keys each owns.
func (s *service) ringShares(members []ratemesh.Member) []MemberStats {
	owned := map[string]int{}
	for i := range ringShareSamples {
		if m, ok := s.node.Owner("ring-share-sample-" + strconv.Itoa(i)); ok {
			owned[m.Name]++
		}
	}
	out := make([]MemberStats, len(members))
	for i, m := range members {
		out[i] = MemberStats{MemberResponse: toMember(m), RingShare: float64(owned[m.Name]) / ringShareSamples}
	}
	return out
}

// nodeMetrics reads the node's cluster metrics.
func (s *service) nodeMetrics() NodeMetrics {
	nm := NodeMetrics{Checks: map[string]int64{}}
	if s.shown == nil {
		return nm
	}
	mfs, err := s.shown.Gather()
	if err != nil {
		s.logs.Warn(s.now(), "stats-gather", "ratemesh: reading the node's metrics for /v1/stats failed", "err", err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			nm.add(mf.GetName(), m)
		}
	}
	return nm
}

// add takes one metric into nm.
func (nm *NodeMetrics) add(name string, m *dto.Metric) {
	v := int64(m.GetCounter().GetValue())
	switch name {
	case "ratemesh_checks_total":
		nm.Checks[label(m, "path")] += v
	case "ratemesh_fallback_decisions_total":
		nm.Fallbacks += v
	case "ratemesh_failovers_total":
		nm.Failovers += v
	case "ratemesh_handoff_keys_total":
		switch label(m, "result") {
		case "sent":
			nm.HandoffSent += v
		case "received":
			nm.HandoffReceived += v
		case "kept":
			nm.HandoffKept += v
		}
	case "ratemesh_replica_keys_total":
		if nm.Replication == nil {
			nm.Replication = map[string]int64{}
		}
		nm.Replication[label(m, "result")] += v
	case "ratemesh_forward_seconds":
		h := m.GetHistogram()
		nm.Forwarded = int64(h.GetSampleCount())
		nm.ForwardP50 = quantileMs(h, 0.5)
		nm.ForwardP99 = quantileMs(h, 0.99)
	}
}

// label is the value of m's label name.
func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// quantileMs estimates quantile q of histogram h in milliseconds, by
// linear interpolation inside the bucket it falls in (as Prometheus's
// histogram_quantile does); 0 when empty.
func quantileMs(h *dto.Histogram, q float64) float64 {
	total := float64(h.GetSampleCount())
	if total == 0 {
		return 0
	}
	rank, lower, below := q*total, 0.0, 0.0
	for _, b := range h.GetBucket() {
		upper, count := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if count >= rank {
			if math.IsInf(upper, 1) {
				return lower * 1000
			}
			return (lower + (upper-lower)*(rank-below)/max(count-below, 1)) * 1000
		}
		lower, below = upper, count
	}
	return lower * 1000
}

// record counts a /v1/check decision in the stats.
func (s *service) record(key string, res *ratemesh.Result) {
	if s.stats == nil {
		return
	}
	if res.Allowed {
		s.stats.allowed(s.now())
		return
	}
	s.stats.denied(s.now(), key, "/v1/check", ratehttp.At(res.Statuses, ratehttp.Pick(res.Statuses, false)))
}

// sortShadow orders shadow rows by count, then route and limit.
func sortShadow(rows []ShadowCount) {
	slices.SortFunc(rows, func(a, b ShadowCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Route, b.Route), cmp.Compare(a.Limit, b.Limit))
	})
}

// registerUI serves the dashboard at /ui/ (and /ui redirects there). The
// page loads nothing from elsewhere, and says so to the browser.
func registerUI(r httpapi.Routes) {
	files := http.StripPrefix("/ui/", http.FileServerFS(ui.FS()))
	r.GET("/ui", func(c echo.Context) error { return c.Redirect(http.StatusMovedPermanently, "/ui/") })
	r.GET("/ui/*", func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(c.Response(), c.Request())
		return nil
	})
}
