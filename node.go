// Package ratemesh is a rate limiter that runs as a cluster of equal peers.
//
// Every rate key (a client identity such as "ip:1.2.3.4" or "user:42") has
// one owner node, chosen by a consistent-hash ring over the live members;
// a check made on any node is decided on the owner, so a limit such as
// "5 per minute" holds across the whole cluster with no shared database.
// A Node is the embeddable unit: create it with New, Start it, Join seeds,
// and Check requests.
package ratemesh

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/cluster"
	"github.com/ratemesh/ratemesh/internal/rpc"
)

// Errors returned by Node methods.
var (
	ErrNotStarted = errors.New("ratemesh: node not started")
	ErrClosed     = cluster.ErrClosed
)

// Request is one check: the counters of one client identity, decided
// together on the identity's owner.
type Request struct {
	// Key is the routing key: the client identity every counter belongs
	// to, e.g. "ip:1.2.3.4", "apikey:abc", "user:42". Required.
	Key string
	// Counters are the limits to check, all-or-nothing: the request
	// consumes from none of them unless every one allows.
	Counters []bucket.Counter
	// Cost is how much the request consumes from each counter; 0 only
	// looks. Negative costs are refused.
	Cost int64
	// StatusBuf, when its capacity holds len(Counters) statuses, becomes
	// the backing array of Result.Statuses instead of a new one, so a
	// caller that checks often can reuse one buffer (and must not reuse it
	// while it still reads the Result). Optional: nil allocates.
	StatusBuf []bucket.Status
}

// Result is the decision on a Request.
type Result struct {
	// Allowed reports whether every counter allowed the request.
	Allowed bool
	// Statuses has one entry per counter, in Request order.
	Statuses []bucket.Status
	// Node names the node that decided.
	Node string
	// Fallback is true when no owner answered and the fail policy decided.
	Fallback bool
}

// Node is one ratemesh peer. Its methods are safe for concurrent use.
type Node struct {
	cfg   Config
	store *bucket.Store
	cl    *cluster.Cluster
	reg   *prometheus.Registry // the node's own, when Config.Registerer is nil
	shown prometheus.Gatherer  // the metrics the stats page shows

	started  atomic.Bool
	bound    atomic.Bool // Start has bound the gossip and RPC listeners
	draining atomic.Bool // Drain was called: not ready, still deciding
	closing  atomic.Bool // Close has begun
	closed   atomic.Bool // Close is done: checks are refused

	stop chan struct{}
	wg   sync.WaitGroup
	join *joinState

	// calls recycles the request and response a check passes down: they
	// reach peers through an interface, so the compiler cannot keep them
	// on the stack.
	calls sync.Pool // *checkCall
}

type checkCall struct {
	req  rpc.CheckRequest
	resp rpc.CheckResponse
}

// New checks cfg and builds a node; it binds nothing until Start.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, store: bucket.NewStore(cfg.Store), stop: make(chan struct{}), join: newJoinState(cfg.Seeds)}
	reg := cfg.Registerer
	if reg == nil {
		n.reg = prometheus.NewRegistry()
		reg = n.reg
	}
	m, err := cluster.NewMetrics(reg, n.store.Usage)
	if err != nil {
		return nil, err
	}
	n.shown = m.Shown()
	n.cl, err = cluster.New(n.clusterConfig(m))
	if err != nil {
		return nil, err
	}
	return n, nil
}

// clusterConfig is the cluster's part of the node's Config.
func (n *Node) clusterConfig(m *cluster.Metrics) cluster.Config {
	cfg, store := n.cfg, n.store
	return cluster.Config{
		Name:                cfg.Name,
		BindAddr:            cfg.BindAddr,
		AdvertiseAddr:       cfg.AdvertiseAddr,
		GossipPort:          cfg.GossipPort,
		RPCPort:             cfg.RPCPort,
		HTTPAddr:            cfg.HTTPAddr,
		Secret:              []byte(cfg.Secret),
		TLS:                 cfg.PeerTLS,
		LocalTimings:        cfg.LocalTimings,
		DeadNodeReclaimTime: cfg.DeadNodeReclaimTime,
		ForwardTimeout:      cfg.ForwardTimeout,
		DialTimeout:         cfg.DialTimeout,
		ProbeInterval:       cfg.ProbeInterval,
		Ring:                cfg.Ring,
		Store:               store,
		Logger:              cfg.Logger,
		Metrics:             m,
		Clock:               cfg.Clock,
		Resolve:             cfg.Resolve,
		Replicas:            cfg.Replicas,
		Leases:              cfg.Leases,
		Fallback: func(now time.Time, req *rpc.CheckRequest, resp *rpc.CheckResponse) error {
			return cfg.FailPolicy.decide(store, now, req, resp)
		},
		FallbackName: cfg.FailPolicy.String(),
	}
}

// Start binds the gossip and RPC listeners and starts the node's
// background work. The node then serves checks as a cluster of one.
func (n *Node) Start(ctx context.Context) error {
	if n.closing.Load() {
		return ErrClosed
	}
	if n.started.Swap(true) {
		return errors.New("ratemesh: node already started")
	}
	if len(n.cfg.Seeds) > 0 {
		n.cl.ExpectJoin()
	}
	if n.cfg.DataDir != "" {
		n.loadCounters()
	}
	if err := n.cl.Start(ctx); err != nil {
		n.started.Store(false)
		return err
	}
	n.bound.Store(true)
	n.every(n.cfg.SweepInterval, n.sweep)
	if n.cfg.DataDir != "" {
		n.every(n.cfg.SnapshotInterval, func() bool { n.saveCounters(); return true })
	}
	if len(n.cfg.Seeds) > 0 {
		n.wg.Add(1)
		go n.joinSeeds()
	}
	return nil
}

// every runs work each interval on a goroutine counted by n.wg, until the
// node stops. work returns false to end early (the node is stopping).
func (n *Node) every(interval time.Duration, work func() bool) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-n.stop:
				return
			case <-t.C:
				if !work() {
					return
				}
			}
		}
	}()
}

// sweep removes expired counters in small steps, so memory comes back
// without a pause on the check path: about one full pass per call, in
// chunks that hold a shard lock only briefly.
func (n *Node) sweep() bool {
	const chunk = 4096
	for i := n.store.Len()/chunk + 1; i > 0; i-- {
		n.store.Sweep(n.cfg.Clock(), chunk)
		select {
		case <-n.stop:
			return false
		default:
		}
	}
	return true
}

// Join contacts the seeds (gossip addresses, host:port), retrying with
// backoff until one answers or ctx ends. It fails if another member
// already uses this node's name.
func (n *Node) Join(ctx context.Context, seeds ...string) error {
	if !n.started.Load() {
		return ErrNotStarted
	}
	return n.cl.Join(ctx, seeds...)
}

// Check decides req on the owner of req.Key.
func (n *Node) Check(ctx context.Context, req Request) (Result, error) {
	if err := n.usable(); err != nil {
		return Result{}, err
	}
	if req.Key == "" {
		return Result{}, errors.New("ratemesh: Request.Key is empty")
	}
	if req.Cost < 0 {
		return Result{}, fmt.Errorf("ratemesh: Request.Cost is %d, want >= 0", req.Cost)
	}
	for i := range req.Counters {
		if err := req.Counters[i].Validate(); err != nil {
			return Result{}, err
		}
	}
	if err := n.join.wait(ctx); err != nil {
		return Result{}, err
	}
	buf := req.StatusBuf[:0]
	if cap(buf) < len(req.Counters) {
		buf = make([]bucket.Status, 0, len(req.Counters))
	}
	cc, _ := n.calls.Get().(*checkCall)
	if cc == nil {
		cc = new(checkCall)
	}
	cc.req = rpc.CheckRequest{Key: req.Key, Counters: req.Counters, Cost: req.Cost}
	cc.resp = rpc.CheckResponse{Statuses: buf}
	fallback, err := n.cl.Check(ctx, &cc.req, &cc.resp)
	res := Result{Allowed: cc.resp.Allowed, Statuses: cc.resp.Statuses, Node: cc.resp.Node, Fallback: fallback}
	*cc = checkCall{} // the pool keeps none of the caller's memory
	n.calls.Put(cc)
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

func (n *Node) usable() error {
	if n.closed.Load() {
		return ErrClosed
	}
	if !n.started.Load() {
		return ErrNotStarted
	}
	return nil
}

// Reset forgets every counter of the routing key key, on every member.
func (n *Node) Reset(ctx context.Context, key string) error {
	if err := n.usable(); err != nil {
		return err
	}
	return n.cl.Reset(ctx, key)
}

// Members lists the cluster's members as this node sees them.
func (n *Node) Members() []Member {
	if !n.started.Load() {
		return nil
	}
	ms := n.cl.Members()
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = memberOf(m)
	}
	return out
}

// Owner reports which member owns routing key key in this node's ring.
func (n *Node) Owner(key string) (Member, bool) {
	if !n.started.Load() {
		return Member{}, false
	}
	o, ok := n.cl.Ring().Owner(key)
	if !ok {
		return Member{}, false
	}
	for _, m := range n.cl.Members() {
		if m.Name == o.Name {
			return memberOf(m), true
		}
	}
	return Member{Name: o.Name, RPCAddr: o.Addr, State: StateAlive}, true
}

// Name is the node's name in the cluster (known after Start).
func (n *Node) Name() string { return n.cl.Name() }

// GossipAddr is the address other nodes Join through; "" until Start
// has bound it.
func (n *Node) GossipAddr() string {
	if !n.bound.Load() {
		return ""
	}
	return n.cl.GossipAddr()
}

// RPCAddr is the address of the node's RPC server; "" until Start has
// bound it.
func (n *Node) RPCAddr() string {
	if !n.bound.Load() {
		return ""
	}
	return n.cl.RPCAddr()
}

// Ready reports whether the node is started, not closing, has joined
// Config.Seeds, and is in its own ring: it can decide the keys it owns and
// route the others.
func (n *Node) Ready() bool {
	if n.usable() != nil || n.draining.Load() || !n.join.joined() {
		return false
	}
	for _, m := range n.cl.Ring().Members() {
		if m.Name == n.cl.Name() {
			return true
		}
	}
	return false
}

// Registry is the Prometheus registry the node made for its metrics when
// Config.Registerer was nil; nil otherwise (the metrics are there).
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// StatsMetrics gathers the node's metrics that GET /v1/stats shows, and
// no others: its cost does not grow with the rest of the registry.
func (n *Node) StatsMetrics() prometheus.Gatherer { return n.shown }

// FailPolicy is the policy the node applies when no owner answers.
func (n *Node) FailPolicy() FailPolicy { return n.cfg.FailPolicy }

// Drain marks the node as going away: Ready reports false from now on,
// so that load balancers stop sending it requests, while it still decides
// every check it is given. A server calls it first when it stops, then
// stops accepting requests and answers those it has, then calls Close.
func (n *Node) Drain() { n.draining.Store(true) }

// Close leaves the cluster gracefully within ctx: checks arriving meanwhile
// are forwarded to the keys' new owners, every counter is handed to its new
// owner, then the node leaves gossip, closes its listeners and stops its
// goroutines. Close on a node never started only releases it.
func (n *Node) Close(ctx context.Context) error {
	n.Drain()
	if n.closing.Swap(true) {
		return nil
	}
	// Checks keep working until the leave is done: the cluster forwards
	// them to the keys' new owners. Only then does the node refuse them.
	err := n.cl.Close(ctx)
	n.closed.Store(true)
	close(n.stop)
	n.wg.Wait()
	if n.cfg.DataDir != "" && n.started.Load() {
		err = errors.Join(err, n.saveCounters())
	}
	return err
}
