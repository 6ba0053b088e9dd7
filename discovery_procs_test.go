//go:build linux

package ratemesh_test

import (
	"testing"
	"time"
)

// Two groups of node processes that formed clusters apart — a2's seeds
// name b1, which was not up yet when a2 joined a1 — merge once b1 is up,
// by a2 rejoining its seeds; and the counts of a key spent in both, 2 and
// 1 of 5, add up: exactly 2 more are admitted. Without rejoining the two
// groups never meet: neither was ever a member of the other.
func TestGroupsStartedApartMerge(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	c := newProcCluster(t, buildNodeBinary(t))
	c.extraArgs = func(*nodeProc) []string { return []string{"--rejoin-interval", "200ms"} }
	a1 := c.startNext(t)
	a2, b1, b2 := c.add(t), c.add(t), c.add(t)
	c.start(t, a2, a1.gossipAddr()+","+b1.gossipAddr(), false)
	c.waitMembers(t, 20*time.Second, time.Now(), []*nodeProc{a1, a2})
	key, limits := "apart-"+c.runID, "5 per hour"
	for range 2 {
		if a := c.apiCheck(t, a1, key, limits, 1); !a.Allowed {
			t.Fatal("a check in group a denied")
		}
	}
	// b1 is the first node of its own cluster until a2 finds it.
	c.extraArgs = func(*nodeProc) []string { return []string{"--rejoin-interval", "-1s"} }
	c.start(t, b1, "", false)
	if a := c.apiCheck(t, b1, key, limits, 1); !a.Allowed {
		t.Fatal("the check in group b denied")
	}
	c.start(t, b2, b1.gossipAddr(), false)
	took := c.waitMembers(t, 20*time.Second, time.Now(), c.nodes)
	t.Logf("the groups merged %v after the last node started", took.Round(time.Millisecond))
	waitUntil(t, 15*time.Second, "the 3 hits of both groups on the key's owner", func() bool {
		return c.apiCheck(t, b2, key, limits, 0).Limits[0].Remaining == 2
	})
	allowed := 0
	for i := range 30 {
		if c.apiCheck(t, c.nodes[i%4], key, limits, 1).Allowed {
			allowed++
		}
	}
	if allowed != 2 {
		t.Fatalf("after the merge: %d of 30 allowed, want exactly 2", allowed)
	}
}
