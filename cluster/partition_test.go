package cluster

import (
	"context"
	"testing"
)

// Through a partition each side decides on its own: the side without a
// key's owner fails over to the next owner there, which starts from zero,
// so each side can admit up to the limit (at most sides × limit in the
// window). After the heal the counts made on the other side go to the
// owner and add to its own, so the rest of the window is exact: here
// 4 + 10 + 6 of 30 spent, exactly 10 more pass.
func TestPartitionAndHeal(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	names := []string{"n0", "n1", "n2"}
	nodes := startMemCluster(t, net, clock, names...)
	key := keyWhere(t, func(k string) bool {
		return ownerIn(memRing(names...), k) == "n2" && ownerIn(memRing("n0", "n1"), k) == "n1"
	})
	cs := perMinute(t, 30)
	if got, _ := checkN(t, nodes[0], key, cs, 4); got != 4 {
		t.Fatalf("before the partition: %d of 4 allowed", got)
	}

	net.partition([]string{"n0", "n1"}, []string{"n2"})
	rebuildAll(nodes...)
	if got, last := checkN(t, nodes[0], key, cs, 10); got != 10 || last.Node != "n1" {
		t.Errorf("side without the owner: %d of 10 allowed, by %s; want 10 by n1", got, last.Node)
	}
	if got, last := checkN(t, nodes[2], key, cs, 6); got != 6 || last.Node != "n2" {
		t.Errorf("the owner's side: %d of 6 allowed, by %s; want 6 by n2", got, last.Node)
	}

	net.partition() // healed
	rebuildAll(nodes...)
	for _, n := range nodes {
		n.handoffAll(context.Background())
	}
	if nodes[0].store.Has(key) || nodes[1].store.Has(key) {
		t.Fatalf("after the heal a side kept counts of n2's key (n0 %v, n1 %v)", nodes[0].store.Has(key), nodes[1].store.Has(key))
	}
	allowed := 0
	for i := range 30 {
		got, last := checkN(t, nodes[i%3], key, cs, 1)
		if allowed += got; last.Node != "n2" {
			t.Fatalf("after the heal, check %d decided by %s; want n2", i, last.Node)
		}
	}
	if allowed != 10 {
		t.Errorf("after the heal: %d of 30 allowed; want exactly 10 (4 + 10 + 6 of 30 spent)", allowed)
	}
}
