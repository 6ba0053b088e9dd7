package ratemesh_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
)

// forwardedKey returns a key that node from does not own.
func forwardedKey(b testing.TB, from *ratemesh.Node) string {
	for i := 0; ; i++ {
		key := fmt.Sprintf("ip:10.0.%d.%d", i/256, i%256)
		if o, _ := from.Owner(key); o.Name != from.Name() {
			return key
		}
	}
}

// BenchmarkForwardedCheck measures a check that travels to the key's owner
// over the RPC: sequential latency (p50/p99) and parallel throughput.
func BenchmarkForwardedCheck(b *testing.B) {
	nodes := startCluster(b, 2, nil)
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
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			req := req
			req.StatusBuf = make([]bucket.Status, 0, 1)
			for pb.Next() {
				if _, err := nodes[0].Check(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
	})
}
