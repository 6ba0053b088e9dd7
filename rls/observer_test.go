package rls

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/clustertest"
)

// decisions is an Observer that keeps what it is told.
type decisions struct {
	mu   sync.Mutex
	seen []string
}

func (d *decisions) Decided(_ time.Time, x Decision) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen = append(d.seen, fmt.Sprintf("%s allowed=%t shadow=%t %s", x.Rule, x.Allowed, x.Shadow, x.Status.Limit))
}

// TestObserver: each checked descriptor's decision is told, with its rule
// and limit; a shadow_mode rule's denial, and any denial in the service's
// Shadow mode, is a shadow one; descriptors no rule matches are not told.
func TestObserver(t *testing.T) {
	nodes := clustertest.Start(t, 1, nil)
	cfg := mustConfig(t, "domain: edge\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 1}\n"+
		"  - key: path\n    shadow_mode: true\n    rate_limit: {unit: minute, requests_per_unit: 1}\n")
	for _, tc := range []struct {
		shadow bool
		want   []string
	}{
		{false, []string{
			"edge.user allowed=true shadow=false 1 per 1 minute", "edge.path allowed=true shadow=false 1 per 1 minute",
			"edge.user allowed=false shadow=false 1 per 1 minute", "edge.path allowed=false shadow=true 1 per 1 minute"}},
		{true, []string{
			"edge.user allowed=true shadow=false 1 per 1 minute", "edge.path allowed=true shadow=false 1 per 1 minute",
			"edge.user allowed=false shadow=true 1 per 1 minute", "edge.path allowed=false shadow=true 1 per 1 minute"}},
	} {
		obs := &decisions{}
		c := serveAll(t, nodes, cfg, Options{Observer: obs, Shadow: tc.shadow})
		user := fmt.Sprintf("u-%t", tc.shadow)
		for range 2 {
			c.ask(t, 0, request("edge", desc("user", user)))
			c.ask(t, 0, request("edge", desc("path", "/"+user)))
			c.ask(t, 0, request("edge", desc("nothing", "x")))
		}
		if !slices.Equal(obs.seen, tc.want) {
			t.Errorf("Shadow %t: told %q, want %q", tc.shadow, obs.seen, tc.want)
		}
	}
}
