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
	refund := func(at time.Time, units int64, start int64) {
		s.Refund(at, []Entry{{Key: "k", Counters: []CounterState{{Counter: fixed[0], Start: start, Count: units}}}})
	}
	refund(t0.Add(time.Second), 12, start)
	if st, _, _ := s.Check(t0.Add(time.Second), "k", fixed, 0, nil); st[0].Remaining != 82 {
		t.Fatalf("after refunding 12 of 30: remaining %d, want 82", st[0].Remaining)
	}
	refund(t0.Add(time.Second), 1000, start)
	if st, _, _ := s.Check(t0.Add(time.Second), "k", fixed, 0, nil); st[0].Remaining != 100 {
		t.Fatalf("a refund beyond the count: remaining %d, want 100", st[0].Remaining)
	}
	s.Check(t0.Add(2*time.Minute), "k", fixed, 5, nil) // a new window
	refund(t0.Add(2*time.Minute), 5, start)            // of the old one
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
