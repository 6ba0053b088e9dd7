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

// A hot key far from its limit is decided where it is asked: after
// leaseHeat forwards the node holds a slice, and it renews the slice ahead,
// before it runs out, so that no check of the key needs an RPC any more.
// The clock stands still, so every figure is exact.
func TestLeasesDecideHotKeysLocally(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	names := []string{"n0", "n1", "n2"}
	nodes := startMemClusterWith(t, net, clock, func(cfg *Config) { cfg.Leases = true }, names...)
	n0, key := nodes[0], keyOn(t, names, "n2")
	cs := perMinute(t, 1_000_000_000)
	granted := func(n int) func() bool {
		return func() bool { return testutil.ToFloat64(n0.metrics.leases.WithLabelValues("granted")) == float64(n) }
	}
	if got, _ := checkN(t, n0, key, cs, leaseHeat); got != leaseHeat {
		t.Fatalf("%d of %d allowed", got, leaseHeat)
	}
	testkit.Eventually(t, 5*time.Second, "no slice granted", granted(1))
	// The slice is the rate over a lease's lifetime: leaseHeat forwards
	// within under a millisecond, 4,000 for leaseTTL. Renewed once fewer
	// than a quarter are left.
	const size = leaseHeat * int(leaseTTL/time.Millisecond)
	if got, _ := checkN(t, n0, key, cs, size*3/4+1); got != size*3/4+1 {
		t.Fatalf("from the slice: %d of %d allowed", got, size*3/4+1)
	}
	testkit.Eventually(t, 5*time.Second, "the slice was not renewed", granted(2))
	if got, _ := checkN(t, n0, key, cs, size); got != size {
		t.Fatalf("from the renewed slice: %d of %d allowed", got, size)
	}
	leased, forwarded := testutil.ToFloat64(n0.metrics.checksLeased), testutil.ToFloat64(n0.metrics.checksForwarded)
	if leased != float64(size*7/4+1) || forwarded != leaseHeat {
		t.Errorf("%.0f checks leased, %.0f forwarded; want %d and %d", leased, forwarded, size*7/4+1, leaseHeat)
	}
}

// The same over real sockets, where the clock runs: most checks of a hot
// key are decided from a slice. Half is far below what a loaded machine
// gives (over 95 %): a lease lives leaseTTL, many RPCs long.
func TestLeasesDecideHotKeysLocallyOverSockets(t *testing.T) {
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
	if share < 0.5 || l.Allowed.Load() != l.Checks.Load() {
		t.Fatalf("%.1f %% leased (want at least half), %d of %d admitted", 100*share, l.Allowed.Load(), l.Checks.Load())
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
