package rls

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/textcut"
)

// Bounds on the metric series of per-request names (detailed_metric,
// value_to_metric, limits a request carries): past them a descriptor is
// counted under its rule's path, so clients cannot grow the metrics
// without bound.
const (
	maxMetricSeries = 10000
	maxMetricLabel  = 256
)

// metrics are the service's Prometheus metrics, per descriptor as the
// reference's: hits, over limit, near limit, within limit and shadow
// mode. A nil *metrics records nothing.
type metrics struct {
	hits, over, near, within, shadow *prometheus.CounterVec
	global                           prometheus.Counter
	requests, loads                  *prometheus.CounterVec

	mu     sync.Mutex
	series map[string]struct{} // per-request names in use
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	perKey := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ratemesh", Subsystem: "rls", Name: name + "_total", Help: help}, []string{"key"})
	}
	m := &metrics{
		hits:   perKey("total_hits", "Hits (sum of hits_addend) per descriptor."),
		over:   perKey("over_limit", "Hits over the limit per descriptor, shadow mode included."),
		near:   perKey("near_limit", "Allowed hits above the near-limit ratio per descriptor."),
		within: perKey("within_limit", "Allowed hits per descriptor."),
		shadow: perKey("shadow_mode", "Hits over the limit answered OK because the descriptor is in shadow mode."),
		global: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "ratemesh", Subsystem: "rls", Name: "global_shadow_mode_total",
			Help: "Requests over the limit answered OK because of the global shadow mode."}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ratemesh", Subsystem: "rls", Name: "requests_total",
			Help: "ShouldRateLimit requests by result: OK, OVER_LIMIT, invalid or error."}, []string{"result"}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ratemesh", Subsystem: "rls", Name: "config_loads_total",
			Help: "Config loads and reloads by result: success or error."}, []string{"result"}),
		series: map[string]struct{}{},
	}
	for _, c := range []prometheus.Collector{m.hits, m.over, m.near, m.within, m.shadow, m.global, m.requests, m.loads} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// label is the series name of p: its per-request name while there is
// room for it, else its rule's path.
func (m *metrics) label(p *plan) string {
	if p.metric == p.rule.Path {
		return p.metric
	}
	l := p.metric
	if len(l) > maxMetricLabel || !utf8.ValidString(l) {
		// Prometheus panics on a label that is not valid UTF-8: the cut
		// keeps whole characters and bytes that are no character become
		// U+FFFD; the hash keeps names that differ apart.
		sum := sha256.Sum256([]byte(l))
		l = textcut.Valid(l, maxMetricLabel-33) + "#" + hex.EncodeToString(sum[:16])
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.series[l]; !ok {
		if len(m.series) >= maxMetricSeries {
			return p.rule.Path
		}
		m.series[l] = struct{}{}
	}
	return l
}

// record counts one checked descriptor as the reference does. A denied
// check consumes nothing, so all its hits are over the limit.
func (m *metrics) record(p *plan, over bool, st *bucket.Status, nearRatio float64) {
	if m == nil {
		return
	}
	l := m.label(p)
	hits := float64(p.hits)
	m.hits.WithLabelValues(l).Add(hits)
	if over {
		m.over.WithLabelValues(l).Add(hits)
		if p.rule.ShadowMode {
			m.shadow.WithLabelValues(l).Add(hits)
		}
		return
	}
	m.within.WithLabelValues(l).Add(hits)
	amount := int64(p.rule.RequestsPerUnit)
	after := amount - st.Remaining
	before := after - p.cost
	near := int64(math.Floor(float64(amount) * nearRatio))
	if after > near {
		m.near.WithLabelValues(l).Add(float64(after - max(near, before)))
	}
}

func (m *metrics) request(result string) {
	if m != nil {
		m.requests.WithLabelValues(result).Inc()
	}
}

func (m *metrics) globalShadow() {
	if m != nil {
		m.global.Inc()
	}
}

func (m *metrics) load(ok bool) {
	if m == nil {
		return
	}
	result := "success"
	if !ok {
		result = "error"
	}
	m.loads.WithLabelValues(result).Inc()
}
