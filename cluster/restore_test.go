package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/internal/testkit"
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

// A node's data file holds the count of another owner's key that it
// continued while the owner was away, and handed back since. The node
// crashes and restarts with that file: the count is the owner's now, and
// the file's copy of it must not come home a second time when the restore
// window ends (it was added: 0 left). It is offered as a fill-in, which
// the owner drops; an owner that holds nothing of the key (its count
// lost, as in a whole cluster restarting) takes it. 2 hits, 3 on n1 while
// n2 is away, handed back; n1 crashes and restarts from its file; 1 more
// hit: 10 - 2 - 3 - 1 left either way.
func TestFileOfFormerNextOwnerCountsNothingTwice(t *testing.T) {
	for _, ownerHolds := range []bool{true, false} {
		t.Run(map[bool]string{true: "owner holds the count", false: "owner holds nothing"}[ownerHolds], func(t *testing.T) {
			rc := newReplicatedCluster(t, 2, nil)
			clock, nodes, key, cs := rc.clock, rc.nodes, rc.key, rc.cs
			rc.crashOwner(t, nodes[0]) // n1 continues: 2 + 3
			file := nodes[1].store.Snapshot(clock.Now(), nil)
			rc.restartOwner(t, nil)
			nodes[1].handoffAll(context.Background())
			if nodes[1].store.Has(key) || !nodes[2].store.Has(key) {
				t.Fatal("n1 did not hand the count back")
			}
			n1 := rc.restartNextWithFile(t, file)
			if !ownerHolds {
				nodes[2].store.Reset(key)
			}
			clock.Add(pullWindow + time.Second)
			n1.adoptRest(clock.Now())
			if n1.store.Has(key) {
				t.Fatal("the file's count of another owner's key joined n1's table")
			}
			n1.handoffAll(context.Background())
			dropped := testutil.ToFloat64(nodes[2].metrics.handoffKeys.WithLabelValues("fill_in_dropped"))
			if want := map[bool]float64{true: 1, false: 0}[ownerHolds]; dropped != want {
				t.Fatalf("n2 dropped %v fill-ins; want %v", dropped, want)
			}
			if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n2" || last.Statuses[0].Remaining != 10-2-3-1 {
				t.Fatalf("after n1's restart: %d allowed by %s with %d left; want 1 by n2 with %d left",
					got, last.Node, last.Statuses[0].Remaining, 10-2-3-1)
			}
		})
	}
}

// A node restarted with a data file that holds a count of another owner's
// key (one it continued once, while that owner was away) is that key's
// successor again and gets the owner's replicas. When the owner crashes
// and the node continues from the replica, the file's count is not added
// to it: the replica is the newer count of the same hits. 2 hits in the
// file and the replica, 1 more replicated, the owner crashes, 1 on n1:
// 10 - 3 - 1 left, not 10 - 3 - 2 - 1.
func TestPromotedReplicaBeatsOwnFile(t *testing.T) {
	rc := newReplicatedCluster(t, 2, nil)
	clock, nodes, key, cs := rc.clock, rc.nodes, rc.key, rc.cs
	file := nodes[2].store.Snapshot(clock.Now(), nil) // 2 hits, as n1 once held them
	n1 := rc.restartNextWithFile(t, file)
	if got, _ := checkN(t, nodes[0], key, cs, 1); got != 1 {
		t.Fatal("third hit denied")
	}
	replicatedCount(t, n1, key, 3)
	rc.net.crash(nodes[2])
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n1" || last.Statuses[0].Remaining != 10-3-1 {
		t.Fatalf("after n2's crash: %d allowed by %s with %d left; want 1 by n1 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-3-1)
	}
}

// restartNextWithFile crashes n1 and starts a new run of it from file;
// once it has joined, every node has seen it answer.
func (rc *replicatedCluster) restartNextWithFile(t *testing.T, file []bucket.Entry) *memNode {
	t.Helper()
	rc.net.crash(rc.nodes[1])
	n1 := startMemNodeWith(t, rc.net, rc.clock, "n1", func(c *Config) { c.Replicas = 1 })
	n1.Restore(rc.clock.Now(), file)
	if err := n1.Join(context.Background(), "gossip:n0"); err != nil {
		t.Fatal(err)
	}
	rc.nodes[1] = n1
	for _, n := range rc.nodes {
		n.probe()
	}
	rebuildAll(rc.nodes...)
	return n1
}

// A restarted owner took its count back and copied it to its next owner
// (copyNow), then crashed again. The next owner meanwhile got a count of
// the key made without any replica (a peer's fail-policy decisions,
// handed to it). When the owner's next run appears, both go home: the
// earlier run's replica and the count made beside it. (The handoff of
// the count dropped the replica as stale, and the reclaim skipped the
// key as held: the owner's hits before its last crash were lost, a fixed
// window of 93 a day admitted 118.) 2 hits, 3 on n1 while n2 is away,
// taken back; n2 crashes; 1 made on n0 and handed to n1; n2 restarts; 1
// more hit: 10 - 2 - 3 - 1 - 1 left.
func TestReplicaGoesHomeBesideCountMadeWithoutIt(t *testing.T) {
	rc := newReplicatedCluster(t, 2, nil)
	nodes, key, cs := rc.nodes, rc.key, rc.cs
	rc.madeBesideReplica(t)
	rc.restartOwner(t, nil)
	nodes[1].handoffAll(context.Background())
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n2" || last.Statuses[0].Remaining != 10-2-3-1-1 {
		t.Fatalf("after n2's second restart: %d allowed by %s with %d left; want 1 by n2 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-2-3-1-1)
	}
}

// madeBesideReplica crashes n2 once n1 continued its 2 hits with 3 more;
// n2's next run takes the 5 back and copies them to n1, and crashes too;
// n0 then makes 1 hit without the replica (its fail policy's) and hands it
// to n1.
func (rc *replicatedCluster) madeBesideReplica(t *testing.T) {
	t.Helper()
	clock, nodes, key := rc.clock, rc.nodes, rc.key
	rc.crashOwner(t, nodes[0]) // n1 continues: 2 + 3
	rc.restartOwner(t, nil)
	nodes[1].handoffAll(context.Background())
	replicatedCount(t, nodes[1], key, 5) // copied at once by the taken-back run
	rc.net.crash(nodes[2])
	scratch := bucket.NewStore(bucket.StoreConfig{})
	if _, _, err := scratch.Check(clock.Now(), key, rc.cs, 1, nil); err != nil {
		t.Fatal(err)
	}
	made := scratch.Snapshot(clock.Now(), nil) // 1 hit, by n0's fail policy
	if err := nodes[0].peers.get("n1", memAddr("n1")).Merge(context.Background(), &rpc.MergeRequest{From: "n0", Entries: made}); err != nil {
		t.Fatal(err)
	}
}

// A restarted owner pulls its count back and crashes again before it has
// copied it anywhere (the pull's answer is on its way, or the copy is):
// the node it pulled from keeps what it gave as a replica of that run, so
// the count continues there. (It was gone: the next check started the key
// from zero, a fixed window of 60 a day admitted 78.) 2 hits, 3 on n1
// while n2 is away, pulled by n2's next run, which crashes; 1 more on n1:
// 10 - 2 - 3 - 1 left.
func TestPulledCountSurvivesPullerCrash(t *testing.T) {
	rc := newReplicatedCluster(t, 2, nil)
	nodes, key, cs := rc.nodes, rc.key, rc.cs
	rc.crashOwner(t, nodes[0]) // n1 continues: 2 + 3
	n2 := rc.rejoinOwner(t, nil, noFlush)
	if r := nodes[1].take(context.Background(), &rpc.TakeRequest{Key: key, To: "n2", ToAddr: memAddr("n2"), Incarnation: n2.incarnation}); !r.Found || !r.Supersedes {
		t.Fatalf("the pull got %+v; want the count, superseding", r)
	}
	rc.net.crash(n2) // before it merged what it pulled
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n1" || last.Statuses[0].Remaining != 10-2-3-1 {
		t.Fatalf("after the puller's crash: %d allowed by %s with %d left; want 1 by n1 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-2-3-1)
	}
}

// A restarted node's data file can hold an old count of a key whose owner
// has restarted too and not fetched its newer count back yet from the node
// that continued it meanwhile. Offered as a fill-in, the file's count must
// not stand in for that one: the owner would decide from the old count,
// and add the newer one to it when it came home. So the owner fetches the
// count first, as a check would, and then drops the fill-in. 2 hits, 3 on
// n1 while n2 is down (n0's file holds those 5, as a file holds a count
// its node once continued for an owner) and 1 more; n0 and n2 restart;
// 1 more: 10 - 2 - 3 - 1 - 1 left. (Before, n2 took the fill-in: 4 left,
// then 0 once n1 handed the count back.)
func TestFillInWaitsForOwnersCountToComeBack(t *testing.T) {
	for _, answers := range []bool{true, false} {
		t.Run(map[bool]string{true: "n1 answers the pull", false: "n1 does not answer the pull"}[answers], func(t *testing.T) {
			rc := newReplicatedCluster(t, 2, nil)
			clock, nodes, key, cs := rc.clock, rc.nodes, rc.key, rc.cs
			rc.crashOwner(t, nodes[0]) // n1 continues: 2 + 3
			file := nodes[1].store.Snapshot(clock.Now(), nil)
			if got, _ := checkN(t, nodes[0], key, cs, 1); got != 1 {
				t.Fatal("the hit after the file was written was refused")
			}
			rc.net.crash(nodes[0])
			n0 := startMemNodeWith(t, rc.net, clock, "n0", func(c *Config) { c.Replicas = 1 })
			n0.Restore(clock.Now(), file)
			if err := n0.Join(context.Background(), "gossip:n1"); err != nil {
				t.Fatal(err)
			}
			nodes[0] = n0
			clock.Add(pullWindow / 2)
			rc.rejoinOwner(t, nil, nil) // n1 has not seen it yet: the count is still there
			n0.probe()
			n0.rebuild()
			clock.Add(pullWindow/2 + time.Second) // n0's restore window is over, n2's pull window is not
			n0.adoptRest(clock.Now())
			// Not answering, n1 may still hold the count: n2 drops the
			// fill-in all the same.
			rc.net.setCut(memAddr("n1"), !answers)
			n0.handoffAll(context.Background())
			rc.net.setCut(memAddr("n1"), false)
			if n0.restore.holds(key) {
				t.Fatal("n0 did not offer the file's count to n2")
			}
			if dropped := testutil.ToFloat64(nodes[2].metrics.handoffKeys.WithLabelValues("fill_in_dropped")); dropped != 1 {
				t.Fatalf("n2 dropped %v fill-ins; want 1", dropped)
			}
			if got, last := checkN(t, n0, key, cs, 1); got != 1 || last.Node != "n2" || last.Statuses[0].Remaining != 10-2-3-1-1 {
				t.Fatalf("after the fill-in: %d allowed by %s with %d left; want 1 by n2 with %d left",
					got, last.Node, last.Statuses[0].Remaining, 10-2-3-1-1)
			}
			settle(nodes...)
			if got, last := checkN(t, n0, key, cs, 1); got != 1 || last.Statuses[0].Remaining != 10-2-3-1-1-1 {
				t.Fatalf("after n1's handoff: %d allowed with %d left; want 1 with %d left", got, last.Statuses[0].Remaining, 10-2-3-1-1-1)
			}
		})
	}
}

// A handoff planned before gossip told the sender that its receiver had
// restarted reaches the receiver's new run. Taken there, it went ahead of
// the replicas of the earlier run that the sender holds: the new run
// replicated the key to the sender, which made the earlier run's replica
// of it look stale, and it was dropped before the reclaim could hand it
// back (TestReplicaGoesHomeBesideCountMadeWithoutIt, 1 run in about 40
// under -race: 8 left for 3, a late handoff of an earlier ring change).
// So a merge names the run it is meant for, and another run refuses it
// (rpc.ErrOtherRun). 2 hits, 3 on n1 while n2 is down, taken back and
// copied to n1 by n2's next run, which crashes; 1 made on n0 and handed
// to n1; n2's third run starts, and n1, not knowing yet, hands it the 1:
// refused. Once n1 knows, the replica and the 1 go home; 1 more hit:
// 10 - 2 - 3 - 1 - 1 left.
func TestHandoffMeantForEarlierRunRefused(t *testing.T) {
	rc := newReplicatedCluster(t, 2, nil)
	nodes, key, cs := rc.nodes, rc.key, rc.cs
	rc.madeBesideReplica(t)
	n2 := rc.rejoinOwner(t, nil, nil) // n1 has not seen it
	nodes[1].handoffAll(context.Background())
	if n2.store.Has(key) || !nodes[1].store.Has(key) {
		t.Fatal("n2's new run took a handoff meant for its earlier run")
	}
	for _, n := range nodes {
		n.probe()
	}
	rebuildAll(nodes...)
	nodes[1].handoffAll(context.Background())
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n2" || last.Statuses[0].Remaining != 10-2-3-1-1 {
		t.Fatalf("once n1 knew n2's new run: %d allowed by %s with %d left; want 1 by n2 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-2-3-1-1)
	}
}

// A leaving node is out of its own ring, and the reclaim judged by that
// ring whether it was the node an owner would pull a key from: it never
// was, so the replicas of an owner's earlier runs that it held went down
// with it (8 left for 3, in 2 of 30 runs under -race: those where no pass
// before the leave had reclaimed them). Now a leaver judges as if it were
// in. Here n2 has restarted unbeknown to n1's view when n1 leaves: n2's
// new run refuses the count made beside the replica (rpc.ErrOtherRun),
// and the pass that n1's view of the new run brings hands back the
// replica, then the count. madeBesideReplica's 2 + 3 hits and the 1 made
// beside; 1 more hit: 10 - 2 - 3 - 1 - 1 left.
func TestLeaverHandsBackEarlierRunsReplicas(t *testing.T) {
	rc := newReplicatedCluster(t, 2, nil)
	net, nodes, key, cs := rc.net, rc.nodes, rc.key, rc.cs
	rc.madeBesideReplica(t)
	net.mu.Lock()
	earlier := net.incarnation["n2"]
	net.mu.Unlock()
	n2 := rc.rejoinOwner(t, nil, nil)
	net.mu.Lock()
	net.incarnation["n2"] = earlier // n1's gossip has not heard of the restart
	net.mu.Unlock()
	nodes[1].probe()
	closed := make(chan error, 1)
	go func() { closed <- nodes[1].Close(context.Background()) }()
	testkit.Eventually(t, 5*time.Second, "n1's handoff to n2's new run", func() bool { return net.count("merge", memAddr("n2")) > 0 })
	net.mu.Lock()
	net.incarnation["n2"] = n2.incarnation
	net.mu.Unlock()
	nodes[1].rebuild()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	net.setMembers("n0", "n2")
	rebuildAll(nodes[0], nodes[2])
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n2" || last.Statuses[0].Remaining != 10-2-3-1-1 {
		t.Fatalf("after n1 left: %d allowed by %s with %d left; want 1 by n2 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-2-3-1-1)
	}
}

// A restarted owner takes back the count its next owner continued, copies
// it back there at once (before it answers), and is killed before its
// answer leaves: the next owner sees a connection lost, not a refusal. It
// kept the count and later sent it again, while the copy it held went
// home to the owner's next run too: the hits counted twice (the 30-minute
// fault schedule: 1,469 + 1,474). The copy's arrival during the move
// proves the owner applied the batch, so it is taken as landed. 2 hits, 3
// on n1 while n2 is down; n2's next run takes them back and dies
// unanswered; its third run gets them once; 1 more hit: 10 - 5 - 1 left.
func TestLostAnswerOfAppliedHandoff(t *testing.T) {
	rc := newReplicatedCluster(t, 2, nil)
	net, nodes, key, cs := rc.net, rc.nodes, rc.key, rc.cs
	rc.crashOwner(t, nodes[0]) // n1 continues: 2 + 3
	net.loseAnswers("merge", memAddr("n2"), true)
	rc.restartOwner(t, nil)
	nodes[1].handoffAll(context.Background())
	replicatedCount(t, nodes[1], key, 5) // copied back before the answer
	if nodes[1].store.Has(key) {
		t.Fatal("n1 kept the count n2 took back and copied to it")
	}
	net.loseAnswers("merge", memAddr("n2"), false)
	rc.net.crash(nodes[2])
	rc.restartOwner(t, nil)
	settle(nodes...)
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n2" || last.Statuses[0].Remaining != 10-5-1 {
		t.Fatalf("after n2's third run: %d allowed by %s with %d left; want 1 by n2 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-5-1)
	}
}

// A fill-in for a key whose count is a replica here, of an owner gone from
// the ring, is dropped: the replica supersedes a data file's count. 2 hits
// on n2, replicated to n1; n2 crashes and n0 restarts with a file that
// holds the key's 2 hits too (it continued them once); past its restore
// window it offers them to n1 as a fill-in. 1 more hit: 7 of 10 left.
// Before, the fill-in made the key a fresh entry of 2 on n1 and the
// replica's 2 joined it: 5 left.
func TestFillInDroppedForCrashedOwnersReplica(t *testing.T) {
	rc := newReplicatedCluster(t, 2, nil)
	clock, nodes, key, cs := rc.clock, rc.nodes, rc.key, rc.cs
	replicatedCount(t, nodes[1], key, 2)
	file, _ := nodes[2].store.Export(clock.Now(), key)
	rc.net.crash(nodes[2])
	rc.net.crash(nodes[0])
	rc.net.setMembers("n0", "n1")
	n0 := startMemNodeWith(t, rc.net, clock, "n0", func(c *Config) { c.Replicas = 1 })
	n0.Restore(clock.Now(), []bucket.Entry{file})
	if err := n0.Join(context.Background(), "gossip:n1"); err != nil {
		t.Fatal(err)
	}
	nodes[1].rebuild()
	n0.rebuild()
	clock.Add(pullWindow + time.Second)
	n0.adoptRest(clock.Now())
	n0.handoffAll(context.Background())
	if n0.restore.holds(key) {
		t.Fatal("n0 did not offer the file's count to n1")
	}
	if dropped := testutil.ToFloat64(nodes[1].metrics.handoffKeys.WithLabelValues("fill_in_dropped")); dropped != 1 {
		t.Fatalf("n1 dropped %v fill-ins; want 1", dropped)
	}
	if got, last := checkN(t, n0, key, cs, 1); got != 1 || last.Node != "n1" || last.Statuses[0].Remaining != 10-2-1 {
		t.Fatalf("after the fill-in: %d allowed by %s with %d left; want 1 by n1 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-2-1)
	}
}

// A data file's count of a key that a replica here holds does not join
// the table when the restore window ends: the replica is the newer count
// of the same hits. n1 restarts with a file of 2 hits (as it once held
// them) and gets n2's replica of 3; n2 crashes; n1's window ends while n2
// is out of its ring. 1 more hit on n1: 10 - 3 - 1 left. Before, the
// file's count joined the table, the replica was never promoted beside
// it (7 left for 6), and both went home to n2's next run: a 30-minute crash
// schedule's keys at 1,869 for 952.
func TestOwnFileNotAdoptedBesideReplica(t *testing.T) {
	rc := newReplicatedCluster(t, 2, nil)
	clock, nodes, key, cs := rc.clock, rc.nodes, rc.key, rc.cs
	file := nodes[2].store.Snapshot(clock.Now(), nil)
	n1 := rc.restartNextWithFile(t, file)
	if got, _ := checkN(t, nodes[0], key, cs, 1); got != 1 {
		t.Fatal("third hit denied")
	}
	replicatedCount(t, n1, key, 3)
	rc.net.crash(nodes[2])
	rc.net.setMembers("n0", "n1")
	rebuildAll(nodes[0], n1)
	clock.Add(pullWindow + time.Second)
	n1.adoptRest(clock.Now())
	if got, last := checkN(t, nodes[0], key, cs, 1); got != 1 || last.Node != "n1" || last.Statuses[0].Remaining != 10-3-1 {
		t.Fatalf("after n2's crash: %d allowed by %s with %d left; want 1 by n1 with %d left",
			got, last.Node, last.Statuses[0].Remaining, 10-3-1)
	}
}
