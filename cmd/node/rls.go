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
	"google.golang.org/grpc"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/rls"
)

// rlsOptions are the flags of the Envoy rate limit service.
type rlsOptions struct {
	config   string
	port     int
	shadow   bool
	headers  string
	interval time.Duration
}

// register adds the rate limit service's flags.
func (r *rlsOptions) register(e *envFlags) {
	e.String(&r.config, "rls-config", "RATEMESH_RLS_CONFIG", "", "envoyproxy/ratelimit config (a YAML file or a directory of them): serves envoy.service.ratelimit.v3 and gRPC health on --grpc-port, and GET /rlconfig, POST /json on the HTTP port; empty: off")
	e.Int(&r.port, "grpc-port", "RATEMESH_GRPC_PORT", 8089, "gRPC port of the Envoy rate limit service (with --rls-config); 0: any free port")
	e.Bool(&r.shadow, "rls-shadow", "RATEMESH_RLS_SHADOW", false, "rate limit service in shadow mode: answer OK to every request and only count in metrics what would have been denied")
	e.String(&r.headers, "rls-headers", "RATEMESH_RLS_HEADERS", "none", "headers the rate limit service asks Envoy to add: none, ratelimit (RateLimit-Limit, -Remaining, -Reset) or x-ratelimit (X-RateLimit-*)")
	e.Duration(&r.interval, "rls-reload-interval", "RATEMESH_RLS_RELOAD_INTERVAL", time.Second, "how often --rls-config is read for changes")
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
	cfg, err := rls.LoadPath(r.config)
	if err != nil {
		return nil, fmt.Errorf("--rls-config: %w", err)
	}
	svc, err := rls.New(node, cfg, rls.Options{Shadow: r.shadow, Headers: headers, Registerer: node.Registry(), Logger: log})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(o.bind, strconv.Itoa(r.port)))
	if err != nil {
		return nil, fmt.Errorf("--grpc-port %d: %w", r.port, err)
	}
	opts, err := o.http.auth.grpcOptions(node.Registry())
	if err != nil {
		ln.Close()
		return nil, err
	}
	opts = append(opts, o.tls.grpcOptions()...)
	s := &rlsServer{svc: svc, srv: grpc.NewServer(opts...), ln: ln}
	svc.Register(s.srv)
	svc.RegisterHealth(s.srv)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	reloader := rls.NewReloader(svc, r.config, log)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
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
