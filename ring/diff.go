package ring

// Move is a partition whose owner changed between two rings. A zero Member
// on either side means the partition had no owner there: that ring was nil
// or empty.
type Move struct {
	Partition int    // in [0, PartitionCount)
	From      Member // owner in the old ring
	To        Member // owner in the new ring
}

// Diff returns the partitions whose owner differs between old and new, by
// member Name, in ascending partition order; nil when nothing moved. Either
// ring may be nil or empty: every partition of the other ring is then
// reported with a zero Member on the empty side.
//
// Partitions are compared by number, and a key's partition depends only on
// PartitionCount, so Diff is exact whenever both rings have the same
// PartitionCount (other Config fields may differ). Rings with different
// counts number their partitions differently; Diff then still compares by
// number, over the larger count, which says little about where keys went.
func Diff(old, new *Ring) []Move {
	n := max(old.ownedPartitions(), new.ownedPartitions())
	var moves []Move
	for p := range n {
		from, hadOwner := old.PartitionOwner(p)
		to, hasOwner := new.PartitionOwner(p)
		if hadOwner != hasOwner || from.Name != to.Name {
			moves = append(moves, Move{Partition: p, From: from, To: to})
		}
	}
	return moves
}

// ownedPartitions returns the number of partitions with an owner: 0 for an
// empty ring.
func (r *Ring) ownedPartitions() int {
	if r == nil {
		return 0
	}
	return len(r.owners)
}
