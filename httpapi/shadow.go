package httpapi

import (
	"net/http"
	"strconv"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/ratehttp"
)

// A shadow route (Route.Shadow, Policy.Shadow, the node's --shadow) is a
// dry run of its limits: they are checked and counted as if enforced, but
// a request they deny is let through, and counted in
// ratemesh_http_shadow_denials_total{route,limit} (and the node's stats)
// instead. So a new limit can be watched on live traffic before it is
// turned on. Shadow routes send no rate-limit headers: clients must not
// act on limits that are not enforced. A request that asks with
// "Ratemesh-Debug: 1" gets the verdict in Ratemesh-Shadow.

// Headers of the shadow verdict.
const (
	// HeaderDebug is the request header that asks for Ratemesh-Shadow.
	HeaderDebug = "Ratemesh-Debug"
	// HeaderShadow carries a shadow route's verdict: `allow;
	// remaining=N` or `deny; limit="5 per 1 minute"; retry-after=N`.
	HeaderShadow = "Ratemesh-Shadow"
)

// shadowAnswer counts the result of a shadow route's check, whose
// status i (-1: none) decided, and sets the debug header if asked for.
// The request passes either way.
func (m *Middleware) shadowAnswer(w http.ResponseWriter, r *http.Request, rt *route, res *ratemesh.Result, i int) {
	debug := r.Header.Get(HeaderDebug) != ""
	if res.Allowed {
		m.metrics.allowed.Inc()
		if m.obs != nil {
			m.obs.RecordAllowed(m.now())
		}
		if debug && i >= 0 {
			w.Header().Set(HeaderShadow, "allow; remaining="+strconv.FormatInt(res.Statuses[i].Remaining, 10))
		}
		return
	}
	m.metrics.shadowDenied.Inc()
	limit := ""
	if i >= 0 {
		limit = res.Statuses[i].Limit.String()
	}
	m.metrics.shadow.WithLabelValues(rt.scope, limit).Inc()
	if m.obs != nil {
		m.obs.RecordShadowDenied(m.now(), rt.scope, limit)
	}
	if i < 0 {
		return
	}
	st := &res.Statuses[i]
	if debug {
		w.Header().Set(HeaderShadow, `deny; limit=`+strconv.Quote(limit)+`; retry-after=`+strconv.FormatInt(ratehttp.CeilSeconds(ratehttp.RetryAfter(st)), 10))
	}
}
