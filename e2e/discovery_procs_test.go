//go:build linux

package e2e

import (
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/proctest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// Two groups of node processes that formed clusters apart — a2's seeds
// name b1, which was not up yet when a2 joined a1 — merge once b1 is up,
// by a2 rejoining its seeds; and the counts of a key spent in both, 2 and
// 1 of 5, add up: exactly 2 more are admitted. Without rejoining the two
// groups never meet: neither was ever a member of the other.
func TestGroupsStartedApartMerge(t *testing.T) {
	c := proctest.NewCluster(t, nodeBinary(t))
	c.ExtraArgs = func(*proctest.Node) []string { return []string{"--rejoin-interval", "200ms"} }
	a1 := c.StartNext(t)
	a2, b1, b2 := c.Add(t), c.Add(t), c.Add(t)
	c.Start(t, a2, a1.GossipAddr()+","+b1.GossipAddr(), false)
	c.WaitMembers(t, 20*time.Second, time.Now(), []*proctest.Node{a1, a2})
	key, limits := "apart-"+c.RunID, "5 per hour"
	for range 2 {
		if a := c.Check(t, a1, key, limits, 1); !a.Allowed {
			t.Fatal("a check in group a denied")
		}
	}
	// b1 is the first node of its own cluster until a2 finds it.
	c.ExtraArgs = func(*proctest.Node) []string { return []string{"--rejoin-interval", "-1s"} }
	c.Start(t, b1, "", false)
	if a := c.Check(t, b1, key, limits, 1); !a.Allowed {
		t.Fatal("the check in group b denied")
	}
	c.Start(t, b2, b1.GossipAddr(), false)
	took := c.WaitMembers(t, 20*time.Second, time.Now(), c.Nodes)
	t.Logf("the groups merged %v after the last node started", took.Round(time.Millisecond))
	testkit.Eventually(t, 15*time.Second, "the 3 hits of both groups on the key's owner", func() bool {
		return c.Check(t, b2, key, limits, 0).Limits[0].Remaining == 2
	})
	if allowed := c.Admitted(t, key, limits, 30, 0); allowed != 2 {
		t.Fatalf("after the merge: %d of 30 allowed, want exactly 2", allowed)
	}
}
