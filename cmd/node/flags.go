package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ratemesh/ratemesh"
)

// options are the node's settings from flags and environment.
type options struct {
	name, bind, advertise string
	gossipPort, rpcPort   int
	join                  []string
	secret                string
	failPolicy            string
	forwardTimeout        time.Duration
	gossipProfile         string
	joinTimeout           time.Duration
	rejoinInterval        time.Duration
	replicas              int
	leases                bool
	shutdownTimeout       time.Duration
	logLevel              slog.Level
	nodes                 int
	addrFile              string
	dataDir               string
	snapshotInterval      time.Duration
	store                 storeOptions
	http                  httpOptions
	rls                   rlsOptions
	tls                   tlsOptions
}

// envFlags registers flags whose defaults come from RATEMESH_* variables.
type envFlags struct {
	fs     *flag.FlagSet
	getenv func(string) string
	errs   []string
}

func (e *envFlags) env(name, def string) (string, string) {
	v := e.getenv(name)
	if v == "" {
		v = def
	}
	return v, name
}

func (e *envFlags) String(p *string, flagName, envName, def, usage string) {
	v, env := e.env(envName, def)
	e.fs.StringVar(p, flagName, v, usage+" (env "+env+")")
}

func (e *envFlags) Int(p *int, flagName, envName string, def int, usage string) {
	v, env := e.env(envName, strconv.Itoa(def))
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Sprintf("%s=%q: want a whole number", env, v))
	}
	e.fs.IntVar(p, flagName, n, usage+" (env "+env+")")
}

func (e *envFlags) Bool(p *bool, flagName, envName string, def bool, usage string) {
	v, env := e.env(envName, strconv.FormatBool(def))
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Sprintf("%s=%q: want true or false", env, v))
	}
	e.fs.BoolVar(p, flagName, b, usage+" (env "+env+")")
}

func (e *envFlags) Duration(p *time.Duration, flagName, envName string, def time.Duration, usage string) {
	v, env := e.env(envName, def.String())
	d, err := time.ParseDuration(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Sprintf("%s=%q: want a duration such as 50ms or 5s", env, v))
	}
	e.fs.DurationVar(p, flagName, d, usage+" (env "+env+")")
}

func parseOptions(args []string, getenv func(string) string, out io.Writer) (*options, error) {
	fs := flag.NewFlagSet("ratemesh-node", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: ratemesh-node [flags]\n       ratemesh-node members|owner|check|reset|limits|top [args] [--addr host:port] [--json]\n       ratemesh-node json FILE|- [--format TEMPLATE]\n       ratemesh-node healthcheck [--url URL]\n       ratemesh-node --version\n\nRuns one ratemesh peer, or with a command first asks a running one (docs/cli.md). Flags override their environment variables.\n\n")
		fs.PrintDefaults()
	}
	e := &envFlags{fs: fs, getenv: getenv}
	o := &options{}
	var join, logLevel string
	// The node's own defaults, so that the flags and the library agree.
	def := ratemesh.DefaultConfig()
	e.String(&o.name, "name", "RATEMESH_NAME", "", "unique node name; empty: the node's RPC address")
	e.String(&o.bind, "bind", "RATEMESH_BIND", def.BindAddr, "IP address to listen on (gossip, RPC, HTTP)")
	e.String(&o.advertise, "advertise", "RATEMESH_ADVERTISE", "", "IP address peers reach this node at; empty: --bind, or with --bind 0.0.0.0 or :: the host's first non-loopback address (in a pod: the pod IP)")
	e.Int(&o.gossipPort, "gossip-port", "RATEMESH_GOSSIP_PORT", def.GossipPort, "gossip (memberlist) TCP+UDP port; 0: any free port")
	e.Int(&o.rpcPort, "rpc-port", "RATEMESH_RPC_PORT", def.RPCPort, "RPC port for forwarded checks; 0: any free port")
	e.String(&join, "join", "RATEMESH_JOIN", "", "comma-separated gossip addresses (host:port) of nodes to join")
	e.String(&o.secret, "secret", "RATEMESH_SECRET", "", "cluster secret: authenticates RPC and encrypts gossip (all nodes need the same)")
	e.String(&o.failPolicy, "fail-policy", "RATEMESH_FAIL_POLICY", def.FailPolicy.String(), "when no owner answers: local, open or closed")
	e.Duration(&o.forwardTimeout, "forward-timeout", "RATEMESH_FORWARD_TIMEOUT", def.ForwardTimeout, "deadline of one forwarded check before failing over")
	e.String(&o.gossipProfile, "gossip-profile", "RATEMESH_GOSSIP_PROFILE", "lan", "gossip timings: lan, or local for nodes on one host (faster failure detection)")
	e.Duration(&o.joinTimeout, "join-timeout", "RATEMESH_JOIN_TIMEOUT", 30*time.Second, "how long to keep retrying --join seeds")
	e.Int(&o.replicas, "replicas", "RATEMESH_REPLICAS", ratemesh.DefaultReplicas, "how many of each key's next owners keep a copy of its counters, so an owner's crash does not reset them; 0: none")
	e.Bool(&o.leases, "leases", "RATEMESH_LEASES", true, "decide checks of hot keys here from slices of their quota the owner counts ahead (fixed windows only); false: forward every check")
	e.Duration(&o.rejoinInterval, "rejoin-interval", "RATEMESH_REJOIN_INTERVAL", ratemesh.DefaultRejoinInterval,
		"how often to resolve --join again and join addresses that are not members (negative: never)")
	e.Duration(&o.shutdownTimeout, "shutdown-timeout", "RATEMESH_SHUTDOWN_TIMEOUT", 10*time.Second, "how long a graceful stop (SIGTERM) may take: draining requests, handing counters off, leaving; past it the rest is cut short (docs/running.md)")
	if getenv("RATEMESH_LEAVE_TIMEOUT") != "" {
		e.errs = append(e.errs, "RATEMESH_LEAVE_TIMEOUT was renamed RATEMESH_SHUTDOWN_TIMEOUT (it now bounds the whole stop, 10s by default)")
	}
	e.String(&logLevel, "log-level", "RATEMESH_LOG_LEVEL", "info", "debug, info, warn or error")
	e.Int(&o.nodes, "nodes", "RATEMESH_NODES", 1, "run this many nodes in this one process, joined to each other, node i on every port + i and named NAME-i; for a cluster on one host without one Go runtime per node")
	e.String(&o.addrFile, "addr-file", "RATEMESH_ADDR_FILE", "", "write the nodes' addresses as JSON to this file once they are up and joined (written atomically, removed on exit); for scripts that use port 0")
	e.String(&o.dataDir, "data-dir", "RATEMESH_DATA_DIR", "", "directory where the node keeps its counters across restarts (created if missing; the node refuses to start if it is not writable); empty: memory only. With --nodes, node i uses DIR/node-i")
	e.Duration(&o.snapshotInterval, "snapshot-interval", "RATEMESH_SNAPSHOT_INTERVAL", ratemesh.DefaultSnapshotInterval, "how often the counters are written to --data-dir (and at shutdown); a crash loses at most this much")
	o.store.register(e)
	o.http.register(e)
	o.rls.register(e)
	o.tls.register(e)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if len(e.errs) > 0 {
		return nil, fmt.Errorf("environment: %s", strings.Join(e.errs, "; "))
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q (every setting is a flag)", fs.Args())
	}
	for _, s := range strings.Split(join, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.join = append(o.join, s)
		}
	}
	if err := o.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
	}
	if o.advertise == "" {
		var err error
		if o.advertise, err = defaultAdvertise(o.bind, net.InterfaceAddrs); err != nil {
			return nil, err
		}
	}
	o.http.bind = o.bind
	o.http.clusterSecret = o.secret
	o.http.tls = &o.tls
	if o.gossipProfile != "lan" && o.gossipProfile != "local" {
		return nil, fmt.Errorf("--gossip-profile %q: want lan or local", o.gossipProfile)
	}
	if o.nodes < 1 || o.nodes > maxNodes {
		return nil, fmt.Errorf("--nodes %d: want 1 to %d", o.nodes, maxNodes)
	}
	if o.nodes > 1 {
		for _, p := range []struct {
			flag string
			port int
		}{{"--gossip-port", o.gossipPort}, {"--rpc-port", o.rpcPort}, {"--http-port", o.http.port}, {"--grpc-port", o.rls.port}} {
			if p.port != 0 && p.port+o.nodes-1 > 65535 {
				return nil, fmt.Errorf("%s %d: with --nodes %d the last node's port would pass 65535", p.flag, p.port, o.nodes)
			}
		}
	}
	return o, nil
}

// defaultAdvertise is the address to advertise when --advertise is empty:
// none (--bind itself) unless bind is 0.0.0.0 or ::, which peers cannot
// reach; then the first non-loopback unicast address of the host, IPv4
// first.
func defaultAdvertise(bind string, addrs func() ([]net.Addr, error)) (string, error) {
	if ip := net.ParseIP(bind); ip == nil || !ip.IsUnspecified() {
		return "", nil
	}
	list, err := addrs()
	var v6 string
	for _, a := range list {
		n, ok := a.(*net.IPNet)
		if !ok || !n.IP.IsGlobalUnicast() {
			continue
		}
		if n.IP.To4() != nil {
			return n.IP.String(), nil
		}
		if v6 == "" {
			v6 = n.IP.String()
		}
	}
	if v6 == "" {
		return "", fmt.Errorf("--bind %s: no non-loopback address to advertise (%v); set --advertise", bind, err)
	}
	return v6, nil
}

// maxNodes bounds --nodes: more nodes on one host than this is a mistake.
const maxNodes = 64

// member returns the options of node i of --nodes: every port shifted by
// i (0 stays 0, any free port) and the name suffixed with -i. Node 0 of a
// single node keeps the options as they are.
func (o *options) member(i int) *options {
	if o.nodes == 1 {
		return o
	}
	m := *o
	shift := func(p int) int {
		if p == 0 {
			return 0
		}
		return p + i
	}
	m.gossipPort, m.rpcPort, m.http.port = shift(o.gossipPort), shift(o.rpcPort), shift(o.http.port)
	m.rls.port = shift(o.rls.port)
	if o.dataDir != "" {
		m.dataDir = filepath.Join(o.dataDir, "node-"+strconv.Itoa(i))
	}
	if o.name != "" {
		m.name = o.name + "-" + strconv.Itoa(i)
	}
	return &m
}

// nodeConfig translates the options into a ratemesh.Config.
func (o *options) nodeConfig(log *slog.Logger) (ratemesh.Config, error) {
	cfg := ratemesh.DefaultConfig()
	policy, err := ratemesh.ParseFailPolicy(o.failPolicy)
	if err != nil {
		return cfg, fmt.Errorf("--fail-policy: %w", err)
	}
	cfg.Name = o.name
	cfg.BindAddr = o.bind
	cfg.AdvertiseAddr = o.advertise
	cfg.GossipPort = o.gossipPort
	cfg.RPCPort = o.rpcPort
	cfg.Secret = o.secret
	cfg.PeerTLS = o.tls.peerConfig()
	cfg.FailPolicy = policy
	cfg.ForwardTimeout = o.forwardTimeout
	cfg.LocalTimings = o.gossipProfile == "local"
	cfg.JoinTimeout = o.joinTimeout
	cfg.RejoinInterval = o.rejoinInterval
	cfg.Replicas = o.replicas
	cfg.Leases = o.leases
	cfg.DataDir = o.dataDir
	cfg.SnapshotInterval = o.snapshotInterval
	cfg.HTTPAddr = o.http.advertisedAddr(o.bind, o.advertise)
	cfg.Logger = log
	return cfg, o.store.apply(&cfg)
}
