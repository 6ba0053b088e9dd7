package nodeapi

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh"
)

// statsTTL is how long one build of a part of GET /v1/stats serves. Before,
// each call read the node's whole metric registry and every member's: eight
// clients polling one node kept another's CPU saturated.
const statsTTL = time.Second

// cached is a value built at most once per statsTTL of the service's
// clock. Callers that arrive while it is being built wait for that build
// instead of starting their own, so that N concurrent callers cost one.
type cached[T any] struct {
	mu  sync.Mutex
	at  time.Time // when val was built
	ok  bool
	val T
}

// get returns the value, built by build if the last is older than
// statsTTL by now (read after the wait, so a slow build is not
// followed by another at once). The value is shared: callers must not
// change it.
func (c *cached[T]) get(now func() time.Time, build func() T) T {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := now(); c.ok && !t.Before(c.at) && t.Sub(c.at) < statsTTL {
		return c.val
	}
	c.val = build()
	c.at, c.ok = now(), true
	return c.val
}

// statsCache holds the parts of GET /v1/stats built at most once a second.
type statsCache struct {
	// local is this node's view: members, ring shares and own stats.
	local cached[localStats]
	// peers are the other members' stats, by whether the caller may see
	// raw keys (index 1) or not: members answer each class apart.
	peers [2]cached[[]NodeStats]
}

// localStats is what GET /v1/stats reads of this node.
type localStats struct {
	members []ratemesh.Member
	shares  []MemberStats
	own     NodeStats
}

// statsMetrics is implemented by a node that can gather the metrics
// /v1/stats shows without the rest of its registry (*ratemesh.Node).
type statsMetrics interface {
	StatsMetrics() prometheus.Gatherer
}

// statsGatherer picks what /v1/stats reads the node's metrics from: the
// node's own gatherer of them where it has one, else the whole registry;
// nil (no metrics shown) without a registry.
func statsGatherer(node Node, reg *prometheus.Registry) prometheus.Gatherer {
	if reg == nil {
		return nil
	}
	if sm, ok := node.(statsMetrics); ok && sm.StatsMetrics() != nil {
		return sm.StatsMetrics()
	}
	return reg
}
