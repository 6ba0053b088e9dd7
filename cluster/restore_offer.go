package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/ring"
)

// A restarted node's data file can hold counts of keys others own: a
// replica it promoted while their owner was away, say. What became of
// such a count while the node was down, it cannot tell: its owner may
// have pulled it or had it handed back before the crash, and counted on
// top since, or another node may have continued it from the replica this
// node sent. Handed to the owner as an ordinary merge it would be added
// to that newer count, and its hits counted twice (a key's whole count at
// once, so every key of an owner cut off at the same point:
// TestFileOfFormerNextOwnerCountsNothingTwice). So once the restore
// window is over they are offered to their owners as fill-ins
// (rpc.MergeRequest.FillIn), which an owner takes only for keys it holds
// nothing of — a whole cluster restarting, where the file is the only
// copy — and drops otherwise. Until an owner takes them they stay with
// the restored counts: in the data file, and given to a pull.

// offerRestored sends the restored counts of keys others own to their
// owners as fill-ins, until none is left or no owner takes any.
func (c *Cluster) offerRestored(ctx context.Context, pass *view) {
	for ctx.Err() == nil {
		r := c.Ring()
		c.movingMu.Lock()
		entries := c.restore.extractOthers(c.now(), othersIn(r, c.name), handoffBatch)
		plan := c.planFillIns(r, entries)
		c.movingMu.Unlock()
		if len(entries) == 0 || c.send(ctx, pass, plan, false) == len(entries) {
			return
		}
	}
}

// othersIn matches the keys that r gives to another member than self.
func othersIn(r *ring.Ring, self string) func(key string) bool {
	return func(key string) bool {
		o, ok := r.Owner(key)
		return ok && o.Name != self
	}
}

// planFillIns groups restored entries by owner and marks them moving
// there, so that a pull of one meanwhile waits for the batch (as for a
// handoff, planMoves). Call it with movingMu held. A batch no owner
// takes goes back to the restored counts.
func (c *Cluster) planFillIns(r *ring.Ring, entries []bucket.Entry) []outbound {
	byOwner := map[string]*outbound{}
	for _, e := range entries {
		o, _ := r.Owner(e.Key) // othersIn matched: an owner other than this node
		ob := byOwner[o.Name]
		if ob == nil {
			ob = &outbound{to: o, fillIn: true, back: c.restore.putBack(c.now)}
			byOwner[o.Name] = ob
		}
		ob.es = append(ob.es, e)
	}
	var plan []outbound
	until := c.now().Add(moveTTL)
	for _, ob := range byOwner {
		ob.mv = c.moved.mark(ob.to, ob.es, until)
		plan = append(plan, *ob)
	}
	return plan
}

// extractOthers takes out up to max restored entries whose keys match,
// once the restore window is over (adoptRest has run).
func (r *restore) extractOthers(now time.Time, match func(key string) bool, max int) []bucket.Entry {
	if r.n.Load() == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.adoptedUntil.IsZero() {
		return nil
	}
	es := r.store.Extract(now, match, max)
	r.n.Store(int64(r.store.Len()))
	return es
}

// putBack returns the function that keeps fill-ins no owner took with
// the restored counts again.
func (r *restore) putBack(now func() time.Time) func([]bucket.Entry) {
	return func(entries []bucket.Entry) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.store.Merge(now(), entries)
		r.n.Store(int64(r.store.Len()))
	}
}

// holds tells whether key's restored count is still kept apart.
func (r *restore) holds(key string) bool {
	if r.n.Load() == 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.store.Has(key)
}

// fillIn merges the counts a restarted peer read from its data file, each
// only if this node holds nothing of its key: no count in the table, none
// restored from its own file, none on its way to another node. What it
// holds is newer. A key whose count may still be on its previous owner
// (this node restarted or joined a moment ago and has not pulled it yet)
// is pulled first, as a check would: taking the file's count in its place
// would have this node decide from the old count and add the newer one
// to it when it came home (TestFillInWaitsForOwnersCountToComeBack). It
// returns how many it dropped.
func (c *Cluster) fillIn(ctx context.Context, sender string, entries []bucket.Entry) (dropped int) {
	unknown := c.pullInbound(ctx, sender, entries)
	c.movingMu.Lock()
	defer c.movingMu.Unlock()
	now := c.now()
	take := entries[:0:0]
	for _, e := range entries {
		if c.repl != nil {
			// A replica here of an owner gone is the key's count:
			// promoted, it drops the fill-in, which it supersedes
			// (TestFillInDroppedForCrashedOwnersReplica).
			c.repl.promote(now, c.view.Load(), e.Key)
		}
		if unknown[e.Key] || c.store.Has(e.Key) || c.restore.holds(e.Key) || c.moved.get(e.Key, now) != nil {
			continue
		}
		take = append(take, e)
	}
	if len(take) > 0 {
		c.mergeHere(take)
	}
	return len(entries) - len(take)
}

// pullInbound pulls the counts of entries' keys that may still be on their
// previous owner, fillInPulls at a time, and returns the keys whose
// previous owner did not answer: their count may be there still. The
// sender is not pulled from: it handed off its table before it offered
// its file (handoffAll), and it holds the offered keys as moving, so a
// pull would wait for this very merge.
func (c *Cluster) pullInbound(ctx context.Context, sender string, entries []bucket.Entry) map[string]bool {
	v := c.view.Load()
	now := c.now()
	var wg sync.WaitGroup
	slots := make(chan struct{}, fillInPulls)
	failed := make(chan string, len(entries))
	for _, e := range entries {
		from, ok := v.inboundFrom(e.Key, now)
		if !ok || from.Name == sender || c.store.Has(e.Key) {
			continue
		}
		slots <- struct{}{}
		wg.Add(1)
		go func(key string) {
			defer func() { <-slots; wg.Done() }()
			if !c.pull(ctx, key, from) {
				failed <- key
			}
		}(e.Key)
	}
	wg.Wait()
	close(failed)
	var unknown map[string]bool
	for key := range failed {
		if unknown == nil {
			unknown = map[string]bool{}
		}
		unknown[key] = true
	}
	return unknown
}

// fillInPulls bounds the pulls one fill-in runs at once.
const fillInPulls = 16
