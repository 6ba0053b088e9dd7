package cluster

import (
	"slices"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
)

// A count that a node continued from an owner's replica goes home to the
// owner: by a handoff (baseOf), or by the owner's pull (give). What it
// carries depends on whether the owner still runs the incarnation that
// sent the replica (homewardAs: less the replica) or restarted since
// (promotedFrom: whole, superseding its data file).

// left forgets the promotions of keys that left this node (sent home, or
// taken): a count made here later starts from no replica. Their late
// and beside marks go too: a replica of one from now on copies the count where it
// went (handedIn).
func (r *replicator) left(entries []bucket.Entry) {
	if r.npromo.Load() == 0 && r.nlate.Load() == 0 && r.nbeside.Load() == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range entries {
		delete(r.promoted, e.Key)
		delete(r.late, e.Key)
		r.forgetBeside(e.Key)
	}
	r.npromo.Store(int64(len(r.promoted)))
	r.nlate.Store(int64(len(r.late)))
}

// baseOf returns the replica key's count here was continued from, when
// that is a replica of node to's, and the incarnation of to that sent it;
// inc 0 when it is not. A handoff to to carries it (rpc.MergeRequest.Bases):
// to, knowing whether it still runs that incarnation, takes the count less
// the base or whole. The promotion stays until the send has landed (see
// left): a send that fails merges the key back here, replica part and all.
func (r *replicator) baseOf(to, key string) (inc uint64, base bucket.Entry) {
	if r.npromo.Load() == 0 {
		return 0, bucket.Entry{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.promoted[key]
	if !ok || p.owner != to {
		return 0, bucket.Entry{}
	}
	return p.incarnation, p.base
}

// homewardAs returns entries as they should travel to node to, running
// incarnation inc: a key continued from to's replica loses the replica's
// part when inc sent it.
func (r *replicator) homewardAs(to string, inc uint64, entries []bucket.Entry) []bucket.Entry {
	out, _ := r.lessReplicasOf(to, inc, entries, false)
	return out
}

// lessReplicasOf returns entries less the replicas of run inc of peer that
// their keys' counts here were continued from, and the deficits of those
// below their replica (bucket.Deficit). end also ends those promotions.
func (r *replicator) lessReplicasOf(peer string, inc uint64, entries []bucket.Entry, end bool) (out, deficits []bucket.Entry) {
	if r.npromo.Load() == 0 {
		return entries, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, e := range entries {
		p, ok := r.promoted[e.Key]
		if !ok || p.owner != peer || p.incarnation != inc {
			continue
		}
		if out == nil {
			out = slices.Clone(entries)
		}
		out[i] = bucket.Subtract(e, p.base)
		if d, ok := bucket.Deficit(e, p.base); ok {
			deficits = append(deficits, d)
		}
		if end {
			delete(r.promoted, e.Key)
			r.c.log.Debug("handed the count of a replica continued here", "key", e.Key, "from", peer, "counts", countsOf{e}, "replica", countsOf{p.base})
		}
	}
	r.npromo.Store(int64(len(r.promoted)))
	if out == nil {
		return entries, deficits
	}
	return out, deficits
}

// promotedFrom reports whether key's count here was continued from a
// replica of owner's, and whether an incarnation other than inc sent that
// replica (restarted): then the count holds owner's own hits, which owner
// lost when it restarted (see give).
func (r *replicator) promotedFrom(owner string, inc uint64, key string) (from, restarted bool) {
	if r.npromo.Load() == 0 {
		return false, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.promoted[key]
	from = ok && p.owner == owner
	return from, from && p.incarnation != inc
}

// give prepares what a pull by to takes from this node. A count continued
// from to's replica goes less the replica while to runs the incarnation
// that sent it (homeward), and whole, superseding what to restored from
// its data file, once to has restarted. With no count here, a replica of
// an earlier incarnation of to goes back to it, superseding likewise: it
// is newer than any data file. The replica of to's running incarnation
// never goes: to holds that count itself.
func (r *replicator) give(now time.Time, req *rpc.TakeRequest, t rpc.TakeResponse) rpc.TakeResponse {
	to, key, inc := req.To, req.Key, req.Incarnation
	if inc == 0 { // a caller that does not say: as gossip has it
		inc = r.c.view.Load().incarnation(to)
	}
	if t.Found {
		taken := t.Entry
		var fromTo bool
		fromTo, t.Supersedes = r.promotedFrom(to, inc, taken.Key)
		if !t.Supersedes {
			t.Entry = r.homewardAs(to, inc, []bucket.Entry{taken})[0]
		}
		r.left([]bucket.Entry{taken})
		if fromTo {
			// The count goes home: a copy of it kept here from one of
			// to's runs is stale now, and promoted later it would come
			// home again.
			r.superseded(to, []bucket.Entry{taken})
			return t
		}
		// A count made here without to's replica: an earlier run's
		// replica goes with it (replica_beside.go).
		if e, ok := r.takeEarlier(now, to, inc, taken.Key); ok {
			t.Entry, t.Supersedes = sumOf(now, e, t.Entry), true
		}
		return t
	}
	if e, ok := r.takeEarlier(now, to, inc, key); ok {
		return rpc.TakeResponse{Entry: e, Found: true, Supersedes: true}
	}
	return t
}

// lessPromoted returns entries, handed here by run inc of from, less the
// replicas of that run that this node continued their keys from: the
// entries hold those hits too. This node routed around from meanwhile (it
// heard of a leave before the leaver's handoff landed, say), and without
// this the replica's hits were counted twice
// (TestLeaversHandoffAfterItsReplicaWasPromoted). An entry below its
// replica (units given back to from since) adds the deficit to deficits.
// Those promotions end: the key's count is whole here now. Call with
// movingMu held.
func (r *replicator) lessPromoted(from string, inc uint64, entries, deficits []bucket.Entry) ([]bucket.Entry, []bucket.Entry) {
	if inc == 0 {
		return entries, deficits
	}
	out, more := r.lessReplicasOf(from, inc, entries, true)
	return out, append(deficits, more...)
}
