package bucket

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"pgregory.net/rapid"
)

// failer is what audit needs of a *testing.T or a *rapid.T.
type failer interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// audit recounts what s holds by walking every shard, checks the interning
// table's reference counts and budget, and fails t unless Usage agrees.
func audit(t failer, s *Store) Usage {
	t.Helper()
	var u Usage
	tb := s.table()
	for i := range tb.shards {
		sh := &tb.shards[i]
		sh.mu.Lock()
		refs := map[*byte]int{}
		for j := range sh.entries {
			e := &sh.entries[j]
			u.Keys++
			for k := 0; k < e.len(); k++ {
				c := e.at(k)
				u.Counters++
				u.MovingWindowSlots += c.st.log.capacity()
				refs[unsafe.StringData(c.id.Scope)]++
			}
		}
		bytes := 0
		for key, r := range sh.scopes {
			bytes += len(key) + scopeOverhead
			if got := refs[unsafe.StringData(r.s)]; r.refs != got || r.refs <= 0 || key != r.s {
				t.Errorf("shard %d: scope %q has %d references, %d counters share it", i, key, r.refs, got)
			}
		}
		if bytes != sh.scopeBytes || bytes > tb.acct.shardScopeBytes {
			t.Errorf("shard %d: interned scopes cost %d, counted %d, budget %d", i, bytes, sh.scopeBytes, tb.acct.shardScopeBytes)
		}
		u.ScopeBytes += bytes
		sh.mu.Unlock()
	}
	if got := s.Usage(); got != u {
		t.Fatalf("Usage() = %+v, but the store holds %+v", got, u)
	}
	return u
}

// TestUsageAccounting: after any sequence of checks, sweeps, handoffs and
// resets, Usage is exactly what the store holds, and everything is given
// back once all counters expired.
func TestUsageAccounting(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := NewStore(StoreConfig{Shards: 2, MaxCountersPerKey: MaxCountersPerCheck, MaxMovingWindowSlots: 64, MaxCounters: 40})
		other := NewStore(StoreConfig{Shards: 1})
		scopes := []string{"", "a", "b", "c"}
		now := t0
		for i, n := 0, rapid.IntRange(1, 60).Draw(rt, "ops"); i < n; i++ {
			now = now.Add(time.Duration(rapid.IntRange(0, 1500).Draw(rt, "dt_ms")) * time.Millisecond)
			key := "k" + strconv.Itoa(rapid.IntRange(0, 4).Draw(rt, "key"))
			switch rapid.IntRange(0, 9).Draw(rt, "op") {
			case 0:
				s.Sweep(now, rapid.IntRange(0, 3).Draw(rt, "max"))
			case 1:
				s.Merge(now, s.Extract(now, func(k string) bool { return k == key }, 0))
			case 2:
				other.Merge(now, s.Snapshot(now, nil))
				s.Merge(now, other.Extract(now, nil, 0))
			case 3:
				s.Reset(key)
			case 4:
				if e, ok := s.Take(now, key); ok {
					s.Merge(now, []Entry{e})
				}
			default:
				var cs []Counter
				for j, m := 0, rapid.IntRange(1, 3).Draw(rt, "counters"); j < m; j++ {
					cs = append(cs, Counter{
						Scope:    rapid.SampledFrom(scopes).Draw(rt, "scope"),
						Limit:    Limit{int64(rapid.IntRange(0, 20).Draw(rt, "amount")), time.Duration(rapid.IntRange(1, 3).Draw(rt, "period_s")) * time.Second},
						Strategy: Strategy(rapid.IntRange(0, 3).Draw(rt, "strategy")),
					})
				}
				_, _, err := s.Check(now, key, cs, int64(rapid.IntRange(0, 9).Draw(rt, "cost")), nil)
				if err != nil && !errors.Is(err, ErrStoreFull) {
					rt.Fatal(err)
				}
			}
			audit(rt, s)
		}
		s.Sweep(now.Add(time.Minute), 0)
		if u := audit(rt, s); u != (Usage{}) {
			rt.Fatalf("after everything expired: %+v", u)
		}
	})
}

// TestStoreFull: a check that would create a key, a counter or slots beyond
// the store's bounds fails with a *FullError naming the bound; existing
// counters keep working, a refused check consumes nothing, and the store
// recovers once Sweep reclaimed expired keys.
func TestStoreFull(t *testing.T) {
	s := NewStore(StoreConfig{MaxKeys: 2, MaxCounters: 3, MaxMovingWindowSlots: 8})
	fw := func(scope string) []Counter { return []Counter{{Scope: scope, Limit: Limit{5, time.Minute}}} }
	mw := Counter{Scope: "m", Limit: Limit{8, time.Minute}, Strategy: MovingWindow}
	wantFull := func(what string, err error, bound string, max int) {
		t.Helper()
		var fe *FullError
		if !errors.Is(err, ErrStoreFull) || !errors.As(err, &fe) || fe.Bound != bound || fe.Max != max {
			t.Fatalf("%s: err = %v, want a *FullError for %s (%d)", what, err, bound, max)
		}
	}
	mustCheck := func(what string, at time.Duration, key string, cs []Counter, cost int64) {
		t.Helper()
		if _, ok, err := s.Check(t0.Add(at), key, cs, cost, nil); !ok || err != nil {
			t.Fatalf("%s: allowed=%v err=%v", what, ok, err)
		}
	}
	mustCheck("key a", 0, "a", fw("x"), 1)
	mustCheck("key b, moving window", 0, "b", []Counter{mw}, 4) // 4 slots
	_, _, err := s.Check(t0, "c", fw("x"), 1, nil)
	wantFull("third key", err, "MaxKeys", 2)
	mustCheck("existing key a", 0, "a", fw("x"), 1)
	mustCheck("a second counter of a", 0, "a", fw("y"), 1)
	_, _, err = s.Check(t0, "a", fw("z"), 1, nil)
	wantFull("fourth counter", err, "MaxCounters", 3)
	mustCheck("a peek creates nothing", 0, "c", fw("x"), 0)
	mustCheck("b's log has room", 0, "b", []Counter{mw}, 0)
	if got := audit(t, s); got.Keys != 2 || got.Counters != 3 || got.MovingWindowSlots != 4 {
		t.Fatalf("usage %+v, want 2 keys, 3 counters, 4 slots", got)
	}

	// Slots: b's log grows from 4 to 8 (the limit); a log growing beyond
	// the store's 8 slots is refused, atomically with its other counters.
	s2 := NewStore(StoreConfig{MaxMovingWindowSlots: 8})
	big := Counter{Scope: "m", Limit: Limit{4096, time.Minute}, Strategy: MovingWindow}
	if _, ok, err := s2.Check(t0, "k", []Counter{big}, 8, nil); !ok || err != nil {
		t.Fatalf("8 hits in 8 slots: %v %v", ok, err)
	}
	both := []Counter{{Scope: "f", Limit: Limit{5, time.Minute}}, big}
	_, ok, err := s2.Check(t0, "k", both, 1, nil)
	wantFull("a ninth slot", err, "MaxMovingWindowSlots", 8)
	if st, _, _ := s2.Check(t0, "k", both, 0, nil); ok || st[0].Remaining != 5 || st[1].Remaining != 4088 {
		t.Fatalf("after the refused check: %s; want nothing consumed", fmtStatus(st))
	}

	// Recovery: once a's and b's counters expired and were swept, new keys fit.
	_, _, err = s.Check(t0.Add(time.Minute), "c", fw("x"), 1, nil)
	wantFull("before the sweep", err, "MaxKeys", 2)
	if n := s.Sweep(t0.Add(time.Minute), 0); n != 2 {
		t.Fatalf("Sweep removed %d keys, want 2", n)
	}
	mustCheck("after the sweep", time.Minute, "c", fw("x"), 1)
	mustCheck("after the sweep", time.Minute, "d", []Counter{mw}, 8)
	if got := audit(t, s); got.Keys != 2 || got.Counters != 2 || got.MovingWindowSlots != 8 {
		t.Fatalf("usage %+v, want 2 keys, 2 counters, 8 slots", got)
	}
}

// TestMergeWithinHeadroom: counts moving into a full store take it beyond
// its bounds by MovedHeadroom and no further; counts into keys it holds
// always merge, and Merge says how many it refused. Before, a merge took
// the store beyond its bounds without end.
func TestMergeWithinHeadroom(t *testing.T) {
	src := NewStore(StoreConfig{})
	cs := []Counter{
		{Scope: "f", Limit: Limit{5, time.Minute}},
		{Scope: "m", Limit: Limit{100, time.Minute}, Strategy: MovingWindow},
	}
	for i := 0; i < 3; i++ {
		if _, ok, err := src.Check(t0, "k"+strconv.Itoa(i), cs, 5, nil); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	// Bounds of 1 have a headroom of 1: a second key, counter and slot.
	dst := NewStore(StoreConfig{MaxKeys: 1, MaxCounters: 1, MaxMovingWindowSlots: 1})
	if _, _, err := dst.Check(t0, "own", cs[:1], 1, nil); err != nil {
		t.Fatal(err)
	}
	// The first key's fixed window takes the second key and counter; its
	// moving window would be a third counter, the other keys third keys.
	if refused := dst.Merge(t0, src.Snapshot(t0, nil)); refused != 5 {
		t.Fatalf("merge of 3 keys × 2 counters into a full store refused %d, want 5", refused)
	}
	if got := audit(t, dst); got.Keys != 2 || got.Counters != 2 || got.MovingWindowSlots != 0 {
		t.Fatalf("after the merge: %+v, want 2 keys, 2 counters, no slots", got)
	}
	// The same without the slot bound in the way: one key of one
	// counter moves in over the bound, the others are refused.
	dst = NewStore(StoreConfig{MaxKeys: 64})
	for i := range 64 {
		if _, _, err := dst.Check(t0, "own"+strconv.Itoa(i), cs[:1], 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	if refused := dst.Merge(t0, src.Snapshot(t0, nil)); refused != 4 {
		t.Fatalf("merge of 3 keys × 2 counters into a store of 64 full keys refused %d, want 4: one key of 64/64 moves in", refused)
	}
	if got := audit(t, dst); got.Keys != 65 || got.Counters != 66 {
		t.Fatalf("after the merge: %+v, want 65 keys and 66 counters", got)
	}
	if _, _, err := dst.Check(t0, "new", cs[:1], 1, nil); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("a new key's check over the bound: %v, want ErrStoreFull", err)
	}
	if refused := dst.Merge(t0, []Entry{{Key: "own0", Counters: []CounterState{{Counter: cs[0], Start: t0.UnixNano(), Count: 3}}}}); refused != 0 {
		t.Fatalf("counts into a held key refused %d", refused)
	}
	if st, _, err := dst.Check(t0, "own0", cs[:1], 0, nil); err != nil || st[0].Remaining != 1 {
		t.Fatalf("held key after the merge: %s %v, want 1 remaining of 5 (1 + 3 used)", fmtStatus(st), err)
	}
}

// TestMaxKeysExact: 8 goroutines checking 500 new keys each into a store of
// MaxKeys 1,000 leave exactly 1,000 keys and 3,000 refusals; 8 merging 50
// new keys each then add exactly 15 (1,000/64), refusing 385; a replica
// store (Replace) of MaxKeys 1,000 takes exactly 1,000 of 1,200 and no
// headroom. Before, merges and replicas took the store beyond MaxKeys
// without end (a node held 1,087,389 keys against 1,048,576).
func TestMaxKeysExact(t *testing.T) {
	const max, workers = 1000, 8
	s := NewStore(StoreConfig{MaxKeys: max})
	c := Counter{Scope: "s", Limit: Limit{5, time.Minute}}
	var full, refused atomic.Int64
	parallel := func(f func(w int)) {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() { f(w) })
		}
		wg.Wait()
	}
	parallel(func(w int) {
		for i := range 500 {
			if _, _, err := s.Check(t0, fmt.Sprintf("check-%d-%d", w, i), []Counter{c}, 1, nil); errors.Is(err, ErrStoreFull) {
				full.Add(1)
			} else if err != nil {
				t.Error(err)
			}
		}
	})
	if got := audit(t, s); got.Keys != max || s.Len() != max || full.Load() != 3000 {
		t.Fatalf("after 4,000 checks of new keys: %d keys (%d held), %d refused; want 1,000 and 3,000", got.Keys, s.Len(), full.Load())
	}
	parallel(func(w int) {
		for i := range 50 {
			e := Entry{Key: fmt.Sprintf("moved-%d-%d", w, i), Counters: []CounterState{{Counter: c, Start: t0.UnixNano(), Count: 1}}}
			refused.Add(int64(s.Merge(t0, []Entry{e})))
		}
	})
	if got := audit(t, s); got.Keys != max+max/MovedHeadroom || s.Len() != got.Keys || refused.Load() != 400-max/MovedHeadroom {
		t.Fatalf("after 400 moved keys: %d keys (%d held), %d refused; want %d and %d", got.Keys, s.Len(), refused.Load(), max+max/MovedHeadroom, 400-max/MovedHeadroom)
	}
	replicas := NewStore(StoreConfig{MaxKeys: max})
	refused.Store(0)
	parallel(func(w int) {
		for i := range 150 {
			e := Entry{Key: fmt.Sprintf("replica-%d-%d", w, i), Counters: []CounterState{{Counter: c, Start: t0.UnixNano(), Count: 1}}}
			refused.Add(int64(replicas.Replace(t0, []Entry{e})))
		}
	})
	if got := audit(t, replicas); got.Keys != max || replicas.Len() != max || refused.Load() != 200 {
		t.Fatalf("after 1,200 replicas: %d keys (%d held), %d refused; want 1,000 and 200", got.Keys, replicas.Len(), refused.Load())
	}
}

// TestMovingWindowHitsPerCheck: one check logs at most
// MaxMovingWindowHitsPerCheck moving-window hits; memory is what it bounds.
func TestMovingWindowHitsPerCheck(t *testing.T) {
	mw := func(n int) []Counter {
		cs := make([]Counter, n)
		for i := range cs {
			cs[i] = Counter{Scope: strconv.Itoa(i), Limit: Limit{4096, time.Hour}, Strategy: MovingWindow}
		}
		return cs
	}
	s := NewStore(StoreConfig{})
	_, _, err := s.Check(t0, "k", mw(32), 4096, nil)
	if !errors.Is(err, ErrTooManyHits) || !strings.Contains(err.Error(), "cost 4096 on 32 moving-window counters would log more than 16384 hits (MaxMovingWindowHitsPerCheck)") {
		t.Fatalf("32 counters at cost 4096: err = %v", err)
	}
	_, _, err = s.Check(t0, "k", mw(1), MaxMovingWindowHitsPerCheck+1, nil)
	if !errors.Is(err, ErrTooManyHits) {
		t.Fatalf("one counter at cost 16385: err = %v", err)
	}
	if _, ok, err := s.Check(t0, "k", []Counter{{Limit: Limit{1, time.Hour}}}, MaxMovingWindowHitsPerCheck+1, nil); ok || err != nil {
		t.Fatalf("a fixed window at cost 16385: ok=%v err=%v, want denied without error", ok, err)
	}
	if _, ok, err := s.Check(t0, "k", mw(4), 4096, nil); !ok || err != nil {
		t.Fatalf("4 counters at cost 4096: ok=%v err=%v", ok, err)
	}
	if u := audit(t, s); u.MovingWindowSlots != MaxMovingWindowHitsPerCheck {
		t.Fatalf("usage %+v, want %d slots", u, MaxMovingWindowHitsPerCheck)
	}
}

// heapAfterGC returns the live heap.
func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestMovingWindowSlotsBoundMemory replays the attack of many keys with
// moving windows at full cost: the heap grows by the slot bound, not by what
// the clients ask for (100 checks × 16384 hits would be 13 MB).
func TestMovingWindowSlotsBoundMemory(t *testing.T) {
	const slots = 1 << 16
	s := NewStore(StoreConfig{MaxMovingWindowSlots: slots})
	cs := make([]Counter, 4)
	for i := range cs {
		cs[i] = Counter{Scope: strconv.Itoa(i), Limit: Limit{4096, time.Hour}, Strategy: MovingWindow}
	}
	before := heapAfterGC()
	full := 0
	for i := 0; i < 100; i++ {
		if _, _, err := s.Check(t0, "k"+strconv.Itoa(i), cs, 4096, nil); errors.Is(err, ErrStoreFull) {
			full++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	grown := int64(heapAfterGC()) - int64(before)
	if u := audit(t, s); u.MovingWindowSlots != slots || full != 96 {
		t.Fatalf("usage %+v, %d checks refused; want %d slots, 96 refused", u, full, slots)
	}
	if grown > 8*slots+256<<10 {
		t.Fatalf("heap grew by %d bytes, want at most the %d bytes of slots and 256 KiB", grown, 8*slots)
	}
	runtime.KeepAlive(s)
}

// TestScopeInterning: a scope shared by many keys is stored once; a flood
// of distinct scopes costs the interning table at most its budget, and
// nothing once their counters are gone.
func TestScopeInterning(t *testing.T) {
	s := NewStore(StoreConfig{})
	lim := Limit{1, time.Minute}
	before := heapAfterGC()
	for i := 0; i < 10_000; i++ {
		scope := strconv.Itoa(i) + strings.Repeat("s", MaxScopeLen-8)
		if _, _, err := s.Check(t0, "k"+strconv.Itoa(i), []Counter{{Scope: scope, Limit: lim}}, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	if u := audit(t, s); u.ScopeBytes > DefaultMaxScopeBytes || u.Keys != 10_000 {
		t.Fatalf("usage %+v: want 10000 keys and at most %d bytes of interned scopes", u, DefaultMaxScopeBytes)
	}
	s.Sweep(t0.Add(time.Minute), 0)
	if u := audit(t, s); u != (Usage{}) {
		t.Fatalf("after the sweep: %+v, want nothing", u)
	}
	if grown := int64(heapAfterGC()) - int64(before); grown > 64<<10 {
		t.Fatalf("heap grew by %d bytes after every scope expired, want under 64 KiB", grown)
	}

	// Shared: keys of one shard under one scope point to one copy.
	s = NewStore(StoreConfig{Shards: 1})
	for i := 0; i < 3; i++ {
		scope := string([]byte("GET /products")) // a fresh copy each time
		s.Check(t0, "k"+strconv.Itoa(i), []Counter{{Scope: scope, Limit: lim}}, 1, nil)
	}
	sh := &s.table().shards[0]
	if p := unsafe.StringData(sh.entries[0].first.id.Scope); p != unsafe.StringData(sh.entries[2].first.id.Scope) || sh.scopes["GET /products"].refs != 3 {
		t.Fatal("three keys under one scope do not share its copy")
	}
	runtime.KeepAlive(s)
}
