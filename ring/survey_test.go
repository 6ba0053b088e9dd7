package ring

import (
	"flag"
	"fmt"
	"testing"
)

var survey = flag.Bool("survey", false, "run TestSurvey, which measures spread and extra moves for several configs (slow)")

// TestSurvey produces the table in docs/design.md: for several configs, over 60
// sets of member names in three naming schemes, the max/min key spread of
// 100,000 keys and the partitions that move between members that stayed
// when one member leaves or joins. Run it with
//
//	go test ./ring -run Survey -v -args -survey
func TestSurvey(t *testing.T) {
	if !*survey {
		t.Skip("run with -survey")
	}
	ks := keys(100_000)
	schemes := []func(set, i int) string{
		func(set, i int) string { return fmt.Sprintf("node-%d", set*100+i) },
		func(set, i int) string { return fmt.Sprintf("s%d-node-%d", set, i) },
		func(set, i int) string { return fmt.Sprintf("10.0.%d.%d:7946", set, i) },
	}
	for _, cfg := range []Config{{271, 20, 1.25}, {271, 20, 1.5}, {1021, 100, 1.5},
		{2039, 200, 1.25}, {2039, 200, 1.5}, {2039, 400, 1.5}, {4093, 200, 1.25}, {4093, 200, 1.5}} {
		for _, n := range []int{3, 10} {
			var sets, extraSum, extraMax, joinSum, joinMax int
			var spreadSum, spreadMax float64
			for _, name := range schemes {
				for set := range 20 {
					ms := make([]Member, n)
					for i := range ms {
						ms[i] = Member{Name: name(set, i)}
					}
					r := New(ms, cfg)
					count := map[string]int{}
					for _, k := range ks {
						m, _ := r.Owner(k)
						count[m.Name]++
					}
					lo, hi := len(ks), 0
					for _, m := range ms {
						lo, hi = min(lo, count[m.Name]), max(hi, count[m.Name])
					}
					spread := float64(hi) / float64(max(lo, 1))
					spreadSum, spreadMax = spreadSum+spread, max(spreadMax, spread)
					for _, gone := range ms {
						_, extra := extraMoves(r, New(without(ms, gone.Name), cfg), gone.Name)
						extraSum, extraMax = extraSum+extra, max(extraMax, extra)
					}
					joiner := Member{Name: name(set, n)}
					_, extra := extraMoves(r, New(append(ms, joiner), cfg), joiner.Name)
					joinSum, joinMax = joinSum+extra, max(joinMax, extra)
					sets++
				}
			}
			t.Logf("%v %2d members: spread avg %.3f worst %.3f | extra per departure avg %.2f max %d | extra per join avg %.2f max %d",
				cfg, n, spreadSum/float64(sets), spreadMax,
				float64(extraSum)/float64(sets*n), extraMax, float64(joinSum)/float64(sets), joinMax)
		}
	}
}
