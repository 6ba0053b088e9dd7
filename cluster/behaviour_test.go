package cluster

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/rpc"
)

// Unit tests of how ownership moves and checks are routed, on the
// in-memory world of memnet_test.go: rings change when the test says so,
// time moves when the test says so, and every count is exact.

// A node that joins pulls a key's count from its previous owner on first
// sight, before its previous owner has even seen the join; the previous
// owner passes on any check of the key that still reaches it.
func TestPullOnJoin(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	n0 := startMemCluster(t, net, clock, "n0")[0]
	key := keyOn(t, []string{"n0", "n1"}, "n1")
	cs := perMinute(t, 5)
	if got, _ := checkN(t, n0, key, cs, 3); got != 3 {
		t.Fatalf("before the join: %d of 3 allowed", got)
	}

	net.setMembers("n0", "n1")
	n1 := startMemNode(t, net, clock, "n1")
	if err := n1.Join(context.Background(), "gossip:n0"); err != nil {
		t.Fatal(err)
	}
	// n0 has not rebuilt: its ring still places key on itself.
	got, last := checkN(t, n1, key, cs, 10)
	if got != 2 || last.Node != "n1" {
		t.Errorf("on the new owner: %d of 10 allowed (last by %s); want 2 by n1", got, last.Node)
	}
	if takes := net.count("take", memAddr("n0")); takes != 1 {
		t.Errorf("n1 took the key from n0 %d times; want once", takes)
	}
	if n0.store.Has(key) || !n1.store.Has(key) {
		t.Errorf("after the pull: n0 holds key %v, n1 %v; want only n1", n0.store.Has(key), n1.store.Has(key))
	}
	got, last = checkN(t, n0, key, cs, 4)
	if got != 0 || last.Node != "n1" {
		t.Errorf("on the old owner, not yet rebuilt: %d of 4 allowed (last by %s); want 0, passed to n1", got, last.Node)
	}
}

// A node that leaves hands every count it holds to the keys' new owners
// before it goes.
func TestHandoffOnLeave(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	names := []string{"n0", "n1", "n2"}
	nodes := startMemCluster(t, net, clock, names...)
	key := keyOn(t, names, "n2")
	heir := ownerIn(memRing("n0", "n1"), key)
	cs := perMinute(t, 5)
	if got, _ := checkN(t, nodes[0], key, cs, 3); got != 3 {
		t.Fatalf("before the leave: %d of 3 allowed", got)
	}
	if err := nodes[2].Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if nodes[2].store.Len() != 0 {
		t.Errorf("the leaver still holds %d keys", nodes[2].store.Len())
	}
	if merges := net.count("merge", memAddr(heir)); merges != 1 {
		t.Errorf("%d merges reached the heir %s; want 1", merges, heir)
	}
	net.setMembers("n0", "n1")
	rebuildAll(nodes[:2]...)
	a0, last0 := checkN(t, nodes[0], key, cs, 5)
	a1, last1 := checkN(t, nodes[1], key, cs, 5)
	if a0+a1 != 2 || last0.Node != heir || last1.Node != heir {
		t.Errorf("after the leave: %d of 10 allowed, decided by %s and %s; want 2, by %s", a0+a1, last0.Node, last1.Node, heir)
	}
}

// An owner's denial is given again by the asking node until the owner's
// retry-after has passed: the owner sees one denied check, not all.
func TestDenyCacheAnswersForTheOwner(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	nodes := startMemCluster(t, net, clock, "n0", "n1")
	key := keyOn(t, []string{"n0", "n1"}, "n1")
	cs := perMinute(t, 2)
	if got, _ := checkN(t, nodes[0], key, cs, 10); got != 2 {
		t.Errorf("%d of 10 allowed; want 2", got)
	}
	if served := net.count("check", memAddr("n1")); served != 3 {
		t.Errorf("the owner served %d checks; want 3 (2 allowed, 1 denied, 7 answered from the cache)", served)
	}
	clock.Add(59 * time.Second)
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 0 || last.Statuses[0].RetryAfter != time.Second {
		t.Errorf("59s on: allowed %d, retry-after %v; want 0 and 1s", got, last.Statuses[0].RetryAfter)
	}
	if served := net.count("check", memAddr("n1")); served != 3 {
		t.Errorf("the owner served %d checks; want still 3", served)
	}
	clock.Add(time.Second)
	if got, _ := checkN(t, nodes[0], key, cs, 3); got != 2 {
		t.Errorf("after the window: %d of 3 allowed; want 2", got)
	}
	if served := net.count("check", memAddr("n1")); served != 6 {
		t.Errorf("the owner served %d checks; want 6", served)
	}
}

// When a key's owner does not answer, the asking node routes around it at
// once and the key's next owner decides, exactly; the next owner's own
// checks of the key are the fail policy's (it cannot tell the owner is
// only unreachable from here). When the owner answers a probe again it is
// back in the ring.
func TestFailoverToNextOwner(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	names := []string{"n0", "n1", "n2"}
	nodes := startMemCluster(t, net, clock, names...)
	without2 := memRing("n0", "n1")
	key := keyWhere(t, func(k string) bool { return ownerIn(memRing(names...), k) == "n2" && ownerIn(without2, k) == "n1" })
	cs := perMinute(t, 5)
	net.setCut(memAddr("n2"), true)

	got, last := checkN(t, nodes[0], key, cs, 10)
	if got != 5 || last.Node != "n1" {
		t.Errorf("%d of 10 allowed, the last decided by %s; want 5 by n1", got, last.Node)
	}
	if f := nodes[0].fallbacks.Load(); f != 0 {
		t.Errorf("n0: %d fallback decisions; want none while a next owner answers", f)
	}
	if st := memberState(nodes[0].Cluster, "n2"); st != Unreachable {
		t.Errorf("n0 sees n2 %v; want unreachable", st)
	}
	if tries := net.count("check", memAddr("n2")); tries != 0 {
		t.Errorf("%d checks reached the cut owner", tries)
	}
	if checkN(t, nodes[1], key, cs, 1); nodes[1].fallbacks.Load() != 1 {
		t.Errorf("n1's own check: %d fallback decisions; want 1", nodes[1].fallbacks.Load())
	}

	net.setCut(memAddr("n2"), false)
	nodes[0].probe()
	if st := memberState(nodes[0].Cluster, "n2"); st != Alive {
		t.Errorf("after a probe n2 answered: %v; want alive", st)
	}
	if o, _ := nodes[0].Ring().Owner(key); o.Name != "n2" {
		t.Errorf("owner after the probe: %s; want n2", o.Name)
	}
}

// When no owner answers, the fail policy decides, once per check.
func TestFallbackWhenNoOwnerAnswers(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	nodes := startMemCluster(t, net, clock, "n0", "n1")
	key := keyOn(t, []string{"n0", "n1"}, "n1")
	net.setCut(memAddr("n1"), true)
	// Two nodes: routing around n1 leaves n0 itself, which is not the
	// key's owner by gossip, so n0 must not count the key as its own.
	for i := 0; i < 3; i++ {
		req := rpc.CheckRequest{Key: key, Counters: perMinute(t, 5), Cost: 1}
		var resp rpc.CheckResponse
		fallback, err := nodes[0].Check(context.Background(), &req, &resp)
		if err != nil || !fallback || resp.Allowed {
			t.Fatalf("check %d: fallback=%v allowed=%v err=%v; want the policy's denial", i+1, fallback, resp.Allowed, err)
		}
	}
	if got := nodes[0].fallbacks.Load(); got != 3 {
		t.Errorf("fail policy decided %d checks; want 3", got)
	}
	if nodes[0].store.Has(key) {
		t.Error("n0 counted the key as if it owned it")
	}
}

// A leaving node passes a check of a key it does not hold to the key's new
// owner; two nodes leaving at once, each routing to the other, pass a
// check back and forth at most maxLeavingHops times.
func TestLeavingHops(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	names := []string{"n0", "n1", "n2"}
	nodes := startMemCluster(t, net, clock, names...)
	cs := perMinute(t, 5)

	// The key's heir is n0: were it n1, n1 would hold the key when it
	// starts leaving below, and its background handoff to n2 (leaving
	// too) would be refused, making n1 route around n2 before or after
	// the ping-pong check, as the scheduler has it.
	full, without2 := memRing(names...), memRing("n0", "n1")
	key := keyWhere(t, func(k string) bool { return ownerIn(full, k) == "n2" && ownerIn(without2, k) == "n0" })
	heir := "n0"
	startLeaving(nodes[2])
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != heir {
		t.Errorf("via the leaver: allowed %d by %s; want 1 by %s", got, last.Node, heir)
	}
	if hops := net.hopsAt(memAddr(heir)); !slices.Equal(hops[len(hops)-1:], []int{1}) {
		t.Errorf("the heir received checks with hops %v; want [1]", hops)
	}

	// n1's ring without itself places pingPong on n2, n2's on n1; neither
	// holds it.
	without1 := memRing("n0", "n2")
	pingPong := keyWhere(t, func(k string) bool {
		return k != key && ownerIn(without1, k) == "n2" && ownerIn(without2, k) == "n1"
	})
	startLeaving(nodes[1])
	before1, before2 := len(net.hopsAt(memAddr("n1"))), len(net.hopsAt(memAddr("n2")))
	req := rpc.CheckRequest{Key: pingPong, Counters: cs, Cost: 1}
	var resp rpc.CheckResponse
	if _, err := nodes[1].Check(context.Background(), &req, &resp); err != nil || !resp.Allowed {
		t.Fatalf("ping-pong check: allowed=%v err=%v", resp.Allowed, err)
	}
	if h1, h2 := net.hopsAt(memAddr("n1"))[before1:], net.hopsAt(memAddr("n2"))[before2:]; !slices.Equal(h1, []int{2}) || !slices.Equal(h2, []int{1, 3}) {
		t.Errorf("hops received: n1 %v, n2 %v; want [2] and [1 3] (maxLeavingHops=%d)", h1, h2, maxLeavingHops)
	}
	if resp.Node != "n2" {
		t.Errorf("decided by %s; want n2, where the hops ran out", resp.Node)
	}
}

// startLeaving puts n in the state Close begins with: it no longer owns
// keys in its own ring, and serves checks as a leaver.
func startLeaving(n *memNode) {
	n.leaving.Store(true)
	n.rebuild()
}

func memberState(c *Cluster, name string) State {
	for _, m := range c.Members() {
		if m.Name == name {
			return m.State
		}
	}
	return State(255)
}

// A node that joins and cannot pull a key's count — its previous owner
// has not seen it join and refuses the take — does not decide the key from
// zero: the previous owner, which still holds the count, decides. Before,
// a slow gossip let a join admit up to a whole limit twice.
func TestRefusedPullLeavesTheCheckToTheOldOwner(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	n0 := startMemCluster(t, net, clock, "n0")[0]
	key := keyOn(t, []string{"n0", "n1"}, "n1")
	cs := perMinute(t, 5)
	if got, _ := checkN(t, n0, key, cs, 4); got != 4 {
		t.Fatalf("before the join: %d of 4 allowed", got)
	}
	net.setMembers("n0", "n1")
	net.mu.Lock()
	net.views = map[string][]string{"n0": {"n0"}} // n0's gossip has not seen n1
	net.mu.Unlock()
	n1 := startMemNode(t, net, clock, "n1")
	if err := n1.Join(context.Background(), "gossip:n0"); err != nil {
		t.Fatal(err)
	}
	got, last := checkN(t, n1, key, cs, 3)
	if got != 1 || last.Node != "n0" {
		t.Fatalf("on the new owner, the take refused: %d of 3 allowed (last by %s); want 1, decided by n0", got, last.Node)
	}
}
