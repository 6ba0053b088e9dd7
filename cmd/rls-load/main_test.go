package main

import (
	"bytes"
	"net"
	"regexp"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/rls"
)

// TestLoadCountsExactly runs the load against one node's service: the
// row reports every call, and admitted equals the limit for the hot
// descriptor and for the users.
func TestLoadCountsExactly(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, clustertest.LeakOptions()...) })
	node := clustertest.StartNode(t, "load", nil)
	cfg, err := rls.Parse(rls.File{Name: "bench.yaml", Data: []byte(
		"domain: bench\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 2}\n" +
			"  - key: hot\n    rate_limit: {unit: hour, requests_per_unit: 3}\n")})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := rls.New(node, cfg, rls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	svc.Register(srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	var out, errs bytes.Buffer
	code := run([]string{"-targets", lis.Addr().String(), "-duration", "300ms", "-keys", "10", "-concurrency", "4",
		"-cold-limit", "2", "-hot-limit", "3", "-header"}, &out, &errs)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	m := regexp.MustCompile(`\| (\d+) / (\d+) +\| (\d+) / (\d+) +\| 0 \|`).FindStringSubmatch(out.String())
	if m == nil || m[1] != "3" || m[2] != "3" || m[3] != "20" || m[4] != "20" {
		t.Fatalf("output:\n%s\nwant hot 3 / 3, users 20 / 20, no errors", out.String())
	}
}
