package bucket

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// AppendExport returns what Export does, carving the counters from the
// caller's buffer: with room in it, no allocation.
func TestAppendExport(t *testing.T) {
	s := NewStore(StoreConfig{})
	now := time.Unix(1000, 0)
	ls, _ := Parse("5 per minute; 100 per hour")
	cs := []Counter{{Scope: "s", Limit: ls[0]}, {Scope: "s", Limit: ls[1], Strategy: SlidingWindowCounter}}
	for i := range 10 {
		s.Check(now, fmt.Sprint("k", i), cs, 1, nil)
	}
	buf := make([]CounterState, 0, 64)
	var got []Entry
	for i := range 10 {
		k := fmt.Sprint("k", i)
		var e Entry
		var ok bool
		e, buf, ok = s.AppendExport(now, k, buf)
		want, wok := s.Export(now, k)
		if ok != wok || !reflect.DeepEqual(e, want) {
			t.Fatalf("AppendExport(%q) = %+v %v, Export %+v %v", k, e, ok, want, wok)
		}
		got = append(got, e)
	}
	if _, b2, ok := s.AppendExport(now, "missing", buf); ok || len(b2) != len(buf) {
		t.Fatal("AppendExport of a missing key")
	}
	// Appending to one entry's counters must not overwrite the next's.
	first := append(got[0].Counters, CounterState{Count: -1})
	if got[1].Counters[0].Count != 1 || len(first) != 3 {
		t.Fatal("an entry's counters share capacity with the next entry's")
	}
	if a := testing.AllocsPerRun(100, func() { _, _, _ = s.AppendExport(now, "k3", buf[:0]) }); a != 0 {
		t.Fatalf("AppendExport: %.0f allocations, want 0", a)
	}
}
