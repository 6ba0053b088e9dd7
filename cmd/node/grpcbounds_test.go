package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/ratemesh/ratemesh/internal/testlog"
	"github.com/ratemesh/ratemesh/rls"
)

// maxAttackRSS is the peak resident memory the node may reach under
// TestGRPCBoundsHoldMemory: the target.
const maxAttackRSS = 512 << 20

// TestGRPCBoundsHoldMemory runs the built binary with its default gRPC
// bounds but a cap of 3 connections, and sends 201 concurrent requests
// of 1,024 descriptors of 3,800-byte values (3.9 MB each) over 3
// connections of 67 calls: more connections than the cap (one waits in
// the kernel's queue until another closes) and more calls per connection
// than the 64 streams allowed. Every request is answered OK, gRPC health
// on its own connection answers SERVING within 5 s at every poll, and the
// node's peak RSS stays under 512 MiB (measured 281 MiB alone, 341 MiB
// with other tests on 2 cores; before the bounds: 3,546 MiB, and health
// checks timed out).
func TestGRPCBoundsHoldMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read the node's peak RSS")
	}
	dir := t.TempDir()
	bin := buildNode(t, dir)
	cfg := filepath.Join(dir, "rl.yaml")
	os.WriteFile(cfg, []byte("domain: edge\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 1000}\n"), 0o644)
	addrs := filepath.Join(dir, "addrs.json")
	var logs testlog.Buffer
	cmd := exec.Command(bin, "--http-port", "0", "--gossip-port", "0", "--rpc-port", "0", "--grpc-port", "0", "--gossip-profile", "local",
		"--demo=false", "--rls-config", cfg, "--addr-file", addrs, "--grpc-max-connections", "3")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitOrKill(t, cmd)
	addr := waitAddrFile(t, addrs).Nodes[0].GRPC
	health := dialGRPC(t, addr)
	if s := healthOf(health); s != "SERVING" {
		t.Fatalf("health before: %s", s)
	}
	req := bigRequest()
	if n := proto.Size(req); n < 3_900_000 || n > defaultGRPCMaxRecv {
		t.Fatalf("request of %d bytes, want 3.9 MB to 4 MiB", n)
	}
	results := attack(t, addr, req, 3, 67)
	polls, notServing := 0, []string{}
	for done := false; !done; {
		select {
		case <-results.done:
			done = true
		case <-time.After(100 * time.Millisecond):
		}
		polls++
		if s := healthOf(health); s != "SERVING" {
			notServing = append(notServing, s)
		}
	}
	rss := peakRSS(t, cmd.Process.Pid)
	t.Logf("201 requests of %d bytes: %d OK, %d health polls, peak RSS %.1f MiB", proto.Size(req), results.ok, polls, float64(rss)/(1<<20))
	if results.ok != 201 || len(results.errs) > 0 {
		t.Fatalf("%d of 201 OK; errors %v", results.ok, results.errs)
	}
	if len(notServing) > 0 {
		t.Fatalf("health during the attack: %d of %d polls not SERVING: %v", len(notServing), polls, notServing)
	}
	if rss > maxAttackRSS {
		t.Fatalf("peak RSS %d bytes, want under %d", rss, maxAttackRSS)
	}
}

// bigRequest is 1,024 descriptors, each a different 3,800-byte user.
func bigRequest() *pb.RateLimitRequest {
	req := &pb.RateLimitRequest{Domain: "edge"}
	pad := strings.Repeat("v", 3800-5)
	for i := range rls.DefaultMaxDescriptors {
		req.Descriptors = append(req.Descriptors, &rlv3.RateLimitDescriptor{
			Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "user", Value: fmt.Sprintf("%05d", i) + pad}}})
	}
	return req
}

// attackResults are what the calls of attack got.
type attackResults struct {
	done chan struct{} // closed when every call has returned
	mu   sync.Mutex
	ok   int
	errs []string
}

// attack sends req conns × calls times at once, calls on each of conns
// connections; each connection closes once its calls are answered.
func attack(t *testing.T, addr string, req *pb.RateLimitRequest, conns, calls int) *attackResults {
	r := &attackResults{done: make(chan struct{})}
	var all sync.WaitGroup
	for range conns {
		conn := dialGRPC(t, addr)
		c := pb.NewRateLimitServiceClient(conn)
		var mine sync.WaitGroup
		for range calls {
			all.Add(1)
			mine.Add(1)
			go func() {
				defer all.Done()
				defer mine.Done()
				r.call(c, req)
			}()
		}
		go func() {
			mine.Wait()
			conn.Close() // its slot goes to the connection waiting
		}()
	}
	go func() {
		all.Wait()
		close(r.done)
	}()
	t.Cleanup(func() { <-r.done })
	return r
}

func (r *attackResults) call(c pb.RateLimitServiceClient, req *pb.RateLimitRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := c.ShouldRateLimit(ctx, req, grpc.WaitForReady(true))
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.errs = append(r.errs, err.Error())
	case resp.OverallCode != pb.RateLimitResponse_OK:
		r.errs = append(r.errs, resp.OverallCode.String())
	default:
		r.ok++
	}
}

// dialGRPC is a client connection to addr, closed when the test ends.
func dialGRPC(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// healthOf asks conn's health service about the rate limit service,
// allowing 5 s, Envoy's default health check timeout (on 2 cores shared
// with the race detector, 2 s was missed once in 293 polls).
func healthOf(conn *grpc.ClientConn) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: rls.ServiceName})
	if err != nil {
		return err.Error()
	}
	return r.Status.String()
}

// peakRSS is the process's peak resident set (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}
