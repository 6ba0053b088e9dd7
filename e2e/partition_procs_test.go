//go:build linux

package e2e

import (
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
func TestPartitionAcrossNamespaces(t *testing.T) {
	bin := nodeBinary(t)
	lab := newNetLab(t, 3)
	c := proctest.NewCluster(t, bin)
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
	c.WaitMembers(t, 30*time.Second, time.Now(), c.Nodes)
	testkit.Eventually(t, 15*time.Second, "the counts of both sides on the owner", func() bool {
		a := c.CheckAny(t, n3, key, limits, 0)
		return a.Node == n3.Name && a.Limits[0].Remaining == 10
	})
	if allowed := c.Admitted(t, key, limits, 30, 0); allowed != 10 {
		t.Fatalf("after the heal: %d of 30 allowed, want exactly 10 (4 + 10 + 6 of 30 spent)", allowed)
	}
}
