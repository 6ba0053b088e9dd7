package rls

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/grpcguard"
	"github.com/ratemesh/ratemesh/internal/testkit"
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
	decideAll(b, svc, reqs)
}

// decideAll has svc decide reqs in turn, b.N of them.
func decideAll(b *testing.B, svc *Service, reqs []*pb.RateLimitRequest) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := svc.ShouldRateLimit(ctx, reqs[i%len(reqs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkShouldRateLimitDescriptors is the service alone in front of
// one node, metrics and an observer on, deciding requests of four
// descriptors as an Envoy route with several actions sends them: the
// client's address, its user and plan (two entries, detailed metrics), a
// path matched by a shared wildcard and a fixed generic key.
func BenchmarkShouldRateLimitDescriptors(b *testing.B) {
	node := clustertest.StartNode(b, "bench", nil)
	cfg := mustConfig(b, `domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: hour, requests_per_unit: 1000000000}
  - key: user
    descriptors:
      - key: plan
        value: gold
        detailed_metric: true
        rate_limit: {unit: hour, requests_per_unit: 1000000000}
  - key: path
    value: /api/*
    share_threshold: true
    rate_limit: {unit: hour, requests_per_unit: 1000000000}
  - key: generic_key
    value: checkout
    rate_limit: {unit: hour, requests_per_unit: 1000000000}
`)
	svc, err := New(node, cfg, Options{Registerer: prometheus.NewRegistry(), Observer: countObserver{new(atomic.Int64)}})
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]*pb.RateLimitRequest, 1000)
	for i := range reqs {
		reqs[i] = request("edge", desc("remote_address", "10.0."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256)),
			desc("user", "u"+strconv.Itoa(i%100), "plan", "gold"), desc("path", "/api/items/"+strconv.Itoa(i)),
			desc("generic_key", "checkout"))
	}
	decideAll(b, svc, reqs)
}

// BenchmarkGateway is scripts/rls-bench.sh's load in one process: 64
// calls in flight through a gRPC server set up as a node's (the guard
// weighs each request from its wire form, metrics and an observer on), in
// front of the first node of three. Every other call is the hot
// descriptor (1000 an hour), the rest one of 10,000 users (5 an hour), so
// most calls are soon over the limit, as in the script. cpu-µs/op is the
// process's CPU time per call: the client's, the server's and the owners'
// together, which other jobs on the machine change less than ns/op.
func BenchmarkGateway(b *testing.B) {
	nodes := clustertest.Start(b, 3, nil)
	cfg := mustConfig(b, "domain: bench\ndescriptors:\n"+
		"  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 5}\n"+
		"  - key: hot\n    rate_limit: {unit: hour, requests_per_unit: 1000}\n")
	var svc *Service
	guard, err := grpcguard.New(grpcguard.Config{MaxRecvMsgSize: 4 << 20, MaxInFlightBytes: 64 << 20, ReadReserve: MaxWeight(4 << 20),
		Weigh: func(raw []byte, m any) (int64, error) { return svc.Weigh(raw, m) }})
	if err != nil {
		b.Fatal(err)
	}
	svc, err = New(nodes[0], cfg, Options{Registerer: prometheus.NewRegistry(), Budget: guard, Observer: countObserver{new(atomic.Int64)}})
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(append(guard.ServerOptions(), ServerOptions()...)...)
	svc.Register(guard.Registrar(srv))
	client := pb.NewRateLimitServiceClient(testkit.ServeGRPC(b, srv))
	var callers atomic.Int64
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	cpu := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(func(p *testing.PB) {
		hot := request("bench", desc("hot", "h"))
		for i := int(callers.Add(1)) * 7919; p.Next(); i++ {
			req := hot
			if i%2 == 1 {
				req = request("bench", desc("user", "u"+strconv.Itoa(i%10000)))
			}
			if _, err := client.ShouldRateLimit(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64((cpuTime(b)-cpu).Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
}

// countObserver counts decisions, as a node's stats do.
type countObserver struct{ n *atomic.Int64 }

func (o countObserver) Decided(time.Time, Decision) { o.n.Add(1) }

// cpuTime is the CPU time this process has used, in user and system mode.
func cpuTime(b *testing.B) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		b.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
