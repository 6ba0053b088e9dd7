package ratemesh_test

import (
	"testing"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// checksBy reads a node's ratemesh_checks_total for one path label.
func checksBy(t *testing.T, n *ratemesh.Node, path string) float64 {
	t.Helper()
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ratemesh_checks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "path" && lp.GetValue() == path {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A single key flooded at 20× its limit from every node: exactly the limit
// is admitted, and once denied, the other nodes stop asking the owner.
func TestHotKeyFlood(t *testing.T) {
	nodes := clustertest.Start(t, 3, nil)
	key := testkit.KeyOwnedBy(t, []string{"n0", "n1", "n2"}, "n0")
	cs := testkit.Counters(t, "r", "100 per minute")
	servedBefore := checksBy(t, nodes[0], "served")
	// 12 workers, each on one node (12 is a multiple of 3), 167 checks each.
	f := flood(nodes, ratemesh.Request{Key: key, Counters: cs, Cost: 1}, 12*(2000/12+1), 12)
	if f.errors.Load() != 0 {
		t.Errorf("%d checks failed; the first: %v", f.errors.Load(), f.first)
	}
	served := checksBy(t, nodes[0], "served") - servedBefore
	cached := checksBy(t, nodes[1], "deny_cached") + checksBy(t, nodes[2], "deny_cached")
	t.Logf("2004 checks: admitted %d; owner served %.0f RPCs; %.0f denials answered from the asking node's cache", f.allowed.Load(), served, cached)
	if f.allowed.Load() != 100 {
		t.Fatalf("admitted %d, want exactly 100", f.allowed.Load())
	}
	// Without the cache the owner would serve the ~1336 checks made on the
	// other two nodes.
	if served > 400 {
		t.Fatalf("owner served %.0f forwarded checks; the deny cache should keep it near the limit", served)
	}
}
