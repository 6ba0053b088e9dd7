package cluster

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
)

// A node that restarts with a data file has counts that may not be its
// own any more: while it was away, its keys' next owner continued from
// the replicas it had sent — newer than the file — and counted on top of
// them. Taking both would count the file's hits twice; taking the file's
// alone would lose the hits since. So a restarted node keeps what it read
// apart from its table (Restore) and takes each key's count once it knows
// where that count is:
//
//   - A key pulled from its previous owner (the node's successor while it
//     was away), or handed back by it, that holds the node's own counts —
//     a promoted replica and what was counted on top, or a replica never
//     promoted (rpc.TakeResponse.Supersedes, or a merge's Bases of another
//     incarnation than this one) —
//     replaces the file's count. A count made there without a replica
//     (the fail policy's) adds to it.
//   - A key decided here that no one else held takes the file's count.
//   - pullWindow after the node joined, whatever is left joins the table.
//
// So the replicas are authoritative over the data file whenever they
// exist, and the file fills in for keys no replica holds.
type restore struct {
	n     atomic.Int64 // keys held, read on the check path
	mu    sync.Mutex
	store *bucket.Store
	until time.Time // when the rest joins the table; zero until joined
	// adopted keeps the file's counts that joined the table (adopt,
	// adoptRest), until their keys' windows end: a superseding count
	// that arrives after all (a replica handed back late) holds those
	// hits too, and they must leave the table before it joins
	// (mergeSuperseding). It goes pullWindow after the restore window
	// ended (adoptedUntil): the handbacks of a restart come soon after
	// the join, and it holds as much as the file.
	adopted      *bucket.Store
	adoptedUntil time.Time
}

// Restore keeps entries read from a data file apart from the table until
// each key's count is known (see restore). Call it before Start.
func (c *Cluster) Restore(now time.Time, entries []bucket.Entry) {
	r := &c.restore
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.store == nil {
		r.store = bucket.NewStore(bucket.StoreConfig{})
	}
	r.store.Merge(now, entries)
	r.n.Store(int64(r.store.Len()))
}

// Restored lists the live entries kept apart, for a data file written
// meanwhile.
func (c *Cluster) Restored(now time.Time) []bucket.Entry {
	r := &c.restore
	if r.n.Load() == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.store.Snapshot(now, nil)
}

// supersede forgets the restored counts of entries' keys: what arrived
// supersedes them. It returns the file's counts of those keys that had
// joined the table already.
func (r *restore) supersede(now time.Time, entries []bucket.Entry) (adopted []bucket.Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.store != nil && r.n.Load() > 0 {
		for _, e := range entries {
			r.store.Reset(e.Key)
		}
		r.n.Store(int64(r.store.Len()))
	}
	if r.adopted != nil && !r.adoptedUntil.IsZero() && now.After(r.adoptedUntil) {
		r.adopted = nil
	}
	if r.adopted == nil {
		return nil
	}
	for _, e := range entries {
		if f, ok := r.adopted.Take(now, e.Key); ok {
			adopted = append(adopted, f)
		}
	}
	return adopted
}

// forget drops key's restored count, if any: a newer one took its place.
func (r *restore) forget(key string) {
	if r.n.Load() == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.store.Reset(key)
	r.n.Store(int64(r.store.Len()))
}

// noteAdopted notes file counts that joined the table. Call with r.mu
// held.
func (r *restore) noteAdopted(now time.Time, entries []bucket.Entry) {
	if r.adopted == nil {
		r.adopted = bucket.NewStore(bucket.StoreConfig{})
	}
	r.adopted.Merge(now, entries)
}

// takeBack merges entries that hold this node's own counts from before it
// restarted (mergeSuperseding) and copies them to its successors before
// the caller answers or decides (copyNow, replica_now.go).
func (c *Cluster) takeBack(ctx context.Context, entries []bucket.Entry) {
	c.mergeSuperseding(entries)
	if c.repl != nil {
		c.repl.copyNow(ctx, entries)
	}
}

// mergeSuperseding merges entries that hold this node's own counts from
// before it restarted — a replica it sent then, and what was counted on
// top of it while it was away — in place of what it read from its data
// file. A file count that joined the table already (its key was decided
// first, or the restore window ended) leaves it first: the entries hold
// its hits too. In one step under movingMu, so that no local decision
// sees the table between. (Without it, a count handed back after the
// window was added to the file's, and the hits the file had were counted
// twice: TestLateSupersedingCountAfterAdoption.)
func (c *Cluster) mergeSuperseding(entries []bucket.Entry) {
	c.movingMu.Lock()
	defer c.movingMu.Unlock()
	c.supersedeFile(c.now(), entries)
	c.mergeHere(entries)
}

// continueReplica merges e, the replica of an owner gone from the ring,
// into the table in place of this node's data file's count of the key,
// and reports whether the table refused it (full beyond its headroom).
// The replica is the owner's count, newer than the file's (a count this
// node once continued itself, or handed on): added to it, the file's hits
// counted twice (TestPromotedReplicaBeatsOwnFile).
func (c *Cluster) continueReplica(now time.Time, e bucket.Entry) (refused bool) {
	es := []bucket.Entry{e}
	c.supersedeFile(now, es)
	return c.store.Merge(now, es) > 0
}

// supersedeFile forgets the data file's counts of entries' keys, which
// entries hold: those that joined the table already leave it first.
func (c *Cluster) supersedeFile(now time.Time, entries []bucket.Entry) {
	adopted := c.restore.supersede(now, entries)
	if len(adopted) > 0 {
		c.log.Debug("data file's counts superseded after they joined the table", "counts", countsOf(adopted))
	}
	for _, f := range adopted {
		if t, ok := c.store.Take(now, f.Key); ok {
			if rest := bucket.Subtract(t, f); len(rest.Counters) > 0 {
				c.store.Merge(now, []bucket.Entry{rest})
			}
		}
	}
}

// adopt moves key's restored count, if any, into the table before this
// node decides the key: no one else held it.
func (c *Cluster) adopt(now time.Time, key string) {
	if c.restore.n.Load() == 0 {
		return
	}
	if c.repl != nil && c.repl.holdsAny(key) {
		// A replica here is the key's count, newer than the file's (a
		// count this node once continued, since gone home): joined to
		// the table, the file's count shadowed the replica, which went
		// home beside it later (TestOwnFileNotAdoptedBesideReplica).
		c.restore.forget(key)
		return
	}
	if e, ok := c.restore.take(now, key, true); ok {
		c.store.Merge(now, []bucket.Entry{e})
		c.replicate([]bucket.Entry{e})
		c.log.Debug("deciding from the data file's count", "key", key, "counts", countsOf{e})
	}
}

// take removes and returns key's restored count, if any: for the table
// (adopting: it is noted as adopted in the same step), or for a peer that
// pulls the key (its new owner after a whole cluster restarted: the count
// read from this node's file is this node's).
func (r *restore) take(now time.Time, key string, adopting bool) (bucket.Entry, bool) {
	if r.n.Load() == 0 {
		return bucket.Entry{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.store.Take(now, key)
	r.n.Store(int64(r.store.Len()))
	if ok && adopting {
		r.noteAdopted(now, []bucket.Entry{e})
	}
	return e, ok
}

// joined starts the restore window once this node's ring holds others;
// alone, there is no one else to have held its counts: they join the
// table at once.
func (c *Cluster) joined(now time.Time, alone bool) {
	r := &c.restore
	if r.n.Load() == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.until.IsZero() {
		r.until = now.Add(pullWindow)
		if alone {
			r.until = now
		}
	}
}

// adoptAll moves every restored count into the table now: the node is
// leaving, and hands them off with the rest.
func (c *Cluster) adoptAll(now time.Time) {
	c.restore.mu.Lock()
	c.restore.until = now
	c.restore.mu.Unlock()
	c.adoptRest(now)
}

// adoptRest moves the restored counts of keys this node owns into the
// table once the restore window is over, once; those of keys others own
// stay apart, offered to their owners as fill-ins (offerRestored).
func (c *Cluster) adoptRest(now time.Time) {
	r := &c.restore
	if r.n.Load() == 0 {
		return
	}
	others := othersIn(c.Ring(), c.name)
	due := func() bool { return !r.until.IsZero() && !now.Before(r.until) && r.adoptedUntil.IsZero() }
	r.mu.Lock()
	ok := due()
	r.mu.Unlock()
	if !ok {
		return
	}
	// Under movingMu: a check finds each count in the file or in the
	// table, never on its way between.
	c.movingMu.Lock()
	defer c.movingMu.Unlock()
	r.mu.Lock()
	if !due() {
		r.mu.Unlock()
		return
	}
	own := r.store.Extract(now, func(key string) bool { return !others(key) }, 0)
	r.mu.Unlock()
	// A key a replica here holds has its newer count in the replica (see
	// adopt): its file count goes.
	if c.repl != nil && c.repl.held.Load() > 0 {
		own = slices.DeleteFunc(own, func(e bucket.Entry) bool { return c.repl.holdsAny(e.Key) })
	}
	r.mu.Lock()
	r.noteAdopted(now, own)
	r.adoptedUntil = now.Add(pullWindow)
	r.n.Store(int64(r.store.Len()))
	offered := r.store.Len()
	r.mu.Unlock()
	c.store.Merge(now, own)
	c.log.Info("counts restored from the data file that no peer held", "keys", len(own), "offered_to_their_owners", offered)
	c.kickHandoff() // the others' go to them
}
