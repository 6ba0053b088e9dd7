package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/ring"
)

// The in-memory world of the unit tests: a network of handlers by address
// (memNet, the Transport seam's fake, like memberlist's MockNetwork), a
// member list the tests set (fakeGossip, fed to each node's ring builder
// directly) and a clock that moves only when told (manualClock). Nothing
// here opens a socket or sleeps.

// memNet routes calls between the nodes' handlers and counts them.
type memNet struct {
	mu       sync.Mutex
	handlers map[string]rpc.Handler
	cut      map[string]bool     // addresses whose calls fail as unanswered
	calls    map[string]int      // "op addr" → calls that reached a handler
	hops     map[string][]int    // addr → Hops of each check it received
	members  []string            // the gossip view every node shares, by name
	views    map[string][]string // a node's own view, overriding members (a partition)
	side     map[string]int      // address → side of a partition; calls across fail
	sigs     map[string]string   // ring signature of each member's meta
	// incarnation of each member's meta; a test changes it to restart one
	incarnation map[string]uint64
	// listening, if set, runs while a node starts, between its listen
	// and its first view of the cluster.
	listening func(name string)
	gates     map[string]chan struct{} // "op addr" → calls held until closed
	lose      map[string]bool          // "op addr" → calls applied whose answer is lost
	refused   map[string]bool          // "op addr" → calls refused unsent, once past any gate
}

func newMemNet() *memNet {
	return &memNet{handlers: map[string]rpc.Handler{}, cut: map[string]bool{}, calls: map[string]int{}, hops: map[string][]int{},
		incarnation: map[string]uint64{}}
}

// count returns how many op calls reached the handler at addr.
func (n *memNet) count(op, addr string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls[op+" "+addr]
}

// hopsAt returns the Hops of each check the handler at addr received.
func (n *memNet) hopsAt(addr string) []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.hops[addr])
}

// reach returns the handler at addr and counts the call, or an error
// wrapping rpc.ErrUnavailable as the RPC client's would. from is the
// caller's address.
func (n *memNet) reach(op, from, addr string) (rpc.Handler, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h := n.handlers[addr]
	if h == nil {
		// Nothing listens there (a crash): refused before it was sent.
		return nil, fmt.Errorf("%w: %w: %s %s: connection refused", rpc.ErrUnavailable, rpc.ErrNotSent, op, addr)
	}
	if n.cut[addr] || n.side[from] != n.side[addr] {
		return nil, fmt.Errorf("%w: %s %s: no answer", rpc.ErrUnavailable, op, addr)
	}
	n.calls[op+" "+addr]++
	if g := n.gates[op+" "+addr]; g != nil {
		n.mu.Unlock()
		<-g
		n.mu.Lock()
	}
	if n.refused[op+" "+addr] {
		return nil, fmt.Errorf("%w: %w: %s %s: connection refused", rpc.ErrUnavailable, rpc.ErrNotSent, op, addr)
	}
	return h, nil
}

// memTransport is one node's end of a memNet.
type memTransport struct {
	net  *memNet
	addr string
}

func (t *memTransport) Listen(h rpc.Handler) (string, error) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	t.net.handlers[t.addr] = h
	return t.addr, nil
}

func (t *memTransport) Dial(addr string) Peer { return &memPeer{net: t.net, from: t.addr, addr: addr} }

func (t *memTransport) Shutdown(context.Context) error { return t.Close() }

func (t *memTransport) Close() error {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	delete(t.net.handlers, t.addr)
	return nil
}

// memPeer calls a handler as the RPC server would: the fast path first,
// then Check; on copies, since a real request crosses the wire.
type memPeer struct {
	net  *memNet
	from string // the caller's address
	addr string
}

func (p *memPeer) Check(ctx context.Context, req *rpc.CheckRequest, resp *rpc.CheckResponse) error {
	if err := ctx.Err(); err != nil { // as the RPC client does
		return fmt.Errorf("%w: check %s: %w", rpc.ErrUnavailable, p.addr, err)
	}
	h, err := p.net.reach("check", p.from, p.addr)
	if err != nil {
		return err
	}
	p.net.mu.Lock()
	p.net.hops[p.addr] = append(p.net.hops[p.addr], req.Hops)
	p.net.mu.Unlock()
	in := *req
	in.Counters = slices.Clone(req.Counters)
	var out rpc.CheckResponse
	if fc, ok := h.(interface {
		TryCheck(*rpc.CheckRequest, *rpc.CheckResponse) (bool, error)
	}); ok {
		done, err := fc.TryCheck(&in, &out)
		if done {
			return p.answer(err, &out, resp)
		}
		out = rpc.CheckResponse{}
	}
	return p.answer(h.Check(ctx, &in, &out), &out, resp)
}

func (p *memPeer) answer(err error, out, resp *rpc.CheckResponse) error {
	if errors.Is(err, rpc.ErrNotServing) {
		return fmt.Errorf("%w: %w: %w", rpc.ErrUnavailable, rpc.ErrNotSent, err)
	}
	if err != nil {
		return &rpc.RemoteError{Msg: err.Error()}
	}
	resp.Allowed, resp.Node = out.Allowed, out.Node
	resp.Statuses = append(resp.Statuses[:0], out.Statuses...)
	return nil
}

// Merge, Replicate and Refund hand the handler a copy of req, with its
// entries copied too, as the RPC decodes a fresh request.
func (p *memPeer) Merge(ctx context.Context, req *rpc.MergeRequest) error {
	in := *req
	in.Entries = slices.Clone(req.Entries)
	return p.call("merge", func(h rpc.Handler) error { return h.Merge(ctx, &in) })
}

func (p *memPeer) Replicate(ctx context.Context, req *rpc.ReplicaRequest) error {
	in := *req
	in.Entries = slices.Clone(req.Entries)
	return p.call("replica", func(h rpc.Handler) error { return h.Replicate(ctx, &in) })
}

func (p *memPeer) Refund(ctx context.Context, req *rpc.RefundRequest) error {
	in := *req
	in.Entries = slices.Clone(req.Entries)
	return p.call("refund", func(h rpc.Handler) error { return h.Refund(ctx, &in) })
}

// call runs serve on the handler at p.addr, counted as an op call, or
// returns reach's error.
func (p *memPeer) call(op string, serve func(rpc.Handler) error) error {
	h, err := p.net.reach(op, p.from, p.addr)
	if err != nil {
		return err
	}
	err = serve(h)
	p.net.mu.Lock()
	lost := p.net.lose[op+" "+p.addr]
	p.net.mu.Unlock()
	if lost {
		return fmt.Errorf("%w: %s %s: connection lost", rpc.ErrUnavailable, op, p.addr)
	}
	return err
}

func (p *memPeer) Take(ctx context.Context, req *rpc.TakeRequest) (rpc.TakeResponse, error) {
	h, err := p.net.reach("take", p.from, p.addr)
	if err != nil {
		return rpc.TakeResponse{}, err
	}
	in := *req
	return h.Take(ctx, &in)
}

func (p *memPeer) Reset(ctx context.Context, key string) error {
	h, err := p.net.reach("reset", p.from, p.addr)
	if err != nil {
		return err
	}
	return h.Reset(ctx, key)
}

// Redial counts, as a "redial" call from p's node to its peer, that p was
// told its peer answers again (rpc.Client.Redial).
func (p *memPeer) Redial() {
	p.net.mu.Lock()
	defer p.net.mu.Unlock()
	p.net.calls["redial "+p.from+" "+p.addr]++
}

func (p *memPeer) Ping(ctx context.Context) error {
	h, err := p.net.reach("ping", p.from, p.addr)
	if err != nil {
		return err
	}
	if sv, ok := h.(rpc.ServerReadiness); ok {
		if err := sv.Serving(); err != nil {
			return fmt.Errorf("%w: %w: %w", rpc.ErrUnavailable, rpc.ErrNotServing, err)
		}
	}
	return nil
}

func (p *memPeer) Close() error  { return nil }
func (p *memPeer) Retire() error { return nil }

// fakeGossip is one node's membership in a memNet: the members the test
// set, all alive. Ring changes reach a node when the test calls its
// rebuild, so their order is the test's.
type fakeGossip struct {
	net     *memNet
	self    string
	meta    Meta
	changed chan struct{}
	joined  atomic.Bool // until Join, a node sees only itself
	left    atomic.Bool
}

func (g *fakeGossip) peers() []peer {
	g.net.mu.Lock()
	defer g.net.mu.Unlock()
	names := []string{g.self}
	if g.joined.Load() {
		names = g.net.members
		if v, ok := g.net.views[g.self]; ok {
			names = v
		}
	}
	var out []peer
	for _, name := range names {
		if name == g.self && g.left.Load() {
			continue
		}
		meta := Meta{Protocol: ProtocolVersion, RPCAddr: memAddr(name), Ring: g.meta.Ring, Incarnation: g.net.incarnation[name]}
		out = append(out, peer{Name: name, Meta: meta, State: Alive, Self: name == g.self})
	}
	return out
}

func (g *fakeGossip) changes() <-chan struct{}                      { return g.changed }
func (g *fakeGossip) rejoin(context.Context, []string) (int, error) { return 0, nil }

func (g *fakeGossip) join(ctx context.Context, _ []string) error {
	g.joined.Store(true)
	return ctx.Err()
}
func (g *fakeGossip) addr() string { return "gossip:" + g.self }

func (g *fakeGossip) leave(time.Duration) error {
	g.left.Store(true)
	return nil
}

// setMembers makes names the gossip view of every node (it does not
// rebuild their rings: see rebuildAll).
func (n *memNet) setMembers(names ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.members = slices.Clone(names)
}

func memAddr(name string) string { return "mem:" + name }

// manualClock is a clock that moves only by Add.
type manualClock struct{ ns atomic.Int64 }

func newManualClock() *manualClock {
	c := &manualClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *manualClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *manualClock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// memNode starts a cluster node named name on net, alone in its own ring
// until the test changes the members and rebuilds. fallbacks counts the
// checks its Fallback decided (it denies them).
type memNode struct {
	*Cluster
	fallbacks atomic.Int64
}

func startMemNode(t *testing.T, net *memNet, clock *manualClock, name string) *memNode {
	t.Helper()
	return startMemNodeWith(t, net, clock, name, nil)
}

// startMemNodeWith is startMemNode with its Config changed by mod.
func startMemNodeWith(t *testing.T, net *memNet, clock *manualClock, name string, mod func(*Config)) *memNode {
	t.Helper()
	n := &memNode{}
	metrics, err := NewMetrics(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Name: name, BindAddr: "mem", Store: bucket.NewStore(bucket.StoreConfig{}),
		Logger: memLogger(t), Metrics: metrics, Clock: clock.Now,
		ForwardTimeout: time.Second, DialTimeout: time.Second, ProbeInterval: time.Hour,
		Fallback: func(now time.Time, req *rpc.CheckRequest, resp *rpc.CheckResponse) error {
			n.fallbacks.Add(1)
			resp.Allowed = false
			return nil
		},
		FallbackName: "test",
		Transport:    &memTransport{net: net, addr: memAddr(name)},
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGossip{net: net, self: name, changed: make(chan struct{}, 1)}
	c.newGossip = func(meta Meta) (gossip, error) {
		if net.listening != nil {
			net.listening(name)
		}
		g.meta = meta
		return g, nil
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	net.mu.Lock()
	// Gossip carries the incarnation the node chose, as memberlist does;
	// a test may change it to make the node look restarted.
	net.incarnation[name] = c.incarnation
	net.mu.Unlock()
	n.Cluster = c
	t.Cleanup(func() {
		if c.stopped.Load() {
			return // closed by the test already
		}
		c.leaving.Store(false) // a test may have begun a leave by hand (startLeaving)
		c.Close(context.Background())
	})
	return n
}

// startMemCluster starts a node per name, all members of one settled
// cluster: every ring holds them all, and the pulls that follow a join are
// over (the clock has moved past pullWindow).
func startMemCluster(t *testing.T, net *memNet, clock *manualClock, names ...string) []*memNode {
	t.Helper()
	return startMemClusterWith(t, net, clock, nil, names...)
}

// startMemClusterWith is startMemCluster with each Config changed by mod.
func startMemClusterWith(t *testing.T, net *memNet, clock *manualClock, mod func(*Config), names ...string) []*memNode {
	t.Helper()
	net.setMembers(names...)
	nodes := make([]*memNode, len(names))
	for i, name := range names {
		nodes[i] = startMemNodeWith(t, net, clock, name, mod)
		if err := nodes[i].Join(context.Background(), "gossip:"+names[0]); err != nil {
			t.Fatal(err)
		}
	}
	rebuildAll(nodes...)
	clock.Add(pullWindow + time.Second)
	rebuildAll(nodes...)
	return nodes
}

// settle brings a cluster to rest after a fault heals: every node probes
// the peers it routes around, rebuilds its ring and hands off what others
// own.
func settle(nodes ...*memNode) {
	for _, n := range nodes {
		n.probe()
	}
	rebuildAll(nodes...)
	for _, n := range nodes {
		n.handoffAll(context.Background())
	}
}

// rebuildAll gives each node's ring the current members, in order.
func rebuildAll(nodes ...*memNode) {
	for _, n := range nodes {
		n.rebuild()
	}
}

// memRing returns the ring a cluster of names builds.
func memRing(names ...string) *ring.Ring {
	ms := make([]ring.Member, len(names))
	for i, name := range names {
		ms[i] = ring.Member{Name: name, Addr: memAddr(name)}
	}
	return ring.New(ms, ring.Config{})
}

// ownerIn returns the name of key's owner in r.
func ownerIn(r *ring.Ring, key string) string {
	o, _ := r.Owner(key)
	return o.Name
}

// keyWhere returns the first key "kN" for which ok holds.
func keyWhere(t *testing.T, ok func(key string) bool) string {
	t.Helper()
	for i := 0; i < 100000; i++ {
		if k := "k" + strconv.Itoa(i); ok(k) {
			return k
		}
	}
	t.Fatal("no such key")
	return ""
}

// keyOn returns a key that a ring of names places on want.
func keyOn(t *testing.T, names []string, want string) string {
	t.Helper()
	r := memRing(names...)
	return keyWhere(t, func(k string) bool { return ownerIn(r, k) == want })
}

// checkN makes n checks of key with cs through node and returns how many
// were allowed and the node that decided the last.
func checkN(t *testing.T, node *memNode, key string, cs []bucket.Counter, n int) (allowed int, last rpc.CheckResponse) {
	t.Helper()
	for i := 0; i < n; i++ {
		req := rpc.CheckRequest{Key: key, Counters: cs, Cost: 1}
		var resp rpc.CheckResponse
		if _, err := node.Check(context.Background(), &req, &resp); err != nil {
			t.Fatalf("check %d of %s via %s: %v", i+1, key, node.Name(), err)
		}
		if resp.Allowed {
			allowed++
		}
		last = resp
	}
	return allowed, last
}

// perMinute returns one counter of limit "amount per minute".
func perMinute(t *testing.T, amount int) []bucket.Counter {
	return testkit.Counters(t, "test", fmt.Sprintf("%d per minute", amount))
}

// crash stops n as SIGKILL would: its handler is gone from the network at
// once, it hands nothing off and says nothing to the others, and what it
// held is lost.
func (n *memNet) crash(node *memNode) {
	n.mu.Lock()
	delete(n.handlers, memAddr(node.name))
	n.mu.Unlock()
	node.stopped.Store(true)
	node.cancel()
	node.wg.Wait()
}
