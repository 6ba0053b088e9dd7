package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
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
	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
	"github.com/ratemesh/ratemesh/rls"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// maxAttackRSS is the peak resident memory the node may reach under
// TestGRPCBoundsHoldMemory: the target.
const maxAttackRSS = 512 << 20

// TestGRPCBoundsHoldMemory runs the built binary (2 nodes in one
// process) with its default gRPC bounds but a cap of 3 connections, and
// sends node 0 three waves of 201
// concurrent requests over 3 connections of 67 calls: more connections
// than the cap (one waits in the kernel's queue until another closes) and
// more calls per connection than the 64 streams allowed. The waves:
// 1,024 descriptors of 3,800-byte values (3.9 MB, answered OK); 1,024
// descriptors of 64 one-letter entries (330 KB that decode to about 8 MB,
// answered OK); and 1,024 descriptors of 800 such entries (4.1 MB that
// would decode to 70 MB, refused from their wire form before decoding).
// gRPC health on its own connection answers SERVING within 5 s at every
// poll, the peer sees both members alive at every poll, and the process's
// peak RSS stays under 512 MiB (measured: 209 MiB; before the bounds, the
// first wave alone took one node to 3,546 MiB and health checks timed
// out).
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
	cmd := exec.Command(bin, "--nodes", "2", "--http-port", "0", "--gossip-port", "0", "--rpc-port", "0", "--grpc-port", "0", "--gossip-profile", "local",
		"--demo=false", "--rls-config", cfg, "--addr-file", addrs, "--grpc-max-connections", "3")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitOrKill(t, cmd)
	nodes := waitAddrFile(t, addrs).Nodes
	addr := nodes[0].GRPC
	w := &watcher{health: dialGRPC(t, addr), peer: "http://" + nodes[1].HTTP + "/v1/cluster/members", http: &http.Client{Timeout: 5 * time.Second}}
	defer w.http.CloseIdleConnections()
	testkit.Eventually(t, 15*time.Second, "health SERVING and both members alive", func() bool { return w.problem() == "" })
	for _, wave := range []struct {
		name string
		req  *pb.RateLimitRequest
		want codes.Code
	}{
		{"3,800-byte values", bigRequest(1, 3800-5), codes.OK},
		{"64 entries a descriptor", bigRequest(64, 0), codes.OK},
		{"800 entries a descriptor", bigRequest(800, 0), codes.InvalidArgument},
	} {
		if n := proto.Size(wave.req); n > defaultGRPCMaxRecv {
			t.Fatalf("%s: request of %d bytes, more than the 4 MiB allowed", wave.name, n)
		}
		results := attack(t, addr, wave.req, 3, 67)
		polls, problems := w.until(results.done)
		rss := peakRSS(t, cmd.Process.Pid)
		t.Logf("%s: 201 requests of %d bytes: %d as wanted, %d polls of health and members, peak RSS so far %.1f MiB",
			wave.name, proto.Size(wave.req), results.byCode[wave.want], polls, float64(rss)/(1<<20))
		if results.byCode[wave.want] != 201 {
			t.Fatalf("%s: %d of 201 answered %v; answers %v, first other %q", wave.name, results.byCode[wave.want], wave.want, results.byCode, results.other)
		}
		if len(problems) > 0 {
			t.Fatalf("%s: %d of %d polls found health not SERVING or a member not alive: %v", wave.name, len(problems), polls, problems)
		}
		if rss > maxAttackRSS {
			t.Fatalf("%s: peak RSS %d bytes, want under %d", wave.name, rss, maxAttackRSS)
		}
	}
}

// watcher polls the attacked node's gRPC health and its peer's view of
// the members.
type watcher struct {
	health *grpc.ClientConn
	peer   string // the peer's GET /v1/cluster/members
	http   *http.Client
}

// until polls every 100 ms until done is closed, and returns how many
// polls it made and what was wrong at each that found a problem.
func (w *watcher) until(done <-chan struct{}) (polls int, problems []string) {
	for {
		select {
		case <-done:
			return polls, problems
		case <-time.After(100 * time.Millisecond):
		}
		polls++
		if p := w.problem(); p != "" {
			problems = append(problems, p)
		}
	}
}

// problem is "" when health is SERVING and the peer sees every member
// alive, else what is not.
func (w *watcher) problem() string {
	if s := healthOf(w.health); s != "SERVING" {
		return "health " + s
	}
	resp, err := w.http.Get(w.peer)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var m nodeapi.MembersResponse
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return err.Error()
	}
	for _, mem := range m.Members {
		if mem.State != "alive" {
			return mem.Name + " " + mem.State
		}
	}
	if len(m.Members) != 2 {
		return fmt.Sprintf("%d members", len(m.Members))
	}
	return ""
}

// bigRequest is 1,024 descriptors, each of entries entries: the first a
// different user whose value has pad more bytes, the others "k".
func bigRequest(entries, pad int) *pb.RateLimitRequest {
	req := &pb.RateLimitRequest{Domain: "edge"}
	p := strings.Repeat("v", pad)
	for i := range rls.DefaultMaxDescriptors {
		d := &rlv3.RateLimitDescriptor{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "user", Value: fmt.Sprintf("%05d", i) + p}}}
		for range entries - 1 {
			d.Entries = append(d.Entries, &rlv3.RateLimitDescriptor_Entry{Key: "k"})
		}
		req.Descriptors = append(req.Descriptors, d)
	}
	return req
}

// attackResults are what the calls of attack got.
type attackResults struct {
	done   chan struct{} // closed when every call has returned
	mu     sync.Mutex
	byCode map[codes.Code]int // OK: the overall code was OK
	other  string             // the first answer neither OK nor an error status
}

// attack sends req conns × calls times at once, calls on each of conns
// connections; each connection closes once its calls are answered.
func attack(t *testing.T, addr string, req *pb.RateLimitRequest, conns, calls int) *attackResults {
	r := &attackResults{done: make(chan struct{}), byCode: map[codes.Code]int{}}
	wire, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	pre := &preEncoded{wire}
	var all sync.WaitGroup
	for range conns {
		conn := dialGRPC(t, addr)
		var mine sync.WaitGroup
		for range calls {
			all.Add(1)
			mine.Add(1)
			go func() {
				defer all.Done()
				defer mine.Done()
				r.call(conn, pre)
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

func (r *attackResults) call(conn *grpc.ClientConn, req *preEncoded) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp := &pb.RateLimitResponse{}
	err := conn.Invoke(ctx, pb.RateLimitService_ShouldRateLimit_FullMethodName, req, resp, grpc.WaitForReady(true), grpc.ForceCodecV2(preCodec{}))
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.byCode[status.Code(err)]++
		if r.other == "" && status.Code(err) != codes.InvalidArgument {
			r.other = err.Error()
		}
	case resp.OverallCode != pb.RateLimitResponse_OK:
		r.other = resp.OverallCode.String()
	default:
		r.byCode[codes.OK]++
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

// preEncoded is a request in its wire form, encoded once for all the
// calls that send it: encoding 201 requests of 800,000 entries each took
// the client (with the race detector) longer than the calls' deadline.
type preEncoded struct{ wire []byte }

// preCodec sends a preEncoded as it is, and is gRPC's proto codec
// otherwise.
type preCodec struct{}

func (preCodec) Marshal(v any) (mem.BufferSlice, error) {
	if p, ok := v.(*preEncoded); ok {
		return mem.BufferSlice{mem.SliceBuffer(p.wire)}, nil
	}
	return encoding.GetCodecV2(grpcproto.Name).Marshal(v)
}

func (preCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2(grpcproto.Name).Unmarshal(data, v)
}

func (preCodec) Name() string { return grpcproto.Name }
