package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

const fuzzMax = 4096

// FuzzFrame feeds arbitrary bytes to the frame reader and every frame body
// to each payload decoder: nothing may panic, no frame may exceed the cap,
// the reader's buffer never grows beyond it, and no payload decodes as
// more than one of merge, replica and refund. The 16-byte read buffer
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
			if n := decodedCounts(c, payload); n > 1 {
				t.Fatalf("a payload decoded as %d of merge, replica and refund", n)
			}
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
	entries := []bucket.Entry{{Key: "k", Counters: []bucket.CounterState{
		{Counter: bucket.Counter{Scope: "s", Limit: limit(3, time.Minute), Strategy: bucket.MovingWindow}, Hits: []int64{1, 2}}}}}
	add(opMerge, func() {
		c.encodeMergeRequest(&MergeRequest{From: "n1", BaseIncarnation: 7, Bases: entries, Entries: entries})
	})
	add(opReplica, func() { c.encodeReplicaRequest(&ReplicaRequest{From: "n1", Incarnation: 9, Entries: entries}) })
	add(opRefund, func() { c.encodeRefundRequest(&RefundRequest{From: "n1", Hops: 1, Entries: entries}) })
	// A merge of protocol version 2: one op with replica and refund flags.
	add(opMerge, func() {
		c.enc.EncodeArrayLen(7)
		c.enc.EncodeString("n1")
		for range 3 {
			c.enc.EncodeBool(false)
		}
		c.enc.EncodeUint(9)
		c.enc.EncodeInt(0)
		c.encodeEntries(entries)
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

// decodedCounts decodes payload as a merge, a replica and a refund, and
// returns how many of the three accepted it.
func decodedCounts(c *codec, payload []byte) int {
	n := 0
	for _, o := range countOps() {
		c.reset(payload)
		if _, err := decodeAs(c, o); err == nil {
			n++
		}
	}
	return n
}

// countOps returns the ops whose payloads carry counter entries.
func countOps() []op { return []op{opMerge, opReplica, opRefund} }

// decodeAs decodes c's payload as a request of op o, one of countOps.
func decodeAs(c *codec, o op) (any, error) {
	switch o {
	case opMerge:
		req := new(MergeRequest)
		return req, c.decodeMergeRequest(req)
	case opReplica:
		req := new(ReplicaRequest)
		return req, c.decodeReplicaRequest(req)
	case opRefund:
		req := new(RefundRequest)
		return req, c.decodeRefundRequest(req)
	}
	return nil, fmt.Errorf("%s carries no counts", o)
}

// encodeAs encodes req, a merge, replica or refund request, into c.
func encodeAs(c *codec, req any) error {
	switch req := req.(type) {
	case *MergeRequest:
		return c.encodeMergeRequest(req)
	case *ReplicaRequest:
		return c.encodeReplicaRequest(req)
	case *RefundRequest:
		return c.encodeRefundRequest(req)
	}
	return fmt.Errorf("%T carries no counts", req)
}

// A forged merge, replica or refund payload costs memory in proportion to
// its size, not to the lengths it announces.
func TestCountsDecodeAllocationBounded(t *testing.T) {
	for _, o := range countOps() {
		// One entry announcing 2^32-1 counter states, then 64 KiB of
		// minimal but valid-looking bytes. The op's own field is 0, which
		// a replica and a refund read as their own, or a merge's empty
		// bases.
		own := []byte{0x00}
		if o == opMerge {
			own = []byte{0x96, 0x00, 0x90, 0xc2, 0xc2, 0x00, 0x00}
		}
		payload := append([]byte{0x94, byte(o), 0xa1, 'n'}, own...)
		payload = append(payload, 0x91, 0x92, 0xa1, 'k', 0xdd, 0xff, 0xff, 0xff, 0xff)
		payload = append(payload, make([]byte, 64<<10)...)
		var ms0, ms1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		c := newCodec()
		if n := decodedCounts(c, payload); n != 0 {
			t.Fatalf("forged %s payload decoded", o)
		}
		runtime.ReadMemStats(&ms1)
		if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 1<<20 {
			t.Errorf("decoding a %d-byte %s payload three ways allocated %d bytes", len(payload), o, alloc)
		}
		c.reset(payload)
		if _, err := decodeAs(c, o); err == nil || !strings.Contains(err.Error(), "elements in") {
			t.Errorf("forged %s payload: %v, want the counter states' length refused", o, err)
		}
	}
}

// minState assumes every real CounterState encodes to at least minState
// bytes; a change of bucket's encoding that breaks this would make the
// server refuse merges.
func TestCounterStateMinSize(t *testing.T) {
	c := newCodec()
	c.encodeState(&bucket.CounterState{})
	if n := len(c.w.b); n < minState {
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

// Counter states and each request's sender and own field come back as they
// went, for every strategy, in a merge, a replica and a refund.
func TestCountsRoundTrip(t *testing.T) {
	entries := []bucket.Entry{
		{Key: "a", Counters: []bucket.CounterState{
			{Counter: bucket.Counter{Scope: "s", Limit: limit(5, time.Minute)}, Start: 7, Count: 3},
			{Counter: bucket.Counter{Scope: "s", Limit: limit(5, time.Hour), Strategy: bucket.SlidingWindowCounter}, Start: 9, Count: 2, Prev: 4},
		}},
		{Key: "b", Counters: []bucket.CounterState{
			{Counter: bucket.Counter{Scope: "t", Limit: limit(3, time.Second), Strategy: bucket.MovingWindow}, Hits: []int64{1, 2, -3}},
			{Counter: bucket.Counter{Scope: "t", Limit: limit(1<<40, 24*time.Hour), Strategy: bucket.TokenBucket}, TAT: 1 << 60, TATFrac: 12345},
		}},
	}
	for _, in := range []any{
		&MergeRequest{From: "n1", BaseIncarnation: 3, Bases: entries, Entries: entries},
		&ReplicaRequest{From: "n2", Incarnation: 1 << 63, Entries: entries},
		&RefundRequest{From: "n3", Hops: 2, Entries: entries},
	} {
		c := newCodec()
		if err := encodeAs(c, in); err != nil {
			t.Fatal(err)
		}
		c.reset(slices.Clone(c.w.b))
		out, err := decodeAs(c, opOf(in))
		if err != nil {
			t.Fatalf("%T: %v", in, err)
		}
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
		}
	}
}

// opOf returns the op that carries req, a merge, replica or refund request.
func opOf(req any) op {
	switch req.(type) {
	case *ReplicaRequest:
		return opReplica
	case *RefundRequest:
		return opRefund
	}
	return opMerge
}

// Each decoder of a merge, replica or refund refuses a payload of the two
// others, and any payload that names another op, with an error that names
// both; none panics, and a frame of protocol version 2 is refused too.
func TestWrongOpRefused(t *testing.T) {
	es := []bucket.Entry{{Key: "k", Counters: []bucket.CounterState{{Counter: bucket.Counter{Scope: "s", Limit: limit(5, time.Minute)}, Count: 1}}}}
	reqs := []any{&MergeRequest{From: "n1", Entries: es}, &ReplicaRequest{From: "n1", Entries: es}, &RefundRequest{From: "n1", Entries: es}}
	for _, in := range reqs {
		c := newCodec()
		encodeAs(c, in)
		payload := slices.Clone(c.w.b)
		for _, o := range countOps() {
			c.reset(payload)
			_, err := decodeAs(c, o)
			if o == opOf(in) {
				if err != nil {
					t.Errorf("%s payload as a %s: %v", opOf(in), o, err)
				}
				continue
			}
			want := fmt.Sprintf("malformed %s request: it is a %s payload", o, opOf(in))
			if err == nil || err.Error() != want {
				t.Errorf("%s payload as a %s: %v, want %q", opOf(in), o, err, want)
			}
		}
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		want    string
	}{
		{"an op that carries no counts", []byte{0x94, byte(opTake), 0xa1, 'n', 0x00, 0x90}, "malformed replica request: it is a take payload"},
		{"an op out of range", []byte{0x94, 0xcd, 0x01, 0x06, 0xa1, 'n', 0x00, 0x90}, "malformed replica request: it names op 262, which does not exist"},
		{"an op that is not a number", []byte{0x94, 0xa1, 'n', 0xa1, 'n', 0x00, 0x90}, "malformed replica request's op"},
		{"a replica of protocol version 2", []byte{0x97, 0xa1, 'n', 0xc3, 0xc2, 0xc2, 0x07, 0x00, 0x90}, "malformed replica request"},
	} {
		c := newCodec()
		c.reset(tc.payload)
		if _, err := decodeAs(c, opReplica); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
