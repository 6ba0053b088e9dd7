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

// resyncer is the replication loop's part in resyncs: the view the
// successors' replicas are complete for, and the retries of a resync a
// successor did not take. A restarted node is back in gossip, and in its
// peers' views, before it has joined: until then it refuses replicas (see
// awaitJoined), so a resync that failed is tried again, a while later.
type resyncer struct {
	synced *view
	wait   int // loop wake-ups before the next try
	tries  int // failed tries since synced
}

const (
	resyncRetryWakes = 50 // about 250 ms at replicaFlush
	resyncTries      = 40 // about 10 s: enough for a restarted node's join
)

// resyncStep runs on each wake-up of the replication loop: it resyncs when
// the view changed since s.synced, or retries a resync that failed.
func (r *replicator) resyncStep(ctx context.Context, s *resyncer) {
	v := r.c.view.Load()
	if v == s.synced {
		return
	}
	if s.wait > 0 {
		s.wait--
		return
	}
	if s.synced != nil {
		fresh := freshSuccessors(s.synced, v)
		if fresh != nil && !r.resync(ctx, s.synced, v, fresh) {
			if s.tries < resyncTries {
				s.tries++
				s.wait = resyncRetryWakes
				return
			}
			r.c.log.Warn("successors did not take their replicas: keys that no check changes stay uncopied until members change again", "tries", s.tries)
		}
	}
	s.synced, s.tries = v, 0
}

// resync sends every key this node owns in v to each of its successors in
// v that was not one in old or is fresh, in batches of replicaBatch. It
// reports whether every batch arrived.
func (r *replicator) resync(ctx context.Context, old, v *view, fresh map[string]bool) bool {
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
	ok := true
	for m, es := range batches {
		var err error
		sent := 0
		for sent < len(es) {
			n := min(len(es)-sent, replicaBatch)
			if err = r.send(ctx, m, es[sent:sent+n]); err != nil {
				ok = false
				break // this successor: the retry sends it all again
			}
			sent += n
		}
		// Keys at their limit reach a fresh successor only this way: the
		// log says whether they did.
		r.c.log.Debug("replicas copied to a fresh successor", "peer", m.Name, "incarnation", v.incarnation(m.Name), "keys", len(es), "sent", sent, "err", err)
	}
	return ok
}

func containsMember(ms []ring.Member, name string) bool {
	for _, m := range ms {
		if m.Name == name {
			return true
		}
	}
	return false
}
