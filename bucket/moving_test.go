package bucket

import (
	"testing"

	"pgregory.net/rapid"
)

// TestHitLog drives a moving window's ring against a plain slice through
// pushes (one hit or several, times sometimes going back), prunes and
// compactions, so the ring wraps, grows and shrinks.
func TestHitLog(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const limit, P = 16, 100
		var l hitLog
		var want []int64
		now := int64(0)
		for i, n := 0, rapid.IntRange(1, 200).Draw(t, "ops"); i < n; i++ {
			now += rapid.Int64Range(-5, 40).Draw(t, "step")
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0, 1:
				k := rapid.IntRange(1, 3).Draw(t, "k")
				if len(want)+k > limit {
					continue
				}
				at := now
				if len(want) > 0 {
					at = max(at, want[len(want)-1]) // times never decrease
				}
				for range k {
					want = append(want, at)
				}
				l.push(now, k, limit)
			case 2:
				for len(want) > 0 && now-want[0] >= P {
					want = want[1:]
				}
				l.prune(now, P)
			case 3:
				l.compact()
			}
			if l.len() != len(want) {
				t.Fatalf("len %d, want %d", l.len(), len(want))
			}
			for j := range want {
				if l.at(j) != want[j] {
					t.Fatalf("hit %d at %d, want %d (log %v, want %v)", j, l.at(j), want[j], l.slice(), want)
				}
			}
		}
	})
}
