package ratemesh_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/certs"
	"github.com/ratemesh/ratemesh/internal/certs/certstest"
	"github.com/ratemesh/ratemesh/internal/clustertest"
)

// BenchmarkForwardedCheck measures a check that travels to the key's owner
// over the RPC: sequential latency (p50/p99) and parallel throughput.
// With Config.Replicas 1 (the presets) and 0: replication is off the
// check's path, so both should be alike.
func BenchmarkForwardedCheck(b *testing.B) {
	b.Run("replicas=1", func(b *testing.B) { benchForwarded(b, nil) })
	b.Run("replicas=0", func(b *testing.B) { benchForwarded(b, func(c *ratemesh.Config) { c.Replicas = 0 }) })
	// With leases (the presets) a key this hot is decided from a slice on
	// the asking node after its first checks: parallel then measures
	// leased decisions. Without, every check is forwarded: the tail to
	// hold against BenchmarkLoopbackFloor/callers=64.
	b.Run("leases=off", func(b *testing.B) { benchForwarded(b, func(c *ratemesh.Config) { c.Leases = false }) })
}

// BenchmarkForwardedCheckTLS is BenchmarkForwardedCheck with the RPC over
// mutual TLS (Config.PeerTLS), as --tls-ca sets it.
func BenchmarkForwardedCheckTLS(b *testing.B) {
	ca := certstest.NewCA(b, "bench")
	cert, key := ca.Issue(b, "node", time.Time{})
	src, err := certs.Load(certs.Files{Cert: cert, Key: key, CA: ca.CAFile(b)})
	if err != nil {
		b.Fatal(err)
	}
	benchForwarded(b, func(c *ratemesh.Config) { c.PeerTLS = src.PeerConfig() })
}

func benchForwarded(b *testing.B, mod func(*ratemesh.Config)) {
	nodes := clustertest.Start(b, 2, mod)
	key := forwardedKey(b, nodes[0])
	ls, _ := bucket.Parse("1000000000 per hour")
	req := ratemesh.Request{Key: key, Counters: []bucket.Counter{{Scope: "bench", Limit: ls[0]}}, Cost: 1}
	ctx := context.Background()

	b.Run("sequential", func(b *testing.B) {
		req := req
		req.StatusBuf = make([]bucket.Status, 0, 1) // the caller's buffer: 0 allocs/op
		lat := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			start := time.Now()
			res, err := nodes[0].Check(ctx, req)
			lat = append(lat, time.Since(start))
			if err != nil || res.Node == nodes[0].Name() {
				b.Fatalf("not forwarded: %+v %v", res, err)
			}
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(32) // 64 callers on 2 cores
		var mu sync.Mutex
		var lat []time.Duration
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			req := req
			req.StatusBuf = make([]bucket.Status, 0, 1)
			mine := make([]time.Duration, 0, 1024)
			for pb.Next() {
				t := time.Now()
				if _, err := nodes[0].Check(ctx, req); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
		// Against BenchmarkLoopbackFloor/callers=64 (internal/rpc).
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	})
}

// BenchmarkOwnerCheck measures checks a node decides itself, from all Ps
// over 1000 keys it owns: on a node alone ("settled"), and on a node that
// has just joined a cluster ("after-join"), where for pullWindow every
// check first asks whether the key is here or must be pulled from its
// previous owner; and on that previous owner ("after-giving"), which
// remembers for moveTTL where each key it gave away went.
func BenchmarkOwnerCheck(b *testing.B) {
	ls, _ := bucket.Parse("1000000000 per hour")
	cs := []bucket.Counter{{Scope: "bench", Limit: ls[0]}}
	ctx := context.Background()
	owned := func(b *testing.B, n *ratemesh.Node) []string {
		var keys []string
		for i := 0; len(keys) < 1000; i++ {
			k := fmt.Sprintf("ip:10.1.%d.%d", i/256, i%256)
			if o, _ := n.Owner(k); o.Name == n.Name() {
				keys = append(keys, k)
			}
		}
		for _, k := range keys { // the first check of a key may pull it
			if _, err := n.Check(ctx, ratemesh.Request{Key: k, Counters: cs, Cost: 1}); err != nil {
				b.Fatal(err)
			}
		}
		return keys
	}
	run := func(b *testing.B, n *ratemesh.Node) {
		keys := owned(b, n)
		b.ReportAllocs()
		b.ResetTimer()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			req := ratemesh.Request{Counters: cs, Cost: 1, StatusBuf: make([]bucket.Status, 0, 1)}
			i := int(next.Add(1)) * 7919
			for pb.Next() {
				req.Key = keys[i%len(keys)]
				i++
				if _, err := n.Check(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("settled", func(b *testing.B) { run(b, clustertest.StartNode(b, "solo", nil)) })
	b.Run("after-join", func(b *testing.B) { run(b, clustertest.Start(b, 2, nil)[1]) })
	b.Run("after-giving", func(b *testing.B) {
		nodes := clustertest.Start(b, 2, nil)
		owned(b, nodes[1]) // pulls 1000 keys: nodes[0] remembers where they went
		run(b, nodes[0])
	})
}

// BenchmarkReplicas measures a 3-node cluster's checks over 10,000 keys,
// every check allowed (so every one changes a counter its owner then
// replicates), from all nodes at once, with Config.Replicas 0 and 1.
func BenchmarkReplicas(b *testing.B) {
	ls, _ := bucket.Parse("1000000000 per hour")
	cs := []bucket.Counter{{Scope: "bench", Limit: ls[0]}}
	ctx := context.Background()
	for _, replicas := range []int{0, 1} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			nodes := clustertest.Start(b, 3, func(c *ratemesh.Config) { c.Replicas = replicas })
			b.ReportAllocs()
			b.SetParallelism(16)
			var next atomic.Int64
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1))
				n := nodes[i%len(nodes)]
				req := ratemesh.Request{Counters: cs, Cost: 1, StatusBuf: make([]bucket.Status, 0, 1)}
				for k := i * 7919; pb.Next(); k++ {
					req.Key = fmt.Sprintf("ip:10.2.%d.%d", (k%10000)/256, k%256)
					if _, err := n.Check(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
		})
	}
}
