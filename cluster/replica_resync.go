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
