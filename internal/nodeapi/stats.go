package nodeapi

import (
	"sync"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/ratehttp"
)

// Bounds of what Stats keeps, whatever the traffic.
const (
	// StatsHistory is how many seconds of checks per second Stats keeps.
	StatsHistory = 300
	// statsTopCapacity is how many denied keys each space-saving window
	// tracks; statsTopShown how many /v1/stats reports.
	statsTopCapacity = 128
	statsTopShown    = 10
	// statsTopWindow is how long a window of denied keys lasts: the top
	// is the current window and the one before, so it is "right now",
	// not since the start.
	statsTopWindow = time.Minute
	// maxShadowRows bounds the route and limit pairs of shadow denials
	// kept (dynamic limits could make many).
	maxShadowRows = 1024
)

// Stats records what one node's HTTP side decides (checks per second,
// allowed, denied and shadow-denied; the keys denied most; the shadow
// denials per route and limit) for GET /v1/stats and the dashboard. Give
// the same Stats to the node's middlewares (httpapi.Config.Observer: it is
// an httpapi.Observer) and service (ServiceConfig.Stats), and show the
// policy of one middleware with ShowPolicy. Memory is bounded: StatsHistory seconds, two
// windows of the top denied keys, maxShadowRows shadow rows. Safe for
// concurrent use; a nil *Stats records nothing.
type Stats struct {
	mu        sync.Mutex
	seconds   [StatsHistory]StatsSecond
	top, prev *topK
	topStart  time.Time
	shadow    map[shadowRow]int64
	policy    PolicySource // shown by /v1/stats and /v1/limits; nil: none
}

// PolicySource is the read-only view of a middleware's policy that
// /v1/stats and /v1/limits show; *httpapi.Middleware satisfies it.
type PolicySource interface {
	// Policy is the policy as configured.
	Policy() httpapi.Policy
	// Counters are the counters it creates and the routes counting in them.
	Counters() []httpapi.PolicyCounter
}

// shadowRow names a shadow denial.
type shadowRow struct{ route, limit string }

// StatsSecond is one second of checks on a node.
type StatsSecond struct {
	Time    int64 `json:"t"` // epoch seconds
	Allowed int64 `json:"allowed"`
	Denied  int64 `json:"denied"`
	// Shadow counts requests a shadow limit let through but would have
	// denied.
	Shadow int64 `json:"shadow"`
}

// NewStats returns an empty recorder.
func NewStats() *Stats {
	return &Stats{top: newTopK(statsTopCapacity), prev: newTopK(0), shadow: make(map[shadowRow]int64)}
}

// second returns the slot of now's second, emptied if it held an older
// one. The caller holds mu.
func (s *Stats) second(now time.Time) *StatsSecond {
	sec := now.Unix()
	slot := &s.seconds[sec%StatsHistory]
	if slot.Time != sec {
		*slot = StatsSecond{Time: sec}
	}
	return slot
}

// allowed records an allowed check.
func (s *Stats) allowed(now time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.second(now).Allowed++
	s.mu.Unlock()
}

// denied records a check of key denied by st (nil: no status) on route.
func (s *Stats) denied(now time.Time, key, route string, st *bucket.Status) {
	if s == nil {
		return
	}
	e := TopKey{Key: key, Route: route}
	if st != nil {
		e.Limit, e.Reset = st.Limit.String(), ratehttp.EpochCeil(now.Add(ratehttp.RetryAfter(st)))
	}
	s.mu.Lock()
	s.second(now).Denied++
	s.rotate(now)
	s.top.add(e, 1)
	s.mu.Unlock()
}

// RecordAllowed records an allowed check in the history: a middleware's
// (Stats is its httpapi.Observer), or one outside the HTTP API, such as
// one of the Envoy rate limit service's descriptors.
func (s *Stats) RecordAllowed(now time.Time) { s.allowed(now) }

// RecordDenied records a check of key denied by st (nil: no status)
// under route (a middleware's route scope; for the rate limit service, its
// rule), in the history and the top denied keys.
func (s *Stats) RecordDenied(now time.Time, key, route string, st *bucket.Status) {
	s.denied(now, key, route, st)
}

// RecordShadowDenied records a check that limit would have denied and
// a shadow route or rule let through, in the history and the shadow rows
// of route.
func (s *Stats) RecordShadowDenied(now time.Time, route, limit string) {
	s.shadowDenied(now, route, limit)
}

// shadowDenied records a request a shadow limit would have denied.
func (s *Stats) shadowDenied(now time.Time, route, limit string) {
	if s == nil {
		return
	}
	row := shadowRow{route, limit}
	s.mu.Lock()
	s.second(now).Shadow++
	if _, ok := s.shadow[row]; ok || len(s.shadow) < maxShadowRows {
		s.shadow[row]++
	}
	s.mu.Unlock()
}

// rotate starts a new window of denied keys when the current one is over.
// The caller holds mu.
func (s *Stats) rotate(now time.Time) {
	switch {
	case now.Sub(s.topStart) < statsTopWindow:
		return
	case now.Sub(s.topStart) < 2*statsTopWindow:
		s.prev, s.top = s.top, newTopK(statsTopCapacity)
	default: // nothing denied for a whole window: the last one is stale
		s.prev, s.top = newTopK(0), newTopK(statsTopCapacity)
	}
	s.topStart = now
}

// ShowPolicy makes p's policy the one /v1/stats and /v1/limits show (a
// middleware's, which may change with its SetPolicy); the last shown
// replaces the one before.
func (s *Stats) ShowPolicy(p PolicySource) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.policy = p
	s.mu.Unlock()
}

// shown is the source of the policy s shows; nil if none.
func (s *Stats) shown() PolicySource {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy
}

// NodeActivity is what a node's Stats recorded, as GET /v1/stats reports it.
type NodeActivity struct {
	// History is the last StatsHistory seconds, oldest first, the current
	// (incomplete) second last.
	History []StatsSecond `json:"history"`
	// TopDenied are the keys denied most in the last one to two minutes.
	TopDenied []TopKey `json:"top_denied"`
	// Shadow are the shadow denials since the start, by route and limit.
	Shadow []ShadowCount `json:"shadow"`
}

// ShadowCount is how many requests a shadow limit would have denied.
type ShadowCount struct {
	Route string `json:"route"`
	Limit string `json:"limit"`
	Count int64  `json:"count"`
}

// activity reports what s recorded up to now.
func (s *Stats) activity(now time.Time) NodeActivity {
	var a NodeActivity
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotate(now)
	last := now.Unix()
	for sec := last - StatsHistory + 1; sec <= last; sec++ {
		slot := s.seconds[sec%StatsHistory]
		if slot.Time != sec {
			slot = StatsSecond{Time: sec}
		}
		a.History = append(a.History, slot)
	}
	both := newTopK(2 * statsTopCapacity)
	both.merge(s.prev.top(statsTopCapacity))
	both.merge(s.top.top(statsTopCapacity))
	a.TopDenied = both.top(statsTopShown)
	for row, n := range s.shadow {
		a.Shadow = append(a.Shadow, ShadowCount{Route: row.route, Limit: row.limit, Count: n})
	}
	sortShadow(a.Shadow)
	return a
}

// Stats is what the middleware reports its decisions to.
var _ httpapi.Observer = (*Stats)(nil)
