package bucket

import (
	"errors"
	"math"
	"testing"
	"time"
)

// tally is a counter of the storage API: it counts everything.
func tally(period time.Duration, elastic bool) Counter {
	c := Counter{Scope: "t", Limit: Limit{math.MaxInt64, period}, Strategy: Tally}
	if elastic {
		c.Strategy = ElasticTally
	}
	return c
}

// tallyStep is one increment (or peek, cost 0) of a tally and the count and
// expiry it must report.
type tallyStep struct {
	at      time.Duration
	c       Counter
	cost    int64
	count   int64
	expires time.Duration // Reset - t0; the instant of the step when the count is 0
}

func runTally(t *testing.T, s *Store, steps []tallyStep) {
	t.Helper()
	for i, st := range steps {
		got, ok, err := s.Check(t0.Add(st.at), "k", []Counter{st.c}, st.cost, nil)
		if err != nil || !ok || len(got) != 1 {
			t.Fatalf("step %d (t0+%v %s cost %d): allowed=%v err=%v", i, st.at, st.c.Strategy, st.cost, ok, err)
		}
		count := st.c.Limit.Amount - got[0].Remaining
		if count != st.count || !got[0].Reset.Equal(t0.Add(st.expires)) {
			t.Fatalf("step %d (t0+%v %s cost %d): count %d expiring t0+%v; want %d expiring t0+%v",
				i, st.at, st.c.Strategy, st.cost, count, got[0].Reset.Sub(t0), st.count, st.expires)
		}
	}
}

func TestTally(t *testing.T) {
	fixed, elastic := tally(time.Minute, false), tally(time.Minute, true)
	cases := []struct {
		name  string
		steps []tallyStep
	}{
		{"fixed expiry from the first hit", []tallyStep{
			{at: 0, c: fixed, cost: 0, count: 0, expires: 0},
			{at: seconds(1), c: fixed, cost: 1, count: 1, expires: seconds(61)},
			{at: seconds(30), c: fixed, cost: 2, count: 3, expires: seconds(61)},
			{at: seconds(60.9), c: fixed, cost: 0, count: 3, expires: seconds(61)},
			{at: seconds(61), c: fixed, cost: 0, count: 0, expires: seconds(61)},
			{at: seconds(61), c: fixed, cost: 5, count: 5, expires: seconds(121)},
		}},
		{"elastic hits push the expiry", []tallyStep{
			{at: 0, c: elastic, cost: 1, count: 1, expires: seconds(60)},
			{at: seconds(30), c: elastic, cost: 1, count: 2, expires: seconds(90)},
			{at: seconds(89), c: elastic, cost: 1, count: 3, expires: seconds(149)},
			{at: seconds(149), c: elastic, cost: 1, count: 1, expires: seconds(209)},
		}},
		{"one count whatever the expiry a hit names", []tallyStep{
			{at: 0, c: fixed, cost: 1, count: 1, expires: seconds(60)},
			{at: seconds(1), c: tally(time.Hour, false), cost: 1, count: 2, expires: seconds(60)},
			{at: seconds(2), c: tally(time.Nanosecond, false), cost: 0, count: 2, expires: seconds(60)},
			// An elastic hit on it pushes its expiry by its own period.
			{at: seconds(3), c: tally(time.Hour, true), cost: 1, count: 3, expires: seconds(3603)},
			{at: seconds(4), c: fixed, cost: 1, count: 4, expires: seconds(3603)},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runTally(t, NewStore(StoreConfig{}), tc.steps) })
	}
}

func TestTallyBounds(t *testing.T) {
	s := NewStore(StoreConfig{})
	small := Counter{Scope: "t", Limit: Limit{3, time.Minute}, Strategy: Tally}
	if _, ok, err := s.Check(t0, "k", []Counter{small}, 3, nil); !ok || err != nil {
		t.Fatalf("cost 3 of 3: allowed=%v err=%v", ok, err)
	}
	got, ok, err := s.Check(t0, "k", []Counter{small}, 1, nil)
	if ok || err != nil || got[0].RetryAfter != time.Minute {
		t.Fatalf("cost 1 over an amount of 3: allowed=%v err=%v %s; want denied, retry 1m", ok, err, fmtStatus(got))
	}
	two := []Counter{tally(time.Minute, false), {Limit: Limit{1, time.Minute}}}
	if _, _, err := s.Check(t0, "k", two, 1, nil); !errors.Is(err, ErrInvalidCounter) {
		t.Fatalf("a tally with another counter: err = %v, want ErrInvalidCounter", err)
	}
	if err := (Counter{Limit: Limit{1, time.Minute}, Strategy: ElasticTally + 1}).Validate(); !errors.Is(err, ErrInvalidCounter) {
		t.Fatalf("strategy after ElasticTally: Validate = %v, want ErrInvalidCounter", err)
	}
	if _, err := ParseStrategy("tally"); err == nil {
		t.Fatal(`ParseStrategy("tally") succeeded: tallies are not a limit's strategy`)
	}
}

// TestTallyMoves: tallies travel with handoffs (counts add, the later
// expiry wins), replicas (replaced), base subtraction and sweeping.
func TestTallyMoves(t *testing.T) {
	fixed := tally(time.Minute, false)
	a, b := NewStore(StoreConfig{}), NewStore(StoreConfig{})
	runTally(t, a, []tallyStep{{at: 0, c: fixed, cost: 4, count: 4, expires: seconds(60)}})
	runTally(t, b, []tallyStep{{at: seconds(10), c: tally(time.Hour, true), cost: 3, count: 3, expires: seconds(3610)}})
	e, ok := a.Take(t0.Add(seconds(20)), "k")
	if !ok || len(e.Counters) != 1 || e.Counters[0].Start != t0.Add(seconds(60)).UnixNano() || e.Counters[0].Count != 4 {
		t.Fatalf("Take = %+v, %v; want one state of count 4 expiring t0+60s", e, ok)
	}
	b.Merge(t0.Add(seconds(20)), []Entry{e})
	runTally(t, b, []tallyStep{{at: seconds(20), c: fixed, cost: 0, count: 7, expires: seconds(3610)}})

	base, _ := b.Export(t0.Add(seconds(20)), "k")
	runTally(t, b, []tallyStep{{at: seconds(21), c: fixed, cost: 2, count: 9, expires: seconds(3610)}})
	now, _ := b.Export(t0.Add(seconds(21)), "k")
	if d := Subtract(now, base); len(d.Counters) != 1 || d.Counters[0].Count != 2 {
		t.Fatalf("Subtract = %+v; want the 2 hits after the base", d)
	}

	r := NewStore(StoreConfig{})
	r.Replace(t0.Add(seconds(21)), []Entry{now})
	r.Replace(t0.Add(seconds(21)), []Entry{now})
	runTally(t, r, []tallyStep{{at: seconds(22), c: fixed, cost: 0, count: 9, expires: seconds(3610)}})

	// A state claiming an expiry beyond MaxPeriod is held to MaxPeriod.
	far := Entry{Key: "far", Counters: []CounterState{{Counter: fixed, Start: math.MaxInt64, Count: 1}}}
	r.Merge(t0, []Entry{far})
	if x, ok := r.Export(t0, "far"); !ok || x.Counters[0].Start != t0.Add(MaxPeriod).UnixNano() {
		t.Fatalf("far expiry: Export = %+v, %v; want Start t0+MaxPeriod", x, ok)
	}
	r.Sweep(t0.Add(seconds(3610)), 0)
	if r.Has("k") {
		t.Fatal("an expired tally survived Sweep")
	}
}
