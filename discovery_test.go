package ratemesh_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// fakeDNS is a resolver the test controls: each name resolves to the
// addresses last set for it, or fails.
type fakeDNS struct {
	mu    sync.Mutex
	names map[string][]string
	calls atomic.Int64
}

func (d *fakeDNS) set(name string, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.names == nil {
		d.names = map[string][]string{}
	}
	d.names[name] = addrs
}

func (d *fakeDNS) resolve(_ context.Context, host string) ([]string, error) {
	d.calls.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if addrs, ok := d.names[host]; ok {
		return addrs, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// seeded configures a node to join name through dns, rejoining often.
func seeded(dns *fakeDNS, name string) func(*ratemesh.Config) {
	return func(c *ratemesh.Config) {
		c.Seeds = []string{name + ":7946"}
		c.Resolve = dns.resolve
		c.RejoinInterval = 100 * time.Millisecond
	}
}

// Two groups of nodes that started apart, each a cluster of its own with
// counts of one key, merge once their seed name resolves to both — and the
// rest of the key's window is exact: 4 admitted on one side, 3 on the
// other, then exactly 3 of 40 more at 10 per minute.
func TestSplitGroupsMergeOnRejoin(t *testing.T) {
	testkit.SkipInShort(t, "several real nodes for a second or more")
	dns := &fakeDNS{}
	a1 := clustertest.StartNode(t, "a1", nil)
	dns.set("group-a.test", a1.GossipAddr())
	a2 := clustertest.StartNode(t, "a2", seeded(dns, "group-a.test"))
	b1 := clustertest.StartNode(t, "b1", nil)
	dns.set("group-b.test", b1.GossipAddr())
	b2 := clustertest.StartNode(t, "b2", seeded(dns, "group-b.test"))
	clustertest.WaitConverged(t, []*ratemesh.Node{a1, a2})
	clustertest.WaitConverged(t, []*ratemesh.Node{b1, b2})

	req := ratemesh.Request{Key: "merge-key", Counters: testkit.Counters(t, "r", "10 per minute"), Cost: 1}
	spend := func(n *ratemesh.Node, want int) {
		for range want {
			if res, err := n.Check(context.Background(), req); err != nil || !res.Allowed {
				t.Fatalf("spending on %s before the merge: %+v %v", n.Name(), res, err)
			}
		}
	}
	spend(a2, 4)
	spend(b2, 3)

	all := []string{a1.GossipAddr(), a2.GossipAddr(), b1.GossipAddr(), b2.GossipAddr()}
	dns.set("group-a.test", all...)
	dns.set("group-b.test", all...)
	nodes := []*ratemesh.Node{a1, a2, b1, b2}
	clustertest.WaitConverged(t, nodes)

	peek := req
	peek.Cost = 0
	var why string
	testkit.Eventually(t, 15*time.Second, "the merged counts did not reach the owner", func() bool {
		for _, n := range nodes {
			res, err := n.Check(context.Background(), peek)
			if err != nil || res.Statuses[0].Remaining != 3 {
				why = fmt.Sprintf("%s: %+v %v", n.Name(), res, err)
				return false
			}
		}
		return true
	}, &why)
	allowed := 0
	for i := range 40 {
		res, err := nodes[i%len(nodes)].Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("after the merge %d of 40 allowed, want exactly 3 (10 less 4 and 3 spent apart)", allowed)
	}
}

// Seeds that resolve to this node alone make it the first of its cluster,
// ready at once — by IP and by name.
func TestSeedsNamingOnlySelf(t *testing.T) {
	for _, byName := range []bool{false, true} {
		t.Run(fmt.Sprint("byName=", byName), func(t *testing.T) {
			port := freePort(t)
			self := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			dns := &fakeDNS{}
			dns.set("self.test", "127.0.0.1")
			n := clustertest.StartNode(t, "self", func(c *ratemesh.Config) {
				c.GossipPort = port
				c.Seeds = []string{self}
				if byName {
					c.Seeds = []string{"self.test:" + strconv.Itoa(port)}
					c.Resolve = dns.resolve
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := n.WaitJoined(ctx); err != nil {
				t.Fatalf("a node whose seeds name only itself: %v", err)
			}
		})
	}
}

// What a seed name may resolve to never costs a node its members or its
// readiness: nothing, only itself, a thousand dead addresses. Rejoining
// goes on, each round bounded.
func TestRejoinSurvivesBadNames(t *testing.T) {
	testkit.SkipInShort(t, "several real nodes for a second or more")
	dns := &fakeDNS{}
	first := clustertest.StartNode(t, "first", nil)
	dns.set("seeds.test", first.GossipAddr())
	n := clustertest.StartNode(t, "second", seeded(dns, "seeds.test"))
	nodes := []*ratemesh.Node{first, n}
	clustertest.WaitConverged(t, nodes)

	thousand := make([]string, 1000)
	for i := range thousand {
		thousand[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(1+i)) // nothing listens below 1024 here
	}
	for _, c := range []struct {
		name  string
		addrs []string
	}{
		{"nothing", nil},
		{"itself", []string{n.GossipAddr()}},
		{"a thousand dead addresses", thousand},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.addrs == nil {
				dns.mu.Lock()
				delete(dns.names, "seeds.test")
				dns.mu.Unlock()
			} else {
				dns.set("seeds.test", c.addrs...)
			}
			start := dns.calls.Load()
			testkit.Eventually(t, 10*time.Second, "rejoining stopped", func() bool { return dns.calls.Load() >= start+3 })
			if !n.Ready() {
				t.Fatal("the node became unready")
			}
			clustertest.WaitConverged(t, nodes)
		})
	}
}

// A node whose seed name resolves to nothing at start keeps trying until
// the name appears, then joins.
func TestJoinWaitsForTheName(t *testing.T) {
	dns := &fakeDNS{}
	first := clustertest.StartNode(t, "first", nil)
	late := clustertest.StartNode(t, "late", seeded(dns, "later.test"))
	testkit.Eventually(t, 5*time.Second, "no resolution tried", func() bool { return dns.calls.Load() >= 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	err := late.WaitJoined(ctx)
	cancel()
	if !errors.Is(err, ratemesh.ErrNotJoined) {
		t.Fatalf("joined before the name resolved: %v", err)
	}
	dns.set("later.test", first.GossipAddr())
	clustertest.WaitConverged(t, []*ratemesh.Node{first, late})
}
