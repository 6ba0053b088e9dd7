package bucket

import (
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// benchStart is an arbitrary fixed instant; benchmarks pass time explicitly.
var benchStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// benchCounters is one counter of limit 4096 per second. The benchmarks
// advance the clock one second every 1024 checks, so every strategy keeps
// allowing (each check consumes) without time arithmetic in the loop.
func benchCounters(strat Strategy) []Counter {
	return []Counter{{Scope: "GET /products", Limit: Limit{Amount: 4096, Period: time.Second}, Strategy: strat}}
}

// BenchmarkCheck measures an allowed check of an existing key with one
// counter: the owner's hot path. Target: <= 100 ns/op, 0 allocs/op.
func BenchmarkCheck(b *testing.B) {
	for _, strat := range []Strategy{FixedWindow, SlidingWindowCounter, MovingWindow, TokenBucket} {
		b.Run(strat.String(), func(b *testing.B) {
			s := NewStore(StoreConfig{})
			cs := benchCounters(strat)
			dst := make([]Status, 0, 1)
			key := "ip:203.0.113.7"
			now := benchStart
			if _, _, err := s.Check(now, key, cs, 1, dst); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i&1023 == 0 {
					now = now.Add(time.Second)
				}
				var ok bool
				dst, ok, _ = s.Check(now, key, cs, 1, dst[:0])
				if !ok {
					b.Fatal("denied")
				}
			}
		})
	}
}

// BenchmarkCheckParallel measures existing-key checks from all Ps over 1024
// keys spread across the shards.
func BenchmarkCheckParallel(b *testing.B) {
	s := NewStore(StoreConfig{})
	cs := benchCounters(FixedWindow)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "ip:10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
		if _, _, err := s.Check(benchStart, keys[i], cs, 1, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]Status, 0, 1)
		now := benchStart
		for i := 0; pb.Next(); i++ {
			if i&1023 == 0 {
				now = now.Add(time.Second)
			}
			dst, _, _ = s.Check(now, keys[i&1023], cs, 1, dst[:0])
		}
	})
}

// BenchmarkHeapPerKey reports the heap bytes one live fixed-window key costs
// at 1,000,000 keys ("B/key"): the store's index, entry, and its copy of the
// key, measured with runtime.ReadMemStats after a GC.
func BenchmarkHeapPerKey(b *testing.B) {
	const n = 1_000_000
	cs := []Counter{{Scope: "GET /products", Limit: Limit{Amount: 100, Period: time.Minute}}}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "ip:10." + strconv.Itoa(i>>16) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := NewStore(StoreConfig{})
		dst := make([]Status, 0, 1)
		for _, k := range keys {
			dst, _, _ = s.Check(benchStart, k, cs, 1, dst[:0])
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if s.Len() != n {
			b.Fatalf("Len = %d, want %d", s.Len(), n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/key")
		runtime.KeepAlive(s)
	}
}

// BenchmarkBaselineMapAdd is the reference the architecture's target names,
// "a map lookup and a few adds" under a mutex, so Check's figure can be read
// as a ratio within one run on a noisy machine.
func BenchmarkBaselineMapAdd(b *testing.B) {
	type ctr struct{ start, n int64 }
	var mu sync.Mutex
	m := map[string]*ctr{"ip:203.0.113.7": {}}
	key := "ip:203.0.113.7"
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		mu.Lock()
		c := m[key]
		c.n++
		c.start += int64(i)
		mu.Unlock()
	}
}

// BenchmarkSweepExpired measures a full Sweep of 1,000,000 keys of which
// half have expired ("ns/removed": per key removed, the examining of the
// live half included). Run it with -benchtime 3x: each round refills.
func BenchmarkSweepExpired(b *testing.B) {
	const n = 1_000_000
	cs := []Counter{{Scope: "GET /products", Limit: Limit{Amount: 100, Period: time.Minute}}}
	var total time.Duration
	for range b.N {
		b.StopTimer()
		s := NewStore(StoreConfig{MaxKeys: n, MaxCounters: n})
		dst := make([]Status, 0, 1)
		for i := range n {
			at := benchStart.Add(time.Duration(i%2) * 30 * time.Second)
			dst, _, _ = s.Check(at, "ip:10."+strconv.Itoa(i>>16)+"."+strconv.Itoa(i>>8&255)+"."+strconv.Itoa(i&255), cs, 1, dst[:0])
		}
		runtime.GC()
		b.StartTimer()
		start := time.Now()
		if removed := s.Sweep(benchStart.Add(61*time.Second), 0); removed != n/2 {
			b.Fatalf("removed %d, want %d", removed, n/2)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N*n/2), "ns/removed")
}
