package cluster

import (
	"context"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/cluster/rpc"
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
		c.sendEntries(ctx, entries, true)
	}
}

// sendEntries groups entries by current owner and merges them there. While
// a batch travels, its keys are marked as moved, so a check of one that
// still reaches this node waits for the batch and follows it. On failure it
// retries once (retry true) with the ring as it is then.
func (c *Cluster) sendEntries(ctx context.Context, entries []bucket.Entry, retry bool) {
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
		err := c.peers.client(to.Name, to.Addr).Merge(ctx, &rpc.MergeRequest{Entries: es})
		if err == nil {
			close(mv.done)
			c.metrics.handoffKeys.WithLabelValues("sent").Add(float64(len(es)))
			continue
		}
		for _, k := range keys {
			c.moved.forget(k)
		}
		close(mv.done)
		c.metrics.rpcErrors.WithLabelValues("merge").Inc()
		c.peers.suspect(to.Name, err)
		if retry && ctx.Err() == nil {
			c.sendEntries(ctx, es, false)
			continue
		}
		if !c.leaving.Load() {
			// Keep the counts here; the next ring change or handoff
			// pass sends them on.
			c.mergeHere(es)
			c.log.Warn("handoff failed; counts kept here for now", "peer", to.Name, "keys", len(es), "err", err)
			continue
		}
		c.metrics.handoffKeys.WithLabelValues("dropped").Add(float64(len(es)))
		c.log.Error("handoff failed while leaving; counts dropped", "peer", to.Name, "keys", len(es), "err", err)
	}
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
	if c.ml == nil { // never started
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
		timeout = time.Until(dl)
	}
	err := c.ml.leave(max(timeout, 10*time.Millisecond))
	c.cancel()
	if serr := c.server.Close(); err == nil {
		err = serr
	}
	c.peers.closeAll()
	c.wg.Wait()
	return err
}

// Kill stops the node without leaving or handing anything off, as a crash
// would. It exists for fault tests.
func (c *Cluster) Kill() {
	if c.ml == nil || c.leaving.Swap(true) {
		return
	}
	c.ml.ml.Shutdown()
	c.cancel()
	c.server.Close()
	c.peers.closeAll()
	c.wg.Wait()
}

// CutRPC closes the RPC server while gossip goes on. It exists for fault
// tests: peers then see this node alive but cannot reach it.
func (c *Cluster) CutRPC() { c.server.Close() }
