package bucket

// keyIndex maps a routing key to its position in a shard's entries. It is an
// open-addressing table with linear probing keyed by the upper half of the
// key's maphash, the hash Store already computed to pick the shard, so a
// check hashes its key once. A slot is 8 bytes (the Go map it replaces used
// about five times that per key), which matters at a million keys.
//
// A slot holds tag<<32 | (position+1); 0 is empty. tag's low bits are the
// home slot; the full tag filters candidates before the key comparison.
type keyIndex struct {
	slots []uint64
	n     int
}

func (x *keyIndex) mask() uint32 { return uint32(len(x.slots) - 1) }

// find returns the slot and entry position of key, or -1, -1.
func (x *keyIndex) find(tag uint32, key string, entries []entry) (slot, pos int) {
	if len(x.slots) == 0 {
		return -1, -1
	}
	m := x.mask()
	for i := tag & m; ; i = (i + 1) & m {
		s := x.slots[i]
		if s == 0 {
			return -1, -1
		}
		if uint32(s>>32) == tag {
			if p := int(uint32(s)) - 1; entries[p].key == key {
				return int(i), p
			}
		}
	}
}

// add records that the entry with tag is at pos; the key must be absent.
func (x *keyIndex) add(tag uint32, pos int) {
	if 4*(x.n+1) > 3*len(x.slots) {
		x.resize(max(16, 2*len(x.slots)))
	}
	x.put(uint64(tag)<<32 | uint64(pos+1))
	x.n++
}

func (x *keyIndex) put(s uint64) {
	m := x.mask()
	i := uint32(s>>32) & m
	for x.slots[i] != 0 {
		i = (i + 1) & m
	}
	x.slots[i] = s
}

// slotOf returns the slot of the entry with tag at position pos, found by
// its slot's value alone, without reading the key; -1 if absent.
func (x *keyIndex) slotOf(tag uint32, pos int) int {
	m := x.mask()
	want := uint64(tag)<<32 | uint64(pos+1)
	for i := tag & m; x.slots[i] != 0; i = (i + 1) & m {
		if x.slots[i] == want {
			return int(i)
		}
	}
	return -1
}

// move records that the entry with tag moved from position from to to.
func (x *keyIndex) move(tag uint32, from, to int) {
	if i := x.slotOf(tag, from); i >= 0 {
		x.slots[i] = uint64(tag)<<32 | uint64(to+1)
	}
}

// remove empties slot i, shifting later members of its probe run back so
// every remaining key stays reachable from its home slot (no tombstones).
func (x *keyIndex) remove(i int) {
	m := x.mask()
	hole := uint32(i)
	x.slots[hole] = 0
	for j := (hole + 1) & m; x.slots[j] != 0; j = (j + 1) & m {
		home := uint32(x.slots[j]>>32) & m
		// The member at j may fill the hole unless its home lies cyclically
		// in (hole, j].
		if (j-home)&m >= (j-hole)&m {
			x.slots[hole], x.slots[j] = x.slots[j], 0
			hole = j
		}
	}
	x.n--
}

// resize rehashes into size slots (a power of two above n).
func (x *keyIndex) resize(size int) {
	old := x.slots
	x.slots = make([]uint64, size)
	for _, s := range old {
		if s != 0 {
			x.put(s)
		}
	}
}

// reserve makes room for n keys without growing again.
func (x *keyIndex) reserve(n int) {
	size := max(16, len(x.slots))
	for 4*n > 3*size {
		size *= 2
	}
	if size > len(x.slots) {
		x.resize(size)
	}
}

// shrink gives memory back when at most an eighth of the slots are used.
func (x *keyIndex) shrink() {
	if len(x.slots) <= 16 || 8*x.n > len(x.slots) {
		return
	}
	size := 16
	for 2*x.n > size {
		size *= 2
	}
	x.resize(size)
}
