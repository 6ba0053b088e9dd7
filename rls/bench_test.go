package rls

import (
	"context"
	"strconv"
	"testing"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/ratemesh/ratemesh/internal/clustertest"
)

// BenchmarkShouldRateLimitGRPC is one descriptor per call through a real
// gRPC server and client, in front of the first node of three: two calls
// in three are forwarded to the key's owner.
func BenchmarkShouldRateLimitGRPC(b *testing.B) {
	nodes := clustertest.Start(b, 3, nil)
	cfg := mustConfig(b, "domain: bench\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 1000000000}\n")
	svc, err := New(nodes[0], cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	client := pb.NewRateLimitServiceClient(serveOne(b, svc))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(p *testing.PB) {
		i := 0
		for p.Next() {
			i++
			if _, err := client.ShouldRateLimit(context.Background(), request("bench", desc("user", strconv.Itoa(i%10000)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkShouldRateLimit is the service alone, without gRPC, in front
// of one node (every check local).
func BenchmarkShouldRateLimit(b *testing.B) {
	node := clustertest.StartNode(b, "bench", nil)
	cfg := mustConfig(b, "domain: bench\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 1000000000}\n")
	svc, err := New(node, cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]*pb.RateLimitRequest, 10000)
	for i := range reqs {
		reqs[i] = request("bench", desc("user", strconv.Itoa(i)))
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := svc.ShouldRateLimit(ctx, reqs[i%len(reqs)]); err != nil {
			b.Fatal(err)
		}
	}
}
