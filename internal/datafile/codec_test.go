package datafile

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/ratemesh/ratemesh/bucket"
)

// codecEntries covers every length form and field of the format.
func codecEntries() []bucket.Entry {
	lim := bucket.Limit{Amount: 4000, Period: 90 * time.Second}
	// Every integer form, positive and negative.
	ints := []int64{0, 127, 128, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, -1, -32, -33, -128, -129, -32768, -32769, -1 << 31, -1<<31 - 1, -1 << 63}
	many := make([]bucket.CounterState, 17) // an array16 of counters
	for i := range many {
		many[i] = bucket.CounterState{Counter: bucket.Counter{Scope: strings.Repeat("s", i*15), Limit: lim, Strategy: bucket.SlidingWindowCounter},
			Start: ints[i], Count: ints[i+1], Prev: ints[i+2]}
	}
	hits := make([]int64, 300)
	for i := range hits {
		hits[i] = int64(i) * 1e9
	}
	return append(sampleEntries(3),
		bucket.Entry{Key: strings.Repeat("k", 40), Counters: many},
		bucket.Entry{Key: strings.Repeat("long", 20000), Counters: []bucket.CounterState{
			{Counter: bucket.Counter{Limit: lim, Strategy: bucket.TokenBucket}, TAT: 1 << 62, TATFrac: 3999},
			{Counter: bucket.Counter{Scope: "m", Limit: lim, Strategy: bucket.MovingWindow}, Hits: hits},
			{Counter: bucket.Counter{Scope: "empty", Limit: lim, Strategy: bucket.MovingWindow}, Hits: []int64{}},
		}},
		bucket.Entry{Key: strings.Repeat("x", 300)},
		bucket.Entry{Key: "", Counters: []bucket.CounterState{}},
	)
}

// libraryStream is what the msgpack library writes for entries, as
// version 1 files were written.
func libraryStream(t *testing.T, entries []bucket.Entry, compact bool) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseArrayEncodedStructs(true)
	enc.UseCompactInts(compact)
	for i := range entries {
		if err := enc.Encode(&entries[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.EncodeNil(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The hand-written writer produces the library's bytes (compact
// integers), and the reader reads them back, and the fixed-size integers
// of files written before.
func TestCodecMatchesLibrary(t *testing.T) {
	entries := codecEntries()
	want := libraryStream(t, entries, true)
	var got []byte
	for i := range entries {
		got = appendEntry(got, &entries[i])
	}
	got = append(got, codeNil)
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("the writer's %d bytes differ from the library's %d from byte %d", len(got), len(want), i)
	}
	for _, compact := range []bool{false, true} {
		dec, err := decodeEntries(libraryStream(t, entries, compact), uint64(len(entries)))
		if err != nil {
			t.Fatalf("compact ints %v: %v", compact, err)
		}
		if !reflect.DeepEqual(dec, entries) {
			t.Fatalf("compact ints %v: decoded entries differ", compact)
		}
	}
}

// A stream cut anywhere, or with a field of the wrong type, is an error,
// never a panic or a short result.
func TestCodecRefusesDamage(t *testing.T) {
	entries := sampleEntries(2)
	stream := libraryStream(t, entries, false)
	for n := range len(stream) {
		if _, err := decodeEntries(stream[:n], 2); err == nil {
			t.Fatalf("a stream cut to %d of %d bytes decoded", n, len(stream))
		}
	}
	bad := append([]byte(nil), stream...)
	bad[1] = 0xc3 // true where the key's string starts
	if _, err := decodeEntries(bad, 2); err == nil || !strings.Contains(err.Error(), "where a string was expected") {
		t.Fatalf("a boolean key: %v", err)
	}
}
