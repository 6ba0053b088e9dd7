package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/ring"
)

// handoffBatch bounds how many routing keys travel in one merge RPC, so a
// handoff never holds a shard long nor builds a frame near the size cap.
const handoffBatch = 256

// handoffLoop moves counters this node holds but no longer owns to their
// new owners, whenever the ring changes. Checks never wait for it.
func (c *Cluster) handoffLoop() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.handoff:
		}
		c.handoffAll(c.ctx)
	}
}

// handoffAll sends every entry owned elsewhere to its owner, batch by batch,
// until none is left or ctx ends. An entry is taken out of the local table
// before it is sent, so a count is never both here and there; if its owner
// does not take it, it goes to whoever owns it then, or back here.
func (c *Cluster) handoffAll(ctx context.Context) {
	// One handoff at a time: Close waits here for the background one, so
	// none is cut off mid-batch when the node stops.
	c.handoffMu.Lock()
	defer c.handoffMu.Unlock()
	// Replicas of owners' earlier runs first: an owner takes them in place
	// of its data file's counts, and a count of the table made beside one
	// follows as an addition (replica_beside.go). Every merge of the pass
	// names the run of its receiver that this view knows
	// (rpc.MergeRequest.ToIncarnation); one restarted since refuses it,
	// and the pass the new run's gossip brings (a member restarted:
	// kickHandoff) reclaims first, then sends the rest.
	pass := c.view.Load()
	c.reclaim(ctx, pass)
	for ctx.Err() == nil {
		r := c.Ring()
		notMine := func(key string) bool {
			o, ok := r.Owner(key)
			return ok && o.Name != c.name
		}
		c.movingMu.Lock()
		entries := c.store.Extract(c.now(), notMine, handoffBatch)
		plan, kept := c.planMoves(entries)
		c.movingMu.Unlock()
		if len(entries) == 0 {
			break
		}
		if kept += c.send(ctx, pass, plan, true); kept == len(entries) {
			break // no owner took any: the next ring change tries again
		}
	}
	c.offerRestored(ctx, pass)
}

// outbound is the entries going to one owner, and their move record.
// Entries continued here from a replica of to's go apart, with the
// replicas they started from (bases) and the incarnation of to that sent
// those: to alone knows whether it still runs it (rpc.MergeRequest.Bases).
type outbound struct {
	to      ring.Member
	es      []bucket.Entry
	mv      *move
	baseInc uint64
	bases   []bucket.Entry
	// back, if set, takes the entries back when no owner took them; else
	// they go back into the table. Replicas handed back go to their
	// replica store (reclaim), a data file's counts to the restored ones
	// (offerRestored).
	back func([]bucket.Entry)
	// settle, if set, runs once the batch has landed, come back, or been
	// left to its receiver: a replica store stays held until then.
	settle func()
	// fillIn sends the entries as fill-ins (rpc.MergeRequest.FillIn).
	fillIn bool
	// beside sends them as counts made beside their owner
	// (rpc.MergeRequest.Beside, replica_beside.go).
	beside bool
}

// destination is where planMoves sends an entry: to its owner, in a batch
// of the entries continued from that owner's replicas sent by incarnation
// baseInc (0: entries of no such replica).
type destination struct {
	to      ring.Member
	baseInc uint64
	beside  bool
}

// planMoves groups entries taken out of the table by current owner: those
// this node owns go back into the table, the others are marked as moving
// to their owner, so that a check or a pull of one that reaches this node
// waits for the batch and follows it. Call it with movingMu held, in the
// same step as taking the entries out.
func (c *Cluster) planMoves(entries []bucket.Entry) (plan []outbound, kept int) {
	byOwner := map[destination]*outbound{}
	var mine []bucket.Entry
	r := c.Ring()
	now := c.now()
	for _, e := range entries {
		o, ok := r.Owner(e.Key)
		if !ok || o.Name == c.name {
			mine = append(mine, e)
			continue
		}
		d := destination{to: o}
		var base bucket.Entry
		if c.repl != nil {
			d.baseInc, base = c.repl.baseOf(o.Name, e.Key)
			d.beside = d.baseInc == 0 && c.repl.besideHere(now, e.Key)
		}
		ob := byOwner[d]
		if ob == nil {
			ob = &outbound{to: o, baseInc: d.baseInc, beside: d.beside}
			byOwner[d] = ob
		}
		ob.es = append(ob.es, e)
		if d.baseInc != 0 {
			ob.bases = append(ob.bases, base)
		}
	}
	if len(mine) > 0 {
		c.mergeHere(mine)
	}
	until := now.Add(moveTTL)
	for _, ob := range byOwner {
		ob.mv = c.moved.mark(ob.to, ob.es, until)
		if c.repl != nil && ob.baseInc != 0 {
			// The counts, continued here from the owner's replicas, go
			// home: copies of its runs kept here are stale from now on
			// (promoted later, they would come home a second time), as
			// for a pull (give). Dropped before the send, not after: the
			// owner copies what it takes back here at once (copyNow),
			// before it answers. Counts made without a replica leave
			// the copies to go home beside them (reclaim,
			// replica_beside.go).
			c.repl.superseded(ob.to.Name, ob.es)
		}
		plan = append(plan, *ob)
	}
	return plan, len(mine)
}

// send merges each planned batch into its owner, as the run of it that
// pass knows, and returns how many entries it kept here.
func (c *Cluster) send(ctx context.Context, pass *view, plan []outbound, retry bool) (kept int) {
	for _, o := range plan {
		// The RPC client bounds the merge (rpc.DefaultMergeTimeout) unless
		// ctx ends first. It is generous: a merge that times out after it
		// was applied would be sent again and counted twice.
		req := &rpc.MergeRequest{From: c.name, BaseIncarnation: o.baseInc, Bases: o.bases, FillIn: o.fillIn, Beside: o.beside,
			ToIncarnation: pass.incarnation(o.to.Name), FromIncarnation: c.incarnation, Entries: o.es}
		err := c.peers.get(o.to.Name, o.to.Addr).Merge(ctx, req)
		if o.mv.landed.Load() && errors.Is(err, rpc.ErrUnavailable) && !errors.Is(err, rpc.ErrNotSent) {
			// The answer was lost (sent, then no answer: applied or
			// not), but the owner's copy of the batch came back here
			// first (it copies what it takes back before it answers): it
			// applied the batch. An answer that refuses says it did not. Kept or sent again, the
			// batch would be counted twice (TestLostAnswerOfAppliedHandoff).
			c.log.Debug("handoff answer lost after the owner copied the batch back: taken as landed", "peer", o.to.Name, "keys", len(o.es), "err", err)
			err = nil
		}
		if err == nil {
			if c.repl != nil && !o.fillIn {
				c.repl.left(o.es)
			}
			o.settled()
			close(o.mv.done)
			c.metrics.handoffKeys.WithLabelValues("sent").Add(float64(len(o.es)))
			c.log.Debug("handed off", "to", o.to.Name, "keys", len(o.es), "base_incarnation", o.baseInc, "fill_in", o.fillIn, "counts", countsOf(o.es))
			continue
		}
		if errors.Is(err, rpc.ErrOtherRun) {
			// The owner answers, as a run this view does not know yet:
			// keep the batch for the pass that view brings.
			c.log.Debug("handoff refused by a run of its owner this node does not know yet; kept for the next pass", "peer", o.to.Name, "keys", len(o.es))
			kept += c.keep(o)
			continue
		}
		c.metrics.rpcErrors.WithLabelValues("merge").Inc()
		c.peers.suspect(o.to.Name, err)
		if errors.Is(err, rpc.ErrNoAnswer) && !errors.Is(err, context.Canceled) {
			// Not when this node gave up itself (it is stopping, and
			// its peers may be too: a peer that refuses merges while it
			// leaves would lose them); then the counts are kept below,
			// and the data file has them.
			c.leaveToPeer(o, err)
			continue
		}
		if retry && ctx.Err() == nil {
			// Re-planned in one step with releasing the old move, so
			// that the keys are never out of the table unmarked.
			c.movingMu.Lock()
			again, k := c.planMoves(o.es)
			o.settled()
			close(o.mv.done)
			c.movingMu.Unlock()
			kept += k + c.send(ctx, pass, again, false)
			continue
		}
		// Keep the counts here: the next ring change or handoff pass
		// sends them on, or, when this node is leaving (a whole cluster
		// stopping at once refuses every handoff), its data file keeps
		// them for the restart.
		kept += c.keep(o)
		if !c.leaving.Load() {
			c.log.Warn("handoff failed; counts kept here for now", "peer", o.to.Name, "keys", len(o.es), "err", err)
			continue
		}
		c.metrics.handoffKeys.WithLabelValues("kept").Add(float64(len(o.es)))
		c.log.Warn("handoff failed while leaving; counts stay on this node (lost at exit without a data dir)", "peer", o.to.Name, "keys", len(o.es), "err", err)
	}
	return kept
}

// noteCopies marks as landed the moves of keys that from's replicas of
// them arrived for while they were on their way to from (move.landed).
func (c *Cluster) noteCopies(from string, entries []bucket.Entry) {
	if c.moved.n.Load() == 0 {
		return
	}
	now := c.now()
	for _, e := range entries {
		if mv := c.moved.get(e.Key, now); mv != nil && mv.to.Name == from {
			mv.landed.Store(true)
		}
	}
}

// keep takes back a batch that its owner did not take, and returns its
// length.
func (c *Cluster) keep(o outbound) int {
	c.movingMu.Lock()
	defer c.movingMu.Unlock()
	if o.back != nil {
		o.back(o.es)
	} else {
		c.mergeHere(o.es)
	}
	o.settled()
	c.unmarkLocked(o)
	return len(o.es)
}

// settled runs o.settle, if set.
func (o outbound) settled() {
	if o.settle != nil {
		o.settle()
	}
}

// leaveToPeer gives up on a batch that was sent and not answered in time.
// The peer may be paused or cut off rather than gone: it applies the
// merge when it runs again (what it had read, it reads even after the
// connection is reset). Sent to another node as well, or kept here and
// handed off again, the counts would be counted twice; so they are left
// to the peer, and the keys stay marked as moved to it. If it never got
// them, it continues from its replica of this node when it next decides
// them, as after a crash of this node.
func (c *Cluster) leaveToPeer(o outbound, err error) {
	if c.repl != nil && !o.fillIn {
		c.repl.left(o.es)
	}
	o.settled()
	close(o.mv.done)
	c.metrics.handoffKeys.WithLabelValues("unanswered").Add(float64(len(o.es)))
	c.log.Warn("handoff not answered in time; counts left to the peer, not sent elsewhere (that could count them twice)",
		"peer", o.to.Name, "keys", len(o.es), "err", err)
}

// unmarkLocked forgets the move of a batch that did not land, and wakes
// those waiting for it: they find the keys where they are now.
func (c *Cluster) unmarkLocked(o outbound) {
	for _, e := range o.es {
		c.moved.forget(e.Key)
	}
	close(o.mv.done)
}

// maxLeavingHops bounds how often a check is passed on by leaving nodes:
// two nodes leaving at once may each still route to the other.
const maxLeavingHops = 3

// serveLeaving decides a check on a node that is handing its keys off. A
// key still held here is decided here (its entry goes to the new owner
// later, count included); any other check goes to the key's new owner,
// after the key's entry if it is on its way. Nothing new is counted here.
func (c *Cluster) serveLeaving(ctx context.Context, v *view, req *rpc.CheckRequest, resp *rpc.CheckResponse) error {
	var held bool
	var err error
	// Under movingMu, as a handoff takes entries out and marks them
	// moved in one step: a key not held here is marked moved if it left.
	c.movingMu.Lock()
	resp.Statuses, resp.Allowed, held, err = c.store.CheckHeld(c.now(), req.Key, req.Counters, req.Cost, resp.Statuses[:0])
	mv := c.moved.get(req.Key, c.now())
	c.movingMu.Unlock()
	if held || err != nil {
		resp.Node = c.name
		c.metrics.checksLocal.Inc()
		return err
	}
	to, ok := v.routing.Owner(req.Key)
	if mv != nil {
		mv.wait(ctx)
		to, ok = mv.to, true
	}
	if !ok || to.Name == c.name || req.Hops >= maxLeavingHops {
		// The last node, or a check passed around too often: decide.
		c.metrics.checksLocal.Inc()
		return c.decideLocal(c.now(), req, resp)
	}
	req.Hops++
	if err := c.peers.get(to.Name, to.Addr).Check(ctx, req, resp); err != nil {
		if !errors.Is(err, rpc.ErrUnavailable) || ctx.Err() != nil {
			return err
		}
		return c.decideFallback(req, resp, to.Name, err)
	}
	c.metrics.checksForwarded.Inc()
	return nil
}

// mergeHere adds entries to this node's table. Their keys are counted here
// again, so any record of having given them away is dropped. A table full
// beyond its headroom for moved counts (bucket.MovedHeadroom) refuses
// some: they are counted and logged, not lost silently, and the table
// creates no new key until the sweep has made room, so none of them is
// decided from zero meanwhile.
func (c *Cluster) mergeHere(entries []bucket.Entry) {
	defer c.replicate(entries)
	if refused := c.store.Merge(c.now(), entries); refused > 0 {
		c.metrics.handoffKeys.WithLabelValues("refused").Add(float64(refused))
		c.logs.Warn(c.now(), "merge-refused", "counter table full: moved counts refused", "counters", refused, "keys", len(entries))
	}
	for _, e := range entries {
		c.moved.forget(e.Key)
	}
}

// mergeHandedIn merges entries that run inc of from handed here, in one
// step under movingMu, so that no check promotes from's replica of one of
// them in between: less the replicas of that run this node continued the
// keys from already (lessPromoted), and dropping from's replicas of them
// (handedIn); and giving back the units the sender was given back below
// the bases it continued from (deficits, onBases). beside says the sender
// made the counts beside their owner (rpc.MergeRequest.Beside).
func (c *Cluster) mergeHandedIn(from string, inc uint64, entries, deficits []bucket.Entry, beside bool) {
	c.movingMu.Lock()
	defer c.movingMu.Unlock()
	if c.repl != nil {
		entries, deficits = c.repl.lessPromoted(from, inc, entries, deficits)
		c.repl.handedIn(from, inc, entries)
		if beside {
			// Marked where the merge makes a fresh entry: added to one
			// held already, the count beside joins that one's kind.
			now := c.now()
			for _, e := range entries {
				if !c.store.Has(e.Key) {
					defer c.repl.noteBeside(e.Key, now.Add(longestPeriod(e)))
				}
			}
		} else {
			c.repl.unmarkBeside(entries) // whole counts
		}
	}
	c.mergeHere(entries)
	if len(deficits) > 0 {
		c.store.Refund(c.now(), deficits)
		c.replicate(deficits)
	}
}

// replicate notes that the counts of entries' keys changed here other than
// by a check (a merge, a refund), so that their successors' replicas
// follow: a crash must not lose a count handed over or taken back.
func (c *Cluster) replicate(entries []bucket.Entry) {
	if c.repl == nil {
		return
	}
	for _, e := range entries {
		c.repl.changed(e.Key)
	}
}

// Close leaves the cluster gracefully within ctx: it stops owning keys
// (checks arriving now are forwarded to their new owners), hands every
// counter it holds to its new owner, leaves gossip, then closes the RPC
// server and stops its goroutines.
func (c *Cluster) Close(ctx context.Context) error {
	if c.gossip == nil { // never started
		c.cancel()
		return nil
	}
	if c.leaving.Swap(true) {
		return nil
	}
	c.awaitChanges(ctx)
	if c.leases != nil {
		c.leases.settle(ctx)
	}
	c.adoptAll(c.now())
	c.rebuild()
	if c.Ring().Len() > 0 {
		c.handoffAll(ctx)
	}
	// The leave message is confirmed by a peer that hears it; when the
	// whole cluster stops at once none may: a quarter of what is left (at
	// most maxLeaveWait), so that the drain after it still fits.
	timeout := maxLeaveWait
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(time.Until(dl)/4, maxLeaveWait)
	}
	err := c.gossip.leave(max(timeout, 10*time.Millisecond))
	c.quiesce(ctx)
	c.stopped.Store(true) // from here on checks are refused, not half-served
	// Every request peers sent that the server read is answered before
	// it closes: a check applied here is never retried elsewhere.
	if serr := c.transport.Shutdown(ctx); err == nil {
		err = serr
	}
	c.cancel()
	c.peers.closeAll()
	c.wg.Wait()
	return err
}

// maxLeaveWait bounds how long Close waits for its leave message to be
// confirmed: peers that do not hear it detect the departure as a failure.
const maxLeaveWait = 2 * time.Second

// enter admits a change to this node's table of the keys it holds — a
// decision, a merge — unless the node is leaving; exit ends it. Close sets
// leaving and then waits (awaitChanges) until no change runs before it
// hands its counts off, so that none lands on a key whose entry has left
// already, where it would be lost at exit.
func (c *Cluster) enter() bool {
	c.changing.Add(1)
	if c.leaving.Load() {
		c.changing.Add(-1)
		return false
	}
	return true
}

func (c *Cluster) exit() { c.changing.Add(-1) }

// awaitChanges waits, within ctx, until no change admitted by enter runs.
// They are short (a decision, or one RPC within its timeout): it polls.
func (c *Cluster) awaitChanges(ctx context.Context) {
	if c.changing.Load() == 0 {
		return
	}
	t := time.NewTicker(100 * time.Microsecond)
	defer t.Stop()
	for c.changing.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// quiesce waits, within ctx and at most maxPolls polls, until peers have
// stopped sending checks here (none for quietPolls polls in a row): their
// rings drop this node as the leave message reaches them. Until then it
// keeps passing their checks to the new owners, so none of them meets a
// closed port and mistakes a graceful leave for a crash. It counts ticks
// rather than reading the clock: a test's clock may stand still.
func (c *Cluster) quiesce(ctx context.Context) {
	const (
		poll       = 10 * time.Millisecond
		quietPolls = 10  // 100 ms without a check from a peer
		maxPolls   = 200 // 2 s at most
	)
	t := time.NewTicker(poll)
	defer t.Stop()
	last, quiet := c.served.Load(), 0
	for range maxPolls {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n := c.served.Load(); n != last {
			last, quiet = n, 0
		} else if quiet++; quiet >= quietPolls {
			return
		}
	}
}
