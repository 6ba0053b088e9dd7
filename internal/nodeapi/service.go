package nodeapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/logevery"
	"github.com/ratemesh/ratemesh/internal/ratehttp"
)

// Node is what the service API needs from a node. *ratemesh.Node
// satisfies it.
type Node interface {
	// Check decides a check on the owner of its key.
	Check(ctx context.Context, req ratemesh.Request) (ratemesh.Result, error)
	// Reset forgets every counter of a routing key, cluster-wide.
	Reset(ctx context.Context, key string) error
	// Members lists the members this node knows, itself included.
	Members() []ratemesh.Member
	// Owner names the member that owns a routing key.
	Owner(key string) (ratemesh.Member, bool)
	// Name is this node's name.
	Name() string
	// Ready reports whether the node has joined and built its ring.
	Ready() bool
}

// ServiceConfig configures the node's HTTP service API. The zero value
// serves everything but /metrics and the admin endpoint.
type ServiceConfig struct {
	// AdminToken guards DELETE /v1/keys/:key, presented as
	// "Authorization: Bearer <token>". Empty turns the endpoint off (404).
	AdminToken string
	// Registry is served on /metrics and receives the service's own
	// metrics; usually the node's Registry. nil: no /metrics.
	Registry *prometheus.Registry
	// MaxBody bounds a /v1/check body in bytes; 0 means 1 MiB.
	MaxBody int64
	// MaxBatch bounds the checks of one /v1/check batch; 0 means 1000.
	MaxBatch int
	// MaxPeriod bounds the period of the limits /v1/check clients send: a
	// client choosing ten-year windows would make the owner keep its
	// counters for ten years. 0 means bucket.DefaultMaxClientPeriod (24h).
	MaxPeriod time.Duration
	// MaxMovingWindowHits bounds the moving-window hits (cost × the
	// moving-window limits of a check, summed over a batch) of one
	// /v1/check request: each hit is 8 bytes the owner keeps for the
	// window. 0 means bucket.MaxMovingWindowHitsPerCheck (16,384), the
	// most one check may log in any case.
	MaxMovingWindowHits int64
	// IPv6Prefix is how many leading bits of an IPv6 client address
	// identify one client to the admin-token throttle, as
	// ClientIP.IPv6Prefix does for limits; 0 means DefaultIPv6Prefix.
	IPv6Prefix int
	// Logger receives failures; nil discards them.
	Logger *slog.Logger
	// Stats records the /v1/check decisions and is what GET /v1/stats and
	// GET /v1/limits report; give the node's middlewares the same one.
	// nil: neither endpoint is served.
	Stats *Stats
	// APITokens are the check API's tokens (BearerAuth's), if it has any.
	// A caller of GET /v1/stats presenting one of them or the admin token
	// sees client keys as they are; anyone else sees each as HideKey of
	// it. nil: only the admin token shows them.
	APITokens *Tokens
	// KeyHashSecret is the secret of HideKey; give every member the same,
	// so that one key is one row of the cluster's top. nil: a random one.
	KeyHashSecret []byte
	// Now is the clock reset times are reported against, and failed
	// admin-token attempts are throttled by; nil: time.Now.
	Now func() time.Time
	// Warnings lists what is wrong with the node while it still serves,
	// such as a gRPC service that refuses every call it gets: GET /readyz
	// and the node's entry of GET /v1/stats show them. nil: none.
	Warnings func() []string
}

// service serves the API of one node.
type service struct {
	node       Node
	admin      [sha256.Size]byte
	maxBody    int64
	maxBatch   int
	maxPeriod  time.Duration
	maxHits    int64 // moving-window hits per request
	ipv6Prefix int
	log        *slog.Logger
	logs       *logevery.Logger
	now        func() time.Time
	limits     *ratehttp.LimitCache[[]bucket.Limit] // parsed /v1/check limit strings
	requests   *prometheus.CounterVec
	stats      *Stats
	shown      prometheus.Gatherer // the node metrics /v1/stats shows; nil: none
	peers      *http.Client        // fetches the other members' /v1/stats
	cache      statsCache          // parts of /v1/stats, built once a second
	apiTokens  *Tokens             // show client keys in /v1/stats, with the admin token
	keySecret  []byte              // of HideKey
	warnings   func() []string     // nil: none

	adminFailures failureThrottle // of DELETE /v1/keys
}

// RegisterService mounts the node's HTTP service API on r:
//
//	POST   /v1/check            check one {"key","limits","cost","strategy","scope"} or a JSON array of them
//	GET    /v1/cluster/members  the members this node knows
//	GET    /v1/cluster/owner    ?key=…: the member owning a routing key
//	DELETE /v1/keys/:key        reset a routing key cluster-wide (admin token)
//	GET    /healthz             liveness; never limited
//	GET    /readyz              200 once joined with a ring, else 503; cfg.Warnings in "warnings"
//	GET    /metrics             Prometheus exposition of cfg.Registry
//	GET    /v1/stats            the node's and cluster's activity (with cfg.Stats)
//	GET    /v1/limits           ?key=…: the policy's limits and the key's state (with cfg.Stats)
//	GET    /ui/                 the dashboard, reading /v1/stats (with cfg.Stats)
//
// Errors are JSON {"error": "..."}; bad input to /v1/check is 400 with the
// offending field in "field".
func RegisterService(r httpapi.Routes, node Node, cfg ServiceConfig) error {
	if node == nil {
		return errors.New("nodeapi: RegisterService: node is nil")
	}
	s := &service{
		node:       node,
		maxBody:    cfg.MaxBody,
		maxBatch:   cfg.MaxBatch,
		maxPeriod:  cfg.MaxPeriod,
		ipv6Prefix: cfg.IPv6Prefix,
		log:        cfg.Logger,
		now:        cfg.Now,
		limits:     ratehttp.NewLimitCache(ratehttp.ParseLimits),
		stats:      cfg.Stats,
		shown:      statsGatherer(node, cfg.Registry),
		apiTokens:  cfg.APITokens,
		keySecret:  keyHashSecret(cfg.KeyHashSecret),
		warnings:   cfg.Warnings,
	}
	if s.maxBody <= 0 {
		s.maxBody = 1 << 20
	}
	if s.maxBatch <= 0 {
		s.maxBatch = 1000
	}
	if s.maxHits = cfg.MaxMovingWindowHits; s.maxHits <= 0 {
		s.maxHits = bucket.MaxMovingWindowHitsPerCheck
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.logs = logevery.New(s.log, logevery.DefaultInterval)
	if s.now == nil {
		s.now = time.Now
	}
	var reg prometheus.Registerer // a nil *Registry must stay a nil interface
	if cfg.Registry != nil {
		reg = cfg.Registry
	}
	var err error
	s.requests, err = ratehttp.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ratemesh_http_service_requests_total",
		Help: "Requests to the node's HTTP service API, by endpoint and status code.",
	}, []string{"endpoint", "code"}))
	if err != nil {
		return err
	}
	r.GET("/healthz", s.count("healthz", s.healthz))
	r.GET("/readyz", s.count("readyz", s.readyz))
	r.POST("/v1/check", s.count("check", s.check))
	r.GET("/v1/cluster/members", s.count("members", s.members))
	r.GET("/v1/cluster/owner", s.count("owner", s.owner))
	if cfg.AdminToken != "" {
		s.admin = sha256.Sum256([]byte(cfg.AdminToken))
		r.DELETE("/v1/keys/:key", s.count("reset", s.reset))
	} else {
		r.DELETE("/v1/keys/:key", s.count("reset", adminOff))
	}
	if cfg.Stats != nil {
		s.peers = peerClient()
		r.GET("/v1/stats", s.count("stats", s.statsHandler))
		r.GET("/v1/limits", s.count("limits", s.limitsHandler))
		registerUI(r)
	}
	if cfg.Registry != nil {
		r.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{})))
	}
	return nil
}

// count wraps h to count its answers.
func (s *service) count(endpoint string, h echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := h(c)
		code := c.Response().Status
		var he *echo.HTTPError
		if errors.As(err, &he) {
			code = he.Code
		}
		s.requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
		return err
	}
}

// HealthResponse is the body of GET /healthz and GET /readyz.
type HealthResponse struct {
	Status string `json:"status"`
	Node   string `json:"node"`
	// Warnings are ServiceConfig.Warnings, on /readyz: the node is ready
	// but something it serves is not working as meant.
	Warnings []string `json:"warnings,omitempty"`
}

func (s *service) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, HealthResponse{Status: "ok", Node: s.node.Name()})
}

func (s *service) readyz(c echo.Context) error {
	if !s.node.Ready() {
		return c.JSON(http.StatusServiceUnavailable, HealthResponse{Status: "not ready", Node: s.node.Name(), Warnings: s.currentWarnings()})
	}
	return c.JSON(http.StatusOK, HealthResponse{Status: "ready", Node: s.node.Name(), Warnings: s.currentWarnings()})
}

// currentWarnings are ServiceConfig.Warnings as they are now; nil without.
func (s *service) currentWarnings() []string {
	if s.warnings == nil {
		return nil
	}
	return s.warnings()
}

// MemberResponse is a cluster member as the service API shows it.
type MemberResponse struct {
	Name     string `json:"name"`
	RPCAddr  string `json:"rpc_addr"`
	HTTPAddr string `json:"http_addr"`
	State    string `json:"state"`
	Self     bool   `json:"self"`
}

// MembersResponse is the body of GET /v1/cluster/members.
type MembersResponse struct {
	Node    string           `json:"node"` // the member that answered
	Members []MemberResponse `json:"members"`
}

// OwnerResponse is the body of GET /v1/cluster/owner.
type OwnerResponse struct {
	Node  string         `json:"node"` // the member that answered
	Key   string         `json:"key"`
	Owner MemberResponse `json:"owner"`
}

func toMember(m ratemesh.Member) MemberResponse {
	return MemberResponse{Name: m.Name, RPCAddr: m.RPCAddr, HTTPAddr: m.HTTPAddr, State: string(m.State), Self: m.Self}
}

func (s *service) members(c echo.Context) error {
	ms := s.node.Members()
	out := MembersResponse{Node: s.node.Name(), Members: make([]MemberResponse, len(ms))}
	for i, m := range ms {
		out.Members[i] = toMember(m)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *service) owner(c echo.Context) error {
	key := c.QueryParam("key")
	if key == "" {
		return c.JSON(http.StatusBadRequest, FieldErrorResponse{Error: "key: missing", Field: "key"})
	}
	m, ok := s.node.Owner(key)
	if !ok {
		return c.JSON(http.StatusServiceUnavailable, httpapi.ErrorResponse{Error: "no owner: the ring is empty"})
	}
	return c.JSON(http.StatusOK, OwnerResponse{Node: s.node.Name(), Key: key, Owner: toMember(m)})
}

// ResetResponse is the body of DELETE /v1/keys/:key.
type ResetResponse struct {
	Node  string `json:"node"`
	Reset string `json:"reset"` // the routing key whose counters were removed
}

func (s *service) reset(c echo.Context) error {
	now, addr := s.now(), c.RealIP()
	client := s.adminClient(c)
	if ok, wait := s.adminFailures.allow(now, client); !ok {
		c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(int(ratehttp.CeilSeconds(wait))))
		return c.JSON(http.StatusTooManyRequests, httpapi.ErrorResponse{Error: "too many failed admin-token attempts; try again later"})
	}
	if !s.authorized(c.Request()) {
		s.logs.Warn(now, "admin-token", "ratemesh: wrong or missing admin token", "client", addr)
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="ratemesh"`)
		return c.JSON(http.StatusUnauthorized, httpapi.ErrorResponse{Error: adminRefusal(c.Request())})
	}
	s.adminFailures.succeeded(now, client)
	key, err := url.PathUnescape(c.Param("key"))
	if err != nil || key == "" {
		return c.JSON(http.StatusBadRequest, FieldErrorResponse{Error: "key: not a valid path segment", Field: "key"})
	}
	// The key's counters and its /v1/check counters both.
	err = errors.Join(s.node.Reset(c.Request().Context(), key), s.node.Reset(c.Request().Context(), CheckKeyPrefix+key))
	if err != nil {
		s.logs.Warn(now, "reset-failed", "ratemesh: reset failed", "err", err)
		return c.JSON(http.StatusServiceUnavailable, httpapi.ErrorResponse{Error: "reset failed: " + err.Error()})
	}
	return c.JSON(http.StatusOK, ResetResponse{Node: s.node.Name(), Reset: key})
}

// adminRefusal says why a request was refused the admin endpoint: it
// presented no bearer token, or another one than the node's.
func adminRefusal(r *http.Request) string {
	if _, ok := strings.CutPrefix(r.Header.Get(echo.HeaderAuthorization), "Bearer "); !ok {
		return "admin token required"
	}
	return "admin token wrong: it is not this node's admin token"
}

// adminOff answers DELETE /v1/keys/:key on a node without an admin token.
func adminOff(c echo.Context) error {
	return c.JSON(http.StatusNotFound, httpapi.ErrorResponse{Error: AdminOffMessage})
}

// AdminOffMessage is the error of DELETE /v1/keys/:key on a node without
// ServiceConfig.AdminToken.
const AdminOffMessage = "admin endpoint off: this node has no admin token, so keys cannot be reset through it"

// authorized compares the bearer token with the admin token in constant
// time (over hashes, so that not even the length leaks).
func (s *service) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get(echo.HeaderAuthorization), "Bearer ")
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], s.admin[:]) == 1
}
