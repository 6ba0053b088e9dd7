package cluster

import (
	"testing"
)

// A paused owner (a stopped process, a GC pause, a frozen VM) is treated
// as a crashed one while it does not answer: its keys fail over to the
// next owner, which cannot know the paused owner's count and starts from
// zero. When the owner answers again, the counts kept meanwhile go home
// and add to its own, so the limit holds again at once: over the window
// at most the limit passes before the pause plus the limit during it.
func TestPausedOwnerGetsCountsBack(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	names := []string{"n0", "n1", "n2"}
	nodes := startMemCluster(t, net, clock, names...)
	key := keyWhere(t, func(k string) bool {
		return ownerIn(memRing(names...), k) == "n2" && ownerIn(memRing("n0", "n1"), k) == "n1"
	})
	cs := perMinute(t, 5)
	if got, _ := checkN(t, nodes[0], key, cs, 2); got != 2 {
		t.Fatalf("before the pause: %d of 2 allowed", got)
	}

	net.setCut(memAddr("n2"), true) // paused
	got, last := checkN(t, nodes[0], key, cs, 10)
	if got != 5 || last.Node != "n1" {
		t.Fatalf("during the pause: %d of 10 allowed, by %s; want 5 by the next owner n1", got, last.Node)
	}

	net.setCut(memAddr("n2"), false) // resumed
	settle(nodes...)
	if nodes[1].store.Has(key) {
		t.Fatal("n1 kept the counts it made for n2")
	}
	if got, last = checkN(t, nodes[2], key, cs, 10); got != 0 || last.Node != "n2" {
		t.Errorf("after the pause, on n2: %d of 10 allowed, by %s; want 0 by n2 (2 + 5 spent of 5)", got, last.Node)
	}
	// n0 remembers n1's denials (the deny cache): they stay true, since
	// the counts behind them went home.
	if got, _ = checkN(t, nodes[0], key, cs, 10); got != 0 {
		t.Errorf("after the pause, on n0: %d of 10 allowed; want 0", got)
	}
}
