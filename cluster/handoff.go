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
	for ctx.Err() == nil {
		r := c.Ring()
		notMine := func(key string) bool {
			o, ok := r.Owner(key)
			return ok && o.Name != c.name
		}
		entries := c.store.Extract(c.now(), notMine, handoffBatch)
		if len(entries) == 0 {
			return
		}
		if kept := c.sendEntries(ctx, entries, true); kept == len(entries) {
			return // no owner took any: the next ring change tries again
		}
	}
}

// sendEntries groups entries by current owner and merges them there. While
// a batch travels, its keys are marked as moved, so a check of one that
// still reaches this node waits for the batch and follows it. On failure it
// retries once (retry true) with the ring as it is then. It returns how
// many entries it kept here.
func (c *Cluster) sendEntries(ctx context.Context, entries []bucket.Entry, retry bool) (kept int) {
	byOwner := map[ring.Member][]bucket.Entry{}
	var mine []bucket.Entry
	r := c.Ring()
	for _, e := range entries {
		o, ok := r.Owner(e.Key)
		if !ok || o.Name == c.name {
			mine = append(mine, e)
			continue
		}
		byOwner[o] = append(byOwner[o], e)
	}
	if len(mine) > 0 {
		c.mergeHere(mine)
		kept += len(mine)
	}
	for to, es := range byOwner {
		keys := make([]string, len(es))
		for i, e := range es {
			keys[i] = e.Key
		}
		mv := &move{to: to, done: make(chan struct{}), until: c.now().Add(moveTTL)}
		c.moved.add(keys, mv)
		// The RPC client bounds the merge (rpc.DefaultMergeTimeout) unless
		// ctx ends first. It is generous: a merge that times out after it
		// was applied would be sent again and counted twice.
		err := c.peers.get(to.Name, to.Addr).Merge(ctx, &rpc.MergeRequest{Entries: es})
		if err == nil {
			close(mv.done)
			c.metrics.handoffKeys.WithLabelValues("sent").Add(float64(len(es)))
			c.log.Debug("handed off", "to", to.Name, "keys", len(es))
			continue
		}
		for _, k := range keys {
			c.moved.forget(k)
		}
		close(mv.done)
		c.metrics.rpcErrors.WithLabelValues("merge").Inc()
		c.peers.suspect(to.Name, err)
		if retry && ctx.Err() == nil {
			kept += c.sendEntries(ctx, es, false)
			continue
		}
		// Keep the counts here: the next ring change or handoff pass
		// sends them on, or, when this node is leaving (a whole cluster
		// stopping at once refuses every handoff), its data file keeps
		// them for the restart.
		c.mergeHere(es)
		kept += len(es)
		if !c.leaving.Load() {
			c.log.Warn("handoff failed; counts kept here for now", "peer", to.Name, "keys", len(es), "err", err)
			continue
		}
		c.metrics.handoffKeys.WithLabelValues("kept").Add(float64(len(es)))
		c.log.Warn("handoff failed while leaving; counts stay on this node (lost at exit without a data dir)", "peer", to.Name, "keys", len(es), "err", err)
	}
	return kept
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
	resp.Statuses, resp.Allowed, held, err = c.store.CheckHeld(c.now(), req.Key, req.Counters, req.Cost, resp.Statuses[:0])
	if held || err != nil {
		resp.Node = c.name
		c.metrics.checksLocal.Inc()
		return err
	}
	to, ok := v.routing.Owner(req.Key)
	if mv := c.moved.get(req.Key, c.now()); mv != nil {
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
// again, so any record of having given them away is dropped.
func (c *Cluster) mergeHere(entries []bucket.Entry) {
	c.store.Merge(c.now(), entries)
	for _, e := range entries {
		c.moved.forget(e.Key)
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
	c.rebuild()
	if c.Ring().Len() > 0 {
		c.handoffAll(ctx)
	}
	timeout := time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = dl.Sub(c.now())
	}
	err := c.gossip.leave(max(timeout, 10*time.Millisecond))
	c.quiesce(ctx)
	c.stopped.Store(true) // from here on checks are refused, not half-served
	c.cancel()
	if serr := c.transport.Close(); err == nil {
		err = serr
	}
	c.peers.closeAll()
	c.wg.Wait()
	return err
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
