package cluster

import (
	"time"

	"github.com/ratemesh/ratemesh/bucket"
)

// A successor can hold two disjoint counts of one of an owner's keys: a
// replica from an earlier run of the owner (a run that took the count
// back, copied it here at once, and crashed again), and a count made here
// without that replica (the fail policy's decisions, or such a count a
// peer handed here) while the owner was away. When the key goes home to
// the owner's next run, by a pull or a handoff, both go: the replica
// superseding the run's data file, the count beside it. (The handoff of
// the count dropped the replica as a stale copy, and the reclaim skipped
// the key because the table held it: every hit before the owner's last
// crash was lost. TestReplicaGoesHomeBesideCountMadeWithoutIt.)
//
// A copy is stale, and goes, when the count it is a copy of goes home: a
// count continued here from the owner's replica (a promotion), or one
// the owner handed here itself (handedIn).
//
// The node that continues the key once the owner has crashed must decide
// from both counts, though: the replica and the one made beside it. A
// count made beside is marked as such (beside), where the fail policy
// made it from nothing and wherever a merge hands it on
// (rpc.MergeRequest.Beside); a check that finds the owner gone from the
// ring adds the owner's replica to a marked count (promote). Before, a
// key the table held was never promoted: the node decided from the count
// beside alone (or from its data file's older count) and the replica,
// handed home to the owner's next run, counted its hits a second time
// (TestCountMadeBeforeOwnerLeftRingAddsToReplica; the 30-minute crash
// schedule's moving window that admitted 896 too few). Any other count
// the table holds is the key's whole count: a replica of an owner gone
// can be a stale copy of it, added, it counted twice
// (TestStaleReplicaNotAddedToHandedOffCount).

// noteBeside marks key's count here, made from nothing beside its owner,
// until its windows end.
func (r *replicator) noteBeside(key string, until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.beside == nil {
		r.beside = map[string]time.Time{}
	}
	r.beside[key] = until
	r.nbeside.Store(int64(len(r.beside)))
}

// isBeside reports whether key's count here is marked as made beside its
// owner. Call with r.mu held.
func (r *replicator) isBeside(now time.Time, key string) bool {
	until, ok := r.beside[key]
	return ok && !now.After(until)
}

// besideHere is isBeside for callers without r.mu.
func (r *replicator) besideHere(now time.Time, key string) bool {
	if r.nbeside.Load() == 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.isBeside(now, key)
}

// forgetBeside drops key's mark: its count left, or holds the owner's
// count now. Call with r.mu held.
func (r *replicator) forgetBeside(key string) {
	if len(r.beside) == 0 {
		return
	}
	delete(r.beside, key)
	r.nbeside.Store(int64(len(r.beside)))
}

// unmarkBeside drops the marks of entries' keys: whole counts came.
func (r *replicator) unmarkBeside(entries []bucket.Entry) {
	if r.nbeside.Load() == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range entries {
		r.forgetBeside(e.Key)
	}
}

// lateReplicaWindow is how long a replica of a key that its owner's run
// handed here is taken for stale: one sent just before the handoff may
// land after it.
const lateReplicaWindow = 2 * time.Second

// lateMark is a key's handoff from run incarnation of owner, whose
// replicas of it are stale until until.
type lateMark struct {
	owner       string
	incarnation uint64
	until       time.Time
}

// handedIn drops owner's replicas of the keys a merge from run inc of owner
// brought here: the count merged holds their hits. A replica of one still
// on its way from that run is dropped when it lands (hold, withoutLate),
// whether or not one was here already: a leaving owner's last replica can
// land after its handoff, and kept, it went home again beside the count
// (TestLateReplicaOfHandedInKeyDropped). inc 0 (not known) marks the runs
// whose replicas were here.
func (r *replicator) handedIn(owner string, inc uint64, entries []bucket.Entry) {
	if r.held.Load() == 0 && inc == 0 {
		return
	}
	now := r.c.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, m := range r.late {
		if now.After(m.until) {
			delete(r.late, key)
		}
	}
	r.nlate.Store(int64(len(r.late)))
	mark := func(key string, inc uint64) {
		if _, ok := r.late[key]; ok {
			return
		}
		if r.late == nil {
			r.late = map[string]lateMark{}
		}
		r.late[key] = lateMark{owner: owner, incarnation: inc, until: now.Add(lateReplicaWindow)}
		r.nlate.Store(int64(len(r.late)))
	}
	for _, e := range entries {
		if inc != 0 {
			mark(e.Key, inc)
		}
		for h := r.from[owner]; h != nil; h = h.earlier {
			if h.store.Reset(e.Key) && inc == 0 {
				mark(e.Key, h.incarnation)
			}
		}
	}
}

// withoutLate returns entries less the replicas of keys that run inc of
// owner handed here a moment ago. Call with r.mu held.
func (r *replicator) withoutLate(now time.Time, owner string, inc uint64, entries []bucket.Entry) []bucket.Entry {
	if len(r.late) == 0 {
		return entries
	}
	out := entries[:0:0]
	for _, e := range entries {
		if m, ok := r.late[e.Key]; ok && m.owner == owner && m.incarnation == inc && !now.After(m.until) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// takeEarlier removes key's replica of the latest run of owner before
// run inc, and returns it.
func (r *replicator) takeEarlier(now time.Time, owner string, inc uint64, key string) (bucket.Entry, bool) {
	if r.held.Load() == 0 {
		return bucket.Entry{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for h := r.from[owner]; h != nil; h = h.earlier {
		if h.incarnation == inc {
			continue
		}
		if e, ok := h.store.Take(now, key); ok {
			forgetEarlier(h, []bucket.Entry{e})
			r.c.metrics.replicaKeys.WithLabelValues("returned").Inc()
			return e, true
		}
	}
	return bucket.Entry{}, false
}

// sumOf is the count of a's hits and b's, of one key.
func sumOf(now time.Time, a, b bucket.Entry) bucket.Entry {
	s := bucket.NewStore(bucket.StoreConfig{})
	s.Merge(now, []bucket.Entry{a, b})
	e, _ := s.Take(now, a.Key)
	return e
}

// holdsAny reports whether a replica of key, from any run of any owner, is
// held here.
func (r *replicator) holdsAny(key string) bool {
	if r.held.Load() == 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.from {
		for ; h != nil; h = h.earlier {
			if h.store.Has(key) {
				return true
			}
		}
	}
	return false
}
