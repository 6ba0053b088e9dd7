package rls

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ratemesh/ratemesh/internal/clustertest"
)

// TestServiceOptions covers what Options change, each on its own
// services over one cluster.
func TestServiceOptions(t *testing.T) {
	nodes := clustertest.Start(t, 3, nil)
	cfg := mustConfig(t, serviceConfig)

	t.Run("global shadow mode answers OK and counts", func(t *testing.T) {
		c := serveAll(t, nodes, cfg, Options{Shadow: true})
		var got []string
		for i := range 3 {
			got = append(got, codesOf(c.ask(t, i, request("edge", desc("user", "shadowed")))))
		}
		// The descriptor keeps its code, as in the reference; only the
		// overall code is forced.
		if want := "OK[OK] OK[OK] OK[OVER_LIMIT]"; strings.Join(got, " ") != want {
			t.Fatalf("answers %s, want %s", strings.Join(got, " "), want)
		}
		n := 0.0
		for _, s := range c.svcs {
			n += testutil.ToFloat64(s.metrics.global)
		}
		if n != 1 {
			t.Fatalf("global_shadow_mode %v, want 1", n)
		}
	})

	t.Run("response headers name the descriptor closest to its limit", func(t *testing.T) {
		c := serveAll(t, nodes, cfg, Options{Headers: XRateLimitHeaders()})
		var got []string
		for i := range 3 {
			r := c.ask(t, i, request("edge", desc("ten", "hdr"), desc("user", "hdr")))
			var hs []string
			for _, h := range r.ResponseHeadersToAdd {
				v := h.Value
				if h.Key == "X-RateLimit-Reset" && (v == "59" || v == "60") {
					v = "≈60" // the window began at the first request, a moment ago
				}
				hs = append(hs, h.Key+"="+v)
			}
			got = append(got, strings.Join(hs, ","))
		}
		want := "X-RateLimit-Limit=2,X-RateLimit-Remaining=1,X-RateLimit-Reset=≈60|" +
			"X-RateLimit-Limit=2,X-RateLimit-Remaining=0,X-RateLimit-Reset=≈60|" +
			"X-RateLimit-Limit=2,X-RateLimit-Remaining=0,X-RateLimit-Reset=≈60"
		if strings.Join(got, "|") != want {
			t.Fatalf("headers\n%s\nwant\n%s", strings.Join(got, "|"), want)
		}
		off := serveAll(t, nodes, cfg, Options{})
		if r := off.ask(t, 0, request("edge", desc("ten", "hdr2"))); len(r.ResponseHeadersToAdd) != 0 {
			t.Fatalf("headers off by default, got %v", r.ResponseHeadersToAdd)
		}
	})

	t.Run("near limit counts allowed hits above 80 %", func(t *testing.T) {
		c := serveAll(t, nodes, cfg, Options{})
		for i := range 11 {
			c.ask(t, i, request("edge", desc("ten", "near")))
		}
		key := "edge.ten"
		got := fmt.Sprint(c.metric(func(m *metrics) *prometheus.CounterVec { return m.within }, key),
			c.metric(func(m *metrics) *prometheus.CounterVec { return m.near }, key),
			c.metric(func(m *metrics) *prometheus.CounterVec { return m.over }, key))
		if got != "10 2 1" {
			t.Fatalf("within, near, over = %s, want 10 2 1", got)
		}
	})

	t.Run("a new config keeps the counters of unchanged limits", func(t *testing.T) {
		c := serveAll(t, nodes, cfg, Options{})
		c.ask(t, 0, request("edge", desc("ten", "swap"), desc("user", "swap")))
		changed := strings.Replace(serviceConfig, "key: user\n    rate_limit: {unit: minute, requests_per_unit: 2}",
			"key: user\n    rate_limit: {unit: minute, requests_per_unit: 5}", 1)
		for _, s := range c.svcs {
			s.SetConfig(mustConfig(t, changed))
		}
		r := c.ask(t, 1, request("edge", desc("ten", "swap"), desc("user", "swap")))
		if got := fmt.Sprint(r.Statuses[0].LimitRemaining, r.Statuses[1].LimitRemaining); got != "8 4" {
			t.Fatalf("remaining ten, user = %s, want 8 (kept) 4 (new limit, new counter)", got)
		}
	})

	t.Run("health is SERVING until Shutdown", func(t *testing.T) {
		c := serveAll(t, nodes[:1], cfg, Options{})
		h := healthpb.NewHealthClient(c.conns[0])
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, name := range []string{"", ServiceName} {
			r, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
			if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health of %q: %v %v, want SERVING", name, r, err)
			}
		}
		c.svcs[0].Shutdown()
		r, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: ServiceName})
		if err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("after Shutdown: %v %v, want NOT_SERVING", r, err)
		}
	})
}
