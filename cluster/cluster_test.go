package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/ring"
)

func TestMetaRoundTripAndCap(t *testing.T) {
	m := Meta{Protocol: ProtocolVersion, RPCAddr: "127.0.0.1:9091", HTTPAddr: "127.0.0.1:8081", Ring: ringSignature(ring.Config{})}
	b, err := m.encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 100 {
		t.Errorf("metadata is %d bytes; want it well under memberlist's 512", len(b))
	}
	got, err := decodeMeta(b)
	if err != nil || got != m {
		t.Fatalf("round trip: %+v %v, want %+v", got, err, m)
	}
	if _, err := (Meta{RPCAddr: strings.Repeat("x", 600)}).encode(); err == nil {
		t.Error("oversized metadata accepted")
	}
	for _, bad := range [][]byte{nil, {0xc1}, []byte("not msgpack")} {
		if _, err := decodeMeta(bad); err == nil {
			t.Errorf("decodeMeta(%q) accepted", bad)
		}
	}
}

func TestRingSignatureNamesPlacement(t *testing.T) {
	if ringSignature(ring.Config{}) != ringSignature(ring.Config{PartitionCount: ring.DefaultPartitionCount}) {
		t.Error("the zero config and the defaults place keys alike but sign differently")
	}
	if ringSignature(ring.Config{}) == ringSignature(ring.Config{PartitionCount: 271}) {
		t.Error("another partition count signs the same")
	}
}

func TestDenyCache(t *testing.T) {
	t0 := time.Unix(1000, 0)
	lim := bucket.Limit{Amount: 5, Period: time.Minute}
	cs := []bucket.Counter{{Scope: "r", Limit: lim}}
	req := &rpc.CheckRequest{Key: "k", Counters: cs, Cost: 2}
	denied := &rpc.CheckResponse{Node: "owner", Statuses: []bucket.Status{{Limit: lim, Reset: t0.Add(30 * time.Second), RetryAfter: 30 * time.Second}}}
	var d denyCache
	d.store(t0, req, denied)

	var resp rpc.CheckResponse
	if !d.lookup(t0.Add(10*time.Second), req, &resp) {
		t.Fatal("a repeat of a denied check within its retry-after was not answered")
	}
	if resp.Allowed || resp.Node != "owner" || resp.Statuses[0].RetryAfter != 20*time.Second {
		t.Errorf("cached answer: %+v", resp)
	}
	for name, tc := range map[string]struct {
		at  time.Time
		req *rpc.CheckRequest
	}{
		"after retry-after": {t0.Add(30 * time.Second), req},
		"cheaper check":     {t0.Add(time.Second), &rpc.CheckRequest{Key: "k", Counters: cs, Cost: 1}},
		"other counters":    {t0.Add(time.Second), &rpc.CheckRequest{Key: "k", Counters: []bucket.Counter{{Scope: "s", Limit: lim}}, Cost: 2}},
		"other key":         {t0.Add(time.Second), &rpc.CheckRequest{Key: "j", Counters: cs, Cost: 2}},
	} {
		if d.lookup(tc.at, tc.req, &resp) {
			t.Errorf("%s: answered from the cache", name)
		}
	}
	d.store(t0, req, denied)
	d.forget("k")
	if d.lookup(t0.Add(time.Second), req, &resp) {
		t.Error("answered after forget (reset)")
	}
	never := &rpc.CheckResponse{Statuses: []bucket.Status{{Limit: lim, RetryAfter: bucket.RetryNever}}}
	d.store(t0, req, never)
	if d.lookup(t0.Add(time.Second), req, &resp) {
		t.Error("a check that can never pass was cached")
	}
}

func TestSameMembers(t *testing.T) {
	a := []ring.Member{{Name: "a", Addr: "1"}, {Name: "b", Addr: "2"}}
	if !sameMembers(a, []ring.Member{{Name: "b", Addr: "2"}, {Name: "a", Addr: "1"}}) {
		t.Error("order matters")
	}
	if sameMembers(a, []ring.Member{{Name: "a", Addr: "1"}, {Name: "b", Addr: "3"}}) {
		t.Error("a changed address is the same")
	}
}
