//go:build linux

package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/proctest"
)

// Three node processes started together and flooded from the moment each
// answers, while they join — the two that join before the node they join
// is up: the demo's 5 per minute admits exactly 5, run after run. A node
// decides nothing before it has joined.
func TestColdStartUnderFlood(t *testing.T) {
	bin := nodeBinary(t)
	for run := range 10 {
		t.Run(fmt.Sprint("run", run+1), func(t *testing.T) { coldStartFlood(t, bin) })
	}
}

func coldStartFlood(t *testing.T, bin string) {
	c := proctest.NewCluster(t, bin)
	key := "cold-" + c.RunID
	var allowed, denied, other atomic.Int64
	var settled atomic.Bool
	var wg sync.WaitGroup
	flood := func(p *proctest.Node) {
		// Until the cluster has settled, then 20 requests more.
		for extra := 0; extra < 20; {
			r, err := c.Do(p, http.MethodGet, "/products", nil, "X-API-KEY", key)
			switch {
			case err != nil || (r.Status != http.StatusOK && r.Status != http.StatusTooManyRequests):
				other.Add(1)
			case r.Status == http.StatusOK:
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
	first := c.Add(t)
	for range 2 {
		p := c.StartNext(t)
		if r, err := c.Do(p, http.MethodGet, "/readyz", nil); err != nil || r.Status != http.StatusServiceUnavailable {
			t.Fatalf("%s before joining: /readyz %v %v, want 503", p.Name, r.Status, err)
		}
		for range 3 {
			wg.Go(func() { flood(p) })
		}
	}
	c.Start(t, first, "", false)
	for range 3 {
		wg.Go(func() { flood(first) })
	}
	c.WaitMembers(t, 20*time.Second, time.Now(), c.Nodes)
	settled.Store(true)
	wg.Wait()
	if allowed.Load() != 5 || other.Load() != 0 {
		t.Fatalf("cold start: %d allowed, %d denied, %d errors or other statuses; want exactly 5 allowed and no errors",
			allowed.Load(), denied.Load(), other.Load())
	}
	t.Logf("%d allowed of %d", allowed.Load(), allowed.Load()+denied.Load())
}
