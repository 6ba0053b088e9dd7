package bucket

import (
	"strconv"
	"testing"

	"pgregory.net/rapid"
)

// TestKeyIndex drives the index against a map through adds and swap-removes
// (as the shard does), with tags drawn from a tiny set so that probe runs
// collide, wrap around and get shifted back on removal.
func TestKeyIndex(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var (
			x       keyIndex
			entries []entry
			tags    []uint32 // tag of entries[i]
			want    = map[string]int{}
		)
		tagOf := rapid.SampledFrom([]uint32{0, 1, 15, 16, 17, 31, 1 << 20, 1<<20 | 1, 0xffffffff})
		for i, n := 0, rapid.IntRange(1, 300).Draw(t, "ops"); i < n; i++ {
			if len(entries) > 0 && rapid.IntRange(0, 2).Draw(t, "remove") == 0 {
				p := rapid.IntRange(0, len(entries)-1).Draw(t, "pos")
				slot, got := x.find(tags[p], entries[p].key, entries)
				if got != p || x.slotOf(tags[p], p) != slot {
					t.Fatalf("find(%q) = %d in slot %d, want %d; slotOf = %d", entries[p].key, got, slot, p, x.slotOf(tags[p], p))
				}
				x.remove(slot)
				delete(want, entries[p].key)
				last := len(entries) - 1
				if p != last {
					x.move(tags[last], last, p)
					entries[p], tags[p] = entries[last], tags[last]
					want[entries[p].key] = p
				}
				entries, tags = entries[:last], tags[:last]
			} else {
				key := "k" + strconv.Itoa(i)
				tag := tagOf.Draw(t, "tag")
				entries, tags = append(entries, entry{key: key}), append(tags, tag)
				x.add(tag, len(entries)-1)
				want[key] = len(entries) - 1
			}
			if x.n != len(want) {
				t.Fatalf("n = %d, want %d", x.n, len(want))
			}
		}
		for k, p := range want {
			if _, got := x.find(tags[p], k, entries); got != p {
				t.Fatalf("find(%q) = %d, want %d", k, got, p)
			}
		}
		if _, got := x.find(0, "absent", entries); got != -1 {
			t.Fatalf("find(absent) = %d", got)
		}
		x.shrink()
		for k, p := range want {
			if _, got := x.find(tags[p], k, entries); got != p {
				t.Fatalf("after shrink: find(%q) = %d, want %d", k, got, p)
			}
		}
	})
}
