//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ratemesh/ratemesh/internal/proctest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// rlsConfig is the Envoy rate limit config of the process tests; %d is
// the limit of "user", which the reload test changes.
const rlsConfig = `domain: gateway
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: %d}
  - key: ten
    rate_limit: {unit: minute, requests_per_unit: 10}
  - key: shadow
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 2}
`

// rlsProcs is a cluster of node processes serving the Envoy rate limit
// service, with a gRPC client of each node.
type rlsProcs struct {
	*proctest.Cluster
	cfgFile string
	clients []pb.RateLimitServiceClient
}

// startRLSProcs starts n node processes with --rls-config, each on a gRPC
// port of its own, and waits until every one has joined and its gRPC
// health says SERVING.
func startRLSProcs(t *testing.T, n int) *rlsProcs {
	t.Helper()
	r := &rlsProcs{Cluster: proctest.NewCluster(t, nodeBinary(t))}
	r.cfgFile = filepath.Join(t.TempDir(), "gateway.yaml")
	r.writeConfig(t, 2)
	grpcPorts := map[string]int{}
	r.ExtraArgs = func(p *proctest.Node) []string {
		port, _, _, err := r.FreePorts()
		if err != nil {
			t.Fatal(err)
		}
		grpcPorts[p.Name] = port
		return []string{"--rls-config", r.cfgFile, "--grpc-port", strconv.Itoa(port), "--rls-reload-interval", "100ms"}
	}
	for range n {
		r.StartNext(t)
	}
	r.WaitMembers(t, 20*time.Second, time.Now(), r.Nodes)
	for _, p := range r.Nodes {
		conn, err := grpc.NewClient(net127(grpcPorts[p.Name]), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		waitServing(t, conn)
		r.clients = append(r.clients, pb.NewRateLimitServiceClient(conn))
	}
	return r
}

func net127(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// waitServing polls the standard gRPC health service until it answers
// SERVING for the rate limit service.
func waitServing(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	h := healthpb.NewHealthClient(conn)
	var why string
	testkit.Eventually(t, 15*time.Second, "gRPC health SERVING", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.ratelimit.v3.RateLimitService"})
		why = fmt.Sprint(r, err)
		return err == nil && r.Status == healthpb.HealthCheckResponse_SERVING
	}, &why)
}

func (r *rlsProcs) writeConfig(t *testing.T, userLimit int) {
	t.Helper()
	// Write then rename, as a config management tool does, so that no
	// node reads half a file.
	tmp := r.cfgFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf(rlsConfig, userLimit)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, r.cfgFile); err != nil {
		t.Fatal(err)
	}
}

// ask sends one request to node i (round-robin) and returns its overall
// code and the first descriptor's remaining quota, as "OK/1".
func (r *rlsProcs) ask(t *testing.T, i int, req *pb.RateLimitRequest) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := r.clients[i%len(r.clients)].ShouldRateLimit(ctx, req)
	if err != nil {
		t.Fatalf("node %d: %v", i%len(r.clients), err)
	}
	return fmt.Sprintf("%s/%d", resp.OverallCode, resp.Statuses[0].LimitRemaining)
}

// gatewayReq is a request of one descriptor of the domain "gateway".
func gatewayReq(key, value string, hits *uint64) *pb.RateLimitRequest {
	d := &rlv3.RateLimitDescriptor{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: key, Value: value}}}
	if hits != nil {
		d.HitsAddend = wrapperspb.UInt64(*hits)
	}
	return &pb.RateLimitRequest{Domain: "gateway", Descriptors: []*rlv3.RateLimitDescriptor{d}}
}

// askRound sends n requests round-robin over the nodes and joins the
// answers.
func (r *rlsProcs) askRound(t *testing.T, n int, req *pb.RateLimitRequest) string {
	t.Helper()
	got := make([]string, n)
	for i := range got {
		got[i] = r.ask(t, i, req)
	}
	return strings.Join(got, " ")
}

// TestRLSProcesses drives three node processes as Envoy would, through a
// gRPC client of the generated types, asking the nodes in turn: exact
// counts cluster-wide, peeks that never consume, shadow mode that never
// denies, and a reload that changes one limit and keeps another's count.
func TestRLSProcesses(t *testing.T) {
	r := startRLSProcs(t, 3)
	user := "u-" + r.RunID
	check := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Fatalf("%s:\n got %s\nwant %s", what, got, want)
		}
	}
	check("2 per minute, round-robin", r.askRound(t, 6, gatewayReq("user", user, nil)),
		"OK/1 OK/0 OVER_LIMIT/0 OVER_LIMIT/0 OVER_LIMIT/0 OVER_LIMIT/0")

	zero := uint64(0)
	peeker := "p-" + r.RunID
	check("hits_addend 0, round-robin", r.askRound(t, 6, gatewayReq("user", peeker, &zero)),
		"OK/2 OK/2 OK/2 OK/2 OK/2 OK/2")
	check("then hits", r.askRound(t, 3, gatewayReq("user", peeker, nil)), "OK/1 OK/0 OVER_LIMIT/0")

	check("shadow mode, round-robin", r.askRound(t, 6, gatewayReq("shadow", user, nil)),
		"OK/1 OK/0 OK/0 OK/0 OK/0 OK/0")

	kept := "k-" + r.RunID
	check("ten per minute before the reload", r.askRound(t, 3, gatewayReq("ten", kept, nil)), "OK/9 OK/8 OK/7")
	r.writeConfig(t, 5)
	r.waitRLConfig(t, "gateway.user: unit=MINUTE requests_per_unit=5,")
	check("ten per minute after the reload: the count is kept", r.askRound(t, 3, gatewayReq("ten", kept, nil)), "OK/6 OK/5 OK/4")
	check("user after the reload: 5 per minute", r.askRound(t, 7, gatewayReq("user", "fresh-"+r.RunID, nil)),
		"OK/4 OK/3 OK/2 OK/1 OK/0 OVER_LIMIT/0 OVER_LIMIT/0")

	if err := os.WriteFile(r.cfgFile, []byte("domain: [broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	var why string
	testkit.Eventually(t, 15*time.Second, "every node refused the broken config", func() bool {
		for _, p := range r.Nodes {
			b, err := os.ReadFile(p.LogPath)
			why = fmt.Sprintf("%s: %v", p.Name, err)
			if err != nil || !strings.Contains(string(b), "new config refused; the previous one stays in force") {
				return false
			}
		}
		return true
	}, &why)
	r.waitRLConfig(t, "gateway.user: unit=MINUTE requests_per_unit=5,")
	check("after the broken config, the last good one", r.askRound(t, 3, gatewayReq("ten", kept, nil)), "OK/3 OK/2 OK/1")
}

// waitRLConfig polls every node's GET /rlconfig until it holds want.
func (r *rlsProcs) waitRLConfig(t *testing.T, want string) {
	t.Helper()
	var why string
	testkit.Eventually(t, 15*time.Second, "every node's /rlconfig has "+want, func() bool {
		for _, p := range r.Nodes {
			resp, err := r.Do(p, http.MethodGet, "/rlconfig", nil)
			why = fmt.Sprintf("%s: %v %s", p.Name, err, resp.Body)
			if err != nil || !strings.Contains(string(resp.Body), want) {
				return false
			}
		}
		return true
	}, &why)
}
