package ratemesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/ring"
)

// Config configures a Node. The zero value is usable: a node on 127.0.0.1
// with ports chosen by the system, LAN gossip timings, no secret, and the
// local fail policy. DefaultConfig and LocalConfig are presets to start from.
type Config struct {
	// Name is the node's unique name in the cluster. Empty means the
	// node's RPC address (host:port), which is unique on its host. Two
	// nodes with one name are refused by Join.
	Name string

	// BindAddr is the IP address gossip and RPC listen on. Empty means
	// 127.0.0.1: a node listens on other interfaces only when told to.
	BindAddr string
	// AdvertiseAddr is the IP address other nodes reach this one at, when
	// it differs from BindAddr (NAT, 0.0.0.0). Empty means BindAddr.
	AdvertiseAddr string
	// GossipPort is the memberlist TCP and UDP port; 0 lets the system
	// choose a free one (see Node.GossipAddr).
	GossipPort int
	// RPCPort is the TCP port of the node's RPC server; 0 lets the system
	// choose.
	RPCPort int
	// HTTPAddr is the address of this node's HTTP API, gossiped so that
	// members can point clients at each other. ratemesh does not listen on
	// it itself.
	HTTPAddr string

	// Secret is the cluster secret. When set, RPC connections start with
	// a mutual HMAC challenge and gossip is encrypted with a key derived
	// from it; nodes with another secret cannot join or be reached. Empty
	// means no authentication: only for a trusted network.
	Secret string

	// PeerTLS, when set, runs the RPC between nodes over TLS with this
	// configuration, used both to serve and to dial: it must present this
	// node's certificate and verify every peer's (mutual TLS), as the
	// node command's --tls-ca does. The Secret's handshake still runs
	// inside it. Nil means plain TCP.
	PeerTLS *tls.Config

	// LocalTimings selects memberlist's local-network preset (failure
	// detection in about a second) instead of its LAN preset (a few
	// seconds). Tests and single-host clusters use it.
	LocalTimings bool
	// DeadNodeReclaimTime is how long after a node is declared dead its
	// name may rejoin from another address. 0 means never (memberlist's
	// default); a node restarted on its old address rejoins regardless.
	DeadNodeReclaimTime time.Duration
	// ForwardTimeout bounds one forwarded check. A peer that does not
	// answer in time is routed around at once (see FailPolicy). 0 means
	// DefaultForwardTimeout.
	ForwardTimeout time.Duration
	// DialTimeout bounds connecting to a peer. 0 means ForwardTimeout.
	DialTimeout time.Duration
	// ProbeInterval is how often a peer this node routes around is pinged
	// to see whether it answers again. 0 means DefaultProbeInterval.
	ProbeInterval time.Duration
	// Seeds are gossip addresses (host:port) of members of the cluster to
	// join at Start. Until the join is done the node is not Ready and its
	// checks wait for the join (up to their context, then ErrNotJoined):
	// it never decides alone a key the cluster owns elsewhere. If the join
	// has not succeeded within JoinTimeout the node logs it and stays
	// unready (see WaitJoined). Empty: the node is the first of its
	// cluster and decides at once; Node.Join may still join it later.
	Seeds []string
	// JoinTimeout bounds the retries of joining Seeds. 0 means
	// DefaultJoinTimeout.
	JoinTimeout time.Duration
	// RejoinInterval is how often a joined node resolves Seeds again and
	// joins the addresses among them that are not live members: clusters
	// that formed apart merge, a node the others declared dead comes
	// back, a cluster whose seeds all restarted finds them again. Seeds
	// may be DNS names (a Kubernetes headless Service). 0 means
	// DefaultRejoinInterval; negative turns rejoining off.
	RejoinInterval time.Duration
	// Resolve resolves the host names in Seeds to IPs (or to host:port
	// pairs, which keep their own port). Nil means the system's DNS
	// resolver; tests pass a function they control.
	Resolve func(ctx context.Context, host string) ([]string, error)
	// Replicas is how many of each key's next owners (the nodes its
	// checks fail over to) keep a copy of its counters, sent off the
	// check's path within about 5 ms of a change: when an owner crashes,
	// the next owner continues from the copy instead of from zero. 0
	// replicates nothing; the presets set DefaultReplicas.
	Replicas int
	// Leases lets a node that forwards many checks of one key (about 200
	// a second) decide them itself from a slice of the key's quota its
	// owner counted ahead, giving back what it does not use. Admissions
	// never exceed the limit; only fixed-window counters are leased. The
	// presets turn it on; false forwards every check.
	Leases bool
	// FailPolicy decides checks no owner answers. The zero value is
	// FailLocal.
	FailPolicy FailPolicy

	// Ring tunes key placement; every node must use the same. The zero
	// value selects ring's defaults.
	Ring ring.Config
	// Store tunes the counter table. The zero value selects bucket's
	// defaults.
	Store bucket.StoreConfig
	// DataDir keeps the node's counters across restarts: they are loaded
	// at Start, written every SnapshotInterval and at Close (after the
	// leave has handed off what others now own). It is created if
	// missing; New fails when it is not writable. Empty: memory only.
	DataDir string
	// SnapshotInterval is how often the counters are written to DataDir;
	// a crash loses at most the hits of one interval. 0 means
	// DefaultSnapshotInterval.
	SnapshotInterval time.Duration
	// SweepInterval is how often expired counters are removed. 0 means
	// DefaultSweepInterval.
	SweepInterval time.Duration

	// Logger receives the node's logs. Nil discards them.
	Logger *slog.Logger
	// Registerer receives the node's Prometheus metrics. Nil means a new
	// registry owned by the node (see Node.Registry); never the global one.
	Registerer prometheus.Registerer
	// Clock returns the current time for every decision and timer of the
	// node. Nil means time.Now; tests pass time in.
	Clock func() time.Time
}

// Defaults for zero fields of Config.
const (
	DefaultBindAddr       = "127.0.0.1"
	DefaultForwardTimeout = 50 * time.Millisecond
	DefaultProbeInterval  = 250 * time.Millisecond
	DefaultSweepInterval  = time.Second
	DefaultJoinTimeout    = 30 * time.Second
	DefaultRejoinInterval = 30 * time.Second
	DefaultReplicas       = 1
	// MaxReplicas bounds Config.Replicas: every replica costs each owner
	// one more stream of changes.
	MaxReplicas = 3
	// DefaultSnapshotInterval: a snapshot of a million keys takes about
	// 0.3 s of one core (ten million: a few seconds), so a much shorter
	// default would cost a large node a lot.
	DefaultSnapshotInterval = 10 * time.Second
)

// withDefaults checks cfg and fills its zero fields: the one place where
// the node's defaults are applied.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.SweepInterval < 0 || cfg.ForwardTimeout < 0 || cfg.DialTimeout < 0 || cfg.ProbeInterval < 0 || cfg.DeadNodeReclaimTime < 0 || cfg.JoinTimeout < 0 || cfg.SnapshotInterval < 0 {
		return cfg, errors.New("ratemesh: negative duration in Config")
	}
	if cfg.GossipPort < 0 || cfg.GossipPort > 65535 || cfg.RPCPort < 0 || cfg.RPCPort > 65535 {
		return cfg, fmt.Errorf("ratemesh: ports must be 0..65535 (gossip %d, rpc %d)", cfg.GossipPort, cfg.RPCPort)
	}
	if cfg.GossipPort != 0 && cfg.GossipPort == cfg.RPCPort {
		return cfg, fmt.Errorf("ratemesh: gossip and RPC ports are both %d", cfg.RPCPort)
	}
	if cfg.Replicas < 0 || cfg.Replicas > MaxReplicas {
		return cfg, fmt.Errorf("ratemesh: Replicas is %d, want 0..%d", cfg.Replicas, MaxReplicas)
	}
	if cfg.FailPolicy > FailClosed {
		return cfg, fmt.Errorf("ratemesh: unknown fail policy %d", cfg.FailPolicy)
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = DefaultBindAddr
	}
	if cfg.ForwardTimeout == 0 {
		cfg.ForwardTimeout = DefaultForwardTimeout
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = cfg.ForwardTimeout
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.RejoinInterval == 0 {
		cfg.RejoinInterval = DefaultRejoinInterval
	}
	if cfg.JoinTimeout == 0 {
		cfg.JoinTimeout = DefaultJoinTimeout
	}
	if cfg.SnapshotInterval == 0 {
		cfg.SnapshotInterval = DefaultSnapshotInterval
	}
	if cfg.DataDir != "" {
		if err := checkDataDir(cfg.DataDir); err != nil {
			return cfg, err
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return cfg, nil
}

// DefaultConfig returns the preset for a node on a LAN: 127.0.0.1,
// gossip on 7946, RPC on 9091, memberlist's LAN timings, FailLocal, and the
// Default* values above. The node command's flags default to it.
func DefaultConfig() Config {
	return Config{
		BindAddr:            DefaultBindAddr,
		GossipPort:          7946,
		RPCPort:             9091,
		ForwardTimeout:      DefaultForwardTimeout,
		DeadNodeReclaimTime: 10 * time.Second,
		Replicas:            DefaultReplicas,
		Leases:              true,
	}
}

// LocalConfig returns the preset for several nodes on one host, as tests
// and embedded demos run them: 127.0.0.1 with system-chosen ports and
// memberlist's local timings.
func LocalConfig() Config {
	return Config{
		BindAddr:            DefaultBindAddr,
		LocalTimings:        true,
		ForwardTimeout:      DefaultForwardTimeout,
		DeadNodeReclaimTime: time.Second,
		Replicas:            DefaultReplicas,
		Leases:              true,
	}
}
