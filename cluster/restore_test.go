package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
)

// A restarted owner's data file joined its table when the restore window
// ended (no peer had handed the key back or been asked for it); then its
// next owner hands back the count it continued from the owner's replica,
// which holds the file's hits too. The file's count leaves the table as
// the handed-back one joins: each hit is counted once. (It was added to
// the file's, and the hits before the file was written counted twice.)
func TestLateSupersedingCountAfterAdoption(t *testing.T) {
	rc := newReplicatedCluster(t, 2, nil)
	clock, nodes, key, cs := rc.clock, rc.nodes, rc.key, rc.cs
	file := nodes[2].store.Snapshot(clock.Now(), nil) // 2 hits
	rc.crashOwner(t, nodes[0])                        // n1 continues: 2 + 3
	n2 := rc.rejoinOwner(t, func(n2 *memNode) { n2.Restore(clock.Now(), file) }, nil)
	// n1 still routes around n2: nothing comes back within the window.
	clock.Add(pullWindow + time.Second)
	n2.adoptRest(clock.Now())
	if !n2.store.Has(key) {
		t.Fatal("the file's count did not join the table")
	}
	for _, n := range nodes {
		n.probe()
	}
	rebuildAll(nodes...)
	nodes[1].handoffAll(context.Background())
	if nodes[1].store.Has(key) {
		t.Fatal("n1 kept the count")
	}
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n2" || last.Statuses[0].Remaining != 10-2-3-1 {
		t.Fatalf("after the handback: %d allowed by %s with %d left; want 1 by n2 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-2-3-1)
	}
}

// A count that goes home — pulled by its owner, or handed back — leaves
// no copy of the owner's behind: one kept from an earlier run of the owner
// is stale from then on, and promoted later (the owner down again) it
// would be continued and come home a second time.
func TestCountGoneHomeLeavesNoStaleCopy(t *testing.T) {
	for _, pulled := range []bool{true, false} {
		t.Run(map[bool]string{true: "pulled", false: "handed back"}[pulled], func(t *testing.T) {
			rc := newReplicatedCluster(t, 2, nil)
			clock, nodes, key := rc.clock, rc.nodes, rc.key
			stale := nodes[2].store.Snapshot(clock.Now(), nil)[0]
			rc.crashOwner(t, nodes[0]) // n1 continues from the copy: 2 + 3
			// A copy of an earlier run is still here beside the count
			// (a promotion took the latest run's).
			nodes[1].repl.hold("n2", 5, []bucket.Entry{stale})
			n2 := rc.rejoinOwner(t, nil, noFlush)
			if pulled {
				nodes[1].take(context.Background(), &rpc.TakeRequest{Key: key, To: "n2", Incarnation: n2.incarnation})
			} else {
				for _, n := range nodes {
					n.probe()
				}
				rebuildAll(nodes...)
				nodes[1].handoffAll(context.Background())
			}
			nodes[1].repl.mu.Lock()
			defer nodes[1].repl.mu.Unlock()
			for h := nodes[1].repl.from["n2"]; h != nil; h = h.earlier {
				if _, ok := h.store.Export(clock.Now(), key); ok && h.incarnation != n2.incarnation {
					t.Errorf("n1 still holds run %d's copy of the key", h.incarnation)
				}
			}
		})
	}
}
