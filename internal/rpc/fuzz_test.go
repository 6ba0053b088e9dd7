package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

const fuzzMax = 4096

// FuzzFrame feeds arbitrary bytes to the frame reader and every frame body
// to each payload decoder: nothing may panic, no frame may exceed the cap,
// and the reader's buffer never grows beyond it. The 64-byte read buffer
// makes frames above it take the incremental path.
//
//	go test -run='^$' -fuzz=FuzzFrame -fuzztime=10s ./internal/rpc
func FuzzFrame(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(bufio.NewReaderSize(bytes.NewReader(data), 16), fuzzMax)
		c := newCodec()
		for {
			body, err := fr.next()
			if err != nil {
				break
			}
			if len(body) > fuzzMax || cap(fr.big) > fuzzMax {
				t.Fatalf("frame of %d bytes (buffer %d) over the cap %d", len(body), cap(fr.big), fuzzMax)
			}
			_, _, payload := parseHead(body)
			var req CheckRequest
			c.reset(payload)
			c.decodeCheckRequest(&req)
			var resp CheckResponse
			c.reset(payload)
			c.decodeCheckResponse(&resp)
			c.reset(payload)
			c.decodeMergeRequest(new(MergeRequest))
			c.reset(payload)
			c.decodeKey()
			c.reset(payload)
			c.decodeTakeRequest(new(TakeRequest))
			c.reset(payload)
			c.decodeTakeResponse(new(TakeResponse))
		}
	})
}

// fuzzSeeds returns streams of valid frames of every kind, and a few bad ones.
func fuzzSeeds() [][]byte {
	c := newCodec()
	var stream []byte
	add := func(o op, enc func()) {
		var at int
		c.w.b, at = appendHead(c.w.b[:0], 1, byte(o))
		enc()
		finishFrame(c.w.b, at)
		stream = append(stream, c.w.b...)
	}
	add(opPing, func() {})
	add(opCheck, func() { c.encodeCheckRequest(sampleRequest("ip:1.2.3.4", 1)) })
	add(opCheck, func() {
		c.encodeCheckResponse(&CheckResponse{Allowed: true, Node: "n1", Statuses: []bucket.Status{
			{Limit: limit(1, time.Second), Remaining: 1, Reset: time.Unix(0, 5)}, {}}})
	})
	add(opReset, func() { c.encodeKey("user:1") })
	add(opTake, func() { c.encodeTakeRequest(&TakeRequest{Key: "k", To: "n2", ToAddr: "127.0.0.1:1"}) })
	add(opTake, func() {
		c.encodeTakeResponse(&TakeResponse{Found: true, Supersedes: true, Entry: bucket.Entry{Key: "k", Counters: []bucket.CounterState{{Count: 3}}}})
	})
	add(opMerge, func() {
		c.encodeMergeRequest(&MergeRequest{Entries: []bucket.Entry{{Key: "k", Counters: []bucket.CounterState{
			{Counter: bucket.Counter{Scope: "s", Limit: limit(3, time.Minute), Strategy: bucket.MovingWindow}, Hits: []int64{1, 2}}}}}})
	})
	big := make([]byte, lenSize+1000)
	binary.BigEndian.PutUint32(big, 1000)
	return [][]byte{
		stream,
		big,
		{0x80, 0, 0, 0},
		{0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0xdd, 0xff, 0xff, 0xff, 0xff},
	}
}

// A forged merge payload costs memory in proportion to its size, not to the
// lengths it announces.
func TestMergeDecodeAllocationBounded(t *testing.T) {
	// One entry announcing 2^32-1 counter states, then 64 KiB of minimal
	// but valid-looking bytes.
	payload := []byte{0x91, 0x92, 0xa1, 'k', 0xdd, 0xff, 0xff, 0xff, 0xff}
	payload = append(payload, make([]byte, 64<<10)...)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	c := newCodec()
	c.reset(payload)
	if err := c.decodeMergeRequest(new(MergeRequest)); err == nil {
		t.Fatal("forged merge request decoded")
	}
	runtime.ReadMemStats(&ms1)
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 1<<20 {
		t.Errorf("decoding a %d-byte payload allocated %d bytes", len(payload), alloc)
	}
}

// minState assumes every real CounterState encodes to at least minState
// bytes; a change of bucket's encoding that breaks this would make the
// server refuse merges.
func TestCounterStateMinSize(t *testing.T) {
	c := newCodec()
	c.encodeMergeRequest(&MergeRequest{Entries: []bucket.Entry{{Key: "k", Counters: []bucket.CounterState{{}}}}})
	const overhead = 1 + 1 + 2 + 1 // list, entry, key, counter list
	if n := len(c.w.b) - overhead; n < minState {
		t.Fatalf("a zero CounterState encodes to %d bytes, below minState %d", n, minState)
	}
}

// The client's and server's check paths allocate nothing for a repeated key.
func TestCheckAllocs(t *testing.T) {
	if testkit.RaceEnabled || testing.Short() {
		t.Skip("allocation counts differ under the race detector")
	}
	// The fast path allocates nothing; a check served on a goroutine
	// costs the goroutine and nothing else (its state is pooled).
	for _, tc := range []struct {
		name string
		h    Handler
		max  float64
	}{{"fast-path", &fastBenchHandler{}, 0.1}, {"goroutine", &benchHandler{}, 1.1}} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, tc.h, ServerConfig{})
			cl, _ := newTestClient(t, ts.addr, ClientConfig{CallTimeout: 5 * time.Second})
			req := sampleRequest("ip:10.1.2.3", 1)
			var resp CheckResponse
			ctx := context.Background()
			check := func() {
				if err := cl.Check(ctx, req, &resp); err != nil {
					t.Fatal(err)
				}
			}
			check()
			if n := testing.AllocsPerRun(500, check); n > tc.max {
				t.Errorf("Check allocates %.2f times per call, want at most %.0f", n, tc.max-0.1)
			}
		})
	}
}

// Counter states and the merge request's sender and replica flag come
// back as they went, for every strategy.
func TestMergeRequestRoundTrip(t *testing.T) {
	in := &MergeRequest{From: "n1", Refund: true, Supersedes: true, Incarnation: 1 << 63, Hops: 2, Entries: []bucket.Entry{
		{Key: "a", Counters: []bucket.CounterState{
			{Counter: bucket.Counter{Scope: "s", Limit: limit(5, time.Minute)}, Start: 7, Count: 3},
			{Counter: bucket.Counter{Scope: "s", Limit: limit(5, time.Hour), Strategy: bucket.SlidingWindowCounter}, Start: 9, Count: 2, Prev: 4},
		}},
		{Key: "b", Counters: []bucket.CounterState{
			{Counter: bucket.Counter{Scope: "t", Limit: limit(3, time.Second), Strategy: bucket.MovingWindow}, Hits: []int64{1, 2, -3}},
			{Counter: bucket.Counter{Scope: "t", Limit: limit(1<<40, 24*time.Hour), Strategy: bucket.TokenBucket}, TAT: 1 << 60, TATFrac: 12345},
		}},
	}}
	c := newCodec()
	if err := c.encodeMergeRequest(in); err != nil {
		t.Fatal(err)
	}
	out := new(MergeRequest)
	c.reset(slices.Clone(c.w.b))
	if err := c.decodeMergeRequest(out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
}
