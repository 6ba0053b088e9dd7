package cluster

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// replicated waits until node holds a replica of key.
func replicated(t *testing.T, node *memNode, key string) {
	t.Helper()
	replicatedWhere(t, node, key, "any", func(bucket.Entry) bool { return true })
}

// replicatedWhere waits until node holds a replica of key for which ok
// holds; what says which, for the failure message.
func replicatedWhere(t *testing.T, node *memNode, key, what string, ok func(bucket.Entry) bool) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, "the replica ("+what+") on "+node.name, func() bool {
		node.repl.mu.Lock()
		defer node.repl.mu.Unlock()
		for _, h := range node.repl.from {
			if e, found := h.store.Export(node.now(), key); found && ok(e) {
				return true
			}
		}
		return false
	})
}

// replicatedCluster is three memNet nodes with replicas 1 (and mod, if
// not nil), a key owned by n2 whose next owner is n1, spent hits of it
// admitted at 10 per minute, and the replica of them on n1.
type replicatedCluster struct {
	spent int
	net   *memNet
	clock *manualClock
	nodes []*memNode
	key   string
	cs    []bucket.Counter
}

func newReplicatedCluster(t *testing.T, spent int, mod func(*Config)) *replicatedCluster {
	t.Helper()
	rc := &replicatedCluster{spent: spent, net: newMemNet(), clock: newManualClock()}
	names := []string{"n0", "n1", "n2"}
	rc.nodes = startMemClusterWith(t, rc.net, rc.clock, func(c *Config) {
		c.Replicas = 1
		if mod != nil {
			mod(c)
		}
	}, names...)
	rc.key = keyWhere(t, func(k string) bool {
		return ownerIn(memRing(names...), k) == "n2" && ownerIn(memRing("n0", "n1"), k) == "n1"
	})
	rc.cs = perMinute(t, 10)
	if got, _ := checkN(t, rc.nodes[0], rc.key, rc.cs, spent); got != spent {
		t.Fatalf("before: %d of %d allowed", got, spent)
	}
	replicated(t, rc.nodes[1], rc.key)
	// The copies travel as replicas: taken for a handoff, they would be
	// added to n1's own counts.
	if r, m := rc.net.count("replica", memAddr("n1")), rc.net.count("merge", memAddr("n1")); r == 0 || m != 0 {
		t.Fatalf("n1 received %d replicas and %d merges; want replicas only", r, m)
	}
	return rc
}

// A paused owner with a replica on its next owner: during the pause the
// next owner continues from the replica, and when the owner answers again
// only the hits added meanwhile go home, so the owner counts each hit
// once: 2 before and 3 during, 5 of 10 left — not 3, as it would be if
// the replicated 2 came back too. (An owner that restarted instead gets
// the whole count: TestRestartReconcilesFileAndReplicas and
// TestRestartUnseenByGossip.)
func TestPausedOwnerWithReplica(t *testing.T) {
	rc := newReplicatedCluster(t, 2, nil)
	net, clock, nodes, key, cs := rc.net, rc.clock, rc.nodes, rc.key, rc.cs

	net.setCut(memAddr("n2"), true)
	if got, last := checkN(t, nodes[0], key, cs, 3); got != 3 || last.Node != "n1" {
		t.Fatalf("during the pause: %d of 3 allowed, by %s; want 3 by n1", got, last.Node)
	}
	if st, _, _ := nodes[1].store.Check(clock.Now(), key, cs, 0, nil); st[0].Remaining != 5 {
		t.Fatalf("n1 continued from %d left, want 5: it did not start from the replica", st[0].Remaining)
	}
	net.setCut(memAddr("n2"), false)
	settle(nodes...)
	if nodes[1].store.Has(key) {
		t.Fatal("n1 kept the counts it made for n2")
	}
	if st, _, _ := nodes[2].store.Check(clock.Now(), key, cs, 0, nil); st[0].Remaining != 5 {
		t.Fatalf("after the pause n2 has %d of 10 left, want 5: 2 + 3 hits, each counted once", st[0].Remaining)
	}
}

// Every hit reaches the next owner's replica, exactly, one check after
// another, and a node that is not a member (another ring, a stranger with
// the secret) cannot leave any. The lag, replicaFlush plus one RPC, is
// logged here and measured by BenchmarkReplicaLag: as a bound of this
// test it failed on a loaded machine, not on a slow replica.
func TestReplicaLagAndStrangers(t *testing.T) {
	nodes, key, next := startReplicatedReal(t)
	cs := testkit.Counters(t, "r", "1000 per minute")
	var lags []time.Duration
	for i := range 20 {
		req := rpc.CheckRequest{Key: key, Counters: cs, Cost: 1}
		var resp rpc.CheckResponse
		start := time.Now()
		if _, err := nodes[2].Check(context.Background(), &req, &resp); err != nil || !resp.Allowed {
			t.Fatalf("check %d: %+v %v", i, resp, err)
		}
		var why string
		testkit.Eventually(t, 10*time.Second, "replica of every hit", func() bool {
			held := replicaCount(next, "n2", key)
			why = fmt.Sprintf("the replica holds %d of %d hits", held, i+1)
			return held == int64(i+1)
		}, &why)
		lags = append(lags, time.Since(start))
	}
	slices.Sort(lags)
	t.Logf("replica lag over 20 checks: median %v, max %v (flush every %v)", lags[10], lags[19], replicaFlush)

	stranger := rpc.NewClient(next.RPCAddr(), rpc.ClientConfig{Secret: rpcSecret(nil), DialTimeout: time.Second, CallTimeout: time.Second})
	defer stranger.Close()
	err := stranger.Replicate(context.Background(), &rpc.ReplicaRequest{From: "stranger",
		Entries: []bucket.Entry{{Key: "k", Counters: []bucket.CounterState{{Counter: cs[0], Start: time.Now().UnixNano(), Count: 5}}}}})
	if err == nil || replicaCount(next, "stranger", "k") != 0 {
		t.Fatalf("a stranger's replica: %v; held %d", err, replicaCount(next, "stranger", "k"))
	}
}

// replicaCount is the count node holds in owner's replica of key.
func replicaCount(node *Cluster, owner, key string) int64 {
	node.repl.mu.Lock()
	h := node.repl.from[owner]
	node.repl.mu.Unlock()
	if h == nil {
		return 0
	}
	e, ok := h.store.Export(time.Now(), key)
	if !ok {
		return 0
	}
	return e.Counters[0].Count
}

// A check decided while the owner's suspicion is recorded but the ring not
// rebuilt yet (another check is rebuilding it) continues from the replica
// too: deciding from zero then would make the replica useless for good.
func TestPromoteBeforeRebuild(t *testing.T) {
	rc := newReplicatedCluster(t, 4, nil)
	clock, key, cs, n1 := rc.clock, rc.key, rc.cs, rc.nodes[1]
	n1.peers.mu.Lock()
	n1.peers.suspects["n2"] = clock.Now() // as suspect() records it, before its rebuild
	n1.peers.nsuspects.Store(1)
	n1.peers.mu.Unlock()
	req := rpc.CheckRequest{Key: key, Counters: cs, Cost: 1}
	var resp rpc.CheckResponse
	if err := n1.decideLocal(clock.Now(), &req, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Statuses[0].Remaining != 5 {
		t.Fatalf("decided with %d left, want 5: it did not continue from the replica's 4", resp.Statuses[0].Remaining)
	}
}

// A successor that restarted (its replicas lost) gets the owner's keys
// again although they do not change — a key at its limit is only denied —
// so that when the owner then crashes it continues from the count, not
// from zero: 10 of 10 spent, the next owner restarts, the owner crashes,
// and 0 of 5 more are allowed (before: 5, a whole window again).
//
// The owner sees the restarted node in gossip before it has joined, when it
// refuses replicas: the owner tries again until it takes them (in the fault
// schedule, keys of a killed successor were admitted twice over when the
// owner was killed next).
func TestRestartedSuccessorGetsReplicasOfUnchangedKeys(t *testing.T) {
	rc := newReplicatedCluster(t, 10, nil)
	net, clock, nodes, key, cs := rc.net, rc.clock, rc.nodes, rc.key, rc.cs
	replicatedCount(t, nodes[1], key, 10)
	net.crash(nodes[1])
	n1 := startMemNodeWith(t, net, clock, "n1", func(c *Config) { c.Replicas = 1; c.ForwardTimeout = 100 * time.Millisecond })
	n1.ExpectJoin()
	nodes[1] = n1
	rebuildAll(nodes...)
	testkit.Eventually(t, 5*time.Second, "the owner's resync refused by the unjoined n1", func() bool {
		return testutil.ToFloat64(nodes[2].metrics.replicaKeys.WithLabelValues("failed")) > 0
	})
	if err := n1.Join(context.Background(), "gossip:n0"); err != nil {
		t.Fatal(err)
	}
	replicatedCount(t, n1, key, 10)
	net.crash(nodes[2])
	if got, last := checkN(t, nodes[0], key, cs, 5); got != 0 || last.Node != "n1" {
		t.Fatalf("after the owner's crash: %d of 5 allowed, last by %s; want 0 by n1", got, last.Node)
	}
}

// startReplicatedReal starts 3 real nodes with one replica each, and returns
// a key n2 owns and the node that keeps its replica.
func startReplicatedReal(t testing.TB) (nodes []*Cluster, key string, next *Cluster) {
	t.Helper()
	nodes = startRealClusterWith(t, 3, func(cfg *Config) { cfg.Replicas = 1 })
	key = testkit.KeyOwnedBy(t, []string{"n0", "n1", "n2"}, "n2")
	succ := nodes[2].view.Load().full.Successors(key, 2)[1].Name
	for _, n := range nodes {
		if n.name == succ {
			next = n
		}
	}
	return nodes, key, next
}

// BenchmarkReplicaLag measures how long a hit on its owner takes to reach
// the next owner's replica (replicaFlush plus one RPC): ns/op is the mean
// lag, max-lag-ms the longest. It polls without sleeping, so as not to
// add a poll interval to what it measures.
func BenchmarkReplicaLag(b *testing.B) {
	nodes, key, next := startReplicatedReal(b)
	cs := testkit.Counters(b, "r", "1000000000 per day")
	var worst time.Duration
	for i := int64(1); b.Loop(); i++ {
		start := time.Now()
		req := rpc.CheckRequest{Key: key, Counters: cs, Cost: 1}
		var resp rpc.CheckResponse
		if _, err := nodes[2].Check(context.Background(), &req, &resp); err != nil || !resp.Allowed {
			b.Fatalf("check %d: %+v %v", i, resp, err)
		}
		deadline := start.Add(10 * time.Second)
		for replicaCount(next, "n2", key) != i {
			if time.Now().After(deadline) {
				b.Fatalf("after 10s the replica holds %d of %d hits", replicaCount(next, "n2", key), i)
			}
			runtime.Gosched()
		}
		worst = max(worst, time.Since(start))
	}
	b.ReportMetric(float64(worst)/float64(time.Millisecond), "max-lag-ms")
}

// A batch of an earlier run's replicas out for a reclaim keeps its store:
// the sweep that finds the store empty meanwhile leaves it, and a send
// that fails puts the batch back where the owner's next pull finds it. 2
// hits replicated to n1; n2 crashes and restarts; n1's reclaim of the
// replica is refused unsent (its client still in its dial backoff) and
// the sweep runs while it is out. 1 more hit: 7 of 10 left. Before, the
// sweep dropped the empty store, the batch went back into a store no
// longer held, and n2 counted the key from zero: 9 left (the no-data-dir
// 30-minute schedule's keys at their limit, admitted a whole limit over).
func TestReclaimOutDuringSweepKeepsStore(t *testing.T) {
	rc := newReplicatedCluster(t, 2, nil)
	net, nodes, key, cs := rc.net, rc.nodes, rc.key, rc.cs
	replicatedCount(t, nodes[1], key, 2)
	net.crash(nodes[2])
	release := net.hold("merge", memAddr("n2"))
	defer release()
	net.refuse("merge", memAddr("n2"), true)
	rc.rejoinOwner(t, nil, nil)
	nodes[1].probe()
	nodes[1].rebuild()
	testkit.Eventually(t, 5*time.Second, "n1's reclaim out", func() bool { return net.count("merge", memAddr("n2")) > 0 })
	nodes[1].repl.sweep()
	release()
	testkit.Eventually(t, 5*time.Second, "n1's reclaim back", func() bool { return nodes[1].moved.get(key, rc.clock.Now()) == nil })
	net.refuse("merge", memAddr("n2"), false)
	for _, n := range nodes {
		n.probe()
	}
	rebuildAll(nodes...)
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n2" || last.Statuses[0].Remaining != 10-2-1 {
		t.Fatalf("after n2 restarted: %d allowed by %s with %d left; want 1 by n2 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-2-1)
	}
}

// A count handed home to the run whose replica it was continued from is
// copied back to the successors before the owner answers, as one handed
// to a restarted run is: the sender dropped its copies before it sent it.
// Replication's loop never runs here (noFlush): n1 holds n2's replica of
// 2 hits by hand; n2 is cut off and n1 continues with 3; n2 answers again
// and n1 hands the 5 home; n2 crashes at once. 1 more hit, by n1: 4 of
// 10 left. Before, n1 held nothing of the key and decided from zero: 9.
func TestCountHomeCopiedBackBeforeAnswer(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	names := []string{"n0", "n1", "n2"}
	nodes := startMemClusterWith(t, net, clock, func(c *Config) { c.Replicas = 1; noFlush(c) }, names...)
	key := keyWhere(t, func(k string) bool {
		return ownerIn(memRing(names...), k) == "n2" && ownerIn(memRing("n0", "n1"), k) == "n1"
	})
	cs := perMinute(t, 10)
	if got, _ := checkN(t, nodes[0], key, cs, 2); got != 2 {
		t.Fatalf("before: %d of 2 allowed", got)
	}
	e, ok := nodes[2].store.Export(clock.Now(), key)
	if !ok {
		t.Fatal("n2 holds no count of the key")
	}
	nodes[1].repl.hold("n2", nodes[2].incarnation, []bucket.Entry{e})
	net.setCut(memAddr("n2"), true)
	if got, last := checkN(t, nodes[0], key, cs, 3); got != 3 || last.Node != "n1" {
		t.Fatalf("while n2 is cut off: %d of 3 allowed, last by %s; want 3 by n1", got, last.Node)
	}
	net.setCut(memAddr("n2"), false)
	for _, n := range nodes {
		n.probe()
	}
	rebuildAll(nodes...)
	nodes[1].handoffAll(context.Background())
	if nodes[1].store.Has(key) {
		t.Fatal("n1 kept the count it continued")
	}
	net.crash(nodes[2])
	net.setMembers("n0", "n1")
	rebuildAll(nodes[0], nodes[1])
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n1" || last.Statuses[0].Remaining != 10-5-1 {
		t.Fatalf("after n2 crashed: %d allowed by %s with %d left; want 1 by n1 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-5-1)
	}
}
