package rls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/logevery"
	"github.com/ratemesh/ratemesh/internal/textcut"
)

// Checker decides checks; *ratemesh.Node is one.
type Checker interface {
	Check(ctx context.Context, req ratemesh.Request) (ratemesh.Result, error)
}

// ServiceName is the gRPC name of the rate limit service, also the name
// its health is reported under.
const ServiceName = "envoy.service.ratelimit.v3.RateLimitService"

// Defaults of Options.
const (
	DefaultMaxDescriptors = 1024
	DefaultMaxEntries     = 64
	DefaultParallel       = 32
	DefaultNearLimitRatio = 0.8
	// DefaultMaxOverridePeriod is the longest window a descriptor's own
	// limit may have, as for a /v1/check limit.
	DefaultMaxOverridePeriod = bucket.DefaultMaxClientPeriod
)

// Options tune a Service. The zero value is the reference's defaults:
// no global shadow mode, no response headers, near limit at 80 %.
type Options struct {
	// Shadow answers OK to every request, and counts in metrics what it
	// would have denied (the reference's SHADOW_MODE).
	Shadow bool
	// NearLimitRatio is the share of a limit above which hits count as
	// near the limit in metrics; 0 means DefaultNearLimitRatio.
	NearLimitRatio float64
	// Headers, when its names are set, adds the limit, remaining and
	// reset of the descriptor closest to its limit to every response
	// (response_headers_to_add). Off by default, as in the reference.
	Headers HeaderNames
	// MaxDescriptors bounds the descriptors of one request and MaxEntries
	// the entries of one descriptor; 0 means the defaults. A request over
	// either is refused with InvalidArgument.
	MaxDescriptors, MaxEntries int
	// Parallel bounds the descriptors of one request checked at once; 0
	// means DefaultParallel.
	Parallel int
	// MaxOverridePeriod bounds the window of a limit a descriptor carries
	// (unit × unit_multiplier); a longer one is refused with
	// InvalidArgument. 0 means DefaultMaxOverridePeriod; at most
	// bucket.MaxPeriod.
	MaxOverridePeriod time.Duration
	// Registerer receives the service's metrics; nil: no metrics.
	Registerer prometheus.Registerer
	// Logger receives reloads and failures; nil: discarded.
	Logger *slog.Logger
	// Clock is the time duration_until_reset is measured from; nil:
	// time.Now. It should be the clock of the Checker.
	Clock func() time.Time
	// Budget bounds the bytes of POST /json requests being read, decoded
	// and decided, shared with the gRPC server's requests; nil: only
	// MaxJSONBody bounds each.
	Budget Budget
	// Observer is told every checked descriptor's decision, as a node's
	// dashboard shows the HTTP API's; nil: no one.
	Observer Observer
	// NotServing starts gRPC health at NOT_SERVING until SetServing, for
	// a node that has yet to join its cluster: Envoy's health checks then
	// keep calls away from it while it could not decide them.
	NotServing bool
}

// Observer is told the decision of each descriptor that was checked.
type Observer interface {
	Decided(now time.Time, d Decision)
}

// Decision is one checked descriptor's outcome.
type Decision struct {
	// Allowed: within the limit. Otherwise Shadow says whether the denial
	// was let through (a shadow_mode rule, or the service's Shadow).
	Allowed, Shadow bool
	// Key is the descriptor's counter (its routing key); Rule the rule's
	// path, such as edge.user.plan_gold.
	Key, Rule string
	// Status is the counter's limit, what is left and when it resets.
	Status bucket.Status
}

// Budget is a bound on the bytes of requests in flight.
type Budget interface {
	// Acquire takes n bytes, or all of the budget if that is less,
	// waiting until they are free or ctx ends; it returns what it took.
	Acquire(ctx context.Context, n int64) (int64, error)
	// Release gives back n bytes.
	Release(n int64)
}

// HeaderNames are the response headers of Options.Headers; empty names
// add none.
type HeaderNames struct{ Limit, Remaining, Reset string }

// RateLimitHeaders are the reference's header names.
func RateLimitHeaders() HeaderNames {
	return HeaderNames{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}
}

// XRateLimitHeaders are the widespread X- names.
func XRateLimitHeaders() HeaderNames {
	return HeaderNames{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}
}

func (h HeaderNames) on() bool { return h.Limit != "" && h.Remaining != "" && h.Reset != "" }

// Service answers ShouldRateLimit from a Config over a ratemesh cluster.
// Its methods are safe for concurrent use.
type Service struct {
	pb.UnimplementedRateLimitServiceServer
	node    Checker
	opts    Options
	cfg     atomic.Pointer[Config]
	health  *health.Server
	metrics *metrics         // nil without Options.Registerer
	logs    *logevery.Logger // failed checks: a client repeating one must not flood the log
}

// New builds a service deciding with node under cfg. Its metrics are
// registered on o.Registerer, which fails if they already are.
func New(node Checker, cfg *Config, o Options) (*Service, error) {
	if node == nil || cfg == nil {
		return nil, errors.New("rls: New needs a Checker and a Config")
	}
	if o.NearLimitRatio <= 0 || o.NearLimitRatio > 1 {
		o.NearLimitRatio = DefaultNearLimitRatio
	}
	o.MaxDescriptors = orDefault(o.MaxDescriptors, DefaultMaxDescriptors)
	o.MaxEntries = orDefault(o.MaxEntries, DefaultMaxEntries)
	o.Parallel = orDefault(o.Parallel, DefaultParallel)
	if o.MaxOverridePeriod <= 0 {
		o.MaxOverridePeriod = DefaultMaxOverridePeriod
	}
	o.MaxOverridePeriod = min(o.MaxOverridePeriod, bucket.MaxPeriod)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	s := &Service{node: node, opts: o, health: health.NewServer(), logs: logevery.New(o.Logger, logevery.DefaultInterval)}
	if o.Registerer != nil {
		m, err := newMetrics(o.Registerer)
		if err != nil {
			return nil, err
		}
		s.metrics = m
	}
	s.cfg.Store(cfg)
	if o.NotServing {
		s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
		s.health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	} else {
		s.SetServing()
	}
	return s, nil
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Config is the config in force.
func (s *Service) Config() *Config { return s.cfg.Load() }

// SetConfig puts cfg in force for requests that start from now on.
// Counters of descriptors whose path and limit are unchanged carry on.
func (s *Service) SetConfig(cfg *Config) {
	if cfg != nil {
		s.cfg.Store(cfg)
	}
}

// Register registers the rate limit service on r.
func (s *Service) Register(r grpc.ServiceRegistrar) { pb.RegisterRateLimitServiceServer(r, s) }

// StreamWorkers is how many goroutines ServerOptions has a server keep
// to run calls on.
const StreamWorkers = 64

// ServerOptions are options for a grpc.Server of the service: it keeps
// StreamWorkers goroutines to run calls on (grpc.NumStreamWorkers), and
// gives a call a goroutine of its own only when all of them are busy, as
// it does every call without them. A call on a new goroutine outgrows its
// first stack on the way down to the check, and growing a stack copies
// it, frame by frame: about 4 µs of CPU a call under rls-bench.sh's load,
// where a worker's stack has grown already. 64 workers cover 64 calls in
// flight; idle, each holds a few KiB of stack.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.NumStreamWorkers(StreamWorkers)}
}

// RegisterHealth registers the standard gRPC health service on r,
// reporting SERVING for "" and ServiceName until Shutdown.
func (s *Service) RegisterHealth(r grpc.ServiceRegistrar) { healthpb.RegisterHealthServer(r, s.health) }

// SetServing reports SERVING for "" and ServiceName; after Shutdown it
// does nothing.
func (s *Service) SetServing() {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
}

// Shutdown reports NOT_SERVING from now on, so that clients watching
// health move away before the server stops; call it first when draining.
func (s *Service) Shutdown() { s.health.Shutdown() }

// plan is one descriptor's part of a request. A request's plans are
// allocated together, with room in each for the check's status and the
// matches of a descriptor of a few entries, so that deciding a descriptor
// allocates little more than its routing key.
type plan struct {
	rule    *Rule       // nil: no limit applies
	key     string      // the counter's routing key; "" when nothing is checked
	hits    uint64      // the descriptor's hits_addend, for metrics
	cost    int64       // hits as a check's cost
	metric  string      // the metrics' name of the descriptor
	nodes   []*descNode // the matched descriptor of each entry (see lookup)
	res     ratemesh.Result
	err     error
	status  [1]bucket.Status       // res.Statuses: a rule has one counter
	matches [planMatches]*descNode // nodes of a descriptor of few entries
}

// planMatches is how many entries' matches a plan holds itself.
const planMatches = 4

// ShouldRateLimit decides a request: every descriptor is one check on
// its counter's owner, made concurrently.
func (s *Service) ShouldRateLimit(ctx context.Context, req *pb.RateLimitRequest) (*pb.RateLimitResponse, error) {
	if err := s.validate(req); err != nil {
		s.metrics.request("invalid")
		return nil, err
	}
	cfg := s.cfg.Load()
	plans, err := s.plan(cfg, req)
	if err != nil {
		s.metrics.request("invalid")
		return nil, err
	}
	if err := s.checkAll(ctx, plans); err != nil {
		s.metrics.request("error")
		if ctx.Err() == nil {
			s.logs.Warn(time.Now(), "check-failed", "rls: check failed", "domain", textcut.Valid(req.GetDomain(), bucket.MaxQuoted), "err", err)
		}
		return nil, checkError(ctx, err)
	}
	resp := s.respond(plans, s.opts.Clock())
	s.metrics.request(resp.OverallCode.String())
	return resp, nil
}

// checkError is the gRPC status of a failed check.
func checkError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return status.Error(codes.Unavailable, "rls: "+err.Error())
}

// checkAll makes the checks of plans, at most Options.Parallel at once.
// The first failure cancels the others; its error names the descriptor
// (a full counter table refuses new counters only, so the client learns
// which of its descriptors was new). A panic in a check is raised again
// in the caller's goroutine, where the server's recovery answers it: in
// a goroutine of its own it would end the process.
func (s *Service) checkAll(ctx context.Context, plans []plan) error {
	n, last := 0, 0
	for i := range plans {
		if plans[i].key != "" {
			n, last = n+1, i
		}
	}
	switch n {
	case 0:
		return ctx.Err()
	case 1:
		s.check(ctx, &plans[last])
		return descError(last, plans[last].err)
	}
	r := &checkRun{s: s, plans: plans}
	r.ctx, r.cancel = context.WithCancel(ctx)
	defer r.cancel()
	// The caller is one of the workers: a goroutine fewer to start, and
	// its stack has grown already. The others share one func value (a go
	// statement with a receiver would allocate one each).
	worker := r.worker
	for w := min(s.opts.Parallel, n) - 1; w > 0; w-- {
		r.wg.Add(1)
		go worker()
	}
	r.work()
	r.wg.Wait()
	if p := r.panicked.Load(); p != nil {
		panic(*p)
	}
	for i := range plans {
		if err := plans[i].err; err != nil && !errors.Is(err, context.Canceled) {
			return descError(i, err)
		}
	}
	return r.ctx.Err()
}

// checkRun is the state the workers of checkAll share, in one block.
type checkRun struct {
	s        *Service
	plans    []plan
	ctx      context.Context
	cancel   context.CancelFunc
	next     atomic.Int64 // the next plan to take
	wg       sync.WaitGroup
	panicked atomic.Pointer[any]
}

func (r *checkRun) worker() {
	defer r.wg.Done()
	r.work()
}

// work checks plans until none is left; a failure cancels the others.
func (r *checkRun) work() {
	defer r.recover()
	for j := r.next.Add(1) - 1; j < int64(len(r.plans)); j = r.next.Add(1) - 1 {
		p := &r.plans[j]
		if p.key == "" {
			continue
		}
		if r.s.check(r.ctx, p); p.err != nil {
			r.cancel()
		}
	}
}

// recover keeps the first panic of a check for checkAll to raise again,
// and cancels the others.
func (r *checkRun) recover() {
	if p := recover(); p != nil {
		r.keep(p)
	}
}

func (r *checkRun) keep(p any) {
	r.panicked.CompareAndSwap(nil, &p)
	r.cancel()
}

// descError names descriptor i in err; nil stays nil.
func descError(i int, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("descriptors[%d]: %w", i, err)
}

func (s *Service) check(ctx context.Context, p *plan) {
	p.res, p.err = s.node.Check(ctx, ratemesh.Request{
		Key: p.key, Counters: p.rule.counters, Cost: p.cost, StatusBuf: p.status[:0],
	})
}

// hitsOf is a descriptor's hits: its own hits_addend (0 allowed, to only
// look), else the request's, where 0 means 1.
func hitsOf(req *pb.RateLimitRequest, i int) uint64 {
	if h := req.Descriptors[i].GetHitsAddend(); h != nil {
		return h.GetValue()
	}
	return uint64(max(1, req.GetHitsAddend()))
}

// costOf is hits as a check's cost: beyond int64 it cannot fit any limit
// anyway.
func costOf(hits uint64) int64 {
	if hits > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(hits)
}
