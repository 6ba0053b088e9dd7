package bucket

import (
	"testing"
	"time"
)

// What a node adds to a replica it continued from, and only that, comes
// out of Subtract, for every algorithm; merged into the owner that still
// holds the replicated part, it gives the count of all hits, each once.
func TestSubtractLeavesWhatWasAdded(t *testing.T) {
	t0 := time.Unix(10_000, 0)
	for _, strategy := range []Strategy{FixedWindow, SlidingWindowCounter, MovingWindow, TokenBucket} {
		t.Run(strategy.String(), func(t *testing.T) {
			cs := []Counter{{Scope: "r", Strategy: strategy, Limit: Limit{Amount: 10, Period: time.Minute}}}
			owner := NewStore(StoreConfig{})
			for i := range 4 {
				owner.Check(t0.Add(time.Duration(i)*time.Second), "k", cs, 1, nil)
			}
			base, _ := owner.Export(t0.Add(5*time.Second), "k")
			successor := NewStore(StoreConfig{})
			successor.Merge(t0.Add(5*time.Second), []Entry{base}) // promoted
			for i := range 3 {
				successor.Check(t0.Add(time.Duration(6+i)*time.Second), "k", cs, 1, nil)
			}
			held, _ := successor.Export(t0.Add(10*time.Second), "k")
			owner.Merge(t0.Add(10*time.Second), []Entry{Subtract(held, base)})
			st, _, _ := owner.Check(t0.Add(10*time.Second), "k", cs, 0, nil)
			want := int64(10 - 7)
			if strategy == TokenBucket {
				want = st[0].Remaining // not split: see Subtract
			} else if strategy == SlidingWindowCounter {
				want = 3
			}
			if st[0].Remaining != want {
				t.Fatalf("after the successor's hits went home: remaining %d, want %d (7 hits, each once)", st[0].Remaining, want)
			}
		})
	}
}

// A base from another window, or another counter, takes nothing away.
func TestSubtractOtherWindowKeepsAll(t *testing.T) {
	c := Counter{Scope: "r", Limit: Limit{Amount: 10, Period: time.Minute}}
	e := Entry{Key: "k", Counters: []CounterState{{Counter: c, Start: 200, Count: 5}}}
	base := Entry{Key: "k", Counters: []CounterState{{Counter: c, Start: 100, Count: 3}}}
	if got := Subtract(e, base); got.Counters[0].Count != 5 {
		t.Fatalf("Subtract across windows: %+v", got)
	}
	other := c
	other.Scope = "s"
	base.Counters[0].Counter, base.Counters[0].Start = other, 200
	if got := Subtract(e, base); got.Counters[0].Count != 5 {
		t.Fatalf("Subtract of another counter: %+v", got)
	}
	e.Counters[0].Counter = other
	if got := Subtract(e, e); len(got.Counters) != 0 {
		t.Fatalf("Subtract of itself left %+v", got)
	}
}

// Units given back to a successor that continued from a replica leave it
// below the replica: Subtract has nothing to send home for them, and
// Deficit says how many the owner must give back itself. 6 hits, replica;
// 1 more on the successor and 4 of a slice given back there: the owner
// takes 0 and refunds 3, and holds 6 + 1 - 4.
func TestDeficitOfUnitsGivenBackBelowReplica(t *testing.T) {
	t0 := time.Unix(10_000, 0)
	cs := []Counter{{Scope: "r", Strategy: FixedWindow, Limit: Limit{Amount: 10, Period: time.Minute}}}
	owner := NewStore(StoreConfig{})
	owner.Check(t0, "k", cs, 6, nil)
	base, _ := owner.Export(t0, "k")
	successor := NewStore(StoreConfig{})
	successor.Merge(t0, []Entry{base})
	successor.Check(t0.Add(time.Second), "k", cs, 1, nil)
	slice := base
	slice.Counters = []CounterState{base.Counters[0]}
	slice.Counters[0].Count = 4
	if taken := successor.Refund(t0.Add(2*time.Second), []Entry{slice}); taken != 4 {
		t.Fatalf("refund took %d units, want 4", taken)
	}
	held, _ := successor.Export(t0.Add(3*time.Second), "k")
	if d := Subtract(held, base); len(d.Counters) != 0 {
		t.Fatalf("Subtract = %+v; want nothing", d)
	}
	d, ok := Deficit(held, base)
	if !ok || d.Counters[0].Count != 3 {
		t.Fatalf("Deficit = %+v, %v; want 3 units", d, ok)
	}
	owner.Refund(t0.Add(3*time.Second), []Entry{d})
	if st, _, _ := owner.Check(t0.Add(3*time.Second), "k", cs, 0, nil); st[0].Remaining != 10-6-1+4 {
		t.Fatalf("the owner has %d left; want %d", st[0].Remaining, 10-6-1+4)
	}
	if _, ok := Deficit(base, held); ok {
		t.Fatal("a deficit where the count is above its base")
	}
}
