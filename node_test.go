package ratemesh_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, clustertest.LeakOptions()...)
}

func TestExactAcrossThreeNodes(t *testing.T) {
	nodes := clustertest.Start(t, 3, nil)
	cs := testkit.Counters(t, "GET /products", "5 per minute")
	f := flood(nodes, ratemesh.Request{Key: "apikey:one", Counters: cs, Cost: 1}, 300, 300)
	if failed := f.errors.Load() + f.fallbacks.Load(); failed != 0 || f.allowed.Load() != 5 {
		t.Fatalf("allowed %d of 300 (want exactly 5), %d errors or fallbacks (first error: %v)", f.allowed.Load(), failed, f.first)
	}
}

func TestManyKeysExactAndSpread(t *testing.T) {
	manyKeysExact(t, clustertest.Start(t, 3, nil))
}

func manyKeysExact(t *testing.T, nodes []*ratemesh.Node) {
	cs := testkit.Counters(t, "r", "3 per minute")
	deciders := map[string]int{}
	for k := 0; k < 1000; k++ {
		key := fmt.Sprintf("user:%d", k)
		owner, _ := nodes[0].Owner(key)
		allowed := 0
		for i := 0; i < 5; i++ {
			res, err := nodes[(k+i)%3].Check(context.Background(), ratemesh.Request{Key: key, Counters: cs, Cost: 1})
			if err != nil {
				t.Fatal(err)
			}
			if res.Node != owner.Name {
				for _, n := range nodes {
					t.Logf("%s sees %+v", n.Name(), n.Members())
				}
				t.Fatalf("key %s decided by %s, owner is %s (res %+v)", key, res.Node, owner.Name, res)
			}
			if res.Allowed {
				allowed++
			}
			if want := int64(max(0, 3-allowed)); res.Allowed && res.Statuses[0].Remaining != want {
				t.Fatalf("key %s check %d: remaining %d, want %d", key, i, res.Statuses[0].Remaining, want)
			}
		}
		if allowed != 3 {
			t.Fatalf("key %s: %d of 5 allowed, want 3", key, allowed)
		}
		deciders[owner.Name]++
	}
	if len(deciders) != 3 {
		t.Fatalf("owners of 1000 keys: %v, want all 3 nodes", deciders)
	}
	t.Logf("keys per owner: %v", deciders)
}

func TestJoinAndLeave(t *testing.T) {
	nodes := clustertest.Start(t, 3, nil)
	fourth := clustertest.StartNode(t, "n3", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := fourth.Join(ctx, nodes[1].GossipAddr()); err != nil {
		t.Fatal(err)
	}
	all := append(nodes[:3:3], fourth)
	clustertest.WaitConverged(t, all)
	if !clustertest.OwnersAgree(all, 1000) {
		t.Fatal("4 nodes disagree on owners of 1000 keys")
	}

	if err := nodes[2].Close(ctx); err != nil {
		t.Fatal(err)
	}
	rest := []*ratemesh.Node{nodes[0], nodes[1], fourth}
	clustertest.WaitConverged(t, rest)
	cs := testkit.Counters(t, "r", "2 per minute")
	for i, n := range rest {
		res, err := n.Check(ctx, ratemesh.Request{Key: fmt.Sprintf("k%d", i), Counters: cs, Cost: 1})
		if err != nil || !res.Allowed || res.Fallback {
			t.Fatalf("after a leave, node %s: %+v, %v", n.Name(), res, err)
		}
	}
}

func TestDuplicateNameRefused(t *testing.T) {
	a := clustertest.StartNode(t, "same", nil)
	b := clustertest.StartNode(t, "same", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := b.Join(ctx, a.GossipAddr())
	if err == nil {
		t.Fatal("a second node named \"same\" joined")
	}
	t.Logf("refused as expected: %v", err)
}

func TestDifferentSecretsNeverJoin(t *testing.T) {
	a := clustertest.StartNode(t, "a", func(c *ratemesh.Config) { c.Secret = "one" })
	b := clustertest.StartNode(t, "b", func(c *ratemesh.Config) { c.Secret = "two" })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := b.Join(ctx, a.GossipAddr()); err == nil {
		t.Fatal("nodes with different secrets joined")
	}
	if len(a.Members()) != 1 || len(b.Members()) != 1 {
		t.Fatalf("members: a %d, b %d; want 1 each", len(a.Members()), len(b.Members()))
	}
	// With the same secret they do.
	c := clustertest.StartNode(t, "c", func(c *ratemesh.Config) { c.Secret = "one" })
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := c.Join(ctx2, a.GossipAddr()); err != nil {
		t.Fatal(err)
	}
	clustertest.WaitConverged(t, []*ratemesh.Node{a, c})
	cs := testkit.Counters(t, "r", "1 per minute")
	for _, key := range []string{"x", "y", "z", "w"} {
		r1, err1 := a.Check(ctx2, ratemesh.Request{Key: key, Counters: cs, Cost: 1})
		r2, err2 := c.Check(ctx2, ratemesh.Request{Key: key, Counters: cs, Cost: 1})
		if err1 != nil || err2 != nil || !r1.Allowed || r2.Allowed || r1.Fallback || r2.Fallback {
			t.Fatalf("key %s over an authenticated cluster: %+v %v / %+v %v", key, r1, err1, r2, err2)
		}
	}
}

func TestCheckBadInput(t *testing.T) {
	n := clustertest.StartNode(t, "solo", nil)
	cs := testkit.Counters(t, "r", "1 per minute")
	ctx := context.Background()
	for name, req := range map[string]ratemesh.Request{
		"empty key":     {Counters: cs, Cost: 1},
		"negative cost": {Key: "k", Counters: cs, Cost: -1},
		"no counters":   {Key: "k", Cost: 1},
	} {
		if _, err := n.Check(ctx, req); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	idle, err := ratemesh.New(ratemesh.LocalConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idle.Check(ctx, ratemesh.Request{Key: "k", Counters: cs}); err != ratemesh.ErrNotStarted {
		t.Fatalf("check before Start: %v", err)
	}
	idle.Close(ctx)
}

// TestAddrsBeforeStart: a node not started has no addresses yet; asking
// for them answers "" (it panicked on the gossip address), and after
// Start they are the bound ones.
func TestAddrsBeforeStart(t *testing.T) {
	ctx := context.Background()
	n, err := ratemesh.New(ratemesh.LocalConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(ctx)
	if g, r, ms := n.GossipAddr(), n.RPCAddr(), n.Members(); g != "" || r != "" || ms != nil {
		t.Fatalf("before Start: gossip %q, RPC %q, members %v; want \"\", \"\", none", g, r, ms)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for name, addr := range map[string]string{"gossip": n.GossipAddr(), "RPC": n.RPCAddr()} {
		if host, port, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" || port == "0" {
			t.Errorf("after Start: %s address %q, want 127.0.0.1 and a bound port", name, addr)
		}
	}
}

// TestCheckStatusBuf: a caller's buffer backs Result.Statuses, for a key
// decided here and for one decided by its owner over RPC; a buffer too
// small is left alone.
func TestCheckStatusBuf(t *testing.T) {
	nodes := clustertest.Start(t, 2, nil)
	remote := forwardedKey(t, nodes[0])
	local := forwardedKey(t, nodes[1])
	cs := testkit.Counters(t, "r", "10 per minute;100 per hour")
	ctx := context.Background()
	for _, key := range []string{local, remote} {
		buf := make([]bucket.Status, 0, 2)
		res, err := nodes[0].Check(ctx, ratemesh.Request{Key: key, Counters: cs, Cost: 1, StatusBuf: buf})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Statuses) != 2 || &res.Statuses[0] != &buf[:1][0] {
			t.Errorf("key %s decided by %s: statuses %v do not use the caller's buffer", key, res.Node, res.Statuses)
		}
		if res.Statuses[0].Remaining != 9 || res.Statuses[1].Remaining != 99 {
			t.Errorf("key %s: remaining %d, %d; want 9, 99", key, res.Statuses[0].Remaining, res.Statuses[1].Remaining)
		}
		small := make([]bucket.Status, 0, 1)
		res, err = nodes[0].Check(ctx, ratemesh.Request{Key: key, Counters: cs, Cost: 1, StatusBuf: small})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Statuses) != 2 || res.Statuses[1].Remaining != 98 {
			t.Errorf("key %s with a small buffer: %v", key, res.Statuses)
		}
		if small[:1][0] != (bucket.Status{}) {
			t.Errorf("key %s: a buffer too small was written to: %v", key, small[:1])
		}
	}
}

func TestFiveNodesInOneProcess(t *testing.T) {
	testkit.SkipInShort(t, "several real nodes for a second or more")
	nodes := clustertest.Start(t, 5, nil)
	cs := testkit.Counters(t, "r", "5 per minute")
	f := flood(nodes, ratemesh.Request{Key: "ip:10.0.0.1", Counters: cs, Cost: 1}, 300, 300)
	if f.errors.Load() != 0 {
		t.Errorf("%d checks failed; the first: %v", f.errors.Load(), f.first)
	}
	if f.allowed.Load() != 5 {
		t.Fatalf("5 nodes admitted %d of 300, want 5", f.allowed.Load())
	}
}

// Nodes that would place keys differently (another ring configuration or
// protocol) gossip with each other but never share a ring.
func TestMismatchedPlacementKeptOutOfRing(t *testing.T) {
	a := clustertest.StartNode(t, "a", nil)
	b := clustertest.StartNode(t, "b", func(c *ratemesh.Config) { c.Ring.PartitionCount = 271 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Join(ctx, a.GossipAddr()); err != nil {
		t.Fatal(err)
	}
	// Join rebuilt b's ring from the full member list it received.
	if ms := b.Members(); len(ms) != 1 || ms[0].Name != "b" {
		t.Fatalf("b's members: %+v, want only itself", ms)
	}
	for i := 0; i < 100; i++ {
		if o, _ := b.Owner(fmt.Sprintf("k%d", i)); o.Name != "b" {
			t.Fatalf("b routes k%d to %s", i, o.Name)
		}
	}
}

// The counter table's bounds come from Config.Store; a check past them
// fails with ErrStoreFull (never allowed), and the gauges show the usage.
func TestStoreBoundsAndGauges(t *testing.T) {
	n := clustertest.StartNode(t, "n0", func(c *ratemesh.Config) { c.Store.MaxKeys = 3 })
	cs := testkit.Counters(t, "r", "5 per minute")
	for i := 0; i < 4; i++ {
		res, err := n.Check(context.Background(), ratemesh.Request{Key: fmt.Sprintf("ip:%d", i), Counters: cs, Cost: 1})
		if i < 3 && (err != nil || !res.Allowed) {
			t.Fatalf("key %d: %+v %v", i, res, err)
		}
		if i == 3 && (!errors.Is(err, bucket.ErrStoreFull) || res.Allowed) {
			t.Fatalf("key 4 of MaxKeys 3: allowed=%v err=%v; want ErrStoreFull", res.Allowed, err)
		}
	}
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if len(mf.GetMetric()) == 1 && mf.GetMetric()[0].GetGauge() != nil {
			got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	for name, want := range map[string]float64{"ratemesh_keys": 3, "ratemesh_counters": 3, "ratemesh_moving_window_slots": 0} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}
