package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/envoycfg"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

// envoyExample is the shipped Envoy example's directory.
var envoyExample = filepath.Join("..", "..", "examples", "envoy")

// refusedWarning is what /readyz and /v1/stats say after the three
// refused calls of TestEnvoyExampleToken.
const refusedWarning = "grpc: 3 calls refused (api token invalid) and none accepted since: Envoy is not limiting; send authorization: Bearer <token> in grpc_service.initial_metadata"

// TestEnvoyExampleToken calls a node with an API token as the example's
// Envoy would (its descriptors for a request, its domain, its
// initial_metadata with the token expanded): bob of plan silver gets 5
// OK, then OVER_LIMIT. With a wrong token every call is Unauthenticated,
// one WARN says so for three calls, and /readyz and the node's /v1/stats
// carry the warning until a call with the right token is accepted.
func TestEnvoyExampleToken(t *testing.T) {
	var logs testlog.Buffer
	n, c := servedClient(t, &logs, "--api-token", tokenA, "--demo=false", "--rls-config", filepath.Join(envoyExample, "ratelimit"))
	bs, err := envoycfg.Load(filepath.Join(envoyExample, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(n.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
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
	if got, err := call(tokenA); err != nil || got != pb.RateLimitResponse_OVER_LIMIT {
		t.Errorf("call with the token after the refused ones: %v, %v; want OVER_LIMIT", got, err)
	}
	checkWarnings(t, c, base, nil)
}

// checkWarnings checks the warnings of /readyz and of the node's entry of
// /v1/stats.
func checkWarnings(t *testing.T, c *http.Client, base string, want []string) {
	t.Helper()
	code, body, _ := send(t, c, "GET", base+"/readyz", "", "")
	var ready httpapi.HealthResponse
	if err := json.Unmarshal([]byte(body), &ready); err != nil || code != 200 || ready.Status != "ready" || !slices.Equal(ready.Warnings, want) {
		t.Errorf("/readyz: %d %s; want ready with warnings %q", code, body, want)
	}
	code, body, _ = send(t, c, "GET", base+"/v1/stats?scope=node", "", "Bearer "+tokenA)
	var stats httpapi.StatsResponse
	if err := json.Unmarshal([]byte(body), &stats); err != nil || code != 200 || len(stats.Nodes) != 1 || !slices.Equal(stats.Nodes[0].Warnings, want) {
		t.Errorf("/v1/stats: %d %.300s; want the node's warnings %q", code, body, want)
	}
}
