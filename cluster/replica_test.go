package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/testkit"
)

// replicated waits until node holds a replica of key.
func replicated(t *testing.T, node *memNode, key string) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, "the replica on "+node.name, func() bool {
		node.repl.mu.Lock()
		defer node.repl.mu.Unlock()
		for _, h := range node.repl.from {
			if h.store.Has(key) {
				return true
			}
		}
		return false
	})
}

// A paused owner with a replica on its next owner: during the pause the
// next owner continues from the replica, and when the owner answers again
// only the hits added meanwhile go home, so the owner counts each hit
// once: 2 before and 3 during, 5 of 10 left — not 3, as it would be if
// the replicated 2 came back too. If the owner restarted instead (a new
// incarnation, its count lost), the whole count goes home: 5 left too.
func TestPausedOwnerWithReplica(t *testing.T) {
	for _, restarted := range []bool{false, true} {
		t.Run(map[bool]string{false: "paused", true: "restarted"}[restarted], func(t *testing.T) {
			net, clock := newMemNet(), newManualClock()
			names := []string{"n0", "n1", "n2"}
			nodes := startMemClusterWith(t, net, clock, func(c *Config) { c.Replicas = 1 }, names...)
			key := keyWhere(t, func(k string) bool {
				return ownerIn(memRing(names...), k) == "n2" && ownerIn(memRing("n0", "n1"), k) == "n1"
			})
			cs := perMinute(t, 10)
			if got, _ := checkN(t, nodes[0], key, cs, 2); got != 2 {
				t.Fatalf("before the pause: %d of 2 allowed", got)
			}
			replicated(t, nodes[1], key)

			net.setCut(memAddr("n2"), true)
			if got, last := checkN(t, nodes[0], key, cs, 3); got != 3 || last.Node != "n1" {
				t.Fatalf("during the pause: %d of 3 allowed, by %s; want 3 by n1", got, last.Node)
			}
			if st, _, _ := nodes[1].store.Check(clock.Now(), key, cs, 0, nil); st[0].Remaining != 5 {
				t.Fatalf("n1 continued from %d left, want 5: it did not start from the replica", st[0].Remaining)
			}

			if restarted {
				nodes[2].store.Reset(key) // what a restart loses
				net.mu.Lock()
				net.incarnation["n2"] = 7
				net.mu.Unlock()
			}
			net.setCut(memAddr("n2"), false)
			for _, n := range nodes {
				n.probe()
			}
			rebuildAll(nodes...)
			for _, n := range nodes {
				n.handoffAll(context.Background())
			}
			if nodes[1].store.Has(key) {
				t.Fatal("n1 kept the counts it made for n2")
			}
			if st, _, _ := nodes[2].store.Check(clock.Now(), key, cs, 0, nil); st[0].Remaining != 5 {
				t.Fatalf("after the pause n2 has %d of 10 left, want 5: 2 + 3 hits, each counted once", st[0].Remaining)
			}
		})
	}
}
