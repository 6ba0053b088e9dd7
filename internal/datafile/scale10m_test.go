package datafile

import (
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/scalekeys"
)

// The counters file of a node holding ten million keys of one fixed
// window each: how long writing and reading it takes and how large it is.
// It needs a few GiB, so it runs only when asked:
//
//	RATEMESH_10M=1 go test -run Scale10M -v -timeout 10m ./internal/datafile/
//
// RATEMESH_10M=N (N > 1) runs it at N keys instead.
func TestScale10M(t *testing.T) {
	n := scalekeys.Count(t)
	entries := clientEntries(n)
	path := filepath.Join(t.TempDir(), Name)
	runtime.GC()
	start := time.Now()
	size, err := Save(path, "c1", entries)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Save of %d keys: %v, %d bytes (%.1f MiB, %.1f B/key)",
		n, time.Since(start).Round(time.Millisecond), size, float64(size)/(1<<20), float64(size)/float64(n))
	entries = nil
	runtime.GC()
	start = time.Now()
	got, err := Load(path, "c1")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Load: %v", time.Since(start).Round(time.Millisecond))
	if len(got) != n || got[n-1].Key != clientKey(n-1) || got[n-1].Counters[0].Count != int64((n-1)%100+1) {
		t.Fatalf("loaded %d entries, the last %+v", len(got), got[len(got)-1])
	}
	saveStore(t, path, got)
}

// saveStore merges entries into a store, as a node does at start, and
// then saves it, as it does every SnapshotInterval: Store.Snapshot, then
// Save.
func saveStore(t *testing.T, path string, entries []bucket.Entry) {
	now := time.Unix(0, scaleStart).Add(time.Second)
	s := bucket.NewStore(bucket.StoreConfig{})
	start := time.Now()
	s.Merge(now, entries)
	t.Logf("Merge into a store: %v", time.Since(start).Round(time.Millisecond))
	n := len(entries)
	entries = nil
	runtime.GC()
	start = time.Now()
	snap := s.Snapshot(now, nil)
	took := time.Since(start)
	size, err := Save(path, "c1", snap)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a node's save: Snapshot %v, then Save %v (%.1f MiB)", took.Round(time.Millisecond),
		(time.Since(start) - took).Round(time.Millisecond), float64(size)/(1<<20))
	if len(snap) != n {
		t.Fatalf("Snapshot returned %d entries, want %d", len(snap), n)
	}
}

// scaleStart is when the entries' windows start (Unix nanoseconds).
const scaleStart = 1_700_000_000_000_000_000

// clientEntries is what a node's store exports for n client keys
// "ip:10.x.y.z" checked against "100 per minute".
func clientEntries(n int) []bucket.Entry {
	lim := bucket.Limit{Amount: 100, Period: time.Minute}
	out := make([]bucket.Entry, n)
	states := make([]bucket.CounterState, n)
	for i := range out {
		states[i] = bucket.CounterState{Counter: bucket.Counter{Scope: "GET /products", Limit: lim},
			Start: scaleStart + int64(i)*1000, Count: int64(i%100 + 1)}
		out[i] = bucket.Entry{Key: clientKey(i), Counters: states[i : i+1 : i+1]}
	}
	return out
}

func clientKey(i int) string { return string(scalekeys.Append(nil, i)) }
