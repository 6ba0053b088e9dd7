package ratemesh

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/cluster"
	"github.com/ratemesh/ratemesh/ring"
)

// FailPolicy says what a node decides when no owner of a key answers.
type FailPolicy = cluster.FailPolicy

// The fail policies. FailLocal, the zero value, is the default.
const (
	// FailLocal decides on the asking node's own counters: limits hold per
	// node instead of per cluster until the owner answers again.
	FailLocal = cluster.FailLocal
	// FailOpen allows the request.
	FailOpen = cluster.FailOpen
	// FailClosed denies it, with a retry-after of one second.
	FailClosed = cluster.FailClosed
)

// ParseFailPolicy reads "local", "open" or "closed" ("" is local).
func ParseFailPolicy(s string) (FailPolicy, error) { return cluster.ParseFailPolicy(s) }

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
	// 50 ms.
	ForwardTimeout time.Duration
	// FailPolicy decides checks no owner answers. The zero value is
	// FailLocal.
	FailPolicy FailPolicy

	// Ring tunes key placement; every node must use the same. The zero
	// value selects ring's defaults.
	Ring ring.Config
	// Store tunes the counter table. The zero value selects bucket's
	// defaults.
	Store bucket.StoreConfig
	// SweepInterval is how often expired counters are removed. 0 means
	// one second.
	SweepInterval time.Duration

	// Logger receives the node's logs. nil discards them.
	Logger *slog.Logger
	// Registry receives the node's Prometheus metrics. nil means a new
	// registry owned by the node (see Node.Registry); never the global one.
	Registry *prometheus.Registry
}

// DefaultConfig returns the preset for a node on a LAN: 127.0.0.1,
// gossip on 7946, RPC on 9091, memberlist's LAN timings, FailLocal.
func DefaultConfig() Config {
	return Config{
		BindAddr:            "127.0.0.1",
		GossipPort:          7946,
		RPCPort:             9091,
		ForwardTimeout:      50 * time.Millisecond,
		DeadNodeReclaimTime: 10 * time.Second,
	}
}

// LocalConfig returns the preset for several nodes on one host, as tests
// and embedded demos run them: 127.0.0.1 with system-chosen ports and
// memberlist's local timings.
func LocalConfig() Config {
	return Config{
		BindAddr:            "127.0.0.1",
		LocalTimings:        true,
		ForwardTimeout:      50 * time.Millisecond,
		DeadNodeReclaimTime: time.Second,
	}
}
