//go:build linux

package e2e

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/proctest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// Three node processes in network namespaces of their own; the owner of a
// key is cut off from the other two and then reconnected. During the
// partition each side decides alone: the two nodes fail over to the next
// owner, which starts from zero, and the owner counts on. After the heal
// the counts made apart add up on the owner, and the rest of the window
// is exact.
//
// Run twice: checks right after the cut (routing around the owner is all
// that has happened), and checks once gossip on both sides has declared
// the other side failed, as in any partition that lasts.
func TestPartitionAcrossNamespaces(t *testing.T) {
	t.Run("at once", func(t *testing.T) { testPartition(t, false) })
	t.Run("gossip noticed", func(t *testing.T) { testPartition(t, true) })
}

func testPartition(t *testing.T, untilNoticed bool) {
	bin := nodeBinary(t)
	lab := newNetLab(t, 3)
	c := proctest.NewCluster(t, bin)
	// Debug logs tell, on failure, where each count moved; a side that
	// gossip declared failed comes back through --join's rejoin.
	c.ExtraArgs = func(*proctest.Node) []string {
		return []string{"--log-level", "debug", "--rejoin-interval", "1s"}
	}
	for i := range 3 {
		p := c.Add(t)
		p.IP, p.Netns = lab.ips[i], lab.nss[i]
		join := ""
		if i > 0 {
			join = c.Nodes[0].GossipAddr()
		}
		c.Start(t, p, join, false)
	}
	c.WaitMembers(t, 20*time.Second, time.Now(), c.Nodes)
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	key := c.KeyOwnedBy(t, "part", n3)
	const limits = "30 per hour"
	deciders := map[string]int{}
	spend := func(p *proctest.Node, n int) (allowed int) {
		for range n {
			a := c.CheckAny(t, p, key, limits, 1)
			deciders[a.Node]++
			if a.Allowed {
				allowed++
			}
		}
		return allowed
	}
	if got := spend(n1, 4); got != 4 {
		t.Fatalf("before the partition: %d of 4 allowed", got)
	}

	lab.split([]int{0, 1}, []int{2})
	if untilNoticed {
		// The two nodes' gossip declares the owner failed. (The owner's,
		// alone, slows itself down and takes some 20 s more.)
		for _, p := range []*proctest.Node{n1, n2} {
			var seen string
			testkit.Eventually(t, 30*time.Second, p.Name+"'s gossip declares the owner failed", func() bool {
				got, err := c.Members(p)
				seen = fmt.Sprintf("it lists %v (%v)", got, err)
				return err == nil && slices.Equal(got, []string{n1.Name, n2.Name})
			}, &seen)
		}
	}
	clear(deciders)
	apart := spend(n1, 5) + spend(n2, 5)
	if deciders[n3.Name] != 0 {
		t.Fatalf("during the partition the cut-off owner decided %d checks of the other side: %v", deciders[n3.Name], deciders)
	}
	owners := spend(n3, 6)
	t.Logf("during the partition: %d of 10 admitted without the owner, %d of 6 by the owner; 4 before; limit 30", apart, owners)
	if apart != 10 || owners != 6 {
		t.Fatalf("during the partition: %d of 10 and %d of 6 admitted; want all, each side under the limit", apart, owners)
	}

	lab.heal([]int{0, 1}, []int{2})
	// A check that timed out during the partition was on its way to the
	// owner and then decided on the other side. Wait until no socket of
	// the other side holds one any more: delivered now, the owner would
	// count it a second time.
	rpcAddr := net.JoinHostPort(n3.IP, strconv.Itoa(n3.RPCPort))
	testkit.Eventually(t, 30*time.Second, "no check on its way to the owner", func() bool {
		return lab.unsent(0, rpcAddr)+lab.unsent(1, rpcAddr) == 0
	})
	c.WaitMembers(t, 30*time.Second, time.Now(), c.Nodes)
	var last string
	testkit.Eventually(t, 15*time.Second, "the counts of both sides on the owner", func() bool {
		a := c.CheckAny(t, n3, key, limits, 0)
		last = fmt.Sprintf("last answer %+v", a)
		return a.Node == n3.Name && a.Limits[0].Remaining == 10
	}, &last)
	if allowed := c.Admitted(t, key, limits, 30, 0); allowed != 10 {
		t.Fatalf("after the heal: %d of 30 allowed, want exactly 10 (4 + 10 + 6 of 30 spent)", allowed)
	}
}
