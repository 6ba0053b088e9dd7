package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	tokenA = "token-a-0123456789abcdef"
	tokenB = "token-b-0123456789abcdef"
	admin  = "admin-0123456789abcdef"
)

// servedNodes runs serve with args (plus port 0 everywhere and an address
// file) and returns the nodes' addresses once they are up and joined.
func servedNodes(t *testing.T, logs *testlog.Buffer, args ...string) ([]addrNode, func() error) {
	t.Helper()
	addrs := filepath.Join(t.TempDir(), "addrs.json")
	args = append(args, "--gossip-port", "0", "--rpc-port", "0", "--http-port", "0", "--grpc-port", "0",
		"--gossip-profile", "local", "--addr-file", addrs)
	stop := serveInBackground(t, args, logs)
	testkit.Eventually(t, 15*time.Second, "the address file", func() bool {
		_, err := os.Stat(addrs)
		return err == nil
	})
	return readAddrFile(t, addrs).Nodes, stop
}

// servedNode is servedNodes' first node.
func servedNode(t *testing.T, logs *testlog.Buffer, args ...string) (addrNode, func() error) {
	t.Helper()
	nodes, stop := servedNodes(t, logs, args...)
	return nodes[0], stop
}

// servedClients is servedNodes stopped at the test's end, with a client
// whose idle connections are closed then, and leaks checked after both.
func servedClients(t *testing.T, logs *testlog.Buffer, args ...string) ([]addrNode, *http.Client) {
	t.Helper()
	// Registered first, so it runs after the other cleanups.
	t.Cleanup(func() { goleak.VerifyNone(t, clustertest.LeakOptions()...) })
	nodes, stop := servedNodes(t, logs, args...)
	c := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(func() {
		c.CloseIdleConnections()
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return nodes, c
}

// servedClient is servedClients' first node.
func servedClient(t *testing.T, logs *testlog.Buffer, args ...string) (addrNode, *http.Client) {
	t.Helper()
	nodes, c := servedClients(t, logs, args...)
	return nodes[0], c
}

// rlsConfig writes an envoyproxy/ratelimit config with one descriptor.
func rlsConfig(t *testing.T) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "rl.yaml")
	if err := os.WriteFile(cfg, []byte("domain: edge\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 100}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestAPITokenGuardsCheckAPI: with --api-token, /v1/check, the cluster
// endpoints, /json, /rlconfig and the gRPC service answer only a bearer
// token of the list (either of two), refusals are 401 with a JSON error
// and counted; health, readiness, metrics and gRPC health stay open; the
// admin endpoint takes its own token only.
func TestAPITokenGuardsCheckAPI(t *testing.T) {
	var logs testlog.Buffer
	n, c := servedClient(t, &logs, "--api-token", tokenA+", "+tokenB, "--admin-token", admin,
		"--rls-config", rlsConfig(t), "--demo=false")
	base := "http://" + n.HTTP
	guarded := []struct{ method, path, body string }{
		{"POST", "/v1/check", `{"key":"k","limits":"5 per minute"}`},
		{"GET", "/v1/cluster/members", ""},
		{"GET", "/v1/cluster/owner?key=k", ""},
		{"GET", "/v1/stats", ""},
		{"GET", "/v1/limits?key=k", ""},
		{"POST", "/json", `{"domain":"edge","descriptors":[{"entries":[{"key":"user","value":"u"}]}]}`},
		{"GET", "/rlconfig", ""},
	}
	for _, g := range guarded {
		for _, tc := range []struct {
			auth string
			code int
			body string
		}{
			{"", 401, `{"error":"api token required: send Authorization: Bearer \u003ctoken\u003e"}` + "\n"},
			{"Bearer wrong-token-0123456789", 401, `{"error":"api token not valid"}` + "\n"},
			{"Bearer " + admin, 401, `{"error":"api token not valid"}` + "\n"},
			{"Bearer " + tokenA, 200, ""},
			{"bearer " + tokenB, 200, ""},
		} {
			code, body, hdr := send(t, c, g.method, base+g.path, g.body, tc.auth)
			if code != tc.code || (tc.body != "" && body != tc.body) {
				t.Errorf("%s %s with %q: %d %q, want %d %q", g.method, g.path, tc.auth, code, body, tc.code, tc.body)
			}
			if code == 401 && hdr.Get("WWW-Authenticate") != `Bearer realm="ratemesh"` {
				t.Errorf("%s %s: 401 without WWW-Authenticate", g.method, g.path)
			}
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _, _ := send(t, c, "GET", base+path, "", ""); code != 200 {
			t.Errorf("GET %s without a token: %d, want 200", path, code)
		}
	}
	if code, _, _ := send(t, c, "DELETE", base+"/v1/keys/k", "", "Bearer "+tokenA); code != 401 {
		t.Errorf("DELETE /v1/keys with the api token: %d, want 401", code)
	}
	if code, _, _ := send(t, c, "DELETE", base+"/v1/keys/k", "", "Bearer "+admin); code != 200 {
		t.Errorf("DELETE /v1/keys with the admin token: %d, want 200", code)
	}

	conn, err := grpc.NewClient(n.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tc := range []struct {
		auth string
		want codes.Code
	}{{"", codes.Unauthenticated}, {"Bearer nope-0123456789abcdef", codes.Unauthenticated}, {"Bearer " + tokenB, codes.OK}} {
		if got := status.Code(shouldRateLimit(t, conn, tc.auth)); got != tc.want {
			t.Errorf("gRPC with %q: %v, want %v", tc.auth, got, tc.want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("gRPC health without a token: %v", err)
	}

	_, metrics, _ := send(t, c, "GET", base+"/metrics", "", "")
	// 7 endpoints × (1 missing + 2 invalid), and one of each over gRPC.
	for _, want := range []string{
		`ratemesh_auth_refused_total{api="http",reason="missing"} 7`,
		`ratemesh_auth_refused_total{api="http",reason="invalid"} 14`,
		`ratemesh_auth_refused_total{api="grpc",reason="missing"} 1`,
		`ratemesh_auth_refused_total{api="grpc",reason="invalid"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(logs.String(), "is open") || !strings.Contains(logs.String(), `msg="the check API requires a bearer token" tokens=2`) {
		t.Errorf("logs should say the API is guarded by 2 tokens:\n%s", logs.String())
	}
}

// shouldRateLimit asks the rate limit service once with the given
// authorization metadata ("" none).
func shouldRateLimit(t *testing.T, conn *grpc.ClientConn, auth string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if auth != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", auth)
	}
	_, err := pb.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, &pb.RateLimitRequest{Domain: "edge",
		Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "user", Value: "alice"}}}}})
	return err
}

// send sends one request with a JSON body ("" none) and an Authorization
// header ("" none).
func send(t *testing.T, c *http.Client, method, url, body, auth string) (int, string, http.Header) {
	t.Helper()
	if body == "" {
		return get(t, c, method, url, "Authorization", auth)
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", auth)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// TestOpenCheckAPILogsOnce: without a token the node says once, at start,
// that the check API is open, and /v1/check answers anyone.
func TestOpenCheckAPILogsOnce(t *testing.T) {
	defer goleak.VerifyNone(t, clustertest.LeakOptions()...)
	var logs testlog.Buffer
	n, stop := servedNode(t, &logs, "--nodes", "2", "--demo=false")
	c := &http.Client{Timeout: 5 * time.Second}
	code, _, _ := send(t, c, "POST", "http://"+n.HTTP+"/v1/check", `{"key":"k","limits":"5 per minute"}`, "")
	c.CloseIdleConnections()
	if err := stop(); err != nil {
		t.Errorf("serve: %v", err)
	}
	if code != 200 {
		t.Errorf("open /v1/check: %d, want 200", code)
	}
	open := regexp.MustCompile(`level=WARN msg="the check API \(.*\) is open`)
	if got := len(open.FindAllString(logs.String(), -1)); got != 1 {
		t.Errorf("%d lines say the API is open, want 1:\n%s", got, logs.String())
	}
	// Nor has it a secret, on 127.0.0.1: a WARN, once for both nodes.
	if got := strings.Count(logs.String(), `level=WARN msg="`+noSecretLoopback+`" bind=127.0.0.1`+"\n"); got != 1 {
		t.Errorf("%d lines say there is no secret, want 1:\n%s", got, logs.String())
	}
}

// TestAPITokenBadInput: a short token, an empty or missing token file
// stop the node before it starts, naming the flag.
func TestAPITokenBadInput(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("# no tokens yet\n\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--api-token", "short"}, "--api-token: token 1 of 1: nodeapi: token shorter than 16 characters"},
		{[]string{"--api-token", tokenA + ",short"}, "--api-token: token 2 of 2: nodeapi: token shorter than 16 characters"},
		{[]string{"--api-token-file", empty}, "--api-token-file " + empty + ": no tokens in the file"},
		{[]string{"--api-token-file", filepath.Join(dir, "missing")}, "--api-token-file: open " + filepath.Join(dir, "missing") + ": no such file or directory"},
	} {
		var out strings.Builder
		code := run(append(tc.args, "--gossip-port", "0", "--rpc-port", "0", "--http-port", "0"), func(string) string { return "" }, &out)
		if code != 1 || !strings.Contains(out.String(), tc.want) || strings.Contains(out.String(), "node ready") {
			t.Errorf("%v: exit %d:\n%s\nwant exit 1 with %q", tc.args, code, out.String(), tc.want)
		}
	}
}
