package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// A key flooded through the two nodes that do not own it, at 2,000 per
// minute: with leases the limit still holds exactly — never a check over
// it, and, once the slices' unused units are back, not one under.
func TestLeasesExactAtTheLimit(t *testing.T) {
	nodes := startRealClusterWith(t, 3, func(cfg *Config) { cfg.Leases = true })
	key := testkit.KeyOwnedBy(t, []string{"n0", "n1", "n2"}, "n2")
	cs := testkit.Counters(t, "r", "2000 per minute")
	l := testkit.StartLoad(t, []testkit.CheckFunc{checker(nodes[0], key, cs), checker(nodes[1], key, cs)})
	l.WaitChecks(t, 6000) // 1.5 s at the load's pace: the quota is spent in 0.5 s
	l.Report(t)
	var leased float64
	for _, n := range nodes[:2] {
		leased += testutil.ToFloat64(n.metrics.checksLeased)
	}
	if got := l.Allowed.Load(); got != 2000 || leased == 0 {
		t.Fatalf("%d admitted at 2000 per minute (%.0f from slices), want exactly 2000, some from slices", got, leased)
	}
	if l.Errs.Load() != 0 || l.Fallbacks.Load() != 0 {
		t.Fatalf("%d errors, %d fallbacks", l.Errs.Load(), l.Fallbacks.Load())
	}
}

// A hot key far from its limit is decided where it is asked: at least 95 %
// of the checks the non-owners answer come from a slice, not an RPC.
func TestLeasesDecideHotKeysLocally(t *testing.T) {
	nodes := startRealClusterWith(t, 3, func(cfg *Config) { cfg.Leases = true })
	key := testkit.KeyOwnedBy(t, []string{"n0", "n1", "n2"}, "n2")
	cs := testkit.Counters(t, "r", "1000000000 per minute")
	l := testkit.StartLoad(t, []testkit.CheckFunc{checker(nodes[0], key, cs), checker(nodes[1], key, cs)})
	l.WaitChecks(t, 6000)
	l.Report(t)
	var leased, forwarded float64
	for _, n := range nodes[:2] {
		leased += testutil.ToFloat64(n.metrics.checksLeased)
		forwarded += testutil.ToFloat64(n.metrics.checksForwarded)
	}
	share := leased / (leased + forwarded)
	t.Logf("%.0f checks leased, %.0f forwarded: %.1f %% decided without an RPC", leased, forwarded, 100*share)
	if share < 0.95 || l.Allowed.Load() != l.Checks.Load() {
		t.Fatalf("%.1f %% leased (want at least 95 %%), %d of %d admitted", 100*share, l.Allowed.Load(), l.Checks.Load())
	}
}

// Slices a node does not spend go back to the owner: after a burst that
// made the key hot stops, the owner's count is exactly what was admitted.
func TestLeasesGiveBackUnusedUnits(t *testing.T) {
	nodes := startRealClusterWith(t, 3, func(cfg *Config) { cfg.Leases = true })
	key := testkit.KeyOwnedBy(t, []string{"n0", "n1", "n2"}, "n2")
	cs := testkit.Counters(t, "r", "100000 per minute")
	l := testkit.StartLoad(t, []testkit.CheckFunc{checker(nodes[0], key, cs), checker(nodes[1], key, cs)})
	testkit.Eventually(t, 10*time.Second, "a slice on n0 and n1", func() bool {
		return nodes[0].leases.n.Load() > 0 && nodes[1].leases.n.Load() > 0
	})
	l.Report(t) // the burst stops with slices outstanding
	testkit.Eventually(t, 10*time.Second, "the slices given back", func() bool {
		return nodes[0].leases.n.Load() == 0 && nodes[1].leases.n.Load() == 0
	})
	var why string
	testkit.Eventually(t, 10*time.Second, "the owner's count back to what was admitted", func() bool {
		req := rpc.CheckRequest{Key: key, Counters: cs, Cost: 0}
		var resp rpc.CheckResponse
		if _, err := nodes[2].Check(context.Background(), &req, &resp); err != nil {
			t.Fatal(err)
		}
		used := 100000 - resp.Statuses[0].Remaining
		why = fmt.Sprintf("the owner counts %d, %d were admitted", used, l.Allowed.Load())
		return used == l.Allowed.Load()
	}, &why)
}
