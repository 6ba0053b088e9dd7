package ring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/buraksezer/consistent"
)

// TestPlaceMatchesLibrary checks that place computes consistent v1.0.0's
// placement exactly, partition by partition, over random member sets of 1
// to 120 members and several configurations, the defaults among them.
func TestPlaceMatchesLibrary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cfgs := []Config{{}, {271, 20, 1.25}, {7, 1, 1}, {1021, 100, 1.5}, {271, 3, math.Inf(1)}, {64, 1, 1}}
	for round := range 60 {
		cfg := cfgs[round%len(cfgs)].normalize()
		n := 1 + rng.IntN(120)
		if round < len(cfgs) {
			n = 50
		}
		ms := make([]Member, n)
		for i := range ms {
			ms[i] = Member{Name: fmt.Sprintf("%x-%d", rng.Uint32(), i)}
		}
		r := New(ms, cfg)
		lms := make([]consistent.Member, len(r.members))
		for i, m := range r.members {
			lms[i] = libMember{name: m.Name, idx: int32(i)}
		}
		lib := consistent.New(lms, consistent.Config{Hasher: hasher{}, PartitionCount: cfg.PartitionCount,
			ReplicationFactor: cfg.ReplicationFactor, Load: cfg.Load})
		for p := range cfg.PartitionCount {
			got, _ := r.PartitionOwner(p)
			if want := lib.GetPartitionOwner(p).String(); got.Name != want {
				t.Fatalf("%+v, %d members: partition %d owned by %s, library %s", cfg, n, p, got.Name, want)
			}
		}
	}
}

// BenchmarkNewScales measures that building a ring costs about the number
// of its ring positions, not their square: x10-members is how many times
// as long New takes for 1000 members as for 100 (n log n gives about 12;
// consistent.New, which re-sorts every position after adding each member,
// about 90, so every node paid 21 ms per membership change at 50 members).
// ns/op is one build of each size. As a test's bound (at most 40 times)
// it failed on a loaded machine, whose pauses land on one size and not the
// other: a ratio of times is a measurement, not an assertion.
func BenchmarkNewScales(b *testing.B) {
	cfg := Config{PartitionCount: 271, ReplicationFactor: 20}
	small, large := members(100), members(1000)
	var s, l time.Duration
	for b.Loop() {
		start := time.Now()
		New(small, cfg)
		s += time.Since(start)
		start = time.Now()
		New(large, cfg)
		l += time.Since(start)
	}
	b.ReportMetric(float64(l)/float64(s), "x10-members")
}

// TestNewAllocations checks that a ring is built from a few slices, not an
// allocation per virtual node (the library's Sprintf and map: 30,000 at 50
// members).
func TestNewAllocations(t *testing.T) {
	ms := members(50)
	if a := testing.AllocsPerRun(5, func() { New(ms, Config{}) }); a > 10 {
		t.Fatalf("New with 50 members: %.0f allocations, want at most 10", a)
	}
}

// TestWithoutMatchesNew checks that Without gives the ring New builds from
// the members left: the same members and the same owner for every
// partition, over random member sets and random names to drop, unknown
// and repeated ones among them.
func TestWithoutMatchesNew(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 40 {
		cfg := Config{}
		if round%2 == 1 {
			cfg = Config{PartitionCount: 271, ReplicationFactor: 20, Load: 1.25}
		}
		ms := members(1 + rng.IntN(60))
		var drop []string
		for _, m := range ms {
			if rng.IntN(4) == 0 {
				drop = append(drop, m.Name, m.Name)
			}
		}
		drop = append(drop, "not-a-member")
		got := New(ms, cfg).Without(drop...)
		want := New(without(ms, drop...), cfg)
		if !slices.Equal(got.Members(), want.Members()) {
			t.Fatalf("round %d: Without(%v) has members %v, New %v", round, drop, got.Members(), want.Members())
		}
		for p := range want.PartitionCount() {
			g, gok := got.PartitionOwner(p)
			w, wok := want.PartitionOwner(p)
			if g != w || gok != wok {
				t.Fatalf("round %d: Without(%v): partition %d owned by %v, New %v", round, drop, p, g, w)
			}
		}
		if _, ok := got.Owner("k"); ok != (want.Len() > 0) {
			t.Fatalf("round %d: Owner reports %v on a ring of %d", round, ok, want.Len())
		}
	}
}

// BenchmarkWithout compares Without with New for a ring of 50 members less
// one.
func BenchmarkWithout(b *testing.B) {
	ms := members(50)
	r := New(ms, Config{})
	b.Run("Without", func(b *testing.B) {
		for b.Loop() {
			r.Without(ms[7].Name)
		}
	})
	b.Run("New", func(b *testing.B) {
		rest := without(ms, ms[7].Name)
		for b.Loop() {
			New(rest, Config{})
		}
	})
}
