package cluster

import (
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
)

// policyFallback is the root's fail policies over a node's own store:
// local decides on it, open allows, closed denies.
func policyFallback(c *Config, policy string) {
	store := c.Store
	c.FallbackName = policy
	c.Fallback = func(now time.Time, req *rpc.CheckRequest, resp *rpc.CheckResponse) error {
		switch policy {
		case "local":
			var err error
			resp.Statuses, resp.Allowed, err = store.Check(now, req.Key, req.Counters, req.Cost, resp.Statuses[:0])
			return err
		case "open":
			resp.Allowed = true
		}
		return nil
	}
}

// What a partition lets through, per fail policy, at 10 per minute with 4
// spent before it and replicas 1. First the owner (n2) is cut off while
// gossip still lists it: checks forwarded to the next owner (n1, from n0)
// are decided on n1's table, which continues from the replica; n1's own
// checks follow the fail policy, since by gossip n1 is not the owner yet.
// Then gossip declares each side gone to the other, and n1 owns the key
// on its side: the fail policy no longer applies. The owner's side counts
// on alone. After the heal the owner counts every hit a table counted,
// once: 4 + 6 + 6.
func TestPartitionBoundPerPolicy(t *testing.T) {
	for _, c := range []struct {
		policy  string
		cutOff  int // admitted on n0's and n1's side while n2 is only cut off
		apart   int // then, once gossip has split the cluster
		counted int // of those, counted on n1's table
	}{
		{"local", 6, 0, 6},  // n1's own checks counted on its table: 6 left, 6 pass
		{"closed", 5, 1, 6}, // n1's own checks denied
		{"open", 10, 1, 6},  // n1's own 5 allowed and not counted: unbounded
	} {
		t.Run(c.policy, func(t *testing.T) {
			rc := newReplicatedCluster(t, 4, func(cfg *Config) { policyFallback(cfg, c.policy) })
			net, clock, nodes, key, cs := rc.net, rc.clock, rc.nodes, rc.key, rc.cs

			net.setCut(memAddr("n2"), true)
			a, _ := checkN(t, nodes[0], key, cs, 5)
			b, _ := checkN(t, nodes[1], key, cs, 5)
			net.setCut(memAddr("n2"), false)
			net.partition([]string{"n0", "n1"}, []string{"n2"})
			rebuildAll(nodes...)
			d, _ := checkN(t, nodes[0], key, cs, 5)
			e, _ := checkN(t, nodes[1], key, cs, 5)
			owner, _ := checkN(t, nodes[2], key, cs, 30)
			t.Logf("%s, limit 10, 4 spent before: owner cut off, %d + %d admitted without it; cluster split, %d + %d; the owner's side %d",
				c.policy, a, b, d, e, owner)
			if a+b != c.cutOff || d+e != c.apart || owner != 6 {
				t.Fatalf("%s: %d and %d admitted apart, %d by the owner; want %d, %d and 6", c.policy, a+b, d+e, owner, c.cutOff, c.apart)
			}

			net.partition()
			settle(nodes...)
			for _, n := range nodes[:2] {
				if n.store.Has(key) {
					t.Fatalf("%s keeps counts of the key after the heal", n.name)
				}
			}
			if used, want := countOn(t, nodes[2], key, cs, clock.Now()), 4+owner+c.counted; used != want {
				t.Fatalf("%s: after the heal the owner counts %d hits, want %d", c.policy, used, want)
			}
		})
	}
}

// countOn is the hits node holds for key's counter cs, read from its
// table without spending (a moving count beyond the limit shows as the
// limit: the test keeps under it).
func countOn(t *testing.T, node *memNode, key string, cs []bucket.Counter, now time.Time) int {
	t.Helper()
	e, ok := node.store.Export(now, key)
	if !ok {
		return 0
	}
	for _, s := range e.Counters {
		if s.Counter == cs[0] {
			return int(s.Count)
		}
	}
	t.Fatalf("%s holds no counter %v for the key", node.name, cs[0])
	return 0
}
