//go:build linux

package e2e

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/proctest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// Every node of a cluster SIGTERMed at once and started again with its
// data dir: the counts come back, 3 of 5 spent on each of 20 keys before,
// exactly 2 more after, whichever node is asked.
func TestFullRestartWithDataDir(t *testing.T) {
	c := proctest.NewCluster(t, nodeBinary(t))
	c.DataDirs = true
	for range 3 {
		c.StartNext(t)
	}
	c.WaitMembers(t, 20*time.Second, time.Now(), c.Nodes)
	const limits = "5 per hour"
	keys := make([]string, 20)
	for i := range keys {
		keys[i] = fmt.Sprintf("restart-%s-%d", c.RunID, i)
		for j := range 3 {
			if a := c.Check(t, c.Nodes[(i+j)%3], keys[i], limits, 1); !a.Allowed {
				t.Fatalf("before the restart, check %d of %s denied", j+1, keys[i])
			}
		}
	}
	for _, p := range c.Nodes {
		c.Signal(t, p, syscall.SIGTERM, 0)
	}
	for _, p := range c.Nodes {
		c.WaitExit(t, p, 15*time.Second)
		if err := p.ExitErr(); err != nil {
			t.Fatalf("%s exited with %v after SIGTERM, want status 0", p.Name, err)
		}
	}

	for i, p := range c.Nodes {
		join := ""
		if i > 0 {
			join = c.Nodes[0].GossipAddr()
		}
		c.Start(t, p, join, false)
	}
	c.WaitMembers(t, 20*time.Second, time.Now(), c.Nodes)
	testkit.Eventually(t, 15*time.Second, "every key's 3 hits back on its owner", func() bool {
		for i, key := range keys {
			if c.Check(t, c.Nodes[i%3], key, limits, 0).Limits[0].Remaining != 2 {
				return false
			}
		}
		return true
	})
	allowed := 0
	for i, key := range keys {
		allowed += c.Admitted(t, key, limits, 5, i)
	}
	if allowed != 2*len(keys) {
		t.Fatalf("after the restart: %d of %d allowed, want exactly %d", allowed, 5*len(keys), 2*len(keys))
	}
}
