package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/metadata"

	"github.com/ratemesh/ratemesh/internal/envoycfg"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

// gatewayPage is what the gateway browser test reads off the dashboard.
type gatewayPage struct {
	Status       string   `json:"status"`
	Charts       int      `json:"charts"`
	Routes       []string `json:"routes"` // of the top denied keys
	Shadow       []string `json:"shadow"`
	RoutesHidden bool     `json:"routesHidden"`
	Warnings     []string `json:"warnings"`
	Gateway      []string `json:"gateway"` // the gateway limits panel's rows
	Allowed      int64    `json:"allowed"` // over every node's history
	Denied       int64    `json:"denied"`
}

// readGatewayPage is evaluated in the page.
const readGatewayPage = `(() => ({
	status: document.getElementById("status").textContent,
	charts: document.querySelectorAll("#charts canvas").length,
	routes: [...document.querySelectorAll("#top tbody tr")].map(tr => tr.children[3].textContent),
	shadow: [...document.querySelectorAll("#shadow tbody tr")].map(tr => tr.children[0].textContent + " " + tr.children[1].textContent + " " + tr.children[2].textContent),
	routesHidden: document.getElementById("routes-card").hidden,
	warnings: document.getElementById("warnings").hidden ? [] : [...document.querySelectorAll("#warnings li")].map(li => li.textContent),
	gateway: document.getElementById("gateway-card").hidden ? [] : ` + gatewayRows + `(),
	allowed: last ? last.nodes.reduce((a, n) => a + (n.history || []).reduce((b, s) => b + s.allowed, 0), 0) : 0,
	denied: last ? last.nodes.reduce((a, n) => a + (n.history || []).reduce((b, s) => b + s.denied, 0), 0) : 0,
}))()`

// TestDashboardGatewayOnly opens the dashboard of a cluster of three nodes
// that serve only the Envoy rate limit service (the demo off, a token),
// called as the example's Envoy calls them: the example's bob six times
// round robin (11 descriptors allowed, 1 denied), one /search request of
// 201 hits (a shadow denial), then one call with a wrong token to the
// first node. The page shows the three charts, the denied descriptor under
// its rule, the shadow rule, the four rules of the example's config in the
// gateway limits panel, no routes panel, and the first node's warning.
func TestDashboardGatewayOnly(t *testing.T) {
	chromium := chromiumOrSkip(t)
	var logs testlog.Buffer
	nodes, _ := servedClients(t, &logs, "--nodes", "3", "--name", "gw", "--api-token", tokenA, "--demo=false",
		"--rls-config", filepath.Join(envoyExample, "ratelimit"))
	bs, err := envoycfg.Load(filepath.Join(envoyExample, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bob := &pb.RateLimitRequest{Domain: bs.Domain, Descriptors: bs.Descriptors(envoycfg.Request{RemoteAddress: "10.0.0.1",
		Headers: map[string]string{"x-user-id": "bob", "x-plan": "silver", ":path": "/products"}})}
	search := &pb.RateLimitRequest{Domain: bs.Domain, HitsAddend: 201, Descriptors: bs.Descriptors(envoycfg.Request{
		Headers: map[string]string{":path": "/search?q=x"}})}
	for i, req := range []*pb.RateLimitRequest{bob, bob, bob, bob, bob, bob, search} {
		if err := callAs(t, nodes[i%3].GRPC, tokenA, req); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	if err := callAs(t, nodes[0].GRPC, "wrong-token-0123456789abcdef", bob); err == nil {
		t.Fatal("a call with a wrong token was answered")
	}

	ctx := openDashboard(t, chromium, nodes[0].HTTP)
	enterToken(t, ctx, tokenA)
	var got gatewayPage
	var why string
	want := gatewayPage{Status: "live", Charts: 3, Routes: []string{"edge.user.plan"}, Shadow: []string{"edge.path_/search* 200 per 1 second 1"},
		RoutesHidden: true, Warnings: []string{"gw-0: " + oneRefusedWarning}, Allowed: 11, Denied: 1,
		Gateway: []string{"edge.path_/search* 200 per 1 second shadow", "edge.remote_address 100 per 1 minute",
			"edge.user.plan 5 per 1 minute", "edge.user.plan_gold 10 per 1 minute"}}
	testkit.Eventually(t, 20*time.Second, "the dashboard shows the gateway's checks", func() bool {
		var err error
		if got, err = chromedp.Run(ctx, chromedp.Evaluate[gatewayPage](readGatewayPage)); err != nil {
			t.Fatal(err)
		}
		why = fmt.Sprintf("the page shows %+v", got)
		return got.Status == want.Status && got.Charts == want.Charts && slices.Equal(got.Routes, want.Routes) &&
			slices.Equal(got.Shadow, want.Shadow) && got.RoutesHidden && slices.Equal(got.Warnings, want.Warnings) &&
			got.Allowed == want.Allowed && got.Denied == want.Denied && slices.Equal(got.Gateway, want.Gateway)
	}, &why)
}

// oneRefusedWarning is a node's warning after one call refused for a wrong
// token.
const oneRefusedWarning = "grpc: 1 call refused (api token invalid) and none accepted since: Envoy is not limiting; send authorization: Bearer <token> in grpc_service.initial_metadata"

// callAs makes one rate limit call to addr with token as Envoy sends it.
func callAs(t *testing.T, addr, token string, req *pb.RateLimitRequest) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	_, err := pb.NewRateLimitServiceClient(dialGRPC(t, addr)).ShouldRateLimit(ctx, req)
	return err
}
