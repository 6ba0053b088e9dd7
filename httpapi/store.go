package httpapi

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/logevery"
)

// RateLimiterStore implements Echo's middleware.RateLimiterStore over a
// Cluster, so that users of Echo's RateLimiter move to the cluster by
// changing one line:
//
//	e.Use(middleware.RateLimiter(middleware.NewRateLimiterMemoryStore(20)))
//	e.Use(middleware.RateLimiter(httpapi.NewRateLimiterStore(node, bucket.Limit{Amount: 20, Period: time.Second})))
//
// Echo identifies visitors with c.RealIP(), which believes forwarding
// headers from anyone unless e.IPExtractor is set: set it to
// ClientIP.Extractor.
//
// Set the exported fields before the first Allow.
type RateLimiterStore struct {
	// Scope names the counters, so that several stores can share a key.
	// NewRateLimiterStore sets "echo".
	Scope string
	// Strategy is the algorithm of the limits (zero: fixed window).
	Strategy bucket.Strategy
	// Prefix is put before Echo's identifier to make the routing key.
	// NewRateLimiterStore sets "ip:", matching Echo's default extractor.
	Prefix string
	// IPv6Prefix is how many leading bits of an identifier that is an
	// IPv6 address make the key, as in ClientIP; 0 means DefaultIPv6Prefix.
	// An identifier that is an IP address is keyed as ClientIP.Key keys it
	// (zone id dropped, IPv4-mapped as IPv4); any other is used as it is.
	IPv6Prefix int
	// Timeout bounds one check; 0 means one second.
	Timeout time.Duration
	// Logger receives check failures; nil discards them.
	Logger *slog.Logger

	cl     Cluster
	limits []bucket.Limit

	once     sync.Once
	counters []bucket.Counter // built at the first Allow; read-only after
	logs     *logevery.Logger // built at the first Allow
	err      error
}

// NewRateLimiterStore returns a store checking limits under each visitor's
// identifier.
func NewRateLimiterStore(c Cluster, limits ...bucket.Limit) *RateLimiterStore {
	return &RateLimiterStore{Scope: "echo", Prefix: PrefixIP, cl: c, limits: limits}
}

// Allow implements middleware.RateLimiterStore. A configuration error (a
// bad limit) is returned with false, so that Echo's DenyHandler shows it; a
// check that fails after the node's fail policy is refused the same way,
// unless that policy is open (see failure.go), and logged at most once per
// DefaultLogInterval.
func (s *RateLimiterStore) Allow(identifier string) (bool, error) {
	s.once.Do(s.build)
	if s.err != nil {
		return false, s.err
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	key, isIP := ipKey(s.Prefix, identifier, s.IPv6Prefix)
	if !isIP {
		key = keyPart(s.Prefix, identifier)
	}
	res, err := s.cl.Check(ctx, ratemesh.Request{Key: key, Counters: s.counters, Cost: 1})
	if err != nil {
		open := s.cl.FailPolicy() == ratemesh.FailOpen
		s.logs.Warn(time.Now(), "check-failed", "ratemesh: rate-limit check failed", "scope", s.Scope, "allowed", open, "err", err)
		if open {
			return true, nil
		}
		return false, err
	}
	return res.Allowed, nil
}

// build prepares the counters from the fields as they are at the first
// Allow.
func (s *RateLimiterStore) build() {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	s.logs = logevery.New(s.Logger, DefaultLogInterval)
	s.counters = make([]bucket.Counter, len(s.limits))
	for i, l := range s.limits {
		s.counters[i] = bucket.Counter{Scope: s.Scope, Limit: l, Strategy: s.Strategy}
		if err := s.counters[i].Validate(); err != nil {
			s.err = err
			return
		}
	}
}
