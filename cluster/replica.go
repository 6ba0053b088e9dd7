package cluster

import (
	"context"
	"iter"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/ring"
)

// Replication keeps a copy of each key's counters on the key's next
// owners (ring.Successors: the nodes checks fail over to), so that when an
// owner crashes the node that takes its checks continues from its count
// instead of from zero.
//
//   - The owner notes every key an allowed check changed; every
//     replicaFlush (or sooner, when replicaBatch keys wait) it sends the
//     keys' current states to their successors, off the check's path. A
//     replica lags its owner by at most replicaFlush plus one RPC, unless
//     more than replicaQueue changes wait: those are dropped (counted) and
//     caught up by the key's next change.
//   - A successor keeps replicas apart from its own table, one store per
//     owner, each replica replaced (never added to) by the newer state.
//   - When a node decides a key it does not hold while the replica's owner
//     is out of its routing ring (unreachable, or gone), it continues from
//     the replica: the replica moves into its table (promoted).
//   - Counts handed over as the new owner (a handoff, a pull) supersede
//     the sender's replicas of those keys, which are dropped.
//   - When the owner answers again (it was paused, or cut off by a
//     partition) the node sends its counts home as after any fallback —
//     less the replica it started from if the owner still runs the
//     incarnation that sent it (it still holds those hits), whole if the
//     owner restarted (it lost them). So each hit is counted once, but
//     for token buckets, whose state cannot be split: there the
//     replicated part counts twice (more denials, never more admissions)
//     until the bucket refills.
const (
	replicaFlush = 5 * time.Millisecond
	replicaBatch = 1024
	replicaQueue = 8192
	// replicaSweep is how often expired replicas are dropped.
	replicaSweep = time.Second
)

// replicator is one node's part in replication: the changes it owes its
// successors, and the replicas it holds for other owners.
type replicator struct {
	c *Cluster
	n int // successors each key is copied to
	// dirty lists the keys allowed checks changed since the last flush,
	// repeats included (a mutex and an append cost a check less than a
	// channel send); full wakes the loop when replicaBatch wait.
	dirtyMu sync.Mutex
	dirty   []string
	full    chan struct{}

	// conns are connections of their own to successors: a batch of
	// replicas must not hold up the checks forwarded on the peer's
	// connection behind it. Dialled by the loop; connsMu guards the map,
	// which redial reads too.
	connsMu sync.Mutex
	conns   map[string]Peer

	mu       sync.Mutex
	from     map[string]*replicas // replicas held here, by owner
	held     atomic.Int64         // len(from), read on the check path
	promoted map[string]promotion // keys continued from a replica, by key
	npromo   atomic.Int64         // len(promoted)
	late     map[string]lateMark  // keys handed here by their owner a moment ago
	nlate    atomic.Int64         // len(late)
	beside   map[string]time.Time // keys counted here beside their owner, until their windows end
	nbeside  atomic.Int64         // len(beside)
	// orphans caches, per view, whether an owner this node holds replicas
	// for is out of the routing ring: only then can a check promote.
	orphans atomic.Pointer[orphanCache]
}

type orphanCache struct {
	v    *view
	held int64
	any  bool
}

// replicas are the copies one incarnation of an owner sent. earlier are
// those of the owner's incarnations before, newest first, each kept when
// the owner restarts until its keys expire or leave: the restarted owner
// takes each back (give), or this node promotes it should the owner fail
// again first. An owner killed again before it needed a key still has
// that key's count only in the replicas of a run before, however many
// runs ago (TestReplicaRunsBounded).
type replicas struct {
	incarnation uint64
	store       *bucket.Store
	earlier     *replicas
	// out counts the batches taken out of store for a reclaim that have
	// not landed or come back yet: the store stays in its chain meanwhile,
	// empty or not. Dropped as empty, a batch that came back went into a
	// store no longer held, and the owner's next run counted those keys
	// from zero (TestReclaimOutDuringSweepKeepsStore). A batch comes back
	// before out drops, so out is read first.
	out atomic.Int32
}

// promotion is a replica this node continued from: what it must not send
// back to the same incarnation of its owner.
type promotion struct {
	owner       string
	incarnation uint64
	base        bucket.Entry
	until       time.Time // when every counter of base has expired
}

// longestPeriod is the longest period of e's counters: none outlives it.
func longestPeriod(e bucket.Entry) time.Duration {
	var p time.Duration
	for _, cs := range e.Counters {
		p = max(p, cs.Counter.Limit.Period)
	}
	return p
}

func newReplicator(c *Cluster, n int) *replicator {
	return &replicator{c: c, n: n, full: make(chan struct{}, 1),
		from: map[string]*replicas{}, promoted: map[string]promotion{}, conns: map[string]Peer{}}
}

// changed notes that key's state changed here. It never blocks.
func (r *replicator) changed(key string) {
	if r.c.view.Load().full.Len() < 2 {
		return // alone: no successor to copy to
	}
	r.dirtyMu.Lock()
	n := len(r.dirty)
	if n < replicaQueue {
		r.dirty = append(r.dirty, key)
	}
	r.dirtyMu.Unlock()
	switch {
	case n >= replicaQueue:
		r.c.metrics.replicaKeys.WithLabelValues("dropped").Inc()
	case n+1 == replicaBatch:
		select {
		case r.full <- struct{}{}:
		default:
		}
	}
}

// loop sends noted changes every replicaFlush, or sooner when
// replicaBatch wait, until ctx ends.
func (r *replicator) loop(ctx context.Context) {
	every := replicaFlush
	if r.c.cfg.replicaFlush > 0 {
		every = r.c.cfg.replicaFlush
	}
	t := time.NewTicker(every)
	defer t.Stop()
	// Replicas expire on the node's own sweep cadence, not the flush's:
	// every 5 ms over every owner's store cost a 50-node cluster most of
	// its CPU.
	sweep := time.NewTicker(replicaSweep)
	defer sweep.Stop()
	defer func() {
		r.connsMu.Lock()
		conns := r.conns
		r.conns = map[string]Peer{}
		r.connsMu.Unlock()
		for _, p := range conns {
			p.Close()
		}
	}()
	pending := map[string]struct{}{}
	var spare []string
	var pruned *view
	rs := resyncer{synced: r.c.view.Load()}
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			r.sweep()
			if v := r.c.view.Load(); v != pruned {
				r.prune(v)
				pruned = v
			}
			continue
		case <-r.full:
		case <-t.C:
		}
		r.resyncStep(ctx, &rs)
		r.dirtyMu.Lock()
		keys := r.dirty
		r.dirty = spare[:0]
		r.dirtyMu.Unlock()
		for _, k := range keys {
			pending[k] = struct{}{}
		}
		spare = keys
		if len(pending) > 0 {
			r.flush(ctx, pending)
			clear(pending)
		}
	}
}

// flush sends the current state of each pending key this node owns to the
// key's successors, one merge per successor.
func (r *replicator) flush(ctx context.Context, pending map[string]struct{}) {
	for m, es := range r.batches(maps.Keys(pending), len(pending)) {
		r.send(ctx, m, es)
	}
}

// batches groups the current state of each of keys (about n of them) that
// this node owns by the key's successors.
func (r *replicator) batches(keys iter.Seq[string], n int) map[ring.Member][]bucket.Entry {
	now := r.c.now()
	v := r.c.view.Load()
	batches := map[ring.Member][]bucket.Entry{}
	// One buffer of successors for all keys and one of counter states
	// for the batch: a key costs no allocation of its own here, only its
	// share of the batch's.
	succ := make([]ring.Member, 0, 1+r.n)
	states := make([]bucket.CounterState, 0, n)
	for k := range keys {
		succ = v.full.AppendSuccessors(succ[:0], k, 1+r.n)
		if len(succ) < 2 || succ[0].Name != r.c.name {
			continue // not the owner (a fallback decision), or alone
		}
		var e bucket.Entry
		var ok bool
		if e, states, ok = r.c.store.AppendExport(now, k, states); !ok {
			continue
		}
		for _, m := range succ[1:] {
			batches[m] = append(batches[m], e)
		}
	}
	return batches
}

// send sends es to m as replicas, on the replication connection.
func (r *replicator) send(ctx context.Context, m ring.Member, es []bucket.Entry) error {
	return r.sendVia(ctx, r.conn(m), es)
}

// sendVia sends es as replicas over p.
func (r *replicator) sendVia(ctx context.Context, p Peer, es []bucket.Entry) error {
	ctx, cancel := context.WithTimeout(ctx, r.c.cfg.ForwardTimeout)
	err := p.Replicate(ctx, &rpc.ReplicaRequest{From: r.c.name, Incarnation: r.c.incarnation, Entries: es})
	cancel()
	result := "sent"
	if err != nil {
		result = "failed"
	}
	r.c.metrics.replicaKeys.WithLabelValues(result).Add(float64(len(es)))
	return err
}

// conn returns the replication connection to m, dropping those to
// addresses that are no longer a member's.
func (r *replicator) conn(m ring.Member) Peer {
	r.connsMu.Lock()
	p, ok := r.conns[m.Addr]
	if ok {
		r.connsMu.Unlock()
		return p
	}
	var gone []Peer
	if len(r.conns) > 0 {
		v := r.c.view.Load()
		for addr, old := range r.conns {
			if !v.hasAddr(addr) {
				gone = append(gone, old)
				delete(r.conns, addr)
			}
		}
	}
	p = r.c.transport.Dial(m.Addr)
	r.conns[m.Addr] = p
	r.connsMu.Unlock()
	for _, old := range gone {
		old.Close()
	}
	return p
}

// redial tells replication's connection to addr, if any, that its node
// answers again (peerSet.redial).
func (r *replicator) redial(addr string) {
	r.connsMu.Lock()
	p := r.conns[addr]
	r.connsMu.Unlock()
	if rd, ok := p.(redialer); ok {
		rd.Redial()
	}
}

// maxIncarnations bounds how many runs of one owner this node keeps
// replicas of. Each holds only the keys no later run has taken back, and
// goes once they expire; an owner restarting over and over faster than
// that loses the counts of its oldest runs' keys beyond the bound.
const maxIncarnations = 8

// hold keeps the replicas an owner sent, apart from those of its other
// incarnations.
func (r *replicator) hold(owner string, inc uint64, entries []bucket.Entry) {
	r.c.metrics.replicaKeys.WithLabelValues("received").Add(float64(len(entries)))
	r.keep(owner, inc, entries)
}

// keep is hold without counting the entries as received: a copy this node
// made itself (a pull's source, take) is no replica a peer sent, and the
// sent and received counts must match once replication has settled.
func (r *replicator) keep(owner string, inc uint64, entries []bucket.Entry) {
	if inc == 0 {
		inc = r.c.view.Load().incarnation(owner)
	}
	r.mu.Lock()
	h := r.from[owner]
	if h == nil || h.incarnation != inc {
		h = &replicas{incarnation: inc, store: bucket.NewStore(bucket.StoreConfig{}), earlier: h}
		r.from[owner] = h
		r.held.Store(int64(len(r.from)))
		r.trim(owner, h)
	}
	// Under r.mu, so that the sweep cannot drop h as empty before these
	// land in it.
	entries = r.withoutLate(r.c.now(), owner, inc, entries)
	refused := h.store.Replace(r.c.now(), entries)
	forgetEarlier(h, entries)
	r.mu.Unlock()
	if refused > 0 {
		r.c.metrics.replicaKeys.WithLabelValues("refused").Add(float64(refused))
	}
}

// forgetEarlier drops the keys of entries from the runs before h: a key's
// replica from the owner's latest run that sent one is its count, and an
// earlier run's copy is stale (a promotion that took the latest would
// otherwise find the stale one next, and the count would come home twice).
// Call with r.mu held.
func forgetEarlier(h *replicas, entries []bucket.Entry) {
	for old := h.earlier; old != nil; old = old.earlier {
		for _, e := range entries {
			old.store.Reset(e.Key)
		}
	}
}

// trim drops the runs of owner beyond maxIncarnations from chain h, the
// oldest first. Call with r.mu held.
func (r *replicator) trim(owner string, h *replicas) {
	for i := 1; h != nil; i, h = i+1, h.earlier {
		if i < maxIncarnations || h.earlier == nil {
			continue
		}
		var lost int
		for old := h.earlier; old != nil; old = old.earlier {
			lost += old.store.Len()
		}
		h.earlier = nil
		if lost > 0 {
			r.c.metrics.replicaKeys.WithLabelValues("old_run_dropped").Add(float64(lost))
			r.c.log.Warn("an owner restarted too often: replicas of its oldest runs dropped", "owner", owner, "keys", lost, "runs_kept", maxIncarnations)
		}
		return
	}
}

// superseded drops owner's replicas of the keys it handed over here.
func (r *replicator) superseded(owner string, entries []bucket.Entry) {
	if r.held.Load() == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for h := r.from[owner]; h != nil; h = h.earlier {
		for _, e := range entries {
			h.store.Reset(e.Key)
		}
	}
}

// promote moves into this node's table the replica of key kept for an
// owner that is out of the routing ring, when the table lacks key: the
// node continues from the failed owner's count.
func (r *replicator) promote(now time.Time, v *view, key string) {
	held := r.held.Load()
	if held == 0 {
		return
	}
	o := r.orphans.Load()
	if o == nil || o.v != v || o.held != held {
		o = r.findOrphans(v, held)
		r.orphans.Store(o)
	}
	// A peer suspected a moment ago may still be in v: the suspicion is
	// recorded before the ring is rebuilt, and a check that saw it must
	// not decide from zero meanwhile.
	if !o.any && r.c.peers.nsuspects.Load() == 0 {
		return
	}
	// A count the table holds of key is the key's count, but for one made
	// here from nothing beside the owner (replica_beside.go): the replica
	// adds to that one.
	has := r.c.store.Has(key)
	if has && r.nbeside.Load() == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if has && !r.isBeside(now, key) {
		return
	}
	for owner, h := range r.from {
		if v.routing.Has(owner) && !r.c.peers.isSuspect(owner) {
			continue
		}
		for ; h != nil; h = h.earlier {
			if e, ok := h.store.Take(now, key); ok {
				forgetEarlier(h, []bucket.Entry{e})
				if r.c.continueReplica(now, e) {
					// The table is full beyond its headroom: it creates
					// nothing for key until the sweep makes room.
					r.c.metrics.replicaKeys.WithLabelValues("refused").Inc()
					return
				}
				r.forgetBeside(key)
				r.promoted[key] = promotion{owner: owner, incarnation: h.incarnation, base: e, until: now.Add(longestPeriod(e))}
				// The key is here again: a mark left from its last move
				// (the owner's pull before it crashed again) no longer
				// says where its count is.
				r.c.moved.forget(key)
				r.npromo.Store(int64(len(r.promoted)))
				r.c.metrics.replicaKeys.WithLabelValues("promoted").Inc()
				r.c.log.Debug("continuing from a replica", "key", key, "owner", owner, "incarnation", h.incarnation, "counts", countsOf{e})
				return
			}
		}
	}
}

// findOrphans reports whether any owner replicas are held for is out of
// v's routing ring.
func (r *replicator) findOrphans(v *view, held int64) *orphanCache {
	r.mu.Lock()
	defer r.mu.Unlock()
	for owner := range r.from {
		if !v.routing.Has(owner) {
			return &orphanCache{v: v, held: held, any: true}
		}
	}
	return &orphanCache{v: v, held: held}
}

// sweep drops expired replicas — a pass over each store, without r.mu
// held — and the stores that hold nothing any more.
func (r *replicator) sweep() {
	now := r.c.now()
	r.mu.Lock()
	var stores []*bucket.Store
	for _, h := range r.from {
		for ; h != nil; h = h.earlier {
			stores = append(stores, h.store)
		}
	}
	r.mu.Unlock()
	for _, s := range stores {
		s.Sweep(now, 0) // one pass; it holds a shard's lock briefly
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for owner, h := range r.from {
		if h = withoutEmpty(h); h == nil {
			delete(r.from, owner)
		} else {
			r.from[owner] = h
		}
	}
	r.held.Store(int64(len(r.from)))
	// A promotion is forgotten when its key leaves (see left), not when
	// the key is missing from the table: a handoff takes it out before
	// sending it, and must still find the promotion. One whose counters
	// have all expired is forgotten here.
	for key, p := range r.promoted {
		if now.After(p.until) {
			delete(r.promoted, key)
		}
	}
	r.npromo.Store(int64(len(r.promoted)))
	for key, until := range r.beside {
		if now.After(until) {
			r.forgetBeside(key)
		}
	}
}

// withoutEmpty returns chain h less its stores that hold nothing and have
// no batch out. Call with r.mu held.
func withoutEmpty(h *replicas) *replicas {
	if h == nil {
		return nil
	}
	rest := withoutEmpty(h.earlier)
	if h.out.Load() == 0 && h.store.Len() == 0 {
		return rest
	}
	h.earlier = rest
	return h
}
