package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh/internal/logevery"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// refusalWindow is how recent a refused gRPC call must be for a node
// whose calls have all been refused since to report it.
const refusalWindow = time.Minute

// grpcOptions are the gRPC server options that guard the rate limit
// service, and the watch of the calls they refuse; none (and a nil watch)
// when the API is open. gRPC health stays open, as /healthz does, for the
// load balancers that probe it.
func (a *authOptions) grpcOptions(reg prometheus.Registerer, log *slog.Logger) ([]grpc.ServerOption, *refusalWatch, error) {
	if a.tokens == nil {
		return nil, nil, nil
	}
	refused, err := nodeapi.NewAuthRefusals(reg)
	if err != nil {
		return nil, nil, err
	}
	w := &refusalWatch{logs: logevery.New(log, logevery.DefaultInterval), now: time.Now}
	g := &grpcAuth{tokens: a.tokens, refused: refused, watch: w}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(g.unary), grpc.ChainStreamInterceptor(g.stream)}, w, nil
}

// grpcAuth checks the "authorization" metadata of gRPC calls.
type grpcAuth struct {
	tokens  *nodeapi.Tokens
	refused *prometheus.CounterVec
	watch   *refusalWatch
}

// check returns nil for calls that may proceed, else Unauthenticated.
func (g *grpcAuth) check(ctx context.Context, method string) error {
	if strings.HasPrefix(method, "/"+healthpb.Health_ServiceDesc.ServiceName+"/") {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	res := nodeapi.AuthMissing
	if v := md.Get("authorization"); len(v) == 1 {
		res = g.tokens.Check(v[0])
	}
	if res == nodeapi.AuthOK {
		g.watch.accepted()
		return nil
	}
	g.refused.WithLabelValues("grpc", res.String()).Inc()
	g.watch.refusedCall(res.String())
	return status.Error(codes.Unauthenticated, "api token "+res.String()+": send authorization: Bearer <token>")
}

func (g *grpcAuth) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := g.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (g *grpcAuth) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := g.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

// refusalWatch follows the gRPC calls refused for their token, so that a
// node whose every call is refused (an Envoy without the token, whose
// failure_mode_deny: false then lets every request through) says so: a
// WARN at most every logevery.DefaultInterval, and Warnings for /readyz
// and /v1/stats. A nil *refusalWatch (an open API) watches nothing.
type refusalWatch struct {
	logs *logevery.Logger
	now  func() time.Time

	mu          sync.Mutex
	refused     int64     // calls refused since the last accepted one
	lastRefused time.Time // when the last of them was
	reason      string    // why the last was refused: missing, wrong, malformed
}

// accepted records a call with a good token.
func (w *refusalWatch) accepted() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.refused = 0
	w.mu.Unlock()
}

// refusedCall records a call refused for reason, and logs it at WARN
// unless a line was logged less than an interval ago.
func (w *refusalWatch) refusedCall(reason string) {
	if w == nil {
		return
	}
	now := w.now()
	w.mu.Lock()
	w.refused++
	w.lastRefused, w.reason = now, reason
	n := w.refused
	w.mu.Unlock()
	w.logs.Warn(now, "grpc-auth", "rls: gRPC call refused: api token "+reason+"; Envoy must send the header authorization: Bearer <token> (grpc_service.initial_metadata), and with failure_mode_deny: false it lets every request through unlimited",
		"refused_since_last_accepted", n)
}

// Warnings says, while the calls refused since the last accepted one
// include one less than refusalWindow ago, that every recent call was
// refused; nil otherwise.
func (w *refusalWatch) Warnings() []string {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.refused == 0 || w.now().Sub(w.lastRefused) > refusalWindow {
		return nil
	}
	calls := "calls"
	if w.refused == 1 {
		calls = "call"
	}
	return []string{fmt.Sprintf("grpc: %d %s refused (api token %s) and none accepted since: Envoy is not limiting; send authorization: Bearer <token> in grpc_service.initial_metadata",
		w.refused, calls, w.reason)}
}
