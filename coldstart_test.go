//go:build linux

package ratemesh_test

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Three node processes started together and flooded from the moment each
// answers, while they join — the two that join before the node they join
// is up: the demo's 5 per minute admits exactly 5, run after run. A node
// decides nothing before it has joined.
func TestColdStartUnderFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 30 processes: skipped in -short mode")
	}
	bin := buildNodeBinary(t)
	for run := range 10 {
		t.Run(fmt.Sprint("run", run+1), func(t *testing.T) { coldStartFlood(t, bin) })
	}
}

func coldStartFlood(t *testing.T, bin string) {
	c := newProcCluster(t, bin)
	key := "cold-" + c.runID
	var allowed, denied, other atomic.Int64
	var settled atomic.Bool
	var wg sync.WaitGroup
	flood := func(p *nodeProc) {
		// Until the cluster has settled, then 20 requests more.
		for extra := 0; extra < 20; {
			r, err := c.do(p, http.MethodGet, "/products", nil, "X-API-KEY", key)
			switch {
			case err != nil || (r.status != http.StatusOK && r.status != http.StatusTooManyRequests):
				other.Add(1)
			case r.status == http.StatusOK:
				allowed.Add(1)
			default:
				denied.Add(1)
			}
			if settled.Load() {
				extra++
			}
		}
	}
	// As an orchestrator starts pods: the two that join come up first,
	// and are flooded while the node they join is not there yet.
	first := c.add(t)
	for range 2 {
		p := c.startNext(t)
		if r, err := c.do(p, http.MethodGet, "/readyz", nil); err != nil || r.status != http.StatusServiceUnavailable {
			t.Fatalf("%s before joining: /readyz %v %v, want 503", p.name, r.status, err)
		}
		for range 3 {
			wg.Go(func() { flood(p) })
		}
	}
	c.start(t, first, "", false)
	for range 3 {
		wg.Go(func() { flood(first) })
	}
	c.waitMembers(t, 20*time.Second, time.Now(), c.nodes)
	settled.Store(true)
	wg.Wait()
	if allowed.Load() != 5 || other.Load() != 0 {
		t.Fatalf("cold start: %d allowed, %d denied, %d errors or other statuses; want exactly 5 allowed and no errors",
			allowed.Load(), denied.Load(), other.Load())
	}
	t.Logf("%d allowed of %d", allowed.Load(), allowed.Load()+denied.Load())
}
