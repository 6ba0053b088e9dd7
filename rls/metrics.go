package rls

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
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
	results                          map[string]prometheus.Counter // requests' counters by result; read only

	// byLabel holds the *series of every label counted so far: a
	// descriptor's counters are looked up once, not on every call (a
	// CounterVec hashes the label and takes a lock per lookup).
	byLabel sync.Map
	mu      sync.Mutex
	named   int // per-request names in byLabel, at most maxMetricSeries
}

// kind is one of a descriptor's counters.
type kind int

const (
	kindHits kind = iota
	kindOver
	kindNear
	kindWithin
	kindShadow
	kinds
)

// series are the counters of one label. Each is made on its first use,
// so that /metrics lists only the counters a descriptor has counted in,
// as when they were looked up on every call.
type series struct {
	label    string
	counters [kinds]atomic.Pointer[counter]
}

type counter struct{ prometheus.Counter }

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
	}
	m.results = map[string]prometheus.Counter{}
	for _, r := range []string{pb.RateLimitResponse_OK.String(), pb.RateLimitResponse_OVER_LIMIT.String(), "invalid", "error"} {
		m.results[r] = m.requests.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.hits, m.over, m.near, m.within, m.shadow, m.global, m.requests, m.loads} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// seriesOf is the series of p: its per-request name while there is room
// for it, else its rule's path.
func (m *metrics) seriesOf(p *plan) *series {
	l := p.metric
	if l == p.rule.Path {
		return m.lookup(l, false)
	}
	if len(l) > maxMetricLabel || !utf8.ValidString(l) {
		// Prometheus panics on a label that is not valid UTF-8: the cut
		// keeps whole characters and bytes that are no character become
		// U+FFFD; the hash keeps names that differ apart.
		sum := sha256.Sum256([]byte(l))
		l = textcut.Valid(l, maxMetricLabel-33) + "#" + hex.EncodeToString(sum[:16])
	}
	if s := m.lookup(l, true); s != nil {
		return s
	}
	return m.lookup(p.rule.Path, false)
}

// lookup finds the series of label l, or adds it; a per-request name is
// added only while there are fewer than maxMetricSeries, else lookup
// returns nil.
func (m *metrics) lookup(l string, named bool) *series {
	if s, ok := m.byLabel.Load(l); ok {
		return s.(*series)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.byLabel.Load(l); ok {
		return s.(*series)
	}
	if named {
		if m.named >= maxMetricSeries {
			return nil
		}
		m.named++
	}
	s := &series{label: l}
	m.byLabel.Store(l, s)
	return s
}

// add counts v in the counter k of s.
func (m *metrics) add(s *series, k kind, v float64) {
	c := s.counters[k].Load()
	if c == nil {
		c = &counter{m.vec(k).WithLabelValues(s.label)}
		s.counters[k].Store(c) // a racing store holds the same counter
	}
	c.Add(v)
}

func (m *metrics) vec(k kind) *prometheus.CounterVec {
	return [kinds]*prometheus.CounterVec{m.hits, m.over, m.near, m.within, m.shadow}[k]
}

// record counts one checked descriptor as the reference does. A denied
// check consumes nothing, so all its hits are over the limit.
func (m *metrics) record(p *plan, over bool, st *bucket.Status, nearRatio float64) {
	if m == nil {
		return
	}
	s := m.seriesOf(p)
	hits := float64(p.hits)
	m.add(s, kindHits, hits)
	if over {
		m.add(s, kindOver, hits)
		if p.rule.ShadowMode {
			m.add(s, kindShadow, hits)
		}
		return
	}
	m.add(s, kindWithin, hits)
	amount := int64(p.rule.RequestsPerUnit)
	after := amount - st.Remaining
	before := after - p.cost
	near := int64(math.Floor(float64(amount) * nearRatio))
	if after > near {
		m.add(s, kindNear, float64(after-max(near, before)))
	}
}

func (m *metrics) request(result string) {
	if m == nil {
		return
	}
	if c := m.results[result]; c != nil {
		c.Inc()
		return
	}
	m.requests.WithLabelValues(result).Inc()
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
