package cluster

import (
	"fmt"

	"github.com/ratemesh/ratemesh/bucket"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the cluster's Prometheus collectors. They live in a registry
// owned by the node, never the global one, so several nodes share a process.
// The hot path uses pre-resolved children: no label lookups per check.
type Metrics struct {
	checksLocal, checksForwarded, checksServed prometheus.Counter
	checksDenyCached, checksLeased             prometheus.Counter
	leases                                     *prometheus.CounterVec
	allowed, denied                            prometheus.Counter
	fallback                                   *prometheus.CounterVec
	forwardSeconds                             prometheus.Histogram
	rpcErrors                                  *prometheus.CounterVec
	failovers                                  prometheus.Counter
	members                                    prometheus.Gauge
	handoffKeys                                *prometheus.CounterVec
	replicaKeys                                *prometheus.CounterVec
	// shown holds the collectors a node's stats page reads, apart from
	// the registry: reading the registry cost 127 ms a call once it held
	// 10,000 series of other metrics.
	shown *prometheus.Registry
}

// NewMetrics creates the collectors and registers them with reg (nil: the
// metrics are kept but not exported). usage reports what this node's
// counter table holds, against the table's bounds. It fails if reg already holds ratemesh metrics,
// e.g. a registry shared by two nodes.
func NewMetrics(reg prometheus.Registerer, usage func() bucket.Usage) (*Metrics, error) {
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ratemesh_checks_total",
		Help: "Checks by where they were decided: local (this node owns the key), forwarded (sent to the owner), served (received from a peer), deny_cached (denied again here, as the owner said, until its retry-after), leased (allowed here from a slice of the quota the owner counted ahead).",
	}, []string{"path"})
	results := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ratemesh_check_results_total",
		Help: "Checks answered to callers of this node, by result.",
	}, []string{"result"})
	m := &Metrics{
		checksLocal:      checks.WithLabelValues("local"),
		checksForwarded:  checks.WithLabelValues("forwarded"),
		checksServed:     checks.WithLabelValues("served"),
		checksDenyCached: checks.WithLabelValues("deny_cached"),
		checksLeased:     checks.WithLabelValues("leased"),
		leases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratemesh_leases_total",
			Help: "Slices of hot keys' quota taken from their owners (granted), and key slices given back unused (refunded, refund_failed; refund_expired: a slice that arrived after its window ended, or found a later window).",
		}, []string{"result"}),
		allowed: results.WithLabelValues("allowed"),
		denied:  results.WithLabelValues("denied"),
		fallback: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratemesh_fallback_decisions_total",
			Help: "Checks decided by the fail policy because no owner answered.",
		}, []string{"policy"}),
		forwardSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ratemesh_forward_seconds",
			Help:    "Latency of checks forwarded to the owner node.",
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3},
		}),
		rpcErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratemesh_rpc_errors_total",
			Help: "Failed RPC calls to peers, by operation.",
		}, []string{"op"}),
		failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ratemesh_failovers_total",
			Help: "Checks retried on the key's next owner after the owner failed to answer.",
		}),
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ratemesh_members",
			Help: "Members in this node's ring.",
		}),
		handoffKeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratemesh_handoff_keys_total",
			Help: "Routing keys handed to a new owner (sent), received from an old one (received), pulled from it (pulled), or kept by a leaving node because no owner took them (kept); left to a peer that did not answer in time (unanswered); a restarted peer's data-file counts of keys this node already held, dropped (fill_in_dropped); counter states moving in that a full counter table refused (refused).",
		}, []string{"result"}),
		replicaKeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratemesh_replica_keys_total",
			Help: "Key states replicated to successors (sent), failed to send (failed), dropped because too many changes waited (dropped), received from owners (received), replicas this node continued from when their owner failed (promoted), replicas of an earlier run given back to a restarted owner (returned), replicas of an owner's oldest runs dropped when it restarted more than 8 times within their lifetime (old_run_dropped), replicas of keys this node is no longer a successor of, dropped once the view settled (stale), and counter states of replicas a full table refused (refused).",
		}, []string{"result"}),
	}
	m.shown = prometheus.NewRegistry()
	m.shown.MustRegister(checks, m.fallback, m.forwardSeconds, m.failovers, m.handoffKeys, m.replicaKeys)
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{checks, results, m.fallback, m.forwardSeconds, m.rpcErrors, m.failovers, m.members, m.handoffKeys, m.replicaKeys, m.leases}
	if usage != nil {
		for _, g := range []struct {
			name, help string
			of         func(bucket.Usage) int
		}{
			{"ratemesh_keys", "Routing keys whose counters this node holds (bounded by the store's MaxKeys).", func(u bucket.Usage) int { return u.Keys }},
			{"ratemesh_counters", "Counters this node holds (bounded by MaxCounters).", func(u bucket.Usage) int { return u.Counters }},
			{"ratemesh_moving_window_slots", "Hit times kept by moving-window counters, 8 bytes each (bounded by MaxMovingWindowSlots).", func(u bucket.Usage) int { return u.MovingWindowSlots }},
		} {
			cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.name, Help: g.help},
				func() float64 { return float64(g.of(usage())) }))
		}
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("cluster: register metrics: %w", err)
		}
	}
	return m, nil
}

// Shown gathers only the metrics a node's stats page shows (checks by
// path, fallbacks, failovers, forward latency, handoff and replica keys),
// in time that does not grow with the other series of the node's
// registry.
func (m *Metrics) Shown() prometheus.Gatherer { return m.shown }
