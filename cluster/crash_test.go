package cluster

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// A crashed owner's checks fail over to the next owner at once, not after
// the forward timeout: no check fails, none waits out the timeout, and
// the limit is kept within what the lost counts allow (the crashed
// owner's counts are gone).
func TestCrashOfOwner(t *testing.T) {
	crashOwnerUnderLoad(t, 0, 500, 2000, "the limit twice: the crashed owner's counts are gone")
}

// crashForwardTimeout is the forward timeout of the crash tests: far
// longer than any answer takes on a busy machine, so that a check that
// waited out a timeout on the crashed owner, instead of failing over at
// once on its closed connection, stands out, and no healthy check comes
// near it however slow the machine.
const crashForwardTimeout = 5 * time.Second

// crashOwnerUnderLoad runs 3 nodes with replicas, has two clients check
// a key of n2's at 1000 per minute, kills n2 once spent are admitted, and
// checks that no check failed or waited out the forward timeout and at
// most max were admitted over the window.
func crashOwnerUnderLoad(t *testing.T, replicas int, spent, max int64, why string) {
	t.Helper()
	nodes := startRealClusterWith(t, 3, func(cfg *Config) {
		cfg.ForwardTimeout = crashForwardTimeout
		cfg.Replicas = replicas
	})
	key := testkit.KeyOwnedBy(t, []string{"n0", "n1", "n2"}, "n2")
	cs := testkit.Counters(t, "r", "1000 per minute")
	l := testkit.StartLoad(t, []testkit.CheckFunc{checker(nodes[0], key, cs), checker(nodes[1], key, cs)})
	l.WaitAllowed(t, spent)
	kill(nodes[2])
	l.WaitChecks(t, 3000)
	l.Report(t)
	if n := l.Errs.Load(); n != 0 {
		t.Errorf("%d checks returned an error", n)
	}
	if gap := l.MaxGap(); gap >= crashForwardTimeout {
		t.Errorf("a check waited %v, the whole forward timeout: it did not fail over when the owner crashed", gap)
	}
	if got := l.Allowed.Load(); got > max {
		t.Errorf("admitted %d in the window; want at most %d (%s)", got, max, why)
	}
}

// A peer alive in gossip whose RPC does not answer is routed around; with
// no other owner, the fail policy decides on the asking node.
func TestUnreachablePeerFallsBack(t *testing.T) {
	nodes := startRealCluster(t, 2, 50*time.Millisecond)
	cutRPC(nodes[1])
	key := testkit.KeyOwnedBy(t, []string{"n0", "n1"}, "n1")
	cs := testkit.Counters(t, "r", "2 per minute")
	for i, want := range []bool{true, true, false} {
		req := rpc.CheckRequest{Key: key, Counters: cs, Cost: 1}
		var resp rpc.CheckResponse
		fallback, err := nodes[0].Check(context.Background(), &req, &resp)
		if err != nil || !fallback || resp.Allowed != want || resp.Node != "n0" {
			t.Fatalf("check %d: allowed=%v fallback=%v node=%s err=%v; want allowed=%v by n0's fail policy", i+1, resp.Allowed, fallback, resp.Node, err, want)
		}
	}
}

// A node restarted after a crash, under its name and on its ports, owns
// its keys again and counts them exactly.
func TestRejoinAfterCrash(t *testing.T) {
	nodes := startRealCluster(t, 3, time.Second)
	victim := nodes[2]
	_, gport, _ := net.SplitHostPort(victim.GossipAddr())
	_, rport, _ := net.SplitHostPort(victim.RPCAddr())
	kill(victim)
	waitRing(t, nodes[:2]) // gossip declares it dead

	cfg := realConfig(t, "n2")
	cfg.GossipPort, _ = strconv.Atoi(gport)
	cfg.RPCPort, _ = strconv.Atoi(rport)
	back := startReal(t, cfg)
	join(t, back, nodes[0])
	all := []*Cluster{nodes[0], nodes[1], back}
	waitRing(t, all)
	key := testkit.KeyOwnedBy(t, []string{"n0", "n1", "n2"}, "n2")
	cs := testkit.Counters(t, "r", "5 per minute")
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req := rpc.CheckRequest{Key: key, Counters: cs, Cost: 1}
			var resp rpc.CheckResponse
			fallback, err := all[i%3].Check(context.Background(), &req, &resp)
			if err != nil || fallback || resp.Node != "n2" {
				t.Errorf("check %d: node=%s fallback=%v err=%v; want decided by n2", i, resp.Node, fallback, err)
				return
			}
			if resp.Allowed {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if allowed != 5 {
		t.Fatalf("after rejoin: %d of 60 allowed, want 5", allowed)
	}
}

// With one replica the owner's crash costs at most what the replica lags:
// the next owner continues from the replica instead of from zero. At two
// clients' pace (about 4,000 checks a second) a lag of replicaFlush plus
// one RPC is some tens of hits; without replicas the whole count (500+)
// would be admitted again.
func TestCrashOfOwnerWithReplica(t *testing.T) {
	crashOwnerUnderLoad(t, 1, 600, 1000+50, "the limit and the replica's lag")
}
