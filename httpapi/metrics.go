package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh/internal/ratehttp"
)

// httpMetrics are the middleware's collectors, resolved once so that the
// hot path does no label lookups.
type httpMetrics struct {
	allowed, denied, unlimited, exempt, keyError, checkError prometheus.Counter
	shadowDenied                                             prometheus.Counter
	// shadow counts what shadow routes would have denied, by route and
	// limit: label values the policy bounds.
	shadow *prometheus.CounterVec
}

// newHTTPMetrics registers the middleware's collectors with reg (nil: kept
// but not exported). Several middlewares may share one registry: they then
// share the collectors.
func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ratemesh_http_requests_total",
		Help: "Requests seen by the rate-limit middleware, by result: allowed, denied, unlimited (no limit applied), exempt, key_error (client not identified, e.g. a bad token), check_error (the check failed and the request was let through) and shadow_denied (a shadow route's limits would have denied it; it was let through).",
	}, []string{"result"})
	vec, err := ratehttp.Register(reg, vec)
	if err != nil {
		return nil, err
	}
	shadow, err := ratehttp.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ratemesh_http_shadow_denials_total",
		Help: "Requests a shadow (dry-run) route let through that its limits would have denied, by route and by the limit that would have denied them.",
	}, []string{"route", "limit"}))
	if err != nil {
		return nil, err
	}
	return &httpMetrics{
		shadowDenied: vec.WithLabelValues("shadow_denied"),
		shadow:       shadow,
		allowed:      vec.WithLabelValues("allowed"),
		denied:       vec.WithLabelValues("denied"),
		unlimited:    vec.WithLabelValues("unlimited"),
		exempt:       vec.WithLabelValues("exempt"),
		keyError:     vec.WithLabelValues("key_error"),
		checkError:   vec.WithLabelValues("check_error"),
	}, nil
}
