package ring

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// position is one virtual node on the ring: the hash of its replica key and
// the index (into Ring.members) of the member it belongs to.
type position struct {
	hash   uint64
	member int32
}

// place gives every partition an owner among the members of the ring
// positions pos (sorted by sortPositions) not set in the bit set excluded
// (nil: none), of n members in all, and returns the owner index of every
// partition. cfg must be normalized and some member not excluded.
func place(pos []position, excluded []byte, n int, cfg Config) []int32 {
	owners, ok := tryPlace(pos, excluded, n, cfg)
	if !ok && !math.IsInf(cfg.Load, 1) {
		// Not reachable with a normalized Config: with Load >= 1 the caps
		// add up to at least PartitionCount. It could only happen if every
		// ring position of a member collided with another member's (64-bit
		// hashes), leaving its share unreachable. Every node hits the same
		// case, so falling back to unbounded load is still deterministic,
		// and with the bound gone a position is always found.
		cfg.Load = math.Inf(1)
		owners, ok = tryPlace(pos, excluded, n, cfg)
	}
	if !ok {
		return nil
	}
	return owners
}

// tryPlace is place without the fallback; ok is false when some partition
// found no member with room (where consistent v1.0.0 panics with "not
// enough room to distribute partitions").
//
// It computes exactly what consistent.New followed by GetPartitionOwner
// computes, in O(M + P log M) for M ring positions and P partitions once
// the positions are sorted (O(M log M), once per Ring). The library
// re-sorts every position after adding each member, O(members × M log M):
// 21 ms per ring at 50 members against 1 ms at 3, paid by every node on
// every membership change (BenchmarkNewScales). The steps and their
// tie-breaks are the library's:
//   - member m's virtual node i sits at xxhash("<i>:<name>"); members are
//     added in name order, and when two positions share a hash the member
//     added last owns both;
//   - partition p starts at the first position whose hash is >= xxhash of
//     p as 8 little-endian bytes (wrapping to the first position) and walks
//     clockwise to the first member holding fewer than
//     ceil(P / members × Load) partitions.
//
// TestPlaceMatchesLibrary compares the two over many member sets and
// configurations.
func tryPlace(pos []position, excluded []byte, n int, cfg Config) (owners []int32, ok bool) {
	members := n
	for m := range int32(n) {
		if isSet(excluded, m) {
			members--
		}
	}
	if members == 0 {
		return nil, false
	}
	ring := resolve(pos, excluded)
	avgLoad := math.Ceil(float64(cfg.PartitionCount) / float64(members) * cfg.Load)
	loads := make([]int, n)
	owners = make([]int32, cfg.PartitionCount)
	var bs [8]byte
	for p := range owners {
		binary.LittleEndian.PutUint64(bs[:], uint64(p))
		key := xxhash.Sum64(bs[:])
		i, _ := slices.BinarySearchFunc(ring, key, func(x position, k uint64) int { return cmp.Compare(x.hash, k) })
		found := false
		for range ring {
			if i >= len(ring) {
				i = 0
			}
			m := ring[i].member
			if float64(loads[m])+1 <= avgLoad {
				owners[p], found = m, true
				loads[m]++
				break
			}
			i++
		}
		if !found {
			return nil, false
		}
	}
	return owners, true
}

// sortPositions returns the virtual nodes of members, sorted by hash and,
// on equal hashes, by member index.
func sortPositions(members []Member, replicas int) []position {
	pos := make([]position, 0, len(members)*replicas)
	var buf []byte
	for j := range members {
		for i := range replicas {
			buf = strconv.AppendInt(buf[:0], int64(i), 10)
			buf = append(buf, ':')
			buf = append(buf, members[j].Name...)
			pos = append(pos, position{hash: xxhash.Sum64(buf), member: int32(j)})
		}
	}
	slices.SortFunc(pos, func(a, b position) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.member, b.member))
	})
	return pos
}

// resolve returns the ring the library would build over the members of pos
// not in excluded: their positions, in order, with every position of a
// shared hash given to the member added last (the greatest index, which
// sortPositions puts last among equal hashes), as the library's map from
// hash to member does.
func resolve(pos []position, excluded []byte) []position {
	ring := make([]position, 0, len(pos))
	for _, p := range pos {
		if !isSet(excluded, p.member) {
			ring = append(ring, p)
		}
	}
	for i := len(ring) - 2; i >= 0; i-- {
		if ring[i].hash == ring[i+1].hash {
			ring[i].member = ring[i+1].member
		}
	}
	return ring
}

// isSet reports whether bit i of the bit set b is set; a nil set is empty.
func isSet(b []byte, i int32) bool {
	return b != nil && b[i/8]&(1<<(i%8)) != 0
}
