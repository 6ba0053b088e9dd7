package cluster

import (
	"context"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/ring"
)

// A successor holds a replica of a key only if the key changed since the
// successor became one: replication sends changes. A successor that joined,
// took the place of one that left, or restarted (and lost what it held)
// would therefore lack the replicas of keys that do not change any more —
// keys at their limit above all, whose checks are all denied — and should
// the owner crash, it would decide them from zero: the whole limit again.
// So when the members change, the owner sends every key it owns to those of
// the key's successors that may lack it.

// freshSuccessors reports, for v against old, the members that may lack
// replicas: new in v, or of another incarnation (restarted). It reports
// nil when v's ring has the same members as old's, each the same
// incarnation, and no member left (which changes keys' successors).
func freshSuccessors(old, v *view) map[string]bool {
	var fresh map[string]bool
	for _, m := range v.members {
		if m.Self {
			continue
		}
		if o, ok := old.member(m.Name); !ok || o.Incarnation != m.Incarnation || o.RPCAddr != m.RPCAddr {
			if fresh == nil {
				fresh = map[string]bool{}
			}
			fresh[m.Name] = true
		}
	}
	if fresh == nil && !sameMembers(old.full.Members(), v.full.Members()) {
		fresh = map[string]bool{} // a member left: successors shifted
	}
	return fresh
}

// resync sends every key this node owns in v to each of its successors in
// v that was not one in old or is fresh, in batches of replicaBatch.
func (r *replicator) resync(ctx context.Context, old, v *view, fresh map[string]bool) {
	now := r.c.now()
	batches := map[ring.Member][]bucket.Entry{}
	for _, e := range r.c.store.Snapshot(now, nil) {
		succ := v.full.Successors(e.Key, 1+r.n)
		if len(succ) < 2 || succ[0].Name != r.c.name {
			continue
		}
		before := old.full.Successors(e.Key, 1+r.n)
		for _, m := range succ[1:] {
			if fresh[m.Name] || !containsMember(before, m.Name) {
				batches[m] = append(batches[m], e)
			}
		}
	}
	for m, es := range batches {
		for len(es) > 0 {
			n := min(len(es), replicaBatch)
			r.send(ctx, m, es[:n])
			es = es[n:]
		}
	}
}

func containsMember(ms []ring.Member, name string) bool {
	for _, m := range ms {
		if m.Name == name {
			return true
		}
	}
	return false
}

// keepSent keeps the counts this node just moved to owner (a handoff, or
// owner's pull) as owner's replicas where this node is one of the keys'
// successors: until owner's own replication (replicaFlush later) replaces
// them, they are what owner holds. Else an owner that crashed right after
// it took its counts back — a node killed again moments after its restart
// — would leave its successor nothing to continue from: the whole window
// again.
//
// inc is owner's incarnation: as owner said it (a pull), or 0 for the one
// this node's view has (a push, sent because the view made owner the
// key's owner). None known, nothing is kept: hold would file the replicas
// under incarnation 0, and a pull by owner would then take them back as a
// count of a past incarnation (see give) — counted twice
// (TestPartitionAcrossNamespaces: 21 of 30 counted for 20, 2 of 6 runs).
func (r *replicator) keepSent(owner string, inc uint64, entries []bucket.Entry) {
	v := r.c.view.Load()
	if inc == 0 {
		inc = v.incarnation(owner)
	}
	if inc == 0 {
		return // not a member this node knows yet
	}
	var keep []bucket.Entry
	for _, e := range entries {
		succ := v.full.Successors(e.Key, 1+r.n)
		if len(succ) > 1 && succ[0].Name == owner && containsMember(succ[1:], r.c.name) {
			keep = append(keep, e)
		}
	}
	if len(keep) > 0 {
		r.hold(owner, inc, keep)
	}
}
