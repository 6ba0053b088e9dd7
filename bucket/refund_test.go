package bucket

import (
	"testing"
	"time"
)

// Units consumed ahead and refunded in the same window come back; in a
// later window, or for another strategy, nothing does.
func TestRefund(t *testing.T) {
	t0 := time.Unix(5_000, 0)
	fixed := []Counter{{Scope: "r", Limit: Limit{Amount: 100, Period: time.Minute}}}
	s := NewStore(StoreConfig{})
	st, ok, _ := s.Check(t0, "k", fixed, 30, nil) // a slice of 30
	if !ok || st[0].Remaining != 70 {
		t.Fatalf("grant: %+v %v", st, ok)
	}
	start := st[0].Reset.Add(-time.Minute).UnixNano()
	refund := func(at time.Time, units int64, start int64, want int64) {
		t.Helper()
		if got := s.Refund(at, []Entry{{Key: "k", Counters: []CounterState{{Counter: fixed[0], Start: start, Count: units}}}}); got != want {
			t.Errorf("refund of %d units took %d off, want %d", units, got, want)
		}
	}
	refund(t0.Add(time.Second), 12, start, 12)
	if st, _, _ := s.Check(t0.Add(time.Second), "k", fixed, 0, nil); st[0].Remaining != 82 {
		t.Fatalf("after refunding 12 of 30: remaining %d, want 82", st[0].Remaining)
	}
	refund(t0.Add(time.Second), 1000, start, 18)
	if st, _, _ := s.Check(t0.Add(time.Second), "k", fixed, 0, nil); st[0].Remaining != 100 {
		t.Fatalf("a refund beyond the count: remaining %d, want 100", st[0].Remaining)
	}
	s.Check(t0.Add(2*time.Minute), "k", fixed, 5, nil) // a new window
	refund(t0.Add(2*time.Minute), 5, start, 0)         // of the old one
	if st, _, _ := s.Check(t0.Add(2*time.Minute), "k", fixed, 0, nil); st[0].Remaining != 95 {
		t.Fatalf("a refund of an ended window: remaining %d, want 95", st[0].Remaining)
	}
	token := []Counter{{Scope: "r", Strategy: TokenBucket, Limit: Limit{Amount: 10, Period: time.Minute}}}
	s.Check(t0, "tb", token, 4, nil)
	s.Refund(t0, []Entry{{Key: "tb", Counters: []CounterState{{Counter: token[0], Count: 4}}}})
	if st, _, _ := s.Check(t0, "tb", token, 0, nil); st[0].Remaining != 6 {
		t.Fatalf("a token bucket took a refund: remaining %d, want 6", st[0].Remaining)
	}
}

// A window merged from two nodes keeps the earlier start; a slice taken on
// the node whose window started later is still of that window and comes
// back. One that started a period or more before it does not.
func TestRefundIntoMergedWindow(t *testing.T) {
	t0 := time.Unix(5_000, 0)
	fixed := []Counter{{Scope: "r", Limit: Limit{Amount: 100, Period: time.Minute}}}
	a, b := NewStore(StoreConfig{}), NewStore(StoreConfig{})
	a.Check(t0, "k", fixed, 10, nil)
	st, _, _ := b.Check(t0.Add(20*time.Second), "k", fixed, 30, nil) // a slice of 30, on b's later window
	later := st[0].Reset.Add(-time.Minute).UnixNano()
	e, _ := b.Take(t0.Add(21*time.Second), "k")
	a.Merge(t0.Add(21*time.Second), []Entry{e})
	a.Refund(t0.Add(22*time.Second), []Entry{{Key: "k", Counters: []CounterState{{Counter: fixed[0], Start: later, Count: 30}}}})
	if st, _, _ := a.Check(t0.Add(22*time.Second), "k", fixed, 0, nil); st[0].Remaining != 90 {
		t.Fatalf("after merging and refunding the slice: remaining %d, want 90", st[0].Remaining)
	}
	a.Refund(t0.Add(22*time.Second), []Entry{{Key: "k", Counters: []CounterState{{Counter: fixed[0], Start: t0.Add(-time.Minute).UnixNano(), Count: 5}}}})
	if st, _, _ := a.Check(t0.Add(22*time.Second), "k", fixed, 0, nil); st[0].Remaining != 90 {
		t.Fatalf("a refund of the window before: remaining %d, want 90", st[0].Remaining)
	}
}
