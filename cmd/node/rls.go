package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/connlimit"
	"github.com/ratemesh/ratemesh/internal/grpcguard"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/rls"
	"google.golang.org/grpc"
)

// rlsOptions are the flags of the Envoy rate limit service.
type rlsOptions struct {
	config   string
	port     int
	shadow   bool
	headers  string
	interval time.Duration
	bounds   grpcBounds
}

// grpcBounds bound what clients of the gRPC server can hold.
type grpcBounds struct {
	maxStreams, maxConns, maxRecv, maxInFlight int
	readTimeout, maxOverride                   time.Duration
}

// Defaults of grpcBounds. Memory the server can be made to hold is about
// maxConns × maxStreams × grpcWindow (requests waiting for the budget,
// buffered by the transport) plus maxInFlight (requests read, decoded and
// decided, each weighed by rls.Service.Weigh), and what the collector
// lets grow before it runs: 128 × 64 × 64 KiB + 128 MiB at the defaults,
// where one request of 4 MiB reserves 21 MiB while it is read.
const (
	defaultGRPCMaxStreams  = 64
	defaultGRPCMaxConns    = 128
	defaultGRPCMaxRecv     = 4 << 20
	defaultGRPCMaxInFlight = 128 << 20
	// grpcWindow is the HTTP/2 flow-control window of each stream and
	// connection, gRPC's smallest. Setting it turns off gRPC's dynamic
	// window, which grows to 16 MiB per stream: the transport would then
	// buffer whole 4 MiB requests that wait for the in-flight budget,
	// outside it.
	grpcWindow = 64 << 10
)

// register adds the rate limit service's flags.
func (r *rlsOptions) register(e *envFlags) {
	e.String(&r.config, "rls-config", "RATEMESH_RLS_CONFIG", "", "envoyproxy/ratelimit config (a YAML file or a directory of them): serves envoy.service.ratelimit.v3 and gRPC health on --grpc-port, and GET /rlconfig, POST /json on the HTTP port; empty: off")
	e.Int(&r.port, "grpc-port", "RATEMESH_GRPC_PORT", 8089, "gRPC port of the Envoy rate limit service (with --rls-config); 0: any free port")
	e.Bool(&r.shadow, "rls-shadow", "RATEMESH_RLS_SHADOW", false, "rate limit service in shadow mode: answer OK to every request and only count in metrics what would have been denied")
	e.String(&r.headers, "rls-headers", "RATEMESH_RLS_HEADERS", "none", "headers the rate limit service asks Envoy to add: none, ratelimit (RateLimit-Limit, -Remaining, -Reset) or x-ratelimit (X-RateLimit-*)")
	e.Duration(&r.interval, "rls-reload-interval", "RATEMESH_RLS_RELOAD_INTERVAL", time.Second, "how often --rls-config is read for changes")
	b := &r.bounds
	e.Int(&b.maxStreams, "grpc-max-concurrent-streams", "RATEMESH_GRPC_MAX_CONCURRENT_STREAMS", defaultGRPCMaxStreams, "gRPC calls one connection may have open at once (HTTP/2 MAX_CONCURRENT_STREAMS)")
	e.Int(&b.maxConns, "grpc-max-connections", "RATEMESH_GRPC_MAX_CONNECTIONS", defaultGRPCMaxConns, "gRPC connections open at once; more wait in the kernel's queue")
	e.Int(&b.maxRecv, "grpc-max-recv-bytes", "RATEMESH_GRPC_MAX_RECV_BYTES", defaultGRPCMaxRecv, "largest gRPC request; larger ones are refused with RESOURCE_EXHAUSTED")
	e.Int(&b.maxInFlight, "grpc-max-inflight-bytes", "RATEMESH_GRPC_MAX_INFLIGHT_BYTES", defaultGRPCMaxInFlight, "bytes of gRPC requests being read, decoded or decided at once (a request being read counts as --grpc-max-recv-bytes until decoded); more wait; at least --grpc-max-recv-bytes")
	e.Duration(&b.readTimeout, "grpc-read-timeout", "RATEMESH_GRPC_READ_TIMEOUT", grpcguard.DefaultReadTimeout, "time a gRPC request may take to arrive once its share of --grpc-max-inflight-bytes is taken; a slower one fails with DEADLINE_EXCEEDED")
	e.Duration(&b.maxOverride, "rls-max-override-period", "RATEMESH_RLS_MAX_OVERRIDE_PERIOD", rls.DefaultMaxOverridePeriod, "longest window a descriptor's own limit may choose; longer ones are refused")
}

// check refuses bounds that bound nothing.
func (b *grpcBounds) check() error {
	switch {
	case b.maxStreams < 1:
		return fmt.Errorf("--grpc-max-concurrent-streams %d: want at least 1", b.maxStreams)
	case b.maxConns < 1:
		return fmt.Errorf("--grpc-max-connections %d: want at least 1", b.maxConns)
	case b.maxRecv < 1:
		return fmt.Errorf("--grpc-max-recv-bytes %d: want at least 1", b.maxRecv)
	case int64(b.maxInFlight) < rls.MaxWeight(b.maxRecv):
		return fmt.Errorf("--grpc-max-inflight-bytes %d: want at least %d, what one request of --grpc-max-recv-bytes (%d) may hold while it is decided",
			b.maxInFlight, rls.MaxWeight(b.maxRecv), b.maxRecv)
	case b.readTimeout <= 0:
		return fmt.Errorf("--grpc-read-timeout %v: want a positive duration", b.readTimeout)
	case b.maxOverride <= 0 || b.maxOverride > bucket.MaxPeriod:
		return fmt.Errorf("--rls-max-override-period %v: want a positive duration of at most %v", b.maxOverride, bucket.MaxPeriod)
	}
	return nil
}

// serverOptions are the gRPC server's bounds.
func (b *grpcBounds) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(uint32(b.maxStreams)), grpc.MaxRecvMsgSize(b.maxRecv),
		grpc.InitialWindowSize(grpcWindow), grpc.InitialConnWindowSize(grpcWindow),
	}
}

// headerNames reads --rls-headers.
func (r *rlsOptions) headerNames() (rls.HeaderNames, error) {
	switch r.headers {
	case "", "none":
		return rls.HeaderNames{}, nil
	case "ratelimit":
		return rls.RateLimitHeaders(), nil
	case "x-ratelimit":
		return rls.XRateLimitHeaders(), nil
	}
	return rls.HeaderNames{}, fmt.Errorf("--rls-headers %q: want none, ratelimit or x-ratelimit", r.headers)
}

// preflight checks the service's flags and loads --rls-config once, so
// that a bad config stops the command before a node starts.
func (r *rlsOptions) preflight() error {
	if r.config == "" {
		return nil
	}
	if r.interval <= 0 {
		return fmt.Errorf("--rls-reload-interval %v: want a positive duration", r.interval)
	}
	if _, err := r.headerNames(); err != nil {
		return err
	}
	if err := r.bounds.check(); err != nil {
		return err
	}
	if _, err := rls.LoadPath(r.config); err != nil {
		return fmt.Errorf("--rls-config: %w", err)
	}
	return nil
}

// rlsServer is a node's running rate limit service. A nil *rlsServer
// (no --rls-config) does nothing.
type rlsServer struct {
	svc    *rls.Service
	srv    *grpc.Server
	ln     net.Listener
	watch  *refusalWatch      // calls refused for their token; nil: open API
	cancel context.CancelFunc // stops the reloader
	wg     sync.WaitGroup     // the server and the reloader
}

// startRLS loads --rls-config and serves the rate limit service of node
// on --bind:--grpc-port.
func startRLS(node *ratemesh.Node, o *options, log *slog.Logger) (*rlsServer, error) {
	r := &o.rls
	if r.config == "" {
		return nil, nil
	}
	headers, err := r.headerNames()
	if err != nil {
		return nil, err
	}
	if err := r.bounds.check(); err != nil {
		return nil, err
	}
	cfg, err := rls.LoadPath(r.config)
	if err != nil {
		return nil, fmt.Errorf("--rls-config: %w", err)
	}
	// The guard weighs requests with the service, and the service's POST
	// /json shares the guard's budget.
	var svc *rls.Service
	guards, err := newGuards(&r.bounds, func(raw []byte, m any) (int64, error) { return svc.Weigh(raw, m) }, node.Registry(), log)
	if err != nil {
		return nil, err
	}
	svc, err = rls.New(node, cfg, rls.Options{Shadow: r.shadow, Headers: headers, Registerer: node.Registry(), Logger: log,
		MaxOverridePeriod: r.bounds.maxOverride, Budget: guards.rls, Observer: statsObserver{o.http.stats},
		NotServing: true})
	if err != nil {
		return nil, err
	}
	opts, watch, err := o.http.auth.grpcOptions(node.Registry(), log)
	if err != nil {
		return nil, err
	}
	// Recovery first, so that it also covers the interceptors after it.
	opts = append(append(guards.rls.ServerOptions(), opts...), o.tls.grpcOptions()...)
	opts = append(append(opts, r.bounds.serverOptions()...), rls.ServerOptions()...)
	ln, err := net.Listen("tcp", net.JoinHostPort(o.bind, strconv.Itoa(r.port)))
	if err != nil {
		return nil, fmt.Errorf("--grpc-port %d: %w", r.port, err)
	}
	s := &rlsServer{svc: svc, srv: grpc.NewServer(opts...), ln: connlimit.New(ln, connlimit.Config{Max: r.bounds.maxConns}), watch: watch}
	svc.Register(guards.rls.Registrar(s.srv))
	svc.RegisterHealth(guards.health.Registrar(s.srv))
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	reloader := rls.NewReloader(svc, r.config, log)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("rls: grpc server", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		reloader.Run(ctx, r.interval)
	}()
	log.Info("rls: Envoy rate limit service up", "grpc", ln.Addr().String(), "config", r.config, "domains", cfg.Domains())
	return s, nil
}

// statsObserver puts the rate limit service's decisions in the node's
// stats, beside the HTTP API's: the dashboard's charts, top denied keys
// (under the rule's path) and shadow denials.
type statsObserver struct{ stats *nodeapi.Stats }

func (o statsObserver) Decided(now time.Time, d rls.Decision) {
	switch {
	case d.Allowed:
		o.stats.RecordAllowed(now)
	case d.Shadow:
		o.stats.RecordShadowDenied(now, d.Rule, d.Status.Limit.String())
	default:
		o.stats.RecordDenied(now, d.Key, d.Rule, &d.Status)
	}
}

// guards are the gRPC server's: the rate limit service's requests share
// the in-flight budget; health checks have a budget of their own (two
// requests of the largest size), so that they are answered while
// hostile requests fill the service's.
type guards struct{ rls, health *grpcguard.Guard }

func newGuards(b *grpcBounds, weigh func([]byte, any) (int64, error), reg prometheus.Registerer, log *slog.Logger) (guards, error) {
	main, err := grpcguard.New(grpcguard.Config{MaxRecvMsgSize: b.maxRecv, MaxInFlightBytes: int64(b.maxInFlight),
		ReadReserve: rls.MaxWeight(b.maxRecv), ReadTimeout: b.readTimeout, Weigh: weigh, Registerer: reg, Logger: log})
	if err != nil {
		return guards{}, err
	}
	health, err := grpcguard.New(grpcguard.Config{MaxRecvMsgSize: b.maxRecv, MaxInFlightBytes: 2 * int64(b.maxRecv), ReadTimeout: b.readTimeout, Logger: log})
	return guards{main, health}, err
}

// Addr is where the gRPC server listens; "" without one.
func (s *rlsServer) Addr() string {
	if s == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// routes adds GET /rlconfig and POST /json to the node's HTTP API.
func (s *rlsServer) routes(e *echo.Echo) {
	if s == nil {
		return
	}
	e.GET("/rlconfig", echo.WrapHandler(s.svc.ConfigHandler()))
	e.POST("/json", echo.WrapHandler(s.svc.JSONHandler()))
}

// warnings are what /readyz and /v1/stats report of the service: that
// every recent call was refused for its token.
func (s *rlsServer) warnings() []string {
	if s == nil {
		return nil
	}
	return s.watch.Warnings()
}

// serving reports SERVING on gRPC health, once the node has joined.
func (s *rlsServer) serving() {
	if s != nil {
		s.svc.SetServing()
	}
}

// drain reports NOT_SERVING from now on, so that Envoy's health checks
// move calls to other nodes while this one still answers them.
func (s *rlsServer) drain() {
	if s != nil {
		s.svc.Shutdown()
	}
}

// stop reports NOT_SERVING, lets calls in flight end within ctx, then
// stops the server and the reloader.
func (s *rlsServer) stop(ctx context.Context) {
	if s == nil {
		return
	}
	s.drain()
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.srv.Stop()
		<-done
	}
	s.wg.Wait()
}
