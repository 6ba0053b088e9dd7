package ratemesh_test

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// TestSoakFreshKeys floods one node with keys never seen before, 100,000 a
// second under "10 per second" limits, and logs the live heap and the keys
// held every interval: with expired counters swept, both level off at
// about rate × window instead of growing. It runs only when
// RATEMESH_SOAK is a duration: RATEMESH_SOAK=10m go test -timeout 15m -run Soak -v .
func TestSoakFreshKeys(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("RATEMESH_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("set RATEMESH_SOAK=10m to run the fresh-key soak")
	}
	n := clustertest.StartNode(t, "soak", nil)
	cs := testkit.Counters(t, "r", "10 per second")
	ctx := context.Background()
	keysHeld := func() float64 {
		mfs, _ := n.Registry().Gather()
		for _, mf := range mfs {
			if mf.GetName() == "ratemesh_keys" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	report := time.NewTicker(max(d/20, time.Second))
	defer report.Stop()
	end := time.After(d)
	var next, peak uint64
	start := time.Now()
	for {
		select {
		case <-end:
			t.Logf("peak live heap %d MiB over %v", peak>>20, d)
			return
		case <-report.C:
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			t.Logf("t=%4.0fs keys created %9d  held %8.0f  live heap %4d MiB",
				time.Since(start).Seconds(), next, keysHeld(), ms.HeapAlloc>>20)
		case <-tick.C:
			for i := 0; i < 1000; i++ {
				next++
				req := ratemesh.Request{Key: "ip:" + strconv.FormatUint(next, 36), Counters: cs, Cost: 1}
				if _, err := n.Check(ctx, req); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// The node's sweeper gives expired counters back without being asked.
func TestNodeSweepsExpiredCounters(t *testing.T) {
	testkit.SkipInShort(t, "several real nodes for a second or more")
	n := clustertest.StartNode(t, "sweeper", func(c *ratemesh.Config) { c.SweepInterval = 20 * time.Millisecond })
	cs := testkit.Counters(t, "r", "1 per second")
	for i := 0; i < 20000; i++ {
		if _, err := n.Check(context.Background(), ratemesh.Request{Key: "ip:" + strconv.Itoa(i), Counters: cs, Cost: 1}); err != nil {
			t.Fatal(err)
		}
	}
	held := func() float64 {
		mfs, _ := n.Registry().Gather()
		for _, mf := range mfs {
			if mf.GetName() == "ratemesh_keys" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	if h := held(); h == 0 {
		t.Fatal("held no keys right after creating 20000")
	}
	testkit.Eventually(t, 10*time.Second, "expired keys were not swept", func() bool { return held() == 0 })
}
