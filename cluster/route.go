package cluster

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/ring"
)

// Check decides req on the owner of req.Key: here when this node owns it,
// otherwise by one RPC to the owner. When the owner does not answer it is
// suspected and the check is retried once on the key's next owner. When no
// owner answers — the key's owner by gossip is suspected by this node —
// the fail policy decides and fallback is true.
func (c *Cluster) Check(ctx context.Context, req *rpc.CheckRequest, resp *rpc.CheckResponse) (fallback bool, err error) {
	if c.stopped.Load() {
		return false, ErrClosed
	}
	if !c.enter() {
		return false, c.serveLeaving(ctx, c.view.Load(), req, resp)
	}
	defer c.exit()
	c.catchUp()
	var owner ring.Member
	for attempt := 0; attempt < 2; attempt++ {
		v := c.settledView(ctx)
		var ok bool
		owner, ok = v.routing.Owner(req.Key)
		if !ok || owner.Name == c.name {
			// Only while this node suspects a peer can the key's owner by
			// gossip differ from where it routes: then no owner answered —
			// unless the owner pulled the key's count from here since
			// (restarted, it answers again): serveLocal follows the count.
			if v.routing != v.full && c.moved.get(req.Key, c.now()) == nil {
				if real, ok := v.full.Owner(req.Key); ok && real.Name != c.name {
					return true, c.decideFallback(req, resp, real.Name, err)
				}
			}
			c.metrics.checksLocal.Inc()
			return false, c.serveLocal(ctx, v, req, resp)
		}
		start := c.now()
		if c.leases != nil && c.leases.decide(start, owner, req, resp) {
			c.metrics.checksLeased.Inc()
			c.count(true)
			return false, nil
		}
		if c.denied.lookup(start, req, resp) {
			c.metrics.checksDenyCached.Inc()
			c.count(false)
			return false, nil
		}
		err = c.peers.get(owner.Name, owner.Addr).Check(ctx, req, resp)
		if err == nil {
			c.metrics.forwardSeconds.Observe(c.now().Sub(start).Seconds())
			c.metrics.checksForwarded.Inc()
			c.count(resp.Allowed)
			if !resp.Allowed {
				c.denied.store(start, req, resp)
			} else if c.leases != nil {
				c.leases.observe(start, v, owner, req, resp)
			}
			return false, nil
		}
		c.metrics.rpcErrors.WithLabelValues("check").Inc()
		if !errors.Is(err, rpc.ErrUnavailable) || ctx.Err() != nil {
			return false, err
		}
		// The owner did not answer in time: stop routing to it now rather
		// than after gossip's failure detection, and try the next owner.
		c.peers.suspect(owner.Name, err)
		if attempt == 0 {
			c.metrics.failovers.Inc()
		}
	}
	return true, c.decideFallback(req, resp, owner.Name, err)
}

// decideLocal decides req on this node's own table.
func (c *Cluster) decideLocal(now time.Time, req *rpc.CheckRequest, resp *rpc.CheckResponse) error {
	_, err := c.decideUnlessMoved(now, req, resp, false)
	return err
}

// decideUnlessMoved decides req on this node's own table — unless, with
// follow, a handoff or pull has taken the key's entry out and marked it
// moved since the caller looked: then it decides nothing and reports
// moved, and the caller follows the move. It holds movingMu for reading
// while a handoff takes entries out and marks them under its write lock:
// a check lands on the entry before it leaves, or sees the mark — never
// on a fresh entry behind the move, a count that no handoff sends on
// before the next ring change (TestJoinOfNewOwnerKeepsCount admitted
// 1,001 once in CI).
func (c *Cluster) decideUnlessMoved(now time.Time, req *rpc.CheckRequest, resp *rpc.CheckResponse, follow bool) (moved bool, err error) {
	c.movingMu.RLock()
	if follow && c.moved.get(req.Key, now) != nil {
		c.movingMu.RUnlock()
		return true, nil
	}
	// A replica continued from, or a count read from the data file, joins
	// the table under the same read lock: a pull that took the key and
	// marked it moved in between would leave it behind the move.
	if c.repl != nil {
		c.repl.promote(now, c.view.Load(), req.Key)
	}
	c.adopt(now, req.Key)
	resp.Statuses, resp.Allowed, err = c.store.Check(now, req.Key, req.Counters, req.Cost, resp.Statuses[:0])
	c.movingMu.RUnlock()
	resp.Node = c.name
	if err == nil {
		c.count(resp.Allowed)
		if c.repl != nil && resp.Allowed && req.Cost > 0 {
			c.repl.changed(req.Key)
		}
	}
	return false, err
}

func (c *Cluster) count(allowed bool) {
	if allowed {
		c.metrics.allowed.Inc()
	} else {
		c.metrics.denied.Inc()
	}
}

// decideFallback applies the fail policy when no owner answered.
func (c *Cluster) decideFallback(req *rpc.CheckRequest, resp *rpc.CheckResponse, peer string, cause error) error {
	c.metrics.fallback.WithLabelValues(c.cfg.FallbackName).Inc()
	if cause == nil {
		cause = errors.New("peer suspected by this node")
	}
	c.peers.logFallback(peer, cause)
	resp.Node = c.name
	resp.Statuses = resp.Statuses[:0]
	now := c.now()
	if c.repl != nil {
		// This node may hold the unreachable owner's replica: the fail
		// policy (local) then continues from its count.
		c.repl.promote(now, c.view.Load(), req.Key)
	}
	c.adopt(now, req.Key)
	fresh := c.repl != nil && !c.store.Has(req.Key)
	if err := c.cfg.Fallback(now, req, resp); err != nil {
		return err
	}
	if fresh && c.store.Has(req.Key) {
		// Counted from nothing beside the owner: a replica of the owner
		// adds to it where the key goes next (replica_beside.go).
		c.repl.noteBeside(req.Key, now.Add(longestLimit(req.Counters)))
	}
	c.count(resp.Allowed)
	return nil
}

// longestLimit is the longest period of counters: no count of them
// outlives it.
func longestLimit(counters []bucket.Counter) time.Duration {
	var p time.Duration
	for _, k := range counters {
		p = max(p, k.Limit.Period)
	}
	return p
}

// Reset forgets every counter of key on every member, so a client is whole
// again wherever its counts were kept (its owner, or a node that counted
// locally under the fail policy). It returns the first error and goes on.
func (c *Cluster) Reset(ctx context.Context, key string) error {
	c.store.Reset(key)
	c.denied.forget(key)
	var first error
	for _, m := range c.Ring().Members() {
		if m.Name == c.name {
			continue
		}
		if err := c.peers.get(m.Name, m.Addr).Reset(ctx, key); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// ErrClosed is returned by Check once the node has left the cluster.
var ErrClosed = errors.New("ratemesh: node closed")

// errLeaving refuses a merge into a node that is leaving.
var errLeaving = errors.New("node is leaving the cluster; send counts to the next owner")

// handler serves RPCs from peers. A forwarded check is served here, except
// that a node whose ring disagrees with the sender's and does not hold the
// key passes it once more, to the owner it knows (maxHops), and a leaving
// node passes on what it no longer holds (maxLeavingHops): never a loop.
//
// TryCheck is the RPC server's fast path: it runs on the connection's
// reader and answers only what this node decides from memory at once. Any
// check that may have to wait — for a join, a transfer, a pull, another
// peer — is declined and served by Check, which the server runs on a
// goroutine of its own, so no check can stall a peer's connection.
type handler struct{ c *Cluster }

var (
	_ rpc.FastChecker     = handler{}
	_ rpc.ServerReadiness = handler{}
)

// Serving implements rpc.ServerReadiness: not before the node joined.
func (h handler) Serving() error {
	if h.c.unjoined.Load() {
		return errNotJoined
	}
	return nil
}

// TryCheck implements rpc.FastChecker.
func (h handler) TryCheck(req *rpc.CheckRequest, resp *rpc.CheckResponse) (bool, error) {
	c := h.c
	if c.joinGate.Load() != nil || c.unjoined.Load() || !c.enter() {
		return false, nil
	}
	defer c.exit()
	c.catchUp()
	now := c.now()
	v := c.view.Load()
	if c.passOn(v, req) || !c.decidable(v, req, now) {
		return false, nil
	}
	moved, err := c.decideUnlessMoved(now, req, resp, req.Hops < maxHops)
	if moved {
		return false, nil // Check follows the move
	}
	c.served.Add(1)
	c.metrics.checksServed.Inc()
	return true, err
}

// passOn reports whether a forwarded check should go on to the owner this
// node knows: the sender's ring and ours disagree (one of us has not caught
// up with gossip yet) and the key is not here.
func (c *Cluster) passOn(v *view, req *rpc.CheckRequest) bool {
	if req.Hops >= maxHops {
		return false
	}
	o, ok := v.routing.Owner(req.Key)
	return ok && o.Name != c.name && !c.store.Has(req.Key)
}

func (h handler) Check(ctx context.Context, req *rpc.CheckRequest, resp *rpc.CheckResponse) error {
	c := h.c
	if err := c.awaitJoined(ctx); err != nil {
		return err
	}
	c.served.Add(1)
	v := c.settledView(ctx)
	if !c.enter() {
		return c.serveLeaving(ctx, v, req, resp)
	}
	defer c.exit()
	if c.passOn(v, req) {
		o, _ := v.routing.Owner(req.Key)
		req.Hops++
		err := c.peers.get(o.Name, o.Addr).Check(ctx, req, resp)
		if err == nil || !errors.Is(err, rpc.ErrUnavailable) || ctx.Err() != nil {
			return err
		}
		// The owner we know is unreachable: route around it and serve
		// here, as the sender asked.
		c.peers.suspect(o.Name, err)
		v = c.view.Load()
	}
	c.metrics.checksServed.Inc()
	return c.serveLocal(ctx, v, req, resp)
}

func (h handler) Take(ctx context.Context, req *rpc.TakeRequest) (rpc.TakeResponse, error) {
	if err := h.c.awaitJoined(ctx); err != nil {
		return rpc.TakeResponse{}, err
	}
	if err := h.c.awaitMember(ctx, req.To, req.ToAddr); err != nil {
		return rpc.TakeResponse{}, err
	}
	// A node that pulls answers: routed around (it crashed and restarted,
	// say), it takes the key's checks from here on, where its count goes.
	h.c.peers.clear(req.To)
	return h.c.take(ctx, req), nil
}

func (h handler) Merge(ctx context.Context, req *rpc.MergeRequest) error {
	if err := h.c.awaitJoined(ctx); err != nil {
		return err
	}
	if !h.c.enter() {
		// This node is handing everything off; counts merged here now
		// could be lost. Refusing (nothing applied) makes the sender
		// route around this node and send them to the next owner.
		return errLeaving
	}
	defer h.c.exit()
	if req.ToIncarnation != 0 && req.ToIncarnation != h.c.incarnation && len(req.Bases) == 0 {
		// Planned for an earlier run of this node: the sender may have
		// replicas of that run to hand back first (rpc.MergeRequest).
		return fmt.Errorf("%w: meant for run %d of %s, this is run %d", rpc.ErrOtherRun, req.ToIncarnation, h.c.name, h.c.incarnation)
	}
	if req.FillIn {
		dropped := h.c.fillIn(ctx, req.From, req.Entries)
		h.c.log.Debug("filling in counts from a data file", "keys", len(req.Entries), "from", req.From, "dropped", dropped)
		h.c.metrics.handoffKeys.WithLabelValues("received").Add(float64(len(req.Entries) - dropped))
		h.c.metrics.handoffKeys.WithLabelValues("fill_in_dropped").Add(float64(dropped))
		return nil
	}
	entries, deficits, restarted := onBases(req, h.c.incarnation)
	h.c.log.Debug("merging handed-off counts", "keys", len(entries), "from", req.From, "bases", len(req.Bases), "restarted_since", restarted, "counts", countsOf(entries))
	if restarted {
		if h.c.repl != nil {
			h.c.repl.handedIn(req.From, req.FromIncarnation, entries)
		}
		h.c.takeBack(ctx, entries)
	} else {
		h.c.mergeHandedIn(req.From, req.FromIncarnation, entries, deficits, req.Beside)
		if len(req.Bases) > 0 && h.c.repl != nil && !sameAsBases(req) {
			// The sender dropped its copies of these keys before it
			// sent them (planMoves: superseded): copied back before
			// the answer, as takeBack does, or a crash of this node
			// before its next flush left the count nowhere
			// (TestCountHomeCopiedBackBeforeAnswer). Not a replica
			// coming home (reclaim): it adds nothing, and a sender
			// whose gossip has not heard of this run yet would take
			// the copy for an earlier run's and send it again, for
			// ever (TestRestartUnseenByGossip).
			h.c.repl.copyNow(ctx, req.Entries)
		}
	}
	h.c.metrics.handoffKeys.WithLabelValues("received").Add(float64(len(req.Entries)))
	return nil
}

// onBases returns what a merge adds to this node's table, running
// incarnation inc. Entries the sender continued from this node's replicas
// (req.Bases) go less their bases while inc is the incarnation that sent
// them, since this node still holds those hits; after a restart they go
// whole, and restarted says so: they replace what this node restored from
// its data file, which is older. An entry below its base (units given back
// to the sender, a lease's refund) adds nothing, and its deficit is what
// this node gives back itself (TestRefundBelowPromotedReplicaGoesHome).
func onBases(req *rpc.MergeRequest, inc uint64) (entries, deficits []bucket.Entry, restarted bool) {
	if len(req.Bases) == 0 {
		return req.Entries, nil, false
	}
	if req.BaseIncarnation != inc {
		return req.Entries, nil, true
	}
	entries = make([]bucket.Entry, len(req.Entries))
	for i := range req.Entries {
		entries[i] = bucket.Subtract(req.Entries[i], req.Bases[i])
		if d, ok := bucket.Deficit(req.Entries[i], req.Bases[i]); ok {
			deficits = append(deficits, d)
		}
	}
	return entries, deficits, false
}

// sameAsBases reports whether every entry of req is its base: replicas
// handed back as they were kept.
func sameAsBases(req *rpc.MergeRequest) bool {
	for i := range req.Entries {
		if !reflect.DeepEqual(req.Entries[i], req.Bases[i]) {
			return false
		}
	}
	return true
}

// Replicate keeps a member's replicas apart from this node's counts.
func (h handler) Replicate(ctx context.Context, req *rpc.ReplicaRequest) error {
	if err := h.awaitSender(ctx, req.From); err != nil {
		return err
	}
	if !h.c.enter() {
		return errLeaving // as for a merge
	}
	defer h.c.exit()
	if h.c.repl != nil {
		h.c.repl.hold(req.From, req.Incarnation, req.Entries)
		h.c.noteCopies(req.From, req.Entries)
	}
	return nil
}

// Refund takes a member's unused lease units off their counters.
func (h handler) Refund(ctx context.Context, req *rpc.RefundRequest) error {
	if err := h.awaitSender(ctx, req.From); err != nil {
		return err
	}
	// Even while leaving: a refund lands where its key's count is,
	// here or wherever it went (see refundHere).
	h.c.refundHere(ctx, req.From, req.Hops, req.Entries)
	return nil
}

// awaitSender waits until this node has joined and the sender of a replica
// or a refund is a member of its ring. Only a member may give slices back
// or leave replicas here: a node that places keys by another ring (or
// speaks another protocol) is kept out of it, and its replicas would be
// promoted for keys it does not own. Awaited briefly: a refund refused is
// a slice lost, and a joiner hears from members before gossip has told it
// of all of them.
func (h handler) awaitSender(ctx context.Context, from string) error {
	if err := h.c.awaitJoined(ctx); err != nil {
		return err
	}
	return h.c.awaitMember(ctx, from, "")
}

func (h handler) Reset(ctx context.Context, key string) error {
	h.c.store.Reset(key)
	h.c.denied.forget(key)
	return nil
}
