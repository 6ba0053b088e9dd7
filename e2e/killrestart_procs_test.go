//go:build linux

package e2e

import (
	"syscall"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/proctest"
)

// A key's owner is SIGKILLed and started again four times, with checks
// one after another between the steps (none in flight at a kill, and the
// replica has every hit): each hit is counted once, so every answer's
// remaining is exact. The restarted owner answers its peers before their
// gossip has its new incarnation; the next owner, which continued the
// count from its replica, used to take it for the owner it was and hand
// the count back less the replica: the hits before each kill were lost
// (the first restart's first check had 95 left where 92 were).
func TestKillRestartRepeatedly(t *testing.T) {
	c := startDebugCluster(t, nodeBinary(t))
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	key := c.KeyOwnedBy(t, "killloop", n3)
	const lim = "100 per day"
	spent := 0
	check := func(p *proctest.Node, n int, when string) {
		for range n {
			a := c.CheckAny(t, p, key, lim, 1)
			spent++
			if want := int64(100 - spent); !a.Allowed || a.Limits[0].Remaining != want {
				t.Fatalf("%s: check %d through %s: %+v; want allowed with %d remaining", when, spent, p.Name, a, want)
			}
		}
	}
	base := 0.0
	for range 4 {
		check(n1, 3, "before the kill")
		waitReplicasLandedSince(t, c, base, n3, n1, n2)
		c.Signal(t, n3, syscall.SIGKILL, 10*time.Second)
		check(n1, 2, "owner down")
		check(n2, 2, "owner down")
		base = replicasReceived(t, c, n1, n2)
		c.Start(t, n3, n1.GossipAddr(), false)
		c.WaitMembers(t, 20*time.Second, time.Now(), c.Nodes)
		check(n3, 1, "restarted, on itself")
		check(n1, 2, "restarted")
	}
}
