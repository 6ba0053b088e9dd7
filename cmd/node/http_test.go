package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"go.uber.org/goleak"
)

func TestHTTPFlags(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseOptions([]string{"--help"}, func(string) string { return "" }, &out); err == nil {
		t.Fatal("--help did not stop")
	}
	for _, want := range []string{
		"-demo", "RATEMESH_DEMO", "-admin-token", "RATEMESH_ADMIN_TOKEN", "-jwt-secret", "RATEMESH_JWT_SECRET",
		"-trusted-proxies", "RATEMESH_TRUSTED_PROXIES", "-headers", "RATEMESH_HEADERS", "-policy", "RATEMESH_POLICY",
		"-http-port", "RATEMESH_HTTP_PORT",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, out.String())
		}
	}
	env := map[string]string{
		"RATEMESH_DEMO":            "false",
		"RATEMESH_ADMIN_TOKEN":     "tok",
		"RATEMESH_TRUSTED_PROXIES": "10.0.0.0/8",
		"RATEMESH_HEADERS":         "draft",
		"RATEMESH_POLICY":          "/etc/ratemesh/policy.yaml",
	}
	o, err := parseOptions([]string{"--jwt-secret", "js", "--admin-token", "flag-wins"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	h := o.http
	if h.demo || h.adminToken != "flag-wins" || h.jwtSecret != "js" || h.trustedProxies != "10.0.0.0/8" || h.headers != "draft" || h.policyFile != "/etc/ratemesh/policy.yaml" {
		t.Fatalf("options %+v", h)
	}
	if o, _ := parseOptions(nil, func(string) string { return "" }, io.Discard); !o.http.demo || o.http.headers != "legacy,retry-after,draft" {
		t.Fatalf("defaults %+v", o.http)
	}
}

// startedNode is one real node with the test preset.
func startedNode(t *testing.T) *ratemesh.Node {
	t.Helper()
	return clustertest.StartNode(t, "http-"+t.Name(), nil)
}

// get sends one request to the server.
func get(t *testing.T, c *http.Client, method, url string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// serveNode serves node's HTTP side of h as the command does (start):
// h's port bound first, then served.
func serveNode(t *testing.T, node *ratemesh.Node, h *httpOptions) *httpServer {
	t.Helper()
	ln, err := h.listen()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := serveHTTP(node, h, ln, slog.New(slog.DiscardHandler))
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	return srv
}

func TestServeHTTP(t *testing.T) {
	// Registered first, so it runs after every other cleanup.
	t.Cleanup(func() {
		goleak.VerifyNone(t,
			goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*NetTransport).tcpListen"),
			goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*NetTransport).udpListen"),
		)
	})
	n := startedNode(t)
	h := &httpOptions{
		bind: "127.0.0.1", demo: true, adminToken: "adm", jwtSecret: "js", headers: "all",
		policyFile: writePolicy(t, "routes:\n  - method: GET\n    path: /products\n    limits: \"2 per minute\"\n"),
	}
	srv := serveNode(t, n, h)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	base := "http://" + srv.Addr()
	for i := 0; i < 20; i++ {
		if code, body, _ := get(t, c, "GET", base+"/healthz"); code != 200 || !strings.Contains(body, `"status":"ok"`) {
			t.Fatalf("healthz: %d %s", code, body)
		}
	}
	for i := 0; i < 2; i++ {
		if code, _, hd := get(t, c, "GET", base+"/products"); code != 200 || hd.Get("X-RateLimit-Limit") != "2" {
			t.Fatalf("products %d: %d %v", i, code, hd)
		}
	}
	code, body, hd := get(t, c, "GET", base+"/products")
	if code != 429 || body != `{"error":"Too many requests. Please try again later.","limit":"2 per 1 minute"}`+"\n" || hd.Get("Retry-After") != "60" {
		t.Fatalf("third products: %d %s %v", code, body, hd)
	}
	if code, _, _ := get(t, c, "DELETE", base+"/v1/keys/ip:127.0.0.1", "Authorization", "Bearer nope"); code != 401 {
		t.Fatalf("reset with a wrong token: %d", code)
	}
	if code, body, _ := get(t, c, "DELETE", base+"/v1/keys/ip:127.0.0.1", "Authorization", "Bearer adm"); code != 200 {
		t.Fatalf("reset: %d %s", code, body)
	}
	if code, _, _ := get(t, c, "GET", base+"/products"); code != 200 {
		t.Fatalf("products after reset: %d", code)
	}
	code, body, _ = get(t, c, "GET", base+"/metrics")
	for _, want := range []string{`ratemesh_http_requests_total{result="denied"} 1`, `ratemesh_http_service_requests_total{code="200",endpoint="reset"} 1`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("metrics lack %q", want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStartHTTPDemoOffAndErrors(t *testing.T) {
	n := startedNode(t)
	e, _, err := (&httpOptions{headers: "all"}).handler(n, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"/products": 404, "/healthz": 200, "/readyz": 200, "/v1/keys/x": 404} {
		req, _ := http.NewRequest("GET", path, nil)
		if path == "/v1/keys/x" {
			req.Method = "DELETE"
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("demo off: %s %d, want %d", path, rec.Code, want)
		}
		if want := `{"error":"` + nodeapi.AdminOffMessage + `"}` + "\n"; path == "/v1/keys/x" && rec.Body.String() != want {
			t.Errorf("DELETE /v1/keys/x without an admin token: %q, want %q", rec.Body.String(), want)
		}
	}
	for _, tc := range []struct {
		h    httpOptions
		want string
	}{
		{httpOptions{trustedProxies: "10.0.0.0/99", headers: "all"}, `--trusted-proxies: trusted proxy "10.0.0.0/99"`},
		{httpOptions{headers: "legacy,fancy"}, `--headers: header family "fancy"`},
		{httpOptions{headers: "all", demo: true, policyFile: writePolicy(t, "routes:\n  - path: /products\n    limits: \"5 per lunar cycle\"\n")}, `policy.yaml:3: limits "5 per lunar cycle"`},
	} {
		if _, _, err := tc.h.handler(n, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

// A bad policy file stops the command before any node starts: nothing
// joins a cluster only to leave it again.
func TestBadPolicyStopsBeforeStart(t *testing.T) {
	var out bytes.Buffer
	bad := writePolicy(t, "routes:\n  - path: /products\n    limits: \"5 per lunar cycle\"\n")
	code := run([]string{"--policy", bad, "--gossip-port", "0", "--rpc-port", "0", "--http-port", "0"}, func(string) string { return "" }, &out)
	if code != 1 || !strings.Contains(out.String(), `policy.yaml:3: limits \"5 per lunar cycle\"`) || strings.Contains(out.String(), "node started") {
		t.Fatalf("exit %d, output:\n%s\nwant exit 1 naming the file and line, before any node started", code, out.String())
	}
}
