package bucket

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAllOrNothing: a check over two limits consumes from neither unless
// both allow, and a denied check costs nothing, for every strategy pair.
func TestAllOrNothing(t *testing.T) {
	for _, sa := range allStrategies {
		for _, sb := range allStrategies {
			t.Run(sa.String()+"+"+sb.String(), func(t *testing.T) {
				s := NewStore(StoreConfig{})
				a := Counter{Scope: "route", Limit: Limit{10, time.Minute}, Strategy: sa}
				b := Counter{Scope: "shared", Limit: Limit{3, time.Minute}, Strategy: sb}
				both := []Counter{a, b}
				for i := 0; i < 3; i++ {
					if _, ok, err := s.Check(t0, "k", both, 1, nil); !ok || err != nil {
						t.Fatalf("hit %d denied: %v", i, err)
					}
				}
				st, ok, err := s.Check(t0, "k", both, 1, nil)
				if ok || err != nil {
					t.Fatalf("4th hit allowed=%v err=%v, want denied by b", ok, err)
				}
				if st[0].Remaining != 7 || st[0].RetryAfter != 0 || st[1].Remaining != 0 || st[1].RetryAfter <= 0 {
					t.Fatalf("denied statuses %s: want a remaining 7 retry 0, b remaining 0 retry > 0", fmtStatus(st))
				}
				// Cost 5 fits a (7 left) but not b: a must still have 7.
				if _, ok, _ := s.Check(t0, "k", both, 5, nil); ok {
					t.Fatal("cost 5 allowed over b's 0 remaining")
				}
				st, ok, _ = s.Check(t0, "k", []Counter{a}, 7, nil)
				if !ok || st[0].Remaining != 0 {
					t.Fatalf("a alone, cost 7: allowed=%v %s; want allowed, remaining 0", ok, fmtStatus(st))
				}
			})
		}
	}
}

// TestDuplicateCounterChargedOnce: the same counter twice in one check is
// one counter.
func TestDuplicateCounterChargedOnce(t *testing.T) {
	s := NewStore(StoreConfig{})
	c := Counter{Scope: "x", Limit: Limit{2, time.Minute}}
	st, ok, err := s.Check(t0, "k", []Counter{c, c}, 1, nil)
	if !ok || err != nil || len(st) != 2 || st[0] != st[1] || st[0].Remaining != 1 {
		t.Fatalf("got %v %v %s; want allowed, two equal statuses with remaining 1", ok, err, fmtStatus(st))
	}
}

// TestConcurrentHits: 100 goroutines, one hit each, against 5 per minute:
// exactly 5 are allowed, for every strategy.
func TestConcurrentHits(t *testing.T) {
	for _, strat := range allStrategies {
		t.Run(strat.String(), func(t *testing.T) {
			s := NewStore(StoreConfig{Shards: 4})
			cs := []Counter{{Scope: "api", Limit: Limit{5, time.Minute}, Strategy: strat}}
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				allowed int
				start   = make(chan struct{})
			)
			for i := 0; i < 100; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, ok, err := s.Check(t0, "user:1", cs, 1, nil)
					if err != nil {
						t.Error(err)
					}
					if ok {
						mu.Lock()
						allowed++
						mu.Unlock()
					}
				}()
			}
			close(start)
			wg.Wait()
			if allowed != 5 {
				t.Fatalf("%d hits allowed, want exactly 5", allowed)
			}
		})
	}
}

// TestChangedLimit documents the rule for a changed config: counter identity
// is scope + limit + strategy, so a new limit starts a fresh counter and the
// old one expires with its window and is swept.
func TestChangedLimit(t *testing.T) {
	s := NewStore(StoreConfig{})
	old := Counter{Scope: "GET /products", Limit: Limit{2, time.Minute}}
	runSteps(t, s, "ip:1", old, []step{
		{at: 0, cost: 2, allowed: true, remaining: 0, reset: seconds(60)},
		{at: 0, cost: 1, remaining: 0, reset: seconds(60), retry: seconds(60)},
	})
	changed := old
	changed.Limit = Limit{3, time.Minute}
	runSteps(t, s, "ip:1", changed, []step{
		{at: seconds(30), cost: 3, allowed: true, remaining: 0, reset: seconds(90)},
	})
	if got := counterCount(s, t0.Add(seconds(30))); got != 2 {
		t.Fatalf("%d counters live at t0+30s, want the old and the new", got)
	}
	if n := s.Sweep(t0.Add(seconds(60)), 0); n != 0 || counterCount(s, t0.Add(seconds(60))) != 1 {
		t.Fatalf("at t0+60s: Sweep removed %d keys, %d counters left; want 0 keys removed and only the new counter",
			n, counterCount(s, t0.Add(seconds(60))))
	}
	if n := s.Sweep(t0.Add(seconds(90)), 0); n != 1 || s.Len() != 0 {
		t.Fatalf("at t0+90s: Sweep removed %d keys, Len %d; want 1 and 0", n, s.Len())
	}
}

func counterCount(s *Store, now time.Time) int {
	n := 0
	for _, e := range s.Snapshot(now, nil) {
		n += len(e.Counters)
	}
	return n
}

// TestBadInput: every invalid input is an error naming the problem, never a
// panic, and leaves dst and the store alone.
func TestBadInput(t *testing.T) {
	ok := Counter{Limit: Limit{1, time.Second}}
	many := make([]Counter, MaxCountersPerCheck+1)
	for i := range many {
		many[i] = Counter{Scope: strconv.Itoa(i), Limit: Limit{1, time.Second}}
	}
	tests := []struct {
		name     string
		counters []Counter
		cost     int64
		is       error
		want     string
	}{
		{"negative cost", []Counter{ok}, -1, ErrInvalidCost, "cost -1 is negative"},
		{"no counters", nil, 1, ErrNoCounters, "at least one counter"},
		{"too many counters", many, 1, ErrTooManyCounters, "33 counters in one check, at most 32"},
		{"unknown strategy", []Counter{{Scope: "s", Limit: ok.Limit, Strategy: 9}}, 1, ErrInvalidCounter, `"s": unknown strategy Strategy(9)`},
		{"zero period", []Counter{{Limit: Limit{1, 0}}}, 1, ErrInvalidCounter, "period 0s must be positive"},
		{"negative period", []Counter{{Limit: Limit{1, -time.Second}}}, 1, ErrInvalidCounter, "must be positive"},
		{"huge period", []Counter{{Limit: Limit{1, MaxPeriod + 1}}}, 1, ErrInvalidCounter, "exceeds the maximum"},
		{"negative amount", []Counter{{Limit: Limit{-1, time.Second}}}, 1, ErrInvalidCounter, "amount -1 is negative"},
		{"moving window over bound", []Counter{{Limit: Limit{MaxMovingWindowAmount + 1, time.Hour}, Strategy: MovingWindow}}, 1,
			ErrInvalidCounter, "bounded by 4096; got 4097"},
		{"scope too long", []Counter{{Scope: strings.Repeat("s", MaxScopeLen+1), Limit: ok.Limit}}, 1, ErrInvalidCounter,
			"the scope is 257 bytes long, at most 256 (MaxScopeLen)"},
		{"one bad among good", []Counter{ok, {Limit: Limit{1, 0}}}, 1, ErrInvalidCounter, "must be positive"},
	}
	for _, tt := range tests {
		s := NewStore(StoreConfig{})
		dst := []Status{{Remaining: 42}}
		got, allowed, err := s.Check(t0, "k", tt.counters, tt.cost, dst)
		if err == nil || !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v; want %v containing %q", tt.name, err, tt.is, tt.want)
		}
		if allowed || len(got) != 1 || got[0].Remaining != 42 || s.Len() != 0 {
			t.Errorf("%s: allowed=%v dst=%v Len=%d; want denied, dst unchanged, empty store", tt.name, allowed, got, s.Len())
		}
	}
	if _, err := ParseStrategy("leaky-bucket"); err == nil || !strings.Contains(err.Error(), `unknown strategy "leaky-bucket"`) {
		t.Errorf("ParseStrategy(leaky-bucket) err = %v", err)
	}
}

func TestParseStrategy(t *testing.T) {
	for _, strat := range allStrategies {
		got, err := ParseStrategy(strat.String())
		if err != nil || got != strat {
			t.Errorf("ParseStrategy(%q) = %v, %v", strat.String(), got, err)
		}
	}
	if got, err := ParseStrategy(""); err != nil || got != FixedWindow {
		t.Errorf(`ParseStrategy("") = %v, %v; want fixed-window`, got, err)
	}
	if got, err := ParseStrategy(" Moving-Window "); err != nil || got != MovingWindow {
		t.Errorf(`ParseStrategy(" Moving-Window ") = %v, %v`, got, err)
	}
	if got := Strategy(7).String(); got != "Strategy(7)" {
		t.Errorf("Strategy(7).String() = %q", got)
	}
}

// TestMaxCountersPerKey: a key cannot grow without bound; expired counters
// make room.
func TestMaxCountersPerKey(t *testing.T) {
	s := NewStore(StoreConfig{MaxCountersPerKey: 1}) // raised to MaxCountersPerCheck
	check := func(at time.Duration, scope int) error {
		c := Counter{Scope: strconv.Itoa(scope), Limit: Limit{1, time.Minute}}
		_, _, err := s.Check(t0.Add(at), "k", []Counter{c}, 1, nil)
		return err
	}
	for i := 0; i < MaxCountersPerCheck; i++ {
		if err := check(seconds(float64(i)), i); err != nil {
			t.Fatalf("counter %d: %v", i, err)
		}
	}
	if err := check(seconds(32), 32); !errors.Is(err, ErrTooManyCounters) || !strings.Contains(err.Error(), `"k"`) {
		t.Fatalf("33rd counter: err = %v, want ErrTooManyCounters naming the key", err)
	}
	// At t0+60s the first counter has expired and makes room.
	if err := check(seconds(60), 32); err != nil {
		t.Fatalf("33rd counter after one expired: %v", err)
	}
}

func TestReset(t *testing.T) {
	s := NewStore(StoreConfig{})
	c := Counter{Limit: Limit{1, time.Minute}}
	s.Check(t0, "a", []Counter{c}, 1, nil)
	s.Check(t0, "b", []Counter{c}, 1, nil)
	if !s.Reset("a") || s.Reset("a") || s.Len() != 1 {
		t.Fatalf("Reset: want true then false and one key left, Len %d", s.Len())
	}
	if _, ok, _ := s.Check(t0, "a", []Counter{c}, 1, nil); !ok {
		t.Fatal("key a still limited after Reset")
	}
	if _, ok, _ := s.Check(t0, "b", []Counter{c}, 1, nil); ok {
		t.Fatal("key b lost its count when a was reset")
	}
}

// TestSweep: expired keys are removed incrementally, max entries at a time,
// and a shrunken shard gives its table back.
func TestSweep(t *testing.T) {
	s := NewStore(StoreConfig{Shards: 2})
	c := Counter{Limit: Limit{5, time.Minute}}
	long := Counter{Scope: "long", Limit: Limit{5, time.Hour}}
	for i := 0; i < 1000; i++ {
		cs := []Counter{c}
		if i%100 == 0 {
			cs = append(cs, long)
		}
		s.Check(t0, "k"+strconv.Itoa(i), cs, 1, nil)
	}
	if n := s.Sweep(t0.Add(seconds(59)), 0); n != 0 || s.Len() != 1000 {
		t.Fatalf("before expiry: removed %d, Len %d", n, s.Len())
	}
	removed, calls := 0, 0
	for removed < 990 {
		n := s.Sweep(t0.Add(seconds(60)), 64)
		if n > 64 {
			t.Fatalf("Sweep(max 64) removed %d", n)
		}
		removed += n
		if calls++; calls > 100 {
			t.Fatalf("Sweep stalled at %d removed", removed)
		}
	}
	if removed != 990 || s.Len() != 10 || counterCount(s, t0.Add(seconds(60))) != 10 {
		t.Fatalf("removed %d, Len %d, counters %d; want 990, 10, 10", removed, s.Len(), counterCount(s, t0.Add(seconds(60))))
	}
	for i := range s.table().shards {
		sh := &s.table().shards[i]
		// The shard hashing is seeded at random, so a shard may hold any of
		// the 10 keys left: its index may keep up to 4 slots a key.
		if len(sh.index.slots) > max(16, 4*len(sh.entries)) || cap(sh.entries) > 64 {
			t.Errorf("shard %d not shrunk: %d slots, cap %d", i, len(sh.index.slots), cap(sh.entries))
		}
	}
	if n := s.Sweep(t0.Add(time.Hour), 0); n != 10 || s.Len() != 0 {
		t.Fatalf("after an hour: removed %d, Len %d", n, s.Len())
	}
}

// TestNoAllocsExistingKey guards the hot path: checking an existing key
// allocates nothing, for every strategy.
func TestNoAllocsExistingKey(t *testing.T) {
	for _, strat := range allStrategies {
		both := []Counter{{Scope: "a", Limit: Limit{1000, time.Hour}, Strategy: strat}, {Scope: "b", Limit: Limit{1000, time.Hour}, Strategy: strat}}
		for _, cs := range [][]Counter{both[:1], both} {
			s := NewStore(StoreConfig{})
			dst := make([]Status, 0, 2)
			s.Check(t0, "k", cs, 1, dst)
			i := 0
			allocs := testing.AllocsPerRun(100, func() {
				i++
				dst, _, _ = s.Check(t0.Add(time.Duration(i)*time.Second), "k", cs, 1, dst[:0])
			})
			if allocs != 0 {
				t.Errorf("%v, %d counters: %v allocs per check of an existing key, want 0", strat, len(cs), allocs)
			}
		}
	}
}

// TestZeroStore: the zero Store is usable with the default configuration.
func TestZeroStore(t *testing.T) {
	var s Store
	c := []Counter{{Limit: Limit{1, time.Minute}}}
	if _, ok, err := s.Check(t0, "k", c, 1, nil); !ok || err != nil {
		t.Fatalf("first check on a zero Store: %v %v", ok, err)
	}
	if _, ok, _ := s.Check(t0, "k", c, 1, nil); ok {
		t.Fatal("second check allowed")
	}
	if s.Len() != 1 || len(s.table().shards) != DefaultShards {
		t.Fatalf("Len %d, %d shards", s.Len(), len(s.table().shards))
	}
}

// TestConcurrentMaintenance runs checks alongside Sweep, Snapshot, Extract,
// Merge and Reset, for the race detector; every operation must keep working.
func TestConcurrentMaintenance(t *testing.T) {
	s := NewStore(StoreConfig{Shards: 4})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs := []Counter{{Limit: Limit{3, time.Second}, Strategy: Strategy(g)}, {Scope: "x", Limit: Limit{5, time.Second}}}
			for i := 0; i < 2000; i++ {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				if _, _, err := s.Check(now, "k"+strconv.Itoa(i%50), cs[:1+i%2], 1, nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			now := t0.Add(time.Duration(i*10) * time.Millisecond)
			s.Sweep(now, 16)
			s.Merge(now, s.Extract(now, func(k string) bool { return strings.HasSuffix(k, "7") }, 3))
			s.Merge(now, s.Snapshot(now, func(k string) bool { return k == "k1" }))
			s.Reset("k" + strconv.Itoa(i%50))
		}
	}()
	wg.Wait()
	s.Sweep(t0.Add(time.Hour), 0)
	if s.Len() != 0 {
		t.Fatalf("Len %d after everything expired", s.Len())
	}
}

func TestCheckHeld(t *testing.T) {
	s := NewStore(StoreConfig{})
	t0 := time.Unix(100, 0)
	cs := []Counter{{Scope: "r", Limit: Limit{Amount: 2, Period: time.Minute}}}
	if _, _, held, err := s.CheckHeld(t0, "k", cs, 1, nil); held || err != nil {
		t.Fatalf("absent key: held=%v err=%v", held, err)
	}
	if s.Has("k") {
		t.Fatal("CheckHeld created an entry")
	}
	s.Check(t0, "k", cs, 1, nil)
	st, ok, held, err := s.CheckHeld(t0, "k", cs, 1, nil)
	if !held || !ok || err != nil || st[0].Remaining != 0 {
		t.Fatalf("held key: %+v ok=%v held=%v err=%v", st, ok, held, err)
	}
	if _, ok, held, _ := s.CheckHeld(t0, "k", cs, 1, nil); !held || ok {
		t.Fatalf("third hit of 2: ok=%v held=%v", ok, held)
	}
	if _, _, _, err := s.CheckHeld(t0, "k", cs, -1, nil); err == nil {
		t.Fatal("negative cost accepted")
	}
}
