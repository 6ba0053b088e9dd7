//go:build linux

package ratemesh_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// Every node of a cluster SIGTERMed at once and started again with its
// data dir: the counts come back, 3 of 5 spent on each of 20 keys before,
// exactly 2 more after, whichever node is asked.
func TestFullRestartWithDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	c := newProcCluster(t, buildNodeBinary(t))
	c.dataDirs = true
	for range 3 {
		c.startNext(t)
	}
	c.waitMembers(t, 20*time.Second, time.Now(), c.nodes)
	const limits = "5 per hour"
	keys := make([]string, 20)
	for i := range keys {
		keys[i] = fmt.Sprintf("restart-%s-%d", c.runID, i)
		for j := range 3 {
			if a := c.apiCheck(t, c.nodes[(i+j)%3], keys[i], limits, 1); !a.Allowed {
				t.Fatalf("before the restart, check %d of %s denied", j+1, keys[i])
			}
		}
	}
	for _, p := range c.nodes {
		c.signal(t, p, syscall.SIGTERM, 0)
	}
	for _, p := range c.nodes {
		c.waitExit(t, p, 15*time.Second)
		if err := p.run.err; err != nil {
			t.Fatalf("%s exited with %v after SIGTERM, want status 0", p.name, err)
		}
	}

	for i, p := range c.nodes {
		join := ""
		if i > 0 {
			join = c.nodes[0].gossipAddr()
		}
		c.start(t, p, join, false)
	}
	c.waitMembers(t, 20*time.Second, time.Now(), c.nodes)
	waitUntil(t, 15*time.Second, "every key's 3 hits back on its owner", func() bool {
		for i, key := range keys {
			if c.apiCheck(t, c.nodes[i%3], key, limits, 0).Limits[0].Remaining != 2 {
				return false
			}
		}
		return true
	})
	allowed := 0
	for i, key := range keys {
		for j := range 5 {
			if c.apiCheck(t, c.nodes[(i+j)%3], key, limits, 1).Allowed {
				allowed++
			}
		}
	}
	if allowed != 2*len(keys) {
		t.Fatalf("after the restart: %d of %d allowed, want exactly %d", allowed, 5*len(keys), 2*len(keys))
	}
}
