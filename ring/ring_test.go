package ring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/buraksezer/consistent"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// members returns n members named like the cluster's default names.
func members(n int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{Name: fmt.Sprintf("node-%d", i), Addr: fmt.Sprintf("127.0.0.1:%d", 7000+i)}
	}
	return ms
}

// keys returns n routing keys shaped like the client identities ratemesh
// routes by.
func keys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("ip:10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	return ks
}

func without(ms []Member, names ...string) []Member {
	return slices.DeleteFunc(slices.Clone(ms), func(m Member) bool {
		return slices.Contains(names, m.Name)
	})
}

func TestSameOwnersInAnyOrder(t *testing.T) {
	ms := members(7)
	want := New(ms, Config{})
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 5 {
		shuffled := slices.Clone(ms)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		if i%2 == 1 {
			// Duplicates, as a gossip snapshot might contain, change nothing.
			shuffled = append(shuffled, shuffled[:3]...)
		}
		got := New(shuffled, Config{})
		if !slices.Equal(got.Members(), want.Members()) {
			t.Fatalf("order %d: members %v, want %v", i, got.Members(), want.Members())
		}
		if !slices.Equal(got.owners, want.owners) {
			t.Fatalf("order %d: partition owners differ", i)
		}
		if d := Diff(want, got); d != nil {
			t.Fatalf("order %d: Diff = %v, want nil", i, d)
		}
	}
}

func TestDuplicateNameKeepsSmallestAddr(t *testing.T) {
	r := New([]Member{{"b", "2"}, {"a", "9"}, {"a", "1"}, {"a", "5"}}, Config{})
	want := []Member{{"a", "1"}, {"b", "2"}}
	if got := r.Members(); !slices.Equal(got, want) {
		t.Fatalf("Members() = %v, want %v", got, want)
	}
}

func TestMemberCounts(t *testing.T) {
	ks := keys(2000)
	for _, n := range []int{0, 1, 2, 50} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ms := members(n)
			r := New(ms, Config{})
			if r.Len() != n || len(r.Members()) != n {
				t.Fatalf("Len() = %d, len(Members()) = %d, want %d", r.Len(), len(r.Members()), n)
			}
			owned := map[string]int{}
			for p := range r.PartitionCount() {
				m, ok := r.PartitionOwner(p)
				if ok != (n > 0) {
					t.Fatalf("PartitionOwner(%d) ok = %v with %d members", p, ok, n)
				}
				owned[m.Name]++
			}
			if n > 0 && len(owned) != n {
				t.Fatalf("%d of %d members own partitions: %v", len(owned), n, owned)
			}
			for _, k := range ks {
				m, ok := r.Owner(k)
				if ok != (n > 0) || (ok && !slices.Contains(ms, m)) {
					t.Fatalf("Owner(%q) = %v, %v", k, m, ok)
				}
			}
			s := r.Successors(ks[0], 3)
			if len(s) != min(3, n) {
				t.Fatalf("Successors(_, 3) returned %d members, want %d", len(s), min(3, n))
			}
		})
	}
}

func TestEmptyRings(t *testing.T) {
	var zero Ring
	for name, r := range map[string]*Ring{"nil": nil, "zero": &zero, "New(nil)": New(nil, Config{}), "New(empty)": New([]Member{}, Config{})} {
		if m, ok := r.Owner("k"); ok || m != (Member{}) {
			t.Errorf("%s: Owner = %v, %v", name, m, ok)
		}
		if s := r.Successors("k", 2); s != nil {
			t.Errorf("%s: Successors = %v", name, s)
		}
		if r.Len() != 0 || r.Members() != nil {
			t.Errorf("%s: Len %d, Members %v", name, r.Len(), r.Members())
		}
		if _, ok := r.PartitionOwner(0); ok {
			t.Errorf("%s: PartitionOwner(0) has an owner", name)
		}
		if c := r.Config(); c != (Config{DefaultPartitionCount, DefaultReplicationFactor, DefaultLoad}) {
			t.Errorf("%s: Config() = %+v", name, c)
		}
		if p := r.Partition("k"); p != New(members(1), Config{}).Partition("k") {
			t.Errorf("%s: Partition = %d", name, p)
		}
		if d := Diff(r, nil); d != nil {
			t.Errorf("%s: Diff with nil = %v", name, d)
		}
	}
}

func TestConfigNormalization(t *testing.T) {
	d := Config{DefaultPartitionCount, DefaultReplicationFactor, DefaultLoad}
	for _, tc := range []struct{ in, want Config }{
		{Config{}, d},
		{Config{-1, -1, -1}, Config{DefaultPartitionCount, DefaultReplicationFactor, 1}},
		{Config{271, 20, 0.5}, Config{271, 20, 1}},
		{Config{7, 1, math.NaN()}, Config{7, 1, DefaultLoad}},
		{Config{1, 1, math.Inf(1)}, Config{1, 1, math.Inf(1)}},
		{Config{math.MaxInt, math.MaxInt, 3}, Config{MaxPartitionCount, MaxReplicationFactor, 3}},
	} {
		r := New(members(3), tc.in)
		if got := r.Config(); got != tc.want {
			t.Errorf("New(_, %+v).Config() = %+v, want %+v", tc.in, got, tc.want)
		}
		if _, ok := r.Owner("k"); !ok {
			t.Errorf("New(_, %+v): no owner", tc.in)
		}
	}
}

// TestLibraryPanics records the configurations consistent v1.0.0 panics
// on, and checks New survives each. Should a library upgrade stop
// panicking, the first half fails and docs/design.md needs an update.
func TestLibraryPanics(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members int
		cfg     consistent.Config
	}{
		{"nil hasher", 3, consistent.Config{}},
		{"load 0.5, 3 members", 3, consistent.Config{Hasher: hasher{}, PartitionCount: 271, Load: 0.5}},
		{"load 0.9, 3 members", 3, consistent.Config{Hasher: hasher{}, PartitionCount: 271, Load: 0.9}},
		{"load 0.9, 50 members", 50, consistent.Config{Hasher: hasher{}, PartitionCount: 271, ReplicationFactor: 1, Load: 0.9}},
		{"load 0.5, 10 partitions, 2 members", 2, consistent.Config{Hasher: hasher{}, PartitionCount: 10, ReplicationFactor: 1, Load: 0.5}},
		{"negative load", 1, consistent.Config{Hasher: hasher{}, Load: -1}},
		{"NaN load", 1, consistent.Config{Hasher: hasher{}, Load: math.NaN()}},
		{"negative replication factor", 1, consistent.Config{Hasher: hasher{}, ReplicationFactor: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := members(tc.members)
			if !libraryPanics(ms, tc.cfg) {
				t.Errorf("consistent.New did not panic")
			}
			r := New(ms, Config{tc.cfg.PartitionCount, tc.cfg.ReplicationFactor, tc.cfg.Load})
			if _, ok := r.Owner("k"); !ok {
				t.Errorf("New: no owner")
			}
		})
	}
	// Whether Load < 1 panics depends on the member count: 300 members can
	// each take ceil(271/300 × 0.9) = 1 partition, which is room enough.
	if libraryPanics(members(300), consistent.Config{Hasher: hasher{}, PartitionCount: 271, ReplicationFactor: 1, Load: 0.9}) {
		t.Errorf("consistent.New panicked with 300 members at load 0.9")
	}
}

func libraryPanics(ms []Member, cfg consistent.Config) (panicked bool) {
	defer func() { panicked = recover() != nil }()
	lms := make([]consistent.Member, len(ms))
	for i, m := range ms {
		lms[i] = libMember{name: m.Name, idx: int32(i)}
	}
	consistent.New(lms, cfg)
	return false
}

// TestPlaceFallsBack drives the fallback New never needs with a normalized
// Config: a library panic is retried with unbounded load.
func TestPlaceFallsBack(t *testing.T) {
	pos := sortPositions(members(3), 20)
	bad := Config{PartitionCount: 271, ReplicationFactor: 20, Load: 0.5}
	if _, ok := tryPlace(pos, nil, 3, bad); ok {
		t.Fatal("tryPlace succeeded at load 0.5")
	}
	got := place(pos, nil, 3, bad)
	want := place(pos, nil, 3, Config{PartitionCount: 271, ReplicationFactor: 20, Load: math.Inf(1)})
	if want == nil || !slices.Equal(got, want) {
		t.Fatalf("place fell back to %v, want the unbounded placement %v", got, want)
	}
}

// TestOwnerMatchesLibrary checks that the precomputed table and the
// xxhash.Sum64String partition give exactly the library's FindPartitionID
// and LocateKey: 100,000 keys on the default ring, 10,000 on others.
func TestOwnerMatchesLibrary(t *testing.T) {
	edge := []string{"", "a", "user:42", "apikey:\x00\xff", strings.Repeat("k", 1000)}
	for _, tc := range []struct {
		cfg     Config
		members int
		keys    int
	}{
		{Config{}, 3, 100_000},
		{Config{}, 1, 10_000},
		{Config{}, 10, 10_000},
		{Config{271, 20, 1.25}, 3, 10_000},
		{Config{271, 20, 1.25}, 10, 10_000},
		{Config{7, 1, 1}, 3, 10_000},
	} {
		r := New(members(tc.members), tc.cfg)
		c := r.Config()
		lms := make([]consistent.Member, tc.members)
		for i, m := range r.members {
			lms[i] = libMember{name: m.Name, idx: int32(i)}
		}
		lib := consistent.New(lms, consistent.Config{Hasher: hasher{}, PartitionCount: c.PartitionCount,
			ReplicationFactor: c.ReplicationFactor, Load: c.Load})
		for _, k := range append(keys(tc.keys), edge...) {
			if p, want := r.Partition(k), lib.FindPartitionID([]byte(k)); p != want {
				t.Fatalf("%+v, %d members: Partition(%q) = %d, library %d", c, tc.members, k, p, want)
			}
			m, _ := r.Owner(k)
			if want := lib.LocateKey([]byte(k)).String(); m.Name != want {
				t.Fatalf("%+v, %d members: Owner(%q) = %s, library %s", c, tc.members, k, m.Name, want)
			}
		}
	}
}

// extraMoves counts the partitions that changed owner between old and new
// although neither side of the move is the member that left or joined.
func extraMoves(old, new *Ring, changed string) (moved, extra int) {
	for _, mv := range Diff(old, new) {
		moved++
		if mv.From.Name != changed && mv.To.Name != changed {
			extra++
		}
	}
	return moved, extra
}

// TestRemoveOneOfThree checks that removing a member moves only its
// partitions. Bounded loads do not guarantee it: removing a member raises
// the others' caps, so a partition that skipped a full member may now land
// on it, and the partitions placed earlier fill members in a new order.
// That is why the default Load is 1.5 rather than the library's 1.25: with
// 200 virtual nodes the cap then practically never binds, and no survey set
// moved a foreign partition (docs/design.md). These names are asserted exactly for
// 3 and 10 members; the library's defaults (271, 20, 1.25) are logged for
// comparison (and do move foreign partitions with 10 members).
func TestRemoveOneOfThree(t *testing.T) {
	for _, cfg := range []Config{{}, {271, 20, 1.25}} {
		for _, n := range []int{3, 10} {
			ms := members(n)
			r := New(ms, cfg)
			total, totalExtra := 0, 0
			for _, gone := range ms {
				after := New(without(ms, gone.Name), cfg)
				moved, extra := extraMoves(r, after, gone.Name)
				owned := 0
				for p := range r.PartitionCount() {
					if m, _ := r.PartitionOwner(p); m == gone {
						owned++
					}
				}
				total, totalExtra = total+moved, totalExtra+extra
				if cfg == (Config{}) && (extra != 0 || moved != owned) {
					t.Errorf("removing %s moved %d partitions (%d not its own), want exactly its %d",
						gone.Name, moved, extra, owned)
				}
			}
			t.Logf("%+v, %d members: removing each in turn moved %d partitions, %d of them not the leaver's",
				r.Config(), n, total, totalExtra)
		}
	}
}

// TestAddFourth checks the converse on the default config: a joining
// member takes partitions, the others do not trade among themselves.
func TestAddFourth(t *testing.T) {
	ms := members(4)
	old, new := New(ms[:3], Config{}), New(ms, Config{})
	moved, extra := extraMoves(old, new, ms[3].Name)
	t.Logf("adding %s moved %d partitions, %d between the others", ms[3].Name, moved, extra)
	if moved == 0 || extra != 0 {
		t.Errorf("adding a member moved %d partitions, %d between the others", moved, extra)
	}
}

// TestSpread reports how evenly 100k keys spread and bounds the busiest
// member at 1.5× (3 members) and 2× (10) the idlest; see docs/design.md for the
// figures over many sets of names.
func TestSpread(t *testing.T) {
	ks := keys(100_000)
	for _, tc := range []struct {
		members  int
		maxRatio float64
	}{{3, 1.5}, {10, 2}} {
		r := New(members(tc.members), Config{})
		count := map[string]int{}
		for _, k := range ks {
			m, _ := r.Owner(k)
			count[m.Name]++
		}
		lo, hi := len(ks), 0
		for _, m := range r.Members() {
			lo, hi = min(lo, count[m.Name]), max(hi, count[m.Name])
		}
		ratio := float64(hi) / float64(max(lo, 1))
		t.Logf("%d members, %d keys: min %d, max %d, ideal %d, max/min %.3f",
			tc.members, len(ks), lo, hi, len(ks)/tc.members, ratio)
		if ratio > tc.maxRatio {
			t.Errorf("%d members: max/min = %.3f, want <= %.1f", tc.members, ratio, tc.maxRatio)
		}
	}
}

func TestDiff(t *testing.T) {
	ms := members(5)
	a := New(ms, Config{})
	b := New(append(without(ms, "node-1", "node-3"), Member{"node-9", "x"}), Config{})
	if d := Diff(a, a); d != nil {
		t.Fatalf("Diff(a, a) = %v", d)
	}
	// Same names, other addresses: the same owners, no move.
	readdr := members(5)
	for i := range readdr {
		readdr[i].Addr = "elsewhere"
	}
	if d := Diff(a, New(readdr, Config{})); d != nil {
		t.Fatalf("Diff after address change = %v", d)
	}
	moves := Diff(a, b)
	byPart := map[int]Move{}
	for i, mv := range moves {
		if i > 0 && moves[i-1].Partition >= mv.Partition {
			t.Fatalf("moves not in ascending partition order at %d", i)
		}
		if mv.From.Name == mv.To.Name {
			t.Fatalf("move %v does not change owner", mv)
		}
		byPart[mv.Partition] = mv
	}
	// Key level: a key changed owner iff its partition moved, from and to
	// the members the move names.
	for _, k := range keys(20_000) {
		from, _ := a.Owner(k)
		to, _ := b.Owner(k)
		mv, ok := byPart[a.Partition(k)]
		if ok != (from.Name != to.Name) || (ok && (mv.From != from || mv.To != to)) {
			t.Fatalf("key %q: owners %s → %s, move %v (listed %v)", k, from.Name, to.Name, mv, ok)
		}
	}
	// Against an empty ring every partition moves, with a zero Member on
	// the empty side.
	for _, tc := range []struct {
		old, new *Ring
		fromSet  bool
	}{{nil, a, false}, {New(nil, Config{}), a, false}, {a, nil, true}} {
		d := Diff(tc.old, tc.new)
		if len(d) != a.PartitionCount() {
			t.Fatalf("Diff with an empty ring: %d moves, want %d", len(d), a.PartitionCount())
		}
		for _, mv := range d {
			owner, _ := a.PartitionOwner(mv.Partition)
			if (tc.fromSet && (mv.From != owner || mv.To != Member{})) ||
				(!tc.fromSet && (mv.To != owner || mv.From != Member{})) {
				t.Fatalf("move %v, partition owner %v", mv, owner)
			}
		}
	}
	// A member named "" is still a member, not "no owner".
	e := New([]Member{{"", "addr"}}, Config{})
	if d := Diff(nil, e); len(d) != e.PartitionCount() {
		t.Fatalf("Diff(nil, ring of member \"\") = %d moves", len(d))
	}
}

func TestHas(t *testing.T) {
	r := New([]Member{{Name: "b"}, {Name: "a"}, {Name: "c"}}, Config{})
	for _, tc := range []struct {
		name string
		want bool
	}{{"a", true}, {"b", true}, {"c", true}, {"", false}, {"d", false}} {
		if got := r.Has(tc.name); got != tc.want {
			t.Errorf("Has(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	var empty *Ring
	if empty.Has("a") {
		t.Error("nil ring has a member")
	}
}
