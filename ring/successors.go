package ring

import "sync"

// maxCachedEntries bounds the memory Successors keeps per Ring: at most
// this many partition entries (4 bytes each, 1 MiB in all) over all cached
// failover tables, i.e. 64 tables at the default 4093 partitions. Beyond
// that a table is built for the call and dropped.
const maxCachedEntries = 1 << 18

// lazyTable is the placement over the ring's members minus an excluded set,
// built once on first use.
type lazyTable struct {
	once   sync.Once
	owners []int32
}

// Successors returns up to n distinct members in failover order for key:
// Owner first; then the member that would own key if the owner left the
// ring; then the one that would own it if both had left; and so on. It
// returns min(n, Len()) members, and nil on an empty ring or when n <= 0.
//
// The order is the one membership changes produce, so every node computes
// the same list, and a node that fails over to the second member while
// gossip still lists the failed owner writes to the member that becomes the
// owner once the failed one is dropped: the counters are already where the
// next ring routes the key. This is neither the library's GetClosestN,
// which orders members by the hash of their names regardless of the ring,
// nor simply "the next member clockwise", which bounded loads can override.
//
// The k-th member (k >= 1) comes from a placement over the members minus
// the first k. Each distinct excluded set is computed once, at about the
// cost of New, and kept in the Ring (bounded: see maxCachedEntries), so
// only the first failover away from a given member pays for it.
func (r *Ring) Successors(key string, n int) []Member {
	if r == nil || len(r.owners) == 0 || n <= 0 {
		return nil
	}
	return r.AppendSuccessors(make([]Member, 0, min(n, len(r.members))), key, n)
}

// AppendSuccessors appends what Successors returns to dst and returns the
// extended slice. A caller that reuses dst (the replication loop, once for
// every key it sends) allocates nothing on a ring of up to 256 members.
func (r *Ring) AppendSuccessors(dst []Member, key string, n int) []Member {
	if r == nil || len(r.owners) == 0 || n <= 0 {
		return dst
	}
	n = min(n, len(r.members))
	p := r.Partition(key)
	cur := r.owners[p]
	dst = append(dst, r.members[cur])
	var small [32]byte  // the bit set for rings of up to 256 members
	var excluded []byte // bit set over member indices
	for k := 1; k < n; k++ {
		if excluded == nil {
			if size := (len(r.members) + 7) / 8; size <= len(small) {
				excluded = small[:size]
			} else {
				excluded = make([]byte, size)
			}
		}
		excluded[cur/8] |= 1 << (cur % 8)
		cur = r.ownersWithout(excluded)[p]
		dst = append(dst, r.members[cur])
	}
	return dst
}

// ownersWithout returns the partition owners of the ring over the members
// not in excluded, which must leave at least one member.
func (r *Ring) ownersWithout(excluded []byte) []int32 {
	r.mu.Lock()
	t, ok := r.without[string(excluded)]
	if !ok {
		if len(r.without) >= r.maxCache {
			r.mu.Unlock()
			return r.placeWithout(excluded)
		}
		if r.without == nil {
			r.without = make(map[string]*lazyTable)
		}
		t = new(lazyTable)
		r.without[string(excluded)] = t
	}
	r.mu.Unlock()
	// Outside the lock, so failovers away from different members build
	// their tables in parallel.
	t.once.Do(func() { t.owners = r.placeWithout(excluded) })
	return t.owners
}

func (r *Ring) placeWithout(excluded []byte) []int32 {
	owners := place(r.pos, excluded, len(r.members), r.cfg)
	if owners == nil {
		// Unreachable (see place); keep Successors total by falling back to
		// the first remaining member.
		first := int32(0)
		for isSet(excluded, first) {
			first++
		}
		owners = make([]int32, len(r.owners))
		for p := range owners {
			owners[p] = first
		}
	}
	return owners
}
