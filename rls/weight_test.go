package rls

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/grpcguard"
)

// TestWeigh: a request's weight is 3 × its size + 1 KiB a descriptor +
// 128 bytes an entry, read from its wire form; a request over the
// descriptor or entry caps is refused undecoded with validate's message.
func TestWeigh(t *testing.T) {
	svc, err := New(failing{}, mustConfig(t, serviceConfig), Options{MaxDescriptors: 3, MaxEntries: 2})
	if err != nil {
		t.Fatal(err)
	}
	weigh := func(req *pb.RateLimitRequest) (int64, error) {
		raw, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		return svc.Weigh(raw, &pb.RateLimitRequest{})
	}
	req := request("edge", desc("user", "a", "x", "y"), desc("user", "b"))
	if w, err := weigh(req); err != nil || w != int64(3*proto.Size(req)+2*1024+3*128) {
		t.Fatalf("weight %d %v, want %d", w, err, 3*proto.Size(req)+2*1024+3*128)
	}
	for _, tc := range []struct {
		req  *pb.RateLimitRequest
		want string
	}{
		{request("edge", desc("a", "1"), desc("b", "2"), desc("c", "3"), desc("d", "4")), "rls: descriptors: 4 descriptors, at most 3 in one request"},
		{request("edge", desc("a", "1"), desc("a", "1", "b", "2", "c", "3")), "rls: descriptors[1].entries: 3 entries, at most 2"},
	} {
		_, err := weigh(tc.req)
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != tc.want {
			t.Errorf("Weigh: %v, want InvalidArgument %q", err, tc.want)
		}
		// The same message validate gives after decoding.
		if _, err := svc.ShouldRateLimit(context.Background(), tc.req); status.Convert(err).Message() != tc.want {
			t.Errorf("ShouldRateLimit: %v, want %q", err, tc.want)
		}
	}
	if _, err := svc.Weigh([]byte{0xff}, &pb.RateLimitRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Weigh of junk: %v, want InvalidArgument", err)
	}
	if w, err := svc.Weigh(make([]byte, 10), &rlv3.RateLimitDescriptor{}); w != 10 || err != nil {
		t.Fatalf("Weigh of another message: %d %v, want its size, 10", w, err)
	}
}

// TestJSONSharesTheBudget: POST /json waits for the in-flight budget the
// gRPC server uses; with the budget held it is answered 503 at its
// deadline, and once the budget is free it is answered and gives every
// byte back.
func TestJSONSharesTheBudget(t *testing.T) {
	guard, err := grpcguard.New(grpcguard.Config{MaxRecvMsgSize: 1 << 20, MaxInFlightBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	nodes := clustertest.Start(t, 1, nil)
	svc, err := New(nodes[0], mustConfig(t, serviceConfig), Options{Budget: guard})
	if err != nil {
		t.Fatal(err)
	}
	post := func(ctx context.Context) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/json", strings.NewReader(`{"domain":"edge","descriptors":[{"entries":[{"key":"user","value":"j"}]}]}`))
		svc.JSONHandler().ServeHTTP(rec, r)
		return rec
	}
	held, err := guard.Acquire(context.Background(), 1<<20)
	if err != nil || held != 1<<20 {
		t.Fatalf("Acquire: %d %v", held, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if rec := post(ctx); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "rls: too many requests in flight") {
		t.Fatalf("budget held: %d %s, want 503 naming the budget", rec.Code, rec.Body.String())
	}
	guard.Release(held)
	if rec := post(context.Background()); rec.Code != http.StatusOK || guard.InFlight() != 0 {
		t.Fatalf("budget free: %d %s, %d bytes held after; want 200 and 0", rec.Code, rec.Body.String(), guard.InFlight())
	}
}
