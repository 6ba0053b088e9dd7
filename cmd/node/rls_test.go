package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

// TestRLSFlags: the rate limit service's flags, their environment
// variables and defaults, and node i's gRPC port under --nodes.
func TestRLSFlags(t *testing.T) {
	none := func(string) string { return "" }
	o, err := parseOptions(nil, none, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.rls.config != "" || o.rls.port != 8089 || o.rls.shadow || o.rls.headers != "none" || o.rls.interval != time.Second {
		t.Fatalf("defaults %+v, want off, port 8089, no shadow, no headers, 1s", o.rls)
	}
	env := map[string]string{"RATEMESH_RLS_CONFIG": "/etc/rl", "RATEMESH_GRPC_PORT": "9000", "RATEMESH_RLS_SHADOW": "true"}
	o, err = parseOptions([]string{"--nodes", "3", "--grpc-port", "9100"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.rls.config != "/etc/rl" || o.rls.port != 9100 || !o.rls.shadow || o.member(2).rls.port != 9102 {
		t.Fatalf("options %+v, member 2 port %d; want the env's config and shadow, the flag's port, 9102", o.rls, o.member(2).rls.port)
	}
	if _, err := parseOptions([]string{"--nodes", "2", "--grpc-port", "65535"}, none, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "--grpc-port 65535: with --nodes 2") {
		t.Fatalf("error %v, want --grpc-port past 65535 refused", err)
	}
}

// TestBadRLSConfigStopsBeforeStart: a bad config or setting stops the
// command with the file, line and path named, before any node starts.
func TestBadRLSConfigStopsBeforeStart(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight}\n"), 0o644)
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("domain: d\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rls-config", bad}, `--rls-config: ` + bad + `:4: d.k: invalid rate limit unit 'fortnight'`},
		{[]string{"--rls-config", good, "--rls-headers", "all"}, `--rls-headers \"all\": want none, ratelimit or x-ratelimit`},
		{[]string{"--rls-config", good, "--rls-reload-interval", "0s"}, `--rls-reload-interval 0s: want a positive duration`},
	} {
		var out bytes.Buffer
		args := append(tc.args, "--gossip-port", "0", "--rpc-port", "0", "--http-port", "0", "--grpc-port", "0")
		code := run(args, func(string) string { return "" }, &out)
		if code != 1 || !strings.Contains(out.String(), tc.want) || strings.Contains(out.String(), "node started") {
			t.Errorf("%v: exit %d, output:\n%s\nwant exit 1 with %q before any node started", tc.args, code, out.String(), tc.want)
		}
	}
}

// TestServeRLS runs --nodes 3 with --rls-config in this process: the
// addresses file gives each node's gRPC address, a "2 per minute"
// descriptor allows exactly 2 asked round-robin, GET /rlconfig and POST
// /json answer on the HTTP ports, and everything stops with serve.
func TestServeRLS(t *testing.T) {
	defer goleak.VerifyNone(t, clustertest.LeakOptions()...)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "rl.yaml")
	os.WriteFile(cfg, []byte("domain: edge\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 2}\n"), 0o644)
	addrs := filepath.Join(dir, "addrs.json")
	var logs testlog.Buffer
	stop := serveInBackground(t, []string{
		"--nodes", "3", "--name", "r", "--gossip-port", "0", "--rpc-port", "0", "--http-port", "0", "--grpc-port", "0",
		"--gossip-profile", "local", "--addr-file", addrs, "--rls-config", cfg, "--demo=false",
	}, &logs)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	testkit.Eventually(t, 15*time.Second, "the address file", func() bool {
		_, err := os.Stat(addrs)
		return err == nil
	})
	doc := readAddrFile(t, addrs)
	var got []string
	for i := range 6 {
		got = append(got, askGRPC(t, doc.Nodes[i%3].GRPC).String())
	}
	if want := "OK OK OVER_LIMIT OVER_LIMIT OVER_LIMIT OVER_LIMIT"; strings.Join(got, " ") != want {
		t.Fatalf("round robin over %+v: %s, want %s", doc.Nodes, strings.Join(got, " "), want)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	if code, body, _ := get(t, c, "GET", "http://"+doc.Nodes[1].HTTP+"/rlconfig"); code != 200 ||
		body != "edge.user: unit=MINUTE requests_per_unit=2, shadow_mode: false, quota_mode: false\n" {
		t.Fatalf("/rlconfig: %d %q", code, body)
	}
	resp, err := c.Post("http://"+doc.Nodes[2].HTTP+"/json", "application/json",
		strings.NewReader(`{"domain":"edge","descriptors":[{"entries":[{"key":"user","value":"json"}]}],"hitsAddend":3}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), `"overallCode":"OVER_LIMIT"`) {
		t.Fatalf("/json with 3 hits of 2: %d %s, want 429 OVER_LIMIT", resp.StatusCode, body)
	}
}

// askGRPC sends one hit of edge's user=alice to addr.
func askGRPC(t *testing.T, addr string) pb.RateLimitResponse_Code {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := pb.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, &pb.RateLimitRequest{Domain: "edge",
		Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "user", Value: "alice"}}}}})
	if err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	return r.OverallCode
}

// TestRLSServerDrain: gRPC health is NOT_SERVING until serving (the
// node has joined), then SERVING; drain turns it to NOT_SERVING for good
// while the service still answers, and stop closes the port.
func TestRLSServerDrain(t *testing.T) {
	// Registered first, so it runs after the node's own cleanup.
	t.Cleanup(func() { goleak.VerifyNone(t, clustertest.LeakOptions()...) })
	node := clustertest.StartNode(t, "drain", nil)
	cfg := filepath.Join(t.TempDir(), "rl.yaml")
	os.WriteFile(cfg, []byte("domain: edge\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 2}\n"), 0o644)
	o := &options{bind: "127.0.0.1", rls: rlsOptions{config: cfg, interval: time.Second, bounds: grpcBounds{
		maxStreams: defaultGRPCMaxStreams, maxConns: defaultGRPCMaxConns, maxRecv: defaultGRPCMaxRecv, maxInFlight: defaultGRPCMaxInFlight, readTimeout: time.Second, maxOverride: time.Hour,
	}}}
	s, err := startRLS(node, o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	conn := dialGRPC(t, s.Addr())
	health := func() string { return healthOf(conn) }
	if h := health(); h != "NOT_SERVING" {
		t.Fatalf("health %s before the node has joined, want NOT_SERVING", h)
	}
	s.serving()
	if h := health(); h != "SERVING" {
		t.Fatalf("health %s, want SERVING", h)
	}
	s.drain()
	if h, code := health(), askGRPC(t, s.Addr()); h != "NOT_SERVING" || code != pb.RateLimitResponse_OK {
		t.Fatalf("draining: health %s, answer %s; want NOT_SERVING and still OK", h, code)
	}
	if s.serving(); health() != "NOT_SERVING" {
		t.Fatal("serving after drain turned health back to SERVING")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.stop(ctx)
	conn.Close()
}
