package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// exactness is the invariant every membership event must keep: whatever
// happens to a key's owner — paused, resumed, its counts replicated,
// handed off, sent home — once the cluster has settled, the owner counts
// every admitted hit exactly once.
//
// The operations interleave at random: checks on any node, the owner cut
// off and back, handoff passes; replication runs in the background every
// millisecond and races the actions, as it does in production (this found
// a sweep that forgot a promotion while its handoff was under way). Fallback decisions (the asking node
// is the successor itself) are denied by the test's fail policy, so only
// admitted hits are counted.
func TestExactThroughPausesAndReplicas(t *testing.T) {
	names := []string{"n0", "n1", "n2"}
	all, rest := memRing(names...), memRing("n0", "n1")
	key := keyWhere(t, func(k string) bool { return ownerIn(all, k) == "n2" && ownerIn(rest, k) == "n1" })
	rapid.Check(t, func(rt *rapid.T) {
		net, clock := newMemNet(), newManualClock()
		nodes := startMemClusterWith(t, net, clock, func(c *Config) {
			c.Replicas = 1
			c.replicaFlush = time.Millisecond // the background loop races the actions
		}, names...)
		defer func() { // in parallel: each leave waits out a quiet period
			var wg sync.WaitGroup
			for _, n := range nodes {
				wg.Go(func() { n.Close(context.Background()) })
			}
			wg.Wait()
		}()
		cs := perMinute(t, 1000)
		admitted, paused := 0, false
		rt.Repeat(map[string]func(*rapid.T){
			"check": func(rt *rapid.T) {
				n := rapid.IntRange(0, 2).Draw(rt, "node")
				got, _ := checkN(t, nodes[n], key, cs, rapid.IntRange(1, 5).Draw(rt, "hits"))
				admitted += got
			},
			"pause": func(rt *rapid.T) {
				net.setCut(memAddr("n2"), true)
				paused = true
			},
			"resume": func(rt *rapid.T) {
				net.setCut(memAddr("n2"), false)
				paused = false
				settle(nodes...)
			},
			"handoff": func(rt *rapid.T) {
				nodes[rapid.IntRange(0, 2).Draw(rt, "node")].handoffAll(context.Background())
			},
		})
		net.setCut(memAddr("n2"), false)
		settle(nodes...)
		_ = paused
		st, _, _ := nodes[2].store.Check(clock.Now(), key, cs, 0, nil)
		if used := 1000 - int(st[0].Remaining); used != admitted {
			rt.Fatalf("the owner counts %d hits; %d were admitted", used, admitted)
		}
		for _, n := range nodes[:2] {
			if n.store.Has(key) {
				rt.Fatalf("%s still holds counts of the key after settling", n.name)
			}
		}
	})
}
