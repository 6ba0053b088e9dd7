package bucket

// A store of ten million keys on one node: heap per key, check latency in
// steady state, while a sweep removes expired keys and while the collector
// marks, and the collector's pauses. It needs a few GiB and about a minute,
// so it runs only when asked:
//
//	RATEMESH_10M=1 go test -run Scale10M -v -timeout 10m ./bucket/
//
// RATEMESH_10M=N (N > 1) runs it at N keys instead.

import (
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"slices"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/scalekeys"
)

// scaleSweepChunk is the chunk the node's sweep passes to Store.Sweep.
const scaleSweepChunk = 4096

// scaleCounters is the realistic limit of every key: 100 per minute.
var scaleCounters = []Counter{{Scope: "GET /products", Limit: Limit{Amount: 100, Period: time.Minute}}}

// fillScale checks keys [from, to) once each at now.
func fillScale(t *testing.T, s *Store, from, to int, now time.Time) {
	t.Helper()
	var buf []byte
	dst := make([]Status, 0, 1)
	for i := from; i < to; i++ {
		buf = scalekeys.Append(buf[:0], i)
		var err error
		if dst, _, err = s.Check(now, string(buf), scaleCounters, 1, dst[:0]); err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
	}
}

// checkInterval is how often checkLatencies starts a check: 50,000 checks
// a second, about what one node serves over HTTP here.
const checkInterval = 20 * time.Microsecond

// latencies are the times of the checks of one phase: own counts from the
// check's call, queued from when it was due.
type latencies struct{ own, queued []time.Duration }

// checkLatencies checks random keys of [from, to) at now, one due every
// checkInterval, until done reports true (asked every 1024 checks) or max
// checks are done. A check that starts late starts at once, so a check
// held up by a lock delays the ones due while it waited: their queued
// latency counts that wait, as a server with one worker would see it; a
// server whose other workers go on with other shards sees only own.
func checkLatencies(s *Store, from, to int, now time.Time, max int, done func() bool) latencies {
	l := latencies{make([]time.Duration, 0, max), make([]time.Duration, 0, max)}
	rng := rand.New(rand.NewPCG(uint64(from), uint64(to)))
	var buf []byte
	dst := make([]Status, 0, 1)
	begin := time.Now()
	for i := 0; i < max && (i&1023 != 0 || !done()); i++ {
		buf = scalekeys.Append(buf[:0], from+rng.IntN(to-from))
		key := string(buf)
		due := begin.Add(time.Duration(i) * checkInterval)
		for time.Now().Before(due) {
			runtime.Gosched()
		}
		start := time.Now()
		dst, _, _ = s.Check(now, key, scaleCounters, 1, dst[:0])
		end := time.Now()
		l.own = append(l.own, end.Sub(start))
		l.queued = append(l.queued, end.Sub(due))
	}
	return l
}

// pct returns the p-quantile (0..1) of d, sorting it.
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

func logLatencies(t *testing.T, what string, l latencies) (p99 time.Duration) {
	t.Helper()
	for _, d := range []struct {
		name string
		d    []time.Duration
	}{{"own", l.own}, {"queued", l.queued}} {
		t.Logf("%s, %s: %d checks, p50 %v, p99 %v, p99.9 %v, max %v",
			what, d.name, len(d.d), pct(d.d, 0.5), pct(d.d, 0.99), pct(d.d, 0.999), pct(d.d, 1))
	}
	return pct(l.own, 0.99)
}

// gcPauses returns the stop-the-world pause histogram of the collector.
func gcPauses() *metrics.Float64Histogram {
	m := []metrics.Sample{{Name: "/sched/pauses/total/gc:seconds"}}
	metrics.Read(m)
	return m[0].Value.Float64Histogram()
}

// pauseQuantile returns the upper bound of the bucket holding the
// p-quantile of the pauses counted in after but not in before, and their
// number.
func pauseQuantile(before, after *metrics.Float64Histogram, p float64) (time.Duration, uint64) {
	var total uint64
	counts := make([]uint64, len(after.Counts))
	for i := range counts {
		counts[i] = after.Counts[i] - before.Counts[i]
		total += counts[i]
	}
	var seen uint64
	for i, c := range counts {
		seen += c
		if c > 0 && float64(seen) >= p*float64(total) {
			return time.Duration(after.Buckets[i+1] * float64(time.Second)), total
		}
	}
	return 0, total
}

// closed returns a function reporting whether ch has been closed.
func closed(ch <-chan struct{}) func() bool {
	return func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
}

func heapNow() runtime.MemStats {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m
}

func TestScale10M(t *testing.T) {
	n := scalekeys.Count(t)
	pausesBefore := gcPauses()
	before := heapNow()
	s := NewStore(StoreConfig{MaxKeys: n + n/2, MaxCounters: n + n/2})
	start := time.Now()
	// Two halves half a window apart: the first expires while the second
	// is still live.
	fillScale(t, s, 0, n/2, t0)
	fillScale(t, s, n/2, n, t0.Add(30*time.Second))
	t.Logf("filled %d keys in %v", n, time.Since(start).Round(time.Millisecond))
	after := heapNow()
	t.Logf("heap per key: HeapAlloc %.1f B, HeapInuse %.1f B (HeapAlloc %d MiB, HeapSys %d MiB, %d GC cycles so far)",
		float64(after.HeapAlloc-before.HeapAlloc)/float64(n), float64(after.HeapInuse-before.HeapInuse)/float64(n),
		after.HeapAlloc>>20, after.HeapSys>>20, after.NumGC)

	start = time.Now()
	if removed := nodeSweep(s, t0.Add(40*time.Second), nil); removed != 0 {
		t.Fatalf("a sweep before anything expired removed %d keys", removed)
	}
	t.Logf("a sweep pass with nothing to remove took %v", time.Since(start).Round(time.Millisecond))

	never := func() bool { return false }
	const samples = 200_000
	steady := checkLatencies(s, n/2, n, t0.Add(40*time.Second), samples, never)
	steadyP99 := logLatencies(t, "steady state", steady)

	sweepP99 := scaleSweep(t, s, n)

	snapped := make(chan struct{})
	var snapTook time.Duration
	var snap []Entry
	go func() {
		start := time.Now()
		snap = s.Snapshot(t0.Add(62*time.Second), nil)
		snapTook = time.Since(start)
		close(snapped)
	}()
	logLatencies(t, "during a Snapshot", checkLatencies(s, n/2, n, t0.Add(62*time.Second), 50*samples, closed(snapped)))
	<-snapped
	t.Logf("Snapshot of %d live keys took %v", len(snap), snapTook)
	snap = nil

	marked := make(chan struct{})
	var gcTook time.Duration
	go func() { start := time.Now(); runtime.GC(); gcTook = time.Since(start); close(marked) }()
	logLatencies(t, "during a forced GC", checkLatencies(s, n/2, n, t0.Add(62*time.Second), 50*samples, closed(marked)))
	<-marked
	t.Logf("the forced GC took %v", gcTook)

	p99, count := pauseQuantile(pausesBefore, gcPauses(), 0.99)
	worst, _ := pauseQuantile(pausesBefore, gcPauses(), 1)
	t.Logf("GC pauses over the run: %d, p99 <= %v, max <= %v (histogram bucket bounds)", count, p99, worst)
	t.Logf("sweep p99 - steady p99 (own) = %v (target <= 1ms)", sweepP99-steadyP99)
	runtime.KeepAlive(s)
}

// nodeSweep is one pass of the node's sweep: Len/chunk+1 calls of Sweep,
// each timed into calls when it is not nil.
func nodeSweep(s *Store, now time.Time, calls *[]time.Duration) (removed int) {
	for i := s.Len()/scaleSweepChunk + 1; i > 0; i-- {
		c := time.Now()
		removed += s.Sweep(now, scaleSweepChunk)
		if calls != nil {
			*calls = append(*calls, time.Since(c))
		}
	}
	return removed
}

// scaleSweep runs the node's sweep (one pass in chunks) over a store whose
// first half has expired, timing checks of the live half meanwhile, and
// returns their p99.
func scaleSweep(t *testing.T, s *Store, n int) time.Duration {
	t.Helper()
	now := t0.Add(61 * time.Second)
	swept := make(chan struct{})
	var removed int
	var took time.Duration
	var chunks []time.Duration
	go func() {
		defer close(swept)
		start := time.Now()
		removed = nodeSweep(s, now, &chunks)
		took = time.Since(start)
	}()
	d := checkLatencies(s, n/2, n, now, 50_000_000, closed(swept))
	<-swept
	p99 := logLatencies(t, "during the sweep", d)
	t.Logf("the sweep removed %d keys in %v, in %d calls of Sweep(now, %d): p50 %v, p99 %v, max %v",
		removed, took, len(chunks), scaleSweepChunk, pct(chunks, 0.5), pct(chunks, 0.99), pct(chunks, 1))
	if removed != n/2 || s.Len() != n-n/2 {
		t.Errorf("the sweep removed %d keys, %d left; want %d removed", removed, s.Len(), n/2)
	}
	return p99
}
