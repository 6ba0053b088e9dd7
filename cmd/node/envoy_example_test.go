package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/ratemesh/ratemesh/internal/envoycfg"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// envoyExample is the shipped Envoy example's directory.
var envoyExample = filepath.Join("..", "..", "examples", "envoy")

// refusedWarning is what /readyz and /v1/stats say after the three
// refused calls of TestEnvoyExampleToken.
const refusedWarning = "grpc: 3 calls refused (api token invalid) and none accepted since: Envoy is not limiting; send authorization: Bearer <token> in grpc_service.initial_metadata"

// exampleGateway serves a node as the example's nodes run (the demo off,
// its ratelimit config) with more args, and returns it, an HTTP client,
// the example's Envoy bootstrap and a gRPC connection to the node, closed
// at the test's end.
func exampleGateway(t *testing.T, logs *testlog.Buffer, args ...string) (addrNode, *http.Client, *envoycfg.Bootstrap, *grpc.ClientConn) {
	t.Helper()
	n, c := servedClient(t, logs, append(args, "--demo=false", "--rls-config", filepath.Join(envoyExample, "ratelimit"))...)
	bs, err := envoycfg.Load(filepath.Join(envoyExample, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return n, c, bs, dialGRPC(t, n.GRPC)
}

// TestEnvoyExampleToken calls a node with an API token as the example's
// Envoy would (its descriptors for a request, its domain, its
// initial_metadata with the token expanded): bob of plan silver gets 5
// OK, then OVER_LIMIT. With a wrong token every call is Unauthenticated,
// one WARN says so for three calls, and /readyz and the node's /v1/stats
// carry the warning until a call with the right token is accepted.
func TestEnvoyExampleToken(t *testing.T) {
	var logs testlog.Buffer
	n, c, bs, conn := exampleGateway(t, &logs, "--api-token", tokenA)
	req := &pb.RateLimitRequest{Domain: bs.Domain, Descriptors: bs.Descriptors(envoycfg.Request{RemoteAddress: "10.0.0.1",
		Headers: map[string]string{"x-user-id": "bob", "x-plan": "silver", ":path": "/products"}})}
	call := func(token string) (pb.RateLimitResponse_Code, error) {
		t.Helper()
		md, err := bs.ExpandMetadata(func(k string) (string, bool) { return token, k == "RATEMESH_API_TOKEN" })
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), metadata.New(md)), 5*time.Second)
		defer cancel()
		resp, err := pb.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, req)
		return resp.GetOverallCode(), err
	}
	for i := 1; i <= 6; i++ {
		want := pb.RateLimitResponse_OK
		if i == 6 {
			want = pb.RateLimitResponse_OVER_LIMIT
		}
		if got, err := call(tokenA); err != nil || got != want {
			t.Fatalf("call %d with the token: %v, %v; want %v", i, got, err, want)
		}
	}
	base := "http://" + n.HTTP
	checkWarnings(t, c, base, nil)
	for i := 1; i <= 3; i++ {
		if _, err := call("wrong-token-0123456789abcdef"); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("call %d with a wrong token: %v, want Unauthenticated", i, err)
		}
	}
	const warn = `level=WARN msg="rls: gRPC call refused: api token invalid; Envoy must send the header authorization: Bearer <token> (grpc_service.initial_metadata), and with failure_mode_deny: false it lets every request through unlimited" refused_since_last_accepted=1`
	if got := strings.Count(logs.String(), "gRPC call refused"); got != 1 || !strings.Contains(logs.String(), warn) {
		t.Errorf("want one WARN for three refused calls (%d):\n%s", got, logs.String())
	}
	checkWarnings(t, c, base, []string{refusedWarning})
	checkReadyzDoc(t, c, base)
	if got, err := call(tokenA); err != nil || got != pb.RateLimitResponse_OVER_LIMIT {
		t.Errorf("call with the token after the refused ones: %v, %v; want OVER_LIMIT", got, err)
	}
	checkWarnings(t, c, base, nil)
}

// checkReadyzDoc checks that docs/envoy.md shows /readyz as the node
// answers it after TestEnvoyExampleToken's refused calls, byte for byte
// but the node's name (rl-0 on the page).
func checkReadyzDoc(t *testing.T, c *http.Client, base string) {
	t.Helper()
	_, body, _ := send(t, c, "GET", base+"/readyz", "", "")
	var ready nodeapi.HealthResponse
	if err := json.Unmarshal([]byte(body), &ready); err != nil {
		t.Fatalf("/readyz: %v: %s", err, body)
	}
	want := strings.Replace(strings.TrimSpace(body), `"node":"`+ready.Node+`"`, `"node":"rl-0"`, 1)
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "envoy.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(doc), "\n"), "  "+want) {
		t.Errorf("docs/envoy.md does not show /readyz as the node answers it:\n  %s", want)
	}
}

// checkWarnings checks the warnings of /readyz and of the node's entry of
// /v1/stats.
func checkWarnings(t *testing.T, c *http.Client, base string, want []string) {
	t.Helper()
	code, body, _ := send(t, c, "GET", base+"/readyz", "", "")
	var ready nodeapi.HealthResponse
	if err := json.Unmarshal([]byte(body), &ready); err != nil || code != 200 || ready.Status != "ready" || !slices.Equal(ready.Warnings, want) {
		t.Errorf("/readyz: %d %s; want ready with warnings %q", code, body, want)
	}
	code, body, _ = send(t, c, "GET", base+"/v1/stats?scope=node", "", "Bearer "+tokenA)
	var stats nodeapi.StatsResponse
	if err := json.Unmarshal([]byte(body), &stats); err != nil || code != 200 || len(stats.Nodes) != 1 || !slices.Equal(stats.Nodes[0].Warnings, want) {
		t.Errorf("/v1/stats: %d %.300s; want the node's warnings %q", code, body, want)
	}
}

// TestGatewayChecksInStats: on a gateway node (the demo off) the rate
// limit service's decisions are in /v1/stats as the HTTP API's are: the
// example's bob of plan silver, 6 requests as Envoy sends them, is 11
// descriptors allowed (6 of his address, 5 of his plan's) and 1 denied,
// the denied key under its rule in the top; a descriptor of a shadow rule
// over its limit is a shadow denial of the rule; and there is no HTTP
// policy to show.
func TestGatewayChecksInStats(t *testing.T) {
	var logs testlog.Buffer
	n, c, bs, conn := exampleGateway(t, &logs)
	bob := &pb.RateLimitRequest{Domain: bs.Domain, Descriptors: bs.Descriptors(envoycfg.Request{RemoteAddress: "10.0.0.1",
		Headers: map[string]string{"x-user-id": "bob", "x-plan": "silver", ":path": "/products"}})}
	search := &pb.RateLimitRequest{Domain: bs.Domain, HitsAddend: 201, Descriptors: bs.Descriptors(envoycfg.Request{
		Headers: map[string]string{":path": "/search?q=x"}})}
	for i, req := range []*pb.RateLimitRequest{bob, bob, bob, bob, bob, bob, search} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := pb.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, req)
		cancel()
		if err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	var st nodeapi.StatsResponse
	var why string
	testkit.Eventually(t, 10*time.Second, "/v1/stats counts the gateway's checks", func() bool {
		code, body, _ := send(t, c, "GET", "http://"+n.HTTP+"/v1/stats?scope=node", "", "")
		st = nodeapi.StatsResponse{}
		if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 || len(st.Nodes) != 1 {
			t.Fatalf("/v1/stats: %d %s", code, body)
		}
		var sum nodeapi.StatsSecond
		for _, s := range st.Nodes[0].History {
			sum.Allowed, sum.Denied, sum.Shadow = sum.Allowed+s.Allowed, sum.Denied+s.Denied, sum.Shadow+s.Shadow
		}
		why = fmt.Sprintf("history sums to %+v", sum)
		return sum == nodeapi.StatsSecond{Allowed: 11, Denied: 1, Shadow: 1}
	}, &why)
	top := st.Nodes[0].TopDenied
	if len(top) != 1 || top[0].Count != 1 || top[0].Route != "edge.user.plan" || top[0].Limit != "5 per 1 minute" {
		t.Errorf("top denied: %+v, want bob's key once under edge.user.plan, 5 per 1 minute", top)
	}
	want := []nodeapi.ShadowCount{{Route: "edge.path_/search*", Limit: "200 per 1 second", Count: 1}}
	if !slices.Equal(st.Nodes[0].Shadow, want) {
		t.Errorf("shadow: %+v, want %+v", st.Nodes[0].Shadow, want)
	}
	if len(st.Policies) != 0 {
		t.Errorf("policies of a node without the demo: %+v", st.Policies)
	}
}
