package rls

import (
	"context"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, clustertest.LeakOptions()...)
}

// entriesOf builds descriptor entries from key, value pairs.
func entriesOf(kv ...string) []*rlv3.RateLimitDescriptor_Entry {
	out := make([]*rlv3.RateLimitDescriptor_Entry, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &rlv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

// rlsCluster is a Service on a real gRPC server in front of each node of
// a cluster, and a real client of each.
type rlsCluster struct {
	svcs    []*Service
	clients []pb.RateLimitServiceClient
	conns   []*grpc.ClientConn
}

// serveAll starts a Service with cfg and o in front of each node, each on
// its own gRPC server on 127.0.0.1, stopped when the test ends.
func serveAll(t *testing.T, nodes []*ratemesh.Node, cfg *Config, o Options) *rlsCluster {
	t.Helper()
	c := &rlsCluster{}
	for _, n := range nodes {
		o.Registerer = prometheus.NewRegistry()
		svc, err := New(n, cfg, o)
		if err != nil {
			t.Fatal(err)
		}
		conn := serveOne(t, svc)
		c.svcs = append(c.svcs, svc)
		c.conns = append(c.conns, conn)
		c.clients = append(c.clients, pb.NewRateLimitServiceClient(conn))
	}
	return c
}

// serveOne serves svc and its health on a gRPC server on 127.0.0.1:0,
// made with the service's ServerOptions, and returns a client connection
// to it; both end with the test.
func serveOne(t testing.TB, svc *Service) *grpc.ClientConn {
	t.Helper()
	srv := grpc.NewServer(ServerOptions()...)
	svc.Register(srv)
	svc.RegisterHealth(srv)
	return testkit.ServeGRPC(t, srv)
}

// mustConfig parses one YAML file.
func mustConfig(t testing.TB, yaml string) *Config {
	t.Helper()
	c, err := Parse(File{Name: "test.yaml", Data: []byte(yaml)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ask sends req to node i's service.
func (c *rlsCluster) ask(t *testing.T, i int, req *pb.RateLimitRequest) *pb.RateLimitResponse {
	t.Helper()
	resp, err := c.try(i, req)
	if err != nil {
		t.Fatalf("node %d: %v", i, err)
	}
	return resp
}

func (c *rlsCluster) try(i int, req *pb.RateLimitRequest) (*pb.RateLimitResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.clients[i%len(c.clients)].ShouldRateLimit(ctx, req)
}

// metric sums a per-descriptor metric over the services.
func (c *rlsCluster) metric(pick func(*metrics) *prometheus.CounterVec, key string) int {
	sum := 0.0
	for _, s := range c.svcs {
		sum += testutil.ToFloat64(pick(s.metrics).WithLabelValues(key))
	}
	return int(sum)
}

// request builds a request of domain's descriptors.
func request(domain string, descs ...*rlv3.RateLimitDescriptor) *pb.RateLimitRequest {
	return &pb.RateLimitRequest{Domain: domain, Descriptors: descs}
}

// desc builds a descriptor from key, value pairs.
func desc(kv ...string) *rlv3.RateLimitDescriptor {
	return &rlv3.RateLimitDescriptor{Entries: entriesOf(kv...)}
}

// codes lists the overall code and each descriptor's, e.g. "OVER_LIMIT[OK OVER_LIMIT]".
func codesOf(r *pb.RateLimitResponse) string {
	s := r.GetOverallCode().String() + "["
	for i, st := range r.GetStatuses() {
		if i > 0 {
			s += " "
		}
		s += st.GetCode().String()
	}
	return s + "]"
}
