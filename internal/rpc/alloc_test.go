package rpc

import (
	"fmt"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
)

// A replication batch decodes with one allocation per key (its string,
// which the receiving store may keep) and a few for the whole request:
// the entries and their counter states are carved from one slice each.
func TestMergeDecodeAllocs(t *testing.T) {
	const keys = 256
	frame := replicaBatch(t, keys)
	d := newCodec()
	var out ReplicaRequest
	// Decoded once first, so that the codec's scope cache holds the scope.
	d.reset(frame)
	if err := d.decodeReplicaRequest(&out); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		out = ReplicaRequest{}
		d.reset(frame)
		if err := d.decodeReplicaRequest(&out); err != nil {
			t.Fatal(err)
		}
	})
	// The keys' strings, and a few for the request: the sender's name,
	// the entries and the states (the race detector adds one). Two per
	// key, as before, would be over 500.
	if want := float64(keys + 8); allocs > want {
		t.Fatalf("decoding a merge of %d keys: %.0f allocations, want at most %.0f", keys, allocs, want)
	}
}

// BenchmarkMergeDecode measures the decoding of a replication batch of 256
// keys of one counter each: the busiest of the payloads that carry counts
// (a merge, a replica or a refund), which all decode their entries alike.
func BenchmarkMergeDecode(b *testing.B) {
	frame := replicaBatch(b, 256)
	d := newCodec()
	b.ReportAllocs()
	for b.Loop() {
		var out ReplicaRequest
		d.reset(frame)
		if err := d.decodeReplicaRequest(&out); err != nil {
			b.Fatal(err)
		}
	}
}

// replicaBatch is the payload of a replication batch of n keys, one fixed
// window each.
func replicaBatch(tb testing.TB, n int) []byte {
	tb.Helper()
	in := &ReplicaRequest{From: "n1", Incarnation: 7}
	for i := range n {
		in.Entries = append(in.Entries, bucket.Entry{Key: fmt.Sprintf("key-%d", i), Counters: []bucket.CounterState{
			{Counter: bucket.Counter{Scope: "GET /products", Limit: limit(5, time.Minute)}, Start: 7, Count: 3},
		}})
	}
	c := newCodec()
	if err := c.encodeReplicaRequest(in); err != nil {
		tb.Fatal(err)
	}
	return append([]byte(nil), c.w.b...)
}
