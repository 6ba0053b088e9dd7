package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/ring"
)

// A pull (Take) for a node that is not a member, or for a member at
// another address, is refused: the key's count stays, and its checks are
// not sent anywhere the caller chose.
func TestTakeForStrangerRefused(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	nodes := startMemCluster(t, net, clock, "n0", "n1")
	n0 := nodes[0]
	key := keyOn(t, []string{"n0", "n1"}, "n0")
	cs := perMinute(t, 5)
	if got, _ := checkN(t, n0, key, cs, 3); got != 3 {
		t.Fatalf("before: %d of 3 allowed", got)
	}
	for _, req := range []rpc.TakeRequest{
		{Key: key, To: "mallory", ToAddr: memAddr("mallory")},
		{Key: key, To: "n1", ToAddr: "10.6.6.6:9091"},
		{Key: key, To: "n0", ToAddr: memAddr("n0")},
	} {
		r, err := handler{n0.Cluster}.Take(context.Background(), &req)
		var nm *NotMemberError
		if !errors.As(err, &nm) || r.Found || nm.Name != req.To {
			t.Errorf("Take to %s at %s: found %v, err %v; want a NotMemberError", req.To, req.ToAddr, r.Found, err)
		}
	}
	got, last := checkN(t, n0, key, cs, 5)
	if got != 2 || last.Node != "n0" {
		t.Errorf("after the refused takes: %d of 5 allowed, by %s; want 2 by n0", got, last.Node)
	}
	// A member's pull is served.
	r, err := handler{n0.Cluster}.Take(context.Background(), &rpc.TakeRequest{Key: key, To: "n1", ToAddr: memAddr("n1")})
	if err != nil || !r.Found || r.Supersedes || r.Entry.Counters[0].Count != 5 {
		t.Errorf("Take to n1: %+v %v; want the entry with 5 hits, not superseding", r, err)
	}
}

// A slice given back by a member that this node's ring lacks yet — a joiner
// hears from members before its ring holds them all — lands on the count:
// refused, it would be a slice lost (TestJoinOfNewOwnerKeepsCount admitted
// 982 to 998 of 1,000 in 5 of 77 runs).
func TestRefundFromMemberNotYetInRing(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	nodes := startMemCluster(t, net, clock, "n0", "n1")
	n0 := nodes[0]
	startMemNode(t, net, clock, "n2")
	key := keyOn(t, []string{"n0", "n1"}, "n0")
	cs := perMinute(t, 10)
	if got, _ := checkN(t, n0, key, cs, 10); got != 10 {
		t.Fatalf("before: %d of 10 allowed", got)
	}
	e, ok := n0.store.Export(clock.Now(), key)
	if !ok {
		t.Fatal("no entry for the key")
	}
	e.Counters[0].Count = 4          // n2 gives back 4 units of a slice
	net.setMembers("n0", "n1", "n2") // gossip knows n2; n0's ring does not yet
	err := handler{n0.Cluster}.Refund(context.Background(), &rpc.RefundRequest{From: "n2", Entries: []bucket.Entry{e}})
	if err != nil {
		t.Fatalf("refund from n2: %v", err)
	}
	if got, _ := checkN(t, n0, key, cs, 5); got != 4 {
		t.Errorf("after the refund: %d of 5 allowed; want the 4 given back", got)
	}
	// A stranger's refund is still refused, and takes nothing off.
	err = handler{n0.Cluster}.Refund(context.Background(), &rpc.RefundRequest{From: "mallory", Entries: []bucket.Entry{e}})
	var nm *NotMemberError
	if !errors.As(err, &nm) || nm.Name != "mallory" {
		t.Errorf("refund from mallory: %v; want a NotMemberError", err)
	}
	if got, _ := checkN(t, n0, key, cs, 1); got != 0 {
		t.Errorf("after mallory's refund: %d of 1 allowed; want 0", got)
	}
}

// A check about to be decided on a key's old owner when a handoff takes the
// key's entry out and marks it moved decides nothing there: it follows the
// move. Decided on the old owner's table, it would start a fresh entry
// behind the move, which no handoff sends on before the next ring change —
// a hit the owner never counts. The test takes the handoff first and the
// decision second, the interleaving the check path's two steps allow.
func TestDecisionFollowsAMoveMarkedMeanwhile(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	nodes := startMemCluster(t, net, clock, "n0", "n1")
	n0 := nodes[0]
	key := keyWhere(t, func(k string) bool {
		return ownerIn(memRing("n0", "n1"), k) == "n0" && ownerIn(memRing("n0", "n1", "n2"), k) == "n2"
	})
	cs := perMinute(t, 10)
	if got, _ := checkN(t, n0, key, cs, 3); got != 3 {
		t.Fatalf("before: %d of 3 allowed", got)
	}
	n2 := startMemNode(t, net, clock, "n2")
	net.setMembers("n0", "n1", "n2")
	rebuildAll(append(nodes, n2)...)
	n0.handoffAll(context.Background())
	if n0.store.Has(key) || !n2.store.Has(key) {
		t.Fatal("the handoff did not move the key to n2")
	}
	req := rpc.CheckRequest{Key: key, Counters: cs, Cost: 1}
	var resp rpc.CheckResponse
	if moved, err := n0.decideUnlessMoved(clock.Now(), &req, &resp, true); !moved || err != nil || n0.store.Has(key) {
		t.Fatalf("decided on n0 behind the move: moved %v, err %v, entry here %v", moved, err, n0.store.Has(key))
	}
	if err := n0.serveLocal(context.Background(), n0.view.Load(), &req, &resp); err != nil || resp.Node != "n2" || resp.Statuses[0].Remaining != 6 {
		t.Fatalf("served: %+v %v; want decided by n2 with 6 left", resp, err)
	}
}

// A check that waits on a node for its key's count to land where it is
// moving, and runs out of time first, fails: it neither decides the key
// there from zero, beside the count on its way, nor drops the key's move
// mark, so that a pull meanwhile still waits for the batch. (Unmarked, the
// key was found nowhere by its restarted owner's pull, which decided from
// its data file; the count on its way came home as well, and the key's
// hits were counted twice: in the 30-minute fault schedule a fixed window
// of 2,584 admitted 1,851.) 2 hits, 3 on n1 while n2 is down; n2 restarts
// and n1's handback of the 5 is held on its way when a check reaches n1,
// which routes around n2 again; the handback lands; 1 more hit:
// 10 - 2 - 3 - 1 left.
func TestCheckWaitingForMoveLeavesIt(t *testing.T) {
	rc := newReplicatedCluster(t, 2, nil)
	net, clock, nodes, key, cs := rc.net, rc.clock, rc.nodes, rc.key, rc.cs
	rc.crashOwner(t, nodes[0]) // n1 continues: 2 + 3
	rc.rejoinOwner(t, nil, nil)
	release := net.hold("merge", memAddr("n2"))
	defer release()
	n1 := nodes[1]
	n1.probe()
	n1.rebuild()
	handedBack := make(chan struct{})
	go func() {
		defer close(handedBack)
		n1.handoffAll(context.Background())
	}()
	testkit.Eventually(t, 5*time.Second, "n1's handback of the count on its way", func() bool {
		return !n1.store.Has(key) && n1.moved.get(key, clock.Now()) != nil
	})
	n1.peers.suspect("n2", errors.New("the test routes around n2"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	req := rpc.CheckRequest{Key: key, Counters: cs, Cost: 1}
	var resp rpc.CheckResponse
	if _, err := n1.Check(ctx, &req, &resp); err == nil || n1.store.Has(key) || n1.moved.get(key, clock.Now()) == nil {
		t.Fatalf("a check out of time on n1: err %v, allowed %v by %s, count here %v, still marked moving %v; want an error, no count, the mark",
			err, resp.Allowed, resp.Node, n1.store.Has(key), n1.moved.get(key, clock.Now()) != nil)
	}
	release()
	<-handedBack
	settle(nodes...)
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n2" || last.Statuses[0].Remaining != 10-2-3-1 {
		t.Fatalf("after the handback: %d allowed by %s with %d left; want 1 by n2 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-2-3-1)
	}
}

// forgetIf drops a key's move only if it is the one the caller followed:
// a later move of the key (its batch re-planned after a failed send) says
// where the count is now, and a check that found the earlier move's owner
// gone must follow it, not decide the key here from zero.
func TestForgetOnlyTheMoveFollowed(t *testing.T) {
	var ms moves
	now := time.Unix(0, 0)
	first := ms.mark(ring.Member{Name: "n1"}, []bucket.Entry{{Key: "k"}}, now.Add(time.Minute))
	later := ms.mark(ring.Member{Name: "n1"}, []bucket.Entry{{Key: "k"}}, now.Add(time.Minute))
	if ms.forgetIf("k", first) || ms.get("k", now) != later {
		t.Fatal("forgetIf dropped a later move of the key")
	}
	if !ms.forgetIf("k", later) || ms.get("k", now) != nil {
		t.Fatal("forgetIf kept the move it was given")
	}
	if !ms.forgetIf("k", first) {
		t.Fatal("forgetIf of a key with no move: want true")
	}
}

// A node that routes around an owner while the owner leaves (a merge to it
// refused as leaving, say) continues the owner's count from its replica;
// the owner's handoff of the same count lands afterwards. The handoff
// holds the replica's hits too: they were added to the promoted count a
// second time (the churn property test's owner counting 164 for 82). Now
// a merge from the owner's run that sent the replica goes less it. 2 hits;
// n2 leaves, its handoff held on its way to n1; n1 routes around n2 and
// decides 1 from the replica; the handoff lands; 1 more hit: 10-2-1-1 left.
func TestLeaversHandoffAfterItsReplicaWasPromoted(t *testing.T) {
	rc := newReplicatedCluster(t, 2, localFallback)
	net, clock, nodes, key, cs := rc.net, rc.clock, rc.nodes, rc.key, rc.cs
	release := net.hold("merge", memAddr("n1"))
	defer release()
	closed := make(chan error, 1)
	go func() { closed <- nodes[2].Close(context.Background()) }()
	testkit.Eventually(t, 5*time.Second, "n2's handoff on its way", func() bool { return !nodes[2].store.Has(key) && nodes[2].moved.get(key, clock.Now()) != nil })
	nodes[1].peers.suspect("n2", errLeaving)
	if got, last := checkN(t, nodes[1], key, cs, 1); got != 1 || last.Node != "n1" {
		t.Fatalf("while n2 leaves: %d allowed by %s; want 1 by n1", got, last.Node)
	}
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	net.setMembers("n0", "n1")
	rebuildAll(nodes[0], nodes[1])
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n1" || last.Statuses[0].Remaining != 10-2-1-1 {
		t.Fatalf("after n2 left: %d allowed by %s with %d left; want 1 by n1 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-2-1-1)
	}
}

// A lease slice's unused units given back to a node that continues the key
// from its paused owner's replica land on that count, below the replica
// the count started from. Sent home less the replica, the difference was
// cut at zero and the refund lost: the owner counted the units as spent.
// (The churn property test's over-counts came in slice-sized steps.) 8
// hits, 3 of them a slice n0 took; n2 pauses; 1 hit on n1 from the
// replica; n0 gives the 3 back to n1; n2 answers again; 1 more hit:
// 10 - 8 - 1 + 3 - 1 left.
func TestRefundBelowPromotedReplicaGoesHome(t *testing.T) {
	rc := newReplicatedCluster(t, 8, nil)
	net, clock, nodes, key, cs := rc.net, rc.clock, rc.nodes, rc.key, rc.cs
	e, ok := nodes[2].store.Export(clock.Now(), key)
	if !ok {
		t.Fatal("no entry for the key on n2")
	}
	net.setCut(memAddr("n2"), true)
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n1" {
		t.Fatalf("during the pause: %d of 1 allowed, by %s; want 1 by n1", got, last.Node)
	}
	e.Counters[0].Count = 3 // n0 gives back 3 units of a slice
	if err := (handler{nodes[1].Cluster}).Refund(context.Background(), &rpc.RefundRequest{From: "n0", Entries: []bucket.Entry{e}}); err != nil {
		t.Fatal(err)
	}
	net.setCut(memAddr("n2"), false)
	settle(nodes...)
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n2" || last.Statuses[0].Remaining != 10-8-1+3-1 {
		t.Fatalf("after the pause: %d allowed by %s with %d left; want 1 by n2 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-8-1+3-1)
	}
}

// A leaving owner's replica of a key can land on its next owner after its
// handoff of that key did: the count handed over holds the replica's hits.
// Kept, the replica went home again beside the count when the owner came
// back as a new run, and the hits were counted twice (the churn property
// test: a count of 212 handed twice, with its replica as base and whole).
// A merge marked late only the replicas it found here; now it marks its
// keys' replicas from the sending run whether or not one is here yet.
// 3 hits on n2, whose first replica of the key is held on its way; n2
// leaves, its handoff lands, then the replica; n2 comes back as a new run;
// 1 more hit: 10 - 3 - 1 left.
func TestLateReplicaOfHandedInKeyDropped(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	names := []string{"n0", "n1", "n2"}
	nodes := startMemClusterWith(t, net, clock, func(c *Config) { c.Replicas = 1 }, names...)
	key := keyWhere(t, func(k string) bool {
		return ownerIn(memRing(names...), k) == "n2" && ownerIn(memRing("n0", "n1"), k) == "n1"
	})
	cs := perMinute(t, 10)
	before := net.count("replica", memAddr("n1"))
	release := net.hold("replica", memAddr("n1"))
	defer release()
	if got, _ := checkN(t, nodes[2], key, cs, 3); got != 3 {
		t.Fatal("the hits before the leave were refused")
	}
	testkit.Eventually(t, 5*time.Second, "n2's replica on its way", func() bool { return net.count("replica", memAddr("n1")) > before })
	closed := make(chan error, 1)
	go func() { closed <- nodes[2].Close(context.Background()) }()
	testkit.Eventually(t, 5*time.Second, "n2's handoff on n1", func() bool { return nodes[1].store.Has(key) })
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	rc := &replicatedCluster{net: net, clock: clock, nodes: nodes, key: key, cs: cs}
	rc.restartOwner(t, nil)
	settle(nodes...)
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n2" || last.Statuses[0].Remaining != 10-3-1 {
		t.Fatalf("after n2 came back: %d allowed by %s with %d left; want 1 by n2 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-3-1)
	}
}
