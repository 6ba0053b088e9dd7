package bucket

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"pgregory.net/rapid"
)

// op is one generated check.
type op struct {
	dt       time.Duration // after the previous op
	key      string
	counters []Counter
	cost     int64
}

func genOps(t *rapid.T, n int) []op {
	pool := []Counter{
		{Scope: "a", Limit: Limit{3, 2 * time.Second}, Strategy: FixedWindow},
		{Scope: "a", Limit: Limit{4, 3 * time.Second}, Strategy: SlidingWindowCounter},
		{Scope: "b", Limit: Limit{3, 2 * time.Second}, Strategy: MovingWindow},
		{Scope: "b", Limit: Limit{5, 3 * time.Second}, Strategy: TokenBucket},
		{Scope: "c", Limit: Limit{1, time.Second}, Strategy: FixedWindow},
	}
	ops := make([]op, n)
	for i := range ops {
		idx := rapid.SliceOfNDistinct(rapid.IntRange(0, len(pool)-1), 1, 3, rapid.ID[int]).Draw(t, "counters")
		var cs []Counter
		for _, j := range idx {
			cs = append(cs, pool[j])
		}
		ops[i] = op{
			dt:       time.Duration(rapid.IntRange(0, 1500).Draw(t, "dt_ms")) * time.Millisecond,
			key:      rapid.SampledFrom([]string{"k1", "k2", "k3"}).Draw(t, "key"),
			counters: cs,
			cost:     int64(rapid.IntRange(0, 3).Draw(t, "cost")),
		}
	}
	return ops
}

type answer struct {
	ok bool
	st []Status
}

func (a answer) equal(b answer) bool {
	return a.ok == b.ok && slices.EqualFunc(a.st, b.st, sameStatus)
}

func apply(s *Store, now time.Time, o op) answer {
	st, ok, err := s.Check(now, o.key, o.counters, o.cost, nil)
	if err != nil {
		panic(err)
	}
	return answer{ok, st}
}

// TestSnapshotMergeReproduces: Snapshot → Merge into an empty store, and
// Extract (in chunks, through msgpack) → Merge into another, reproduce every
// later answer of the original store.
func TestSnapshotMergeReproduces(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ops := genOps(t, rapid.IntRange(1, 60).Draw(t, "n"))
		split := rapid.IntRange(0, len(ops)).Draw(t, "split")
		orig, twin := NewStore(StoreConfig{Shards: 2}), NewStore(StoreConfig{Shards: 4})
		now := t0
		for _, o := range ops[:split] {
			now = now.Add(o.dt)
			apply(orig, now, o)
			apply(twin, now, o)
		}
		snapCopy := NewStore(StoreConfig{})
		snapCopy.Merge(now, orig.Snapshot(now, nil))

		extractCopy := NewStore(StoreConfig{})
		for {
			chunk := twin.Extract(now, nil, 2)
			if len(chunk) == 0 {
				break
			}
			if len(chunk) > 2 {
				t.Fatalf("Extract(max 2) returned %d entries", len(chunk))
			}
			wire, err := msgpack.Marshal(chunk)
			if err != nil {
				t.Fatal(err)
			}
			var got []Entry
			if err := msgpack.Unmarshal(wire, &got); err != nil {
				t.Fatal(err)
			}
			extractCopy.Merge(now, got)
		}
		if twin.Len() != 0 {
			t.Fatalf("%d keys left after extracting all", twin.Len())
		}
		for i, o := range ops[split:] {
			now = now.Add(o.dt)
			want := apply(orig, now, o)
			if got := apply(snapCopy, now, o); !got.equal(want) {
				t.Fatalf("op %d after snapshot: copy %v %s, original %v %s", i, got.ok, fmtStatus(got.st), want.ok, fmtStatus(want.st))
			}
			if got := apply(extractCopy, now, o); !got.equal(want) {
				t.Fatalf("op %d after extract: copy %v %s, original %v %s", i, got.ok, fmtStatus(got.st), want.ok, fmtStatus(want.st))
			}
		}
	})
}

// mergeInto hits key k with c on two stores per the given hits, merges the
// first store's snapshot into the second at t0+at, and returns the second.
func mergeInto(c Counter, a, b []step, at time.Duration) *Store {
	sa, sb := NewStore(StoreConfig{}), NewStore(StoreConfig{})
	for _, h := range a {
		sa.Check(t0.Add(h.at), "k", []Counter{c}, h.cost, nil)
	}
	for _, h := range b {
		sb.Check(t0.Add(h.at), "k", []Counter{c}, h.cost, nil)
	}
	sb.Merge(t0.Add(at), sa.Snapshot(t0.Add(at), nil))
	return sb
}

// TestMergeCombines: counts of the same window add, the token bucket keeps
// the emptier state, moving-window logs merge keeping the newest hits.
func TestMergeCombines(t *testing.T) {
	t.Run("fixed window keeps the earlier start, counts add", func(t *testing.T) {
		c := Counter{Limit: Limit{10, time.Minute}}
		s := mergeInto(c, []step{{at: 0, cost: 3}}, []step{{at: seconds(10), cost: 4}}, seconds(20))
		runSteps(t, s, "k", c, []step{{at: seconds(20), cost: 0, allowed: true, remaining: 3, reset: seconds(60)}})
	})
	t.Run("sliding window adds bucket by bucket", func(t *testing.T) {
		c := Counter{Limit: Limit{10, time.Minute}, Strategy: SlidingWindowCounter}
		s := mergeInto(c, []step{{at: seconds(10), cost: 2}}, []step{{at: seconds(70), cost: 3}}, seconds(70))
		// floor(2 × 50/60) + 3 = 4 used.
		runSteps(t, s, "k", c, []step{{at: seconds(70), cost: 0, allowed: true, remaining: 6, reset: seconds(160) + 1}})
	})
	t.Run("token bucket keeps the later TAT", func(t *testing.T) {
		c := Counter{Limit: Limit{5, time.Minute}, Strategy: TokenBucket}
		s := mergeInto(c, []step{{at: 0, cost: 4}}, []step{{at: 0, cost: 1}}, 0)
		runSteps(t, s, "k", c, []step{{at: 0, cost: 0, allowed: true, remaining: 1, reset: seconds(48)}})
		s = mergeInto(c, []step{{at: 0, cost: 1}}, []step{{at: 0, cost: 4}}, 0)
		runSteps(t, s, "k", c, []step{{at: 0, cost: 0, allowed: true, remaining: 1, reset: seconds(48)}})
	})
	t.Run("moving window keeps the newest hits", func(t *testing.T) {
		c := Counter{Limit: Limit{3, time.Minute}, Strategy: MovingWindow}
		s := mergeInto(c, []step{{at: seconds(1), cost: 1}, {at: seconds(2), cost: 1}},
			[]step{{at: seconds(3), cost: 1}, {at: seconds(4), cost: 1}}, seconds(5))
		runSteps(t, s, "k", c, []step{{at: seconds(5), cost: 1, remaining: 0, reset: seconds(64), retry: seconds(57)}})
	})
	t.Run("expired entries are dropped", func(t *testing.T) {
		c := Counter{Limit: Limit{10, time.Minute}}
		s := mergeInto(c, []step{{at: 0, cost: 3}}, nil, 0)
		s.Reset("k")
		src := NewStore(StoreConfig{})
		src.Check(t0, "k", []Counter{c}, 1, nil)
		s.Merge(t0.Add(time.Minute), src.Snapshot(t0, nil))
		if s.Len() != 0 {
			t.Fatalf("Len %d after merging an expired entry", s.Len())
		}
	})
}

// TestMergeRepairsBadState: states no peer should send are repaired or
// dropped, never a panic.
func TestMergeRepairsBadState(t *testing.T) {
	now := t0.Add(seconds(30))
	ns := t0.UnixNano()
	s := NewStore(StoreConfig{})
	s.Merge(now, []Entry{
		{Key: "bad", Counters: []CounterState{
			{Counter: Counter{Limit: Limit{1, 0}}, Count: 5},                                     // invalid counter
			{Counter: Counter{Limit: Limit{5, time.Minute}, Strategy: 9}, Count: 5},              // unknown strategy
			{Counter: Counter{Scope: "neg", Limit: Limit{5, time.Minute}}, Start: ns, Count: -3}, // nothing live
		}},
		{Key: "k", Counters: []CounterState{
			{Counter: Counter{Scope: "tb", Limit: Limit{2, time.Minute}, Strategy: TokenBucket}, TAT: ns + int64(seconds(60)), TATFrac: 99},
			{Counter: Counter{Scope: "mw", Limit: Limit{2, time.Minute}, Strategy: MovingWindow},
				Hits: []int64{ns + 3, ns + 1, ns + 2, ns - int64(time.Hour)}},
			{Counter: Counter{Scope: "sw", Limit: Limit{5, time.Minute}, Strategy: SlidingWindowCounter}, Start: ns + 7, Count: 9},
		}},
	})
	if s.Len() != 1 {
		t.Fatalf("Len %d, want only key k", s.Len())
	}
	st, ok, err := s.Check(now, "k", []Counter{
		{Scope: "tb", Limit: Limit{2, time.Minute}, Strategy: TokenBucket},
		{Scope: "mw", Limit: Limit{2, time.Minute}, Strategy: MovingWindow},
		{Scope: "sw", Limit: Limit{5, time.Minute}, Strategy: SlidingWindowCounter},
	}, 0, nil)
	if err != nil || ok {
		t.Fatalf("peek: %v %v, want denied (sliding window over its limit)", ok, err)
	}
	// TAT t0+60s (fraction ignored): one token back at t0+30s. Newest two hits
	// kept. The unaligned bucket start is aligned, the count kept.
	want := []Status{
		{Limit: Limit{2, time.Minute}, Remaining: 1, Reset: t0.Add(seconds(60))},
		{Limit: Limit{2, time.Minute}, Remaining: 0, Reset: t0.Add(seconds(60) + 3)},
		{Limit: Limit{5, time.Minute}, Remaining: 0, Reset: t0.Add(2*time.Minute - (time.Minute+8)/9 + 1), RetryAfter: seconds(50) + 1}, // floor(9r/60s) <= 5 once r < 40s, next bucket
	}
	if !slices.EqualFunc(st, want, sameStatus) {
		t.Fatalf("got %s\nwant %s", fmtStatus(st), fmtStatus(want))
	}
}

// TestExtractChunks: Extract removes only matching keys, at most max at a
// time, until none is left.
func TestExtractChunks(t *testing.T) {
	s := NewStore(StoreConfig{Shards: 8})
	c := []Counter{{Limit: Limit{5, time.Minute}}}
	for i := 0; i < 50; i++ {
		s.Check(t0, "a-"+string(rune('A'+i)), c, 1, nil)
		s.Check(t0, "b-"+string(rune('A'+i)), c, 1, nil)
	}
	isA := func(k string) bool { return strings.HasPrefix(k, "a-") }
	got := map[string]bool{}
	for calls := 0; ; calls++ {
		chunk := s.Extract(t0, isA, 7)
		if len(chunk) == 0 {
			break
		}
		if len(chunk) > 7 || calls > 20 {
			t.Fatalf("Extract returned %d entries on call %d", len(chunk), calls)
		}
		for _, e := range chunk {
			if !isA(e.Key) || got[e.Key] || len(e.Counters) != 1 || e.Counters[0].Count != 1 {
				t.Fatalf("bad or repeated entry %+v", e)
			}
			got[e.Key] = true
		}
	}
	if len(got) != 50 || s.Len() != 50 || len(s.Snapshot(t0, isA)) != 0 {
		t.Fatalf("extracted %d, %d keys left; want 50 and 50 (all b-)", len(got), s.Len())
	}
}

// TestHasTake: Take removes one key and returns what Merge restores.
func TestHasTake(t *testing.T) {
	s := NewStore(StoreConfig{})
	c := Counter{Limit: Limit{5, time.Minute}}
	s.Check(t0, "k", []Counter{c}, 2, nil)
	if !s.Has("k") || s.Has("other") {
		t.Fatal("Has: want k held and other not")
	}
	e, ok := s.Take(t0.Add(seconds(1)), "k")
	if !ok || e.Key != "k" || len(e.Counters) != 1 || e.Counters[0].Count != 2 || s.Has("k") {
		t.Fatalf("Take = %+v, %v; Has after = %v", e, ok, s.Has("k"))
	}
	if _, ok := s.Take(t0, "k"); ok {
		t.Fatal("second Take found the key")
	}
	s.Merge(t0.Add(seconds(1)), []Entry{e})
	runSteps(t, s, "k", c, []step{{at: seconds(1), cost: 3, allowed: true, remaining: 0, reset: seconds(60)}})
	// An expired key is removed but not returned.
	if _, ok := s.Take(t0.Add(time.Minute), "k"); ok || s.Has("k") {
		t.Fatal("Take returned an expired key or left it")
	}
}

// Export copies a key without removing it; Replace sets a key to what it
// is sent, not the sum.
func TestExportAndReplace(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewStore(StoreConfig{})
	cs := []Counter{{Scope: "r", Limit: Limit{Amount: 10, Period: time.Minute}}}
	for range 3 {
		s.Check(now, "k", cs, 1, nil)
	}
	e, ok := s.Export(now, "k")
	if !ok || e.Counters[0].Count != 3 || !s.Has("k") {
		t.Fatalf("Export: %+v %v, held %v; want a count of 3, still held", e, ok, s.Has("k"))
	}
	if _, ok := s.Export(now, "absent"); ok {
		t.Fatal("Export of an absent key reported ok")
	}
	replica := NewStore(StoreConfig{})
	replica.Replace(now, []Entry{e})
	s.Check(now, "k", cs, 1, nil)
	e, _ = s.Export(now, "k")
	replica.Replace(now, []Entry{e})
	replica.Replace(now, []Entry{e}) // twice: still 4, not 8
	if got, _ := replica.Export(now, "k"); got.Counters[0].Count != 4 {
		t.Fatalf("after Replace of a count of 4, twice: %+v", got)
	}
}

// Snapshot of plain keys (one counter, no log) allocates per shard, not
// per key: a snapshot of ten million keys would otherwise make ten million
// allocations, and waking the collector while a shard's lock was held made
// checks wait for it.
func TestSnapshotAllocatesPerShard(t *testing.T) {
	const n, shards = 10_000, 16
	s := NewStore(StoreConfig{Shards: shards})
	c := []Counter{{Scope: "GET /products", Limit: Limit{Amount: 100, Period: time.Minute}}}
	for i := range n {
		if _, _, err := s.Check(t0, "ip:10.0."+strconv.Itoa(i), c, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	var got []Entry
	allocs := testing.AllocsPerRun(3, func() { got = s.Snapshot(t0, nil) })
	if len(got) != n || got[0].Counters[0].Count != 1 {
		t.Fatalf("Snapshot returned %d entries, want %d", len(got), n)
	}
	if allocs > 3*shards {
		t.Fatalf("Snapshot of %d keys in %d shards made %.0f allocations, want at most %d", n, shards, allocs, 3*shards)
	}
}

// Merging a node's file of many keys makes room in each shard once, not
// again and again as keys arrive: one allocation per key (its copy), plus
// a few per shard.
func TestMergeReservesOnce(t *testing.T) {
	const n, shards = 1 << 15, 4
	entries := make([]Entry, n)
	for i := range entries {
		entries[i] = Entry{Key: "ip:10.0." + strconv.Itoa(i), Counters: []CounterState{
			{Counter: Counter{Scope: "GET /products", Limit: Limit{Amount: 100, Period: time.Minute}}, Start: t0.UnixNano(), Count: 1}}}
	}
	var s *Store
	allocs := testing.AllocsPerRun(1, func() {
		s = NewStore(StoreConfig{Shards: shards})
		s.Merge(t0, entries)
	})
	if s.Len() != n {
		t.Fatalf("Len = %d after merging %d keys", s.Len(), n)
	}
	if allocs > n+16*shards {
		t.Fatalf("merging %d keys into %d shards made %.0f allocations, want at most %d", n, shards, allocs, n+16*shards)
	}
}
