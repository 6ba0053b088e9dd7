package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/logevery"
	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/ring"
)

// Cluster is one node's view of the cluster and its part in it: it owns
// some keys (decided on its Store), forwards checks of the others to their
// owners, and serves checks forwarded to it.
type Cluster struct {
	cfg       Config
	name      string
	now       func() time.Time
	log       *slog.Logger
	logs      *logevery.Logger // lines a peer or a full table could repeat
	store     *bucket.Store
	metrics   *Metrics
	transport Transport
	rpcAddr   string
	// incarnation is this run's Meta.Incarnation, chosen at Start.
	incarnation uint64
	// newGossip starts the membership; tests replace it before Start.
	newGossip func(Meta) (gossip, error)
	gossip    gossip

	view      atomic.Pointer[view]
	rebuildMu sync.Mutex // serialises ring rebuilds
	peers     peerSet
	leaving   atomic.Bool
	stopped   atomic.Bool                   // the leave is done: checks are refused
	joinGate  atomic.Pointer[chan struct{}] // open while Join merges state
	// unjoined is set by ExpectJoin until Join succeeds: the node decides
	// no peer's request before it knows the cluster; joinedCh is closed
	// then.
	unjoined  atomic.Bool
	joinedCh  chan struct{}
	moved     moves        // keys given away recently, and to whom
	denied    denyCache    // checks owners denied, until they may pass
	served    atomic.Int64 // checks received from peers, for quiesce
	changing  atomic.Int64 // changes admitted by enter and not yet done
	pullMu    sync.Mutex
	pulling   map[string]*pulled // keys being pulled, by waiters
	handoff   chan struct{}      // capacity 1: wakes the handoff loop
	handoffMu sync.Mutex         // held by the running handoff
	// movingMu makes taking entries out of the table and marking them
	// moved one step, for handoffs and pulls alike: a pull never finds a
	// key neither here nor marked as on its way. Local decisions hold it
	// for reading (see decideUnlessMoved).
	movingMu sync.RWMutex
	restore  restore     // counts read from a data file, until known to be this node's
	repl     *replicator // nil when Config.Replicas is 0
	leases   *leaser     // nil without Config.Leases

	ctx    context.Context // cancelled by Close: stops background loops
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New checks cfg and binds nothing yet.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tr := cfg.Transport
	if tr == nil {
		tr = NewTCPTransport(TCPConfig{BindAddr: cfg.BindAddr, Port: cfg.RPCPort, Secret: rpcSecret(cfg.Secret), TLS: cfg.TLS,
			DialTimeout: cfg.DialTimeout, CallTimeout: cfg.ForwardTimeout, Logger: cfg.Logger})
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{cfg: cfg, now: cfg.Clock, log: cfg.Logger, store: cfg.Store, metrics: cfg.Metrics,
		transport: tr, handoff: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
		logs: logevery.New(cfg.Logger, logevery.DefaultInterval)}
	c.newGossip = func(meta Meta) (gossip, error) { return newMembership(&c.cfg, meta, c.log) }
	c.peers.init(c)
	if cfg.Replicas > 0 {
		c.repl = newReplicator(c, cfg.Replicas)
	}
	if cfg.Leases {
		c.leases = newLeaser(c)
	}
	return c, nil
}

// Start binds the RPC listener, starts gossip and the background loops.
// The node is then a cluster of one until Join. It gives up, releasing
// what it bound, when ctx ends first.
func (c *Cluster) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cluster: start: %w", err)
	}
	// Peers reach a node the moment it listens: one restarted under its
	// old name is still in their rings, and they replicate to it at once.
	// Their requests wait for its first view of the cluster, as they wait
	// for a join (a handler found no view and failed on it).
	expectsJoin := c.unjoined.Load()
	if !expectsJoin {
		c.ExpectJoin()
	}
	bound, err := c.transport.Listen(handler{c})
	if err != nil {
		return err
	}
	c.rpcAddr = bound
	if c.cfg.AdvertiseAddr != "" {
		if _, port, err := net.SplitHostPort(bound); err == nil {
			c.rpcAddr = net.JoinHostPort(c.cfg.AdvertiseAddr, port)
		}
	}
	c.name = c.cfg.Name
	if c.name == "" {
		// The RPC address is bound, so it is unique on this host, and
		// other nodes on the same host cannot collide with it.
		c.name = c.rpcAddr
	}
	c.cfg.Name = c.name
	c.log = c.log.With("node", c.name)
	c.logs = logevery.New(c.log, logevery.DefaultInterval)
	c.incarnation = rand.Uint64() | 1 // never 0: that means "not known"
	meta := Meta{Protocol: ProtocolVersion, RPCAddr: c.rpcAddr, HTTPAddr: c.cfg.HTTPAddr, Ring: ringSignature(c.cfg.Ring), Incarnation: c.incarnation}
	if c.gossip, err = c.newGossip(meta); err == nil && ctx.Err() != nil {
		c.gossip.leave(0)
		err = fmt.Errorf("cluster: start: %w", ctx.Err())
	}
	if err != nil {
		c.transport.Close()
		return err
	}
	c.rebuild()
	if !expectsJoin {
		c.markJoined()
	}
	c.wg.Add(3)
	go func() { defer c.wg.Done(); c.ringLoop() }()
	go func() { defer c.wg.Done(); c.probeLoop() }()
	go func() { defer c.wg.Done(); c.handoffLoop() }()
	if c.repl != nil {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.repl.loop(c.ctx) }()
	}
	if c.leases != nil {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.leases.loop(c.ctx) }()
	}
	c.log.Info("node started", "rpc", c.rpcAddr, "gossip", c.GossipAddr())
	return nil
}

// rpcSecret derives the RPC handshake key from the cluster secret; none
// without a secret.
func rpcSecret(secret []byte) []byte {
	if len(secret) == 0 {
		return nil
	}
	return rpcKey(secret)
}

// ExpectJoin makes the node hold its peers' requests (checks, pulls,
// handoffs) until Join succeeds, and answer their pings as not serving
// (rpc.ErrNotServing), so that a peer that routes around it keeps doing so
// until then: a node restarted under its old name, still in its peers'
// rings, would otherwise decide its keys alone from what it had (nothing,
// or its data file) before it could pull them from where they went while
// it was away. A request held past its connection's end is refused
// unapplied. Call it before Start.
func (c *Cluster) ExpectJoin() {
	c.joinedCh = make(chan struct{})
	c.unjoined.Store(true)
}

// awaitJoined returns once the node has joined (at once if it expects no
// join), or errNotJoined when ctx ends first.
func (c *Cluster) awaitJoined(ctx context.Context) error {
	if !c.unjoined.Load() {
		return nil
	}
	select {
	case <-c.joinedCh:
		return nil
	case <-ctx.Done():
		return errNotJoined
	}
}

// markJoined lets peers' requests in (ExpectJoin).
func (c *Cluster) markJoined() {
	if c.unjoined.Swap(false) {
		close(c.joinedCh)
	}
}

// errNotJoined refuses peers' requests before the node has joined.
var errNotJoined = fmt.Errorf("%w: not joined yet", rpc.ErrNotServing)

// Name is this node's unique name in the cluster.
func (c *Cluster) Name() string { return c.name }

// GossipAddr is the host:port other nodes join through.
func (c *Cluster) GossipAddr() string { return c.gossip.addr() }

// RPCAddr is the address peers reach this node's RPC at.
func (c *Cluster) RPCAddr() string { return c.rpcAddr }

// Join contacts the seeds (gossip host:port), retrying with backoff until
// one answers or ctx ends.
func (c *Cluster) Join(ctx context.Context, seeds ...string) error {
	if len(seeds) == 0 {
		return nil
	}
	// See settledView.
	gate := make(chan struct{})
	c.joinGate.Store(&gate)
	defer func() {
		close(gate)
		c.joinGate.Store(nil)
	}()
	if err := c.gossip.join(ctx, seeds); err != nil {
		return err
	}
	c.rebuild()
	c.markJoined()
	c.joined(c.now(), c.view.Load().full.Len() <= 1)
	return nil
}

// view is what one ring rebuild saw: the ring and the members it was built
// from, published together so that Members and Owner never disagree.
type view struct {
	// full places keys on the members gossip reports (less this node
	// while it leaves): who owns a key.
	full *ring.Ring
	// routing is full less the peers this node suspects: where checks
	// go. It is full itself when nothing is suspected.
	routing *ring.Ring
	members []Member
	// inbound maps partitions that moved to this node in the last
	// pullWindow to their previous owner, while it is still a member.
	inbound      map[int]ring.Member
	inboundUntil time.Time
	// replaced is closed when a newer view replaces this one.
	replaced chan struct{}
}

// incarnation is member name's Meta.Incarnation as this view saw it; 0
// when it is not a member.
func (v *view) incarnation(name string) uint64 {
	m, _ := v.member(name)
	return m.Incarnation
}

// member is the member named name in this view.
func (v *view) member(name string) (Member, bool) {
	for _, m := range v.members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// Ring returns the ring this node routes by.
func (c *Cluster) Ring() *ring.Ring { return c.view.Load().routing }

// Members lists the members gossip knew at the last ring rebuild, this
// node included. Members Alive or Suspect are in the ring.
func (c *Cluster) Members() []Member {
	return slices.Clone(c.view.Load().members)
}

// ringLoop rebuilds the ring whenever gossip reports a change.
func (c *Cluster) ringLoop() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.gossip.changes():
		}
		c.rebuild()
	}
}

// rebuild computes the ring from the live members, less the peers this node
// suspects and less itself while it leaves.
func (c *Cluster) rebuild() {
	c.rebuildMu.Lock()
	defer c.rebuildMu.Unlock()
	ps := c.gossip.peers()
	v := &view{members: make([]Member, 0, len(ps)), replaced: make(chan struct{})}
	var full []ring.Member
	var suspects []string
	live := make(map[string]string, len(ps))
	for _, p := range ps {
		live[p.Name] = p.Meta.RPCAddr
		m := Member{Name: p.Name, RPCAddr: p.Meta.RPCAddr, HTTPAddr: p.Meta.HTTPAddr, State: p.State, Self: p.Self, Incarnation: p.Meta.Incarnation}
		rm := ring.Member{Name: p.Name, Addr: p.Meta.RPCAddr}
		switch {
		case p.Self && c.leaving.Load():
			m.State = Leaving
		case !p.Self && c.peers.isSuspect(p.Name):
			m.State = Unreachable
			full = append(full, rm)
			suspects = append(suspects, p.Name)
		default:
			full = append(full, rm)
		}
		v.members = append(v.members, m)
	}
	c.peers.sync(live)
	old := c.view.Load()
	if old != nil {
		for _, m := range v.members {
			if inc := old.incarnation(m.Name); inc != 0 && inc != m.Incarnation {
				c.peers.redial(m.Name, m.RPCAddr) // restarted: see redial
			}
		}
	}
	if old != nil && sameMembers(old.full.Members(), full) {
		v.full = old.full // ring builds cost milliseconds: reuse
	} else {
		v.full = ring.New(full, c.cfg.Ring)
	}
	// Without reuses the full ring's sorted positions: a quarter of a
	// build's cost, and a node suspects peers one by one.
	v.routing = v.full.Without(suspects...)
	v.inbound, v.inboundUntil = c.inbound(old, v)
	c.view.Store(v)
	if old != nil {
		close(old.replaced)
	}
	c.metrics.members.Set(float64(v.routing.Len()))
	if old != nil && len(ring.Diff(old.routing, v.routing)) > 0 {
		c.log.Info("ring changed", "members", v.routing.Len(), "suspected", len(suspects))
		c.kickHandoff()
	} else if old != nil && freshSuccessors(old, v) != nil {
		c.kickHandoff() // a member restarted: replicas of its earlier runs go back to it (reclaim)
	}
}

// inbound finds, for a while after this node joins a cluster, the
// partitions it now owns and who owned them before it came: their counts are
// pulled from there on first sight. (Other moves need no pull: a member that
// leaves pushes its counts, a crashed one has none left to give.)
func (c *Cluster) inbound(old, v *view) (map[int]ring.Member, time.Time) {
	now := c.now()
	until := time.Time{}
	if old != nil {
		until = old.inboundUntil
		if old.full.Len() <= 1 && v.full.Len() > 1 {
			until = now.Add(pullWindow) // just joined
		}
	}
	if !now.Before(until) || !v.full.Has(c.name) {
		return nil, time.Time{}
	}
	without := v.full.Without(c.name)
	in := map[int]ring.Member{}
	for p := 0; p < v.full.PartitionCount(); p++ {
		if o, _ := v.full.PartitionOwner(p); o.Name == c.name {
			if from, ok := without.PartitionOwner(p); ok {
				in[p] = from
			}
		}
	}
	return in, until
}

func sameMembers(a, b []ring.Member) bool {
	if len(a) != len(b) {
		return false
	}
	sorted := slices.Clone(b)
	slices.SortFunc(sorted, func(x, y ring.Member) int { return strings.Compare(x.Name, y.Name) })
	return slices.Equal(a, sorted)
}

// catchUp rebuilds the ring at once when gossip has reported a change that
// the ring builder has not taken yet, so that no check is decided from a
// view older than what gossip knows: the first node of a cluster, say,
// whose first peer joined it while it was starting, would otherwise own
// every key alone for as long as the ring builder waits for the CPU. An
// empty channel costs a check a few nanoseconds.
func (c *Cluster) catchUp() {
	if c.view.Load() == nil {
		return // starting: gossip is set before the first view is stored
	}
	select {
	case <-c.gossip.changes():
		c.rebuild()
	default:
	}
}

func (c *Cluster) kickHandoff() {
	select {
	case c.handoff <- struct{}{}:
	default:
	}
}
