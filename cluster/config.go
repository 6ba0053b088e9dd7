package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/ring"
)

// Config is what a Cluster runs with. The root package builds it from the
// user's ratemesh.Config, where every field is documented and every default
// is applied, once: New applies no defaults of its own and refuses a Config
// that lacks a value it needs, so a setting cannot silently mean one thing
// here and another there.
type Config struct {
	Name          string
	BindAddr      string
	AdvertiseAddr string
	GossipPort    int
	RPCPort       int
	HTTPAddr      string
	Secret        []byte
	// TLS, when set, protects the RPC between nodes (both ends present
	// and verify certificates); nil is plain TCP.
	TLS                 *tls.Config
	LocalTimings        bool
	DeadNodeReclaimTime time.Duration
	ForwardTimeout      time.Duration
	DialTimeout         time.Duration
	ProbeInterval       time.Duration
	Ring                ring.Config
	Store               *bucket.Store
	Logger              *slog.Logger
	Metrics             *Metrics
	// Clock returns the current time. Every time the cluster reads goes
	// through it, so tests can pass time in.
	Clock func() time.Time
	// Fallback decides a check when no owner of its key answers (the
	// user's fail policy); FallbackName labels those decisions in metrics
	// and logs.
	Fallback     Fallback
	FallbackName string
	// Replicas is how many of each key's next owners keep a copy of its
	// counters (see replica.go); 0 replicates nothing.
	Replicas int
	// Leases lets this node decide checks of hot keys from slices of
	// their quota (see lease.go).
	Leases bool
	// replicaFlush overrides the replication interval; tests set it long
	// to flush by hand, deterministically.
	replicaFlush time.Duration
	// Resolve resolves the host names of seeds; nil means the system's
	// DNS resolver.
	Resolve Resolver
	// Transport carries the RPC between nodes. Nil means TCP on BindAddr
	// and RPCPort (see NewTCPTransport); tests pass an in-memory one.
	Transport Transport
}

// Fallback decides req without its owner, at now, filling resp.
type Fallback func(now time.Time, req *rpc.CheckRequest, resp *rpc.CheckResponse) error

// validate reports the first missing or impossible setting.
func (cfg *Config) validate() error {
	switch {
	case cfg.Store == nil:
		return errors.New("cluster: Config.Store is nil")
	case cfg.Logger == nil:
		return errors.New("cluster: Config.Logger is nil")
	case cfg.Metrics == nil:
		return errors.New("cluster: Config.Metrics is nil")
	case cfg.Clock == nil:
		return errors.New("cluster: Config.Clock is nil")
	case cfg.Fallback == nil:
		return errors.New("cluster: Config.Fallback is nil")
	case cfg.BindAddr == "":
		return errors.New("cluster: Config.BindAddr is empty")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ForwardTimeout", cfg.ForwardTimeout}, {"DialTimeout", cfg.DialTimeout}, {"ProbeInterval", cfg.ProbeInterval}} {
		if d.v <= 0 {
			return fmt.Errorf("cluster: Config.%s is %v, want > 0", d.name, d.v)
		}
	}
	return nil
}
