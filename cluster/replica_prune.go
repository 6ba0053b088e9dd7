package cluster

import (
	"slices"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/ring"
)

// A replica is kept where the key's owner sent it, and the owner sends to
// the key's successors of the moment: when members change, a key's
// successor changes too (a node joins between them, or one restarts and
// is routed around for a while), the owner copies the key to the new one
// (resync), and the old one's copy stops being updated. Such a copy is
// stale, and worse than none: should the owner restart, a pull or a
// handback that took it would count the hits it holds a second time beside
// the true count (a graceful leaver hands its counts to the node that owns
// them next, which need not be the one holding its stale copy). So once a
// view is settled, prune drops the replicas of owners that answer in it
// for keys this node is not a successor of; an owner that is away keeps
// all its replicas here for the promotion.

// prune drops, from the replicas of each owner that answers in v, those of
// keys whose successors in v's full ring do not include this node, or that
// the owner does not own. It runs on the replication loop, once per view.
func (r *replicator) prune(v *view) {
	if r.held.Load() == 0 {
		return
	}
	now := r.c.now()
	type owned struct {
		owner string
		store *bucket.Store
	}
	var stores []owned
	r.mu.Lock()
	for owner, h := range r.from {
		if !v.routing.Has(owner) || r.c.peers.isSuspect(owner) {
			continue // away: its replicas are what a promotion needs
		}
		for ; h != nil; h = h.earlier {
			stores = append(stores, owned{owner, h.store})
		}
	}
	r.mu.Unlock()
	succ := make([]ring.Member, 0, 1+r.n)
	var dropped int
	for _, s := range stores {
		stale := func(key string) bool {
			succ = v.full.AppendSuccessors(succ[:0], key, 1+r.n)
			return len(succ) < 2 || succ[0].Name != s.owner ||
				!slices.ContainsFunc(succ[1:], func(m ring.Member) bool { return m.Name == r.c.name })
		}
		for {
			es := s.store.Extract(now, stale, handoffBatch)
			if len(es) == 0 {
				break
			}
			dropped += len(es)
		}
	}
	if dropped > 0 {
		r.c.metrics.replicaKeys.WithLabelValues("stale").Add(float64(dropped))
		r.c.log.Debug("stale replicas dropped", "keys", dropped)
	}
}
