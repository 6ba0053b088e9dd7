package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/ring"
)

// Ownership moves between nodes in two ways, so that no count is lost or
// split while nodes' rings disagree for a few gossip rounds:
//
//   - push: the old owner, when its ring changes, takes the entries it no
//     longer owns out of its table and merges them into their new owners
//     (handoff.go);
//   - pull: the new owner, on the first check of a key whose partition
//     moved to it recently, takes the key's entry from the old owner before
//     deciding (pull below).
//
// Either way, the old owner remembers for a while where each key went (a
// move), and passes any check of it that still reaches it to the new owner,
// after the entry has arrived there. So a key is counted in one place.

// moveTTL is how long a node remembers where a key it gave away went: long
// enough for every ring to catch up through gossip.
const moveTTL = 10 * time.Second

// pullWindow is how long after a partition moved here this node asks its
// old owner for a key's entry on first sight.
const pullWindow = 10 * time.Second

// move records that a key's entry left this node for to. done is closed
// once the entry is there (or was given up on).
type move struct {
	to    ring.Member
	done  chan struct{}
	until time.Time
	// landed is set when to's replica of one of the keys arrives here
	// during the move: to applied the batch (noteCopies).
	landed atomic.Bool
}

// moves is the set of keys this node gave away recently.
type moves struct {
	n  atomic.Int64 // len(m), read without the lock on the check path
	mu sync.Mutex
	m  map[string]*move
}

func (ms *moves) add(keys []string, mv *move) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		ms.m = map[string]*move{}
	}
	for _, k := range keys {
		ms.m[k] = mv
	}
	ms.n.Store(int64(len(ms.m)))
}

// mark records entries' keys as moving to to until until, and returns
// the move, whose done the sender closes once the batch has landed or
// failed.
func (ms *moves) mark(to ring.Member, entries []bucket.Entry, until time.Time) *move {
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = e.Key
	}
	mv := &move{to: to, done: make(chan struct{}), until: until}
	ms.add(keys, mv)
	return mv
}

// get returns where key went, if it left recently.
func (ms *moves) get(key string, now time.Time) *move {
	if ms.n.Load() == 0 {
		return nil
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	mv := ms.m[key]
	if mv != nil && now.After(mv.until) {
		delete(ms.m, key)
		ms.n.Store(int64(len(ms.m)))
		return nil
	}
	return mv
}

// forget drops key's move: its entry came back here.
func (ms *moves) forget(key string) {
	if ms.n.Load() == 0 {
		return
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	delete(ms.m, key)
	ms.n.Store(int64(len(ms.m)))
}

// forgetIf drops key's move if it is mv, and reports whether key has no
// other move now: a later one (the batch re-planned after a failed send,
// say) stays, and says where the count went.
func (ms *moves) forgetIf(key string, mv *move) bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if cur := ms.m[key]; cur != nil && cur != mv {
		return false
	}
	delete(ms.m, key)
	ms.n.Store(int64(len(ms.m)))
	return true
}

// expire drops moves older than their TTL.
func (ms *moves) expire(now time.Time) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for k, mv := range ms.m {
		if now.After(mv.until) {
			delete(ms.m, k)
		}
	}
	ms.n.Store(int64(len(ms.m)))
}

// wait blocks until mv's entry arrived or ctx ends.
func (mv *move) wait(ctx context.Context) {
	select {
	case <-mv.done:
	case <-ctx.Done():
	}
}

// decidable reports whether serveLocal would decide req at once, from this
// node's table: the key is neither moving away nor possibly still on its
// previous owner.
func (c *Cluster) decidable(v *view, req *rpc.CheckRequest, now time.Time) bool {
	if req.Hops < maxHops && c.moved.get(req.Key, now) != nil {
		return false
	}
	_, inbound := v.inboundFrom(req.Key, now)
	return !inbound || c.store.Has(req.Key)
}

// serveLocal decides req here, as the key's owner (or as the node a check
// was forwarded to). If the key left this node recently, the check goes
// where it went; if it may still be on its previous owner, it is fetched
// first.
func (c *Cluster) serveLocal(ctx context.Context, v *view, req *rpc.CheckRequest, resp *rpc.CheckResponse) error {
	for {
		moved, err := c.serveLocalOnce(ctx, v, req, resp)
		if !moved {
			return err
		}
		// A handoff marked the key moved as it was about to be decided
		// here: the next pass follows it.
	}
}

// serveLocalOnce is one pass of serveLocal; moved reports a key marked
// moved while it was about to be decided here.
func (c *Cluster) serveLocalOnce(ctx context.Context, v *view, req *rpc.CheckRequest, resp *rpc.CheckResponse) (moved bool, err error) {
	now := c.now()
	if mv := c.moved.get(req.Key, now); mv != nil && req.Hops < maxHops {
		mv.wait(ctx)
		if err := ctx.Err(); err != nil {
			// The count may still be on its way: decided here, the key
			// would start from zero beside it, and unmarked, a pull of
			// it meanwhile would find nothing and decide from a data
			// file (TestCheckWaitingForMoveLeavesIt).
			return false, err
		}
		req.Hops++
		err := c.peers.get(mv.to.Name, mv.to.Addr).Check(ctx, req, resp)
		if err == nil {
			return false, nil
		}
		// The new owner is gone: the count there is lost; decide here —
		// unless the key moved again meanwhile (its batch re-planned
		// after a failed send): then follow that move.
		if !c.moved.forgetIf(req.Key, mv) {
			req.Hops--
			return true, nil
		}
	}
	if from, ok := v.inboundFrom(req.Key, now); ok && !c.store.Has(req.Key) {
		if !c.pull(ctx, req.Key, from) && req.Hops < maxHops {
			// The previous owner did not give the key up (it has not
			// seen this node join yet, or did not answer in time): it
			// may still hold the count, so it decides this check.
			req.Hops++
			if err := c.peers.get(from.Name, from.Addr).Check(ctx, req, resp); err == nil {
				return false, nil
			}
		}
		now = c.now() // the pull took a round trip
	}
	return c.decideUnlessMoved(now, req, resp, req.Hops < maxHops)
}

// settledView returns the view to route by. While Join merges the cluster's
// state this node's ring may hold only some members, and it would route or
// pull a key's count wrongly: checks wait (briefly) for the full ring.
func (c *Cluster) settledView(ctx context.Context) *view {
	if gate := c.joinGate.Load(); gate != nil {
		t := time.NewTimer(c.cfg.ForwardTimeout / 2)
		select {
		case <-*gate:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	return c.view.Load()
}

// maxHops bounds how often one check is passed on: the asking node's
// forward, then at most one more from a node that gave the key away.
const maxHops = 1

// inboundFrom reports the previous owner of key's partition if it moved
// to this node within pullWindow and that owner is still a member.
func (v *view) inboundFrom(key string, now time.Time) (ring.Member, bool) {
	if len(v.inbound) == 0 || now.After(v.inboundUntil) {
		return ring.Member{}, false
	}
	from, ok := v.inbound[v.full.Partition(key)]
	return from, ok
}

// pulled is one pull of a key: done is closed when it is over, and ok
// then says whether the previous owner answered (with the entry or with
// nothing to give).
type pulled struct {
	done chan struct{}
	ok   bool
}

// pull takes key's entry from its previous owner and merges it here. One
// pull per key runs at a time; concurrent checks of the key wait for it.
// It reports whether the previous owner answered: if not, the key's count
// may still be there, and deciding here from zero could admit a limit
// twice.
func (c *Cluster) pull(ctx context.Context, key string, from ring.Member) bool {
	c.pullMu.Lock()
	if c.pulling == nil {
		c.pulling = map[string]*pulled{}
	}
	if p, ok := c.pulling[key]; ok {
		c.pullMu.Unlock()
		select {
		case <-p.done:
			return p.ok
		case <-ctx.Done():
			return false
		}
	}
	p := &pulled{done: make(chan struct{})}
	c.pulling[key] = p
	c.pullMu.Unlock()
	defer func() {
		c.pullMu.Lock()
		delete(c.pulling, key)
		c.pullMu.Unlock()
		close(p.done)
	}()
	r, err := c.peers.get(from.Name, from.Addr).Take(ctx, &rpc.TakeRequest{Key: key, To: c.name, ToAddr: c.RPCAddr(), Incarnation: c.incarnation})
	if err != nil {
		c.metrics.rpcErrors.WithLabelValues("take").Inc()
		c.log.Debug("pull failed", "key", key, "from", from.Name, "err", err)
		return false
	}
	p.ok = true
	c.log.Debug("pulled", "key", key, "from", from.Name, "found", r.Found, "supersedes", r.Supersedes, "counts", countsOf{r.Entry})
	if r.Found {
		es := []bucket.Entry{r.Entry}
		if r.Supersedes {
			c.takeBack(ctx, es)
		} else {
			c.mergeHere(es)
		}
		c.metrics.handoffKeys.WithLabelValues("pulled").Inc()
	}
	return true
}

// NotMemberError refuses a pull for a node this one does not know at that
// address: a take moves a key's count and, for a while, its checks to the
// puller, so only a member may pull.
type NotMemberError struct{ Name, Addr string }

func (e *NotMemberError) Error() string {
	if e.Addr == "" {
		return fmt.Sprintf("%q is not a member this node knows", e.Name)
	}
	return fmt.Sprintf("take: %q at %q is not a member this node knows", e.Name, e.Addr)
}

// awaitMember returns once this node's view has a peer name at addr (at
// any address when addr is ""). Gossip reaches nodes at different times: a
// node that has just joined may pull, or have a slice given back to it by
// a member it has not heard of yet. So the view is rebuilt from gossip at
// once and then awaited briefly (a quarter of ForwardTimeout, the caller's
// own deadline being about that); after that, or when ctx ends, the call
// is refused.
func (c *Cluster) awaitMember(ctx context.Context, name, addr string) error {
	v := c.view.Load()
	if v.hasPeer(name, addr) {
		return nil
	}
	c.rebuild()
	t := time.NewTimer(c.cfg.ForwardTimeout / 4)
	defer t.Stop()
	for v = c.view.Load(); !v.hasPeer(name, addr); v = c.view.Load() {
		select {
		case <-v.replaced:
		case <-t.C:
			return &NotMemberError{Name: name, Addr: addr}
		case <-ctx.Done():
			return &NotMemberError{Name: name, Addr: addr}
		}
	}
	return nil
}

// hasAddr reports whether a member's RPC address is addr.
func (v *view) hasAddr(addr string) bool {
	for _, m := range v.members {
		if m.RPCAddr == addr {
			return true
		}
	}
	return false
}

// hasPeer reports whether name at addr is a member other than this node.
func (v *view) hasPeer(name, addr string) bool {
	m, ok := v.member(name)
	return ok && !m.Self && (addr == "" || m.RPCAddr == addr)
}

// take serves a peer's pull: it removes key's entry from this node and
// remembers that the key went to the puller. A puller that restarted gets
// what this node held of its own counts as superseding its data file: the
// count this node continued from its replica, or else the replica itself.
func (c *Cluster) take(ctx context.Context, req *rpc.TakeRequest) rpc.TakeResponse {
	now := c.now()
	c.movingMu.Lock()
	if mv := c.moved.get(req.Key, now); mv != nil {
		c.movingMu.Unlock()
		// On its way (a push), or gone already: let it land. The
		// table has nothing more to give then, but the puller may be a
		// later run than the one the count went to, restarted since: a
		// replica that run sent here is its count now (give).
		mv.wait(ctx)
		c.movingMu.Lock()
		now = c.now()
	}
	defer c.movingMu.Unlock()
	var r rpc.TakeResponse
	r.Entry, r.Found = c.store.Take(now, req.Key)
	if !r.Found {
		r.Entry, r.Found = c.restore.take(now, req.Key, false)
	}
	if c.repl != nil {
		r = c.repl.give(now, req, r)
		if r.Found && r.Supersedes {
			// The puller restarted and takes this count whole. Until it
			// has copied it to its successors (copyNow) this is the only
			// other copy: kept as a replica of the puller's run, it
			// survives the puller crashing again meanwhile (its
			// replication or the prune replaces or drops it later).
			c.repl.keep(req.To, req.Incarnation, []bucket.Entry{r.Entry})
		}
	}
	done := make(chan struct{})
	close(done)
	c.moved.add([]string{req.Key}, &move{to: ring.Member{Name: req.To, Addr: req.ToAddr}, done: done, until: now.Add(moveTTL)})
	return r
}
