package cluster

import (
	"context"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/ring"
)

// The replicas a successor keeps of an owner's earlier run are the only
// copy of those keys' counts once the owner restarted: the new run starts
// with an empty table and takes each key back (a pull) only when a check
// of it reaches it first. A key that gets no check there for a while — one
// at its limit, whose denials the other nodes answer from their deny
// caches — stays on the successor alone, and a crash of the successor
// meanwhile lost it: the owner then started that key again from zero. So
// once the owner answers again, and gossip has its new incarnation, the
// successor hands those replicas back on its own (reclaim), and the owner
// replicates them anew: two copies again within a ring change.
//
// A replica travels as a merge whose base is itself, of the incarnation
// that sent it (rpc.MergeRequest.Bases): the owner takes it whole only if
// it runs another incarnation, so a stale view cannot make it add a count
// it still holds. A replica goes back only from the node the owner would
// pull it from — the key's owner were the owner not there — and only for
// keys the owner owns again; the others stay with the pull and promotion
// rules. (A second successor, with replicas 2, may keep a replica of a run
// that left gracefully and handed the count to the first: sent back, it
// would be counted twice.)

// reclaim hands back, batch by batch, the replicas of earlier runs of the
// members that answer now under another incarnation. Called by handoffAll,
// under handoffMu.
func (c *Cluster) reclaim(ctx context.Context, pass *view) {
	if c.repl == nil {
		return
	}
	for ctx.Err() == nil && c.repl.held.Load() > 0 {
		c.movingMu.Lock()
		plan := c.planReclaim(pass)
		c.movingMu.Unlock()
		if len(plan) == 0 {
			return
		}
		if kept := c.send(ctx, pass, plan, false); kept > 0 {
			return // an owner did not take them: the next ring change tries again
		}
	}
}

// planReclaim takes out of the replica stores up to handoffBatch keys per
// earlier run of an owner that answers again in v, and marks them as
// moving to it, so that the owner's pull of one of them waits for the
// batch instead of finding nothing. Call with movingMu held.
func (c *Cluster) planReclaim(v *view) []outbound {
	r := c.repl
	now := c.now()
	routing := v.routing
	if c.leaving.Load() && r.held.Load() > 0 {
		// A leaving node is out of its own ring, yet the replicas of the
		// owners' earlier runs are still here: judged as if it were in,
		// as they were placed (TestLeaverHandsBackEarlierRunsReplicas).
		routing = ring.New(append(routing.Members(), ring.Member{Name: c.name, Addr: c.rpcAddr}), c.cfg.Ring)
	}
	var plan []outbound
	r.mu.Lock()
	defer r.mu.Unlock()
	for owner, h := range r.from {
		inc := v.incarnation(owner)
		if inc == 0 || !routing.Has(owner) || r.c.peers.isSuspect(owner) {
			continue // away, or not known to have restarted yet
		}
		member, _ := v.member(owner)
		m := ring.Member{Name: owner, Addr: member.RPCAddr}
		without := routing.Without(owner)
		ours := func(key string) bool {
			o, ok := routing.Owner(key)
			p, okp := without.Owner(key)
			return ok && o.Name == owner && okp && p.Name == c.name
		}
		for ; h != nil; h = h.earlier {
			if h.incarnation == inc {
				continue // the owner's current run: it holds these itself
			}
			// A key whose count is in the table too goes in both: the
			// count was made without this replica (replica_beside.go).
			es := h.store.Extract(now, ours, handoffBatch)
			if len(es) == 0 {
				continue
			}
			run := h
			run.out.Add(1) // kept in its chain while the batch is out (withoutEmpty)
			mv := c.moved.mark(m, es, now.Add(moveTTL))
			plan = append(plan, outbound{to: m, es: es, mv: mv, baseInc: h.incarnation, bases: es,
				back:   func(es []bucket.Entry) { run.store.Replace(c.now(), es) },
				settle: func() { run.out.Add(-1) }})
		}
	}
	return plan
}
