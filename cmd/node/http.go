package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/counterapi"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
)

// httpOptions are the settings of the node's HTTP side: the service API,
// the demo and its rate-limit policy.
type httpOptions struct {
	bind           string // set from --bind by parseOptions
	clusterSecret  string // set from --secret by parseOptions
	port           int
	demo           bool
	adminToken     string
	jwtSecret      string
	trustedProxies string
	headers        string
	policyFile     string
	stats          *nodeapi.Stats // the node's, for its service API, demo and rate limit service; nil: echo makes one
	shadow         bool
	ipv6Prefix     int
	limits         serverLimits
	auth           authOptions
	reload         reloadOptions
	hub            *reloader        // set by serve; nil: nothing reloads
	tls            *tlsOptions      // set by parseOptions; nil: plain HTTP
	routes         func(*echo.Echo) // more routes (the rate limit service's); nil: none
	warnings       func() []string  // what /readyz and /v1/stats report (the rate limit service's); nil: none
}

// register adds the HTTP flags.
func (h *httpOptions) register(e *envFlags) {
	e.Int(&h.port, "http-port", "RATEMESH_HTTP_PORT", 8081, "HTTP API port; 0: any free port")
	e.Bool(&h.demo, "demo", "RATEMESH_DEMO", true, "serve the products demo (/products, /login, /orders, ...) on this node; demo logins: free/free-demo, paid/paid-demo, admin/admin-demo")
	e.String(&h.adminToken, "admin-token", "RATEMESH_ADMIN_TOKEN", "", "bearer token for DELETE /v1/keys/{key}; empty: the endpoint is off")
	e.String(&h.jwtSecret, "jwt-secret", "RATEMESH_JWT_SECRET", "", "HS256 secret of the demo's /login tokens (same on every node); empty: derived from --secret, else random per node")
	e.String(&h.trustedProxies, "trusted-proxies", "RATEMESH_TRUSTED_PROXIES", "", "comma-separated proxy CIDRs or IPs whose X-Forwarded-For / X-Real-IP are believed; empty: the TCP peer is the client")
	e.String(&h.headers, "headers", "RATEMESH_HEADERS", "legacy,retry-after,draft", "rate-limit header families to send: legacy (X-RateLimit-*), retry-after, draft (RateLimit, RateLimit-Policy), all or none")
	e.String(&h.policyFile, "policy", "RATEMESH_POLICY", "", "YAML file overriding the demo's default, application and per-route limits and strategies")
	e.Bool(&h.shadow, "shadow", "RATEMESH_SHADOW", false, "dry run: every limit of the policy lets requests through and counts what it would have denied (ratemesh_http_shadow_denials_total); a policy file can do it per route")
	e.Int(&h.ipv6Prefix, "ipv6-prefix", "RATEMESH_IPV6_PREFIX", httpapi.DefaultIPv6Prefix, "leading bits of an IPv6 client address that make its rate-limit key (64: one key per /64; 128: per address)")
	h.limits.register(e)
	h.auth.register(e)
	h.reload.register(e)
}

// preflight checks every HTTP setting that can be wrong (limits, proxies,
// header families, the policy file), so that a mistake stops the command
// before a node has started and joined anything.
func (h *httpOptions) preflight() error {
	if err := h.limits.resolve(); err != nil {
		return err
	}
	if h.ipv6Prefix < 1 || h.ipv6Prefix > 128 {
		return fmt.Errorf("--ipv6-prefix %d: want 1 to 128", h.ipv6Prefix)
	}
	if _, err := httpapi.ParseTrustedProxies(strings.Split(h.trustedProxies, ",")); err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	if _, err := httpapi.ParseHeaders(h.headers); err != nil {
		return fmt.Errorf("--headers: %w", err)
	}
	if h.policyFile != "" {
		if _, err := policyOf(h); err != nil {
			return err
		}
	}
	if err := h.reload.preflight(); err != nil {
		return err
	}
	return h.auth.load()
}

// advertisedAddr is the HTTP address gossiped to the other members.
func (h *httpOptions) advertisedAddr(bind, advertise string) string {
	if advertise != "" {
		bind = advertise
	}
	return net.JoinHostPort(bind, strconv.Itoa(h.port))
}

// httpServer is the node's running HTTP server.
type httpServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when Serve has returned
}

// Addr is the address the server listens on.
func (s *httpServer) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting, waits for requests in flight within ctx, and
// waits for the serving goroutine.
func (s *httpServer) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	<-s.done
	return err
}

// listen binds the HTTP port (--bind, --http-port) for serveHTTP.
func (h *httpOptions) listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(h.bind, strconv.Itoa(h.port)))
	if err != nil {
		return nil, fmt.Errorf("--http-port %d: %w", h.port, err)
	}
	return ln, nil
}

// serveHTTP builds the node's Echo server (service API, and the demo
// unless it is off) and serves it on ln, bound already: the command binds
// it before the node starts, so that the node gossips the real port.
func serveHTTP(node *ratemesh.Node, h *httpOptions, ln net.Listener, log *slog.Logger) (*httpServer, error) {
	if err := h.limits.resolve(); err != nil {
		return nil, err
	}
	e, trusted, err := h.handler(node, log)
	if err != nil {
		return nil, err
	}
	srv := h.limits.server(e)
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	ln = h.limits.listener(ln, trusted)
	if h.tls != nil {
		// Inside the connection caps, so a handshake counts as a connection.
		ln = h.tls.listener(ln)
	}
	s := &httpServer{srv: srv, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	return s, nil
}

// handler builds the node's Echo instance from the options.
// It returns the trusted proxies too, which the connection caps exempt.
func (h *httpOptions) handler(node *ratemesh.Node, log *slog.Logger) (*echo.Echo, []netip.Prefix, error) {
	trusted, err := httpapi.ParseTrustedProxies(strings.Split(h.trustedProxies, ","))
	if err != nil {
		return nil, nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	e, err := h.echo(node, trusted, log)
	return e, trusted, err
}

// echo builds the node's Echo instance for clients behind trusted.
func (h *httpOptions) echo(node *ratemesh.Node, trusted []netip.Prefix, log *slog.Logger) (*echo.Echo, error) {
	headers, err := httpapi.ParseHeaders(h.headers)
	if err != nil {
		return nil, fmt.Errorf("--headers: %w", err)
	}
	policy, err := policyOf(h)
	if err != nil {
		return nil, err
	}
	clients := httpapi.ClientIP{Trusted: trusted, IPv6Prefix: h.ipv6Prefix}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// c.RealIP() must not believe forwarding headers from anyone either.
	e.IPExtractor = clients.Extractor()
	if err := h.auth.use(e, node.Registry()); err != nil {
		return nil, err
	}
	if h.stats == nil {
		h.stats = nodeapi.NewStats()
	}
	err = nodeapi.RegisterService(e, node, nodeapi.ServiceConfig{
		Stats:         h.stats,
		AdminToken:    h.adminToken,
		APITokens:     h.auth.tokens,
		KeyHashSecret: h.derivedSecret(keyHashLabel),
		Registry:      node.Registry(),
		Logger:        log,
		IPv6Prefix:    h.ipv6Prefix,
		Warnings:      h.warnings,
	})
	if err != nil {
		return nil, err
	}
	if err := counterapi.Register(e, node, counterapi.Config{}); err != nil {
		return nil, err
	}
	if h.routes != nil {
		h.routes(e)
	}
	if !h.demo {
		return e, nil
	}
	return e, h.registerDemo(e, node, policy, clients, headers, log)
}

// derivedSecret is a secret derived from the cluster secret for one use
// (label), the same on every node of the cluster; nil without --secret.
func (h *httpOptions) derivedSecret(label string) []byte {
	if h.clusterSecret == "" {
		return nil
	}
	mac := hmac.New(sha256.New, []byte(h.clusterSecret))
	mac.Write([]byte(label))
	return mac.Sum(nil)
}

// keyHashLabel derives the secret under which /v1/stats hides client keys
// from callers without a token: the same on every node with the same
// --secret, so that a key is one row of the cluster's top.
const keyHashLabel = "ratemesh stats key hash"

// demoJWTSecret is --jwt-secret, else one derived from the cluster secret
// (so every node of a cluster verifies every other's tokens), else a random
// one: tokens then work only on the node that issued them.
func (h *httpOptions) demoJWTSecret(log *slog.Logger) []byte {
	if h.jwtSecret != "" {
		return []byte(h.jwtSecret)
	}
	if h.clusterSecret != "" {
		return h.derivedSecret("ratemesh demo jwt secret")
	}
	b := make([]byte, 32)
	rand.Read(b)
	log.Warn("no --jwt-secret or --secret: demo tokens are valid on this node only")
	return b
}
