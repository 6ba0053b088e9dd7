package rls

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ratemesh/ratemesh/internal/clustertest"
)

const serviceConfig = `
domain: edge
descriptors:
  - key: free
    rate_limit: {unlimited: true}
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: three
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: hundred
    rate_limit: {unit: hour, requests_per_unit: 100}
  - key: shadow
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: path
    value: /api/*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: generic
    rate_limit: {unit: minute, requests_per_unit: 5, name: generic}
  - key: special
    rate_limit: {unit: minute, requests_per_unit: 1, replaces: [{name: generic}]}
  - key: quota
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: ten
    rate_limit: {unit: minute, requests_per_unit: 10}
`

// TestService runs the service's semantics against three real nodes,
// asking them in turn through real gRPC clients.
func TestService(t *testing.T) {
	nodes := clustertest.Start(t, 3, nil)
	c := serveAll(t, nodes, mustConfig(t, serviceConfig), Options{})

	t.Run("2 per minute: OK, OK, OVER_LIMIT whichever node is asked", func(t *testing.T) {
		var got []string
		for i := range 9 {
			r := c.ask(t, i, request("edge", desc("user", "alice")))
			st := r.Statuses[0]
			got = append(got, fmt.Sprintf("%s/%d", r.OverallCode, st.LimitRemaining))
			if l := st.CurrentLimit; l.GetRequestsPerUnit() != 2 || l.GetUnit() != pb.RateLimitResponse_RateLimit_MINUTE {
				t.Fatalf("current_limit %v, want 2 per MINUTE", l)
			}
			if d := st.DurationUntilReset.GetSeconds(); d < 1 || d > 60 {
				t.Fatalf("duration_until_reset %ds, want 1 to 60", d)
			}
		}
		want := "OK/1 OK/0 OVER_LIMIT/0 OVER_LIMIT/0 OVER_LIMIT/0 OVER_LIMIT/0 OVER_LIMIT/0 OVER_LIMIT/0 OVER_LIMIT/0"
		if strings.Join(got, " ") != want {
			t.Fatalf("answers %s\nwant    %s", strings.Join(got, " "), want)
		}
		if n := c.metric(func(m *metrics) *prometheus.CounterVec { return m.over }, "edge.user"); n != 7 {
			t.Fatalf("over_limit %d, want 7", n)
		}
	})

	t.Run("hits_addend 0 never consumes", func(t *testing.T) {
		d := desc("user", "bob")
		d.HitsAddend = wrapperspb.UInt64(0)
		for i := range 6 {
			r := c.ask(t, i, request("edge", d))
			if r.OverallCode != pb.RateLimitResponse_OK || r.Statuses[0].LimitRemaining != 2 {
				t.Fatalf("peek %d: %s remaining %d, want OK remaining 2", i, r.OverallCode, r.Statuses[0].LimitRemaining)
			}
		}
		if r := c.ask(t, 0, request("edge", desc("user", "bob"))); r.Statuses[0].LimitRemaining != 1 {
			t.Fatalf("after the peeks a hit leaves %d, want 1", r.Statuses[0].LimitRemaining)
		}
	})

	t.Run("a denied request consumes nothing", func(t *testing.T) {
		req := request("edge", desc("three", "carol"))
		req.HitsAddend = 2
		var got []string
		for i := range 3 {
			r := c.ask(t, i, req)
			got = append(got, fmt.Sprintf("%s/%d", r.OverallCode, r.Statuses[0].LimitRemaining))
		}
		r := c.ask(t, 0, request("edge", desc("three", "carol")))
		got = append(got, fmt.Sprintf("%s/%d", r.OverallCode, r.Statuses[0].LimitRemaining))
		// The reference would have counted 2+2+2 and denied the last too.
		if want := "OK/1 OVER_LIMIT/1 OVER_LIMIT/1 OK/0"; strings.Join(got, " ") != want {
			t.Fatalf("answers %s, want %s", strings.Join(got, " "), want)
		}
	})

	t.Run("hits_addend 2^32-1 is denied and takes nothing", func(t *testing.T) {
		d := desc("user", "dave")
		d.HitsAddend = wrapperspb.UInt64(math.MaxUint32)
		r := c.ask(t, 1, request("edge", d))
		if codesOf(r) != "OVER_LIMIT[OVER_LIMIT]" || r.Statuses[0].LimitRemaining != 2 {
			t.Fatalf("%s remaining %d, want OVER_LIMIT remaining 2", codesOf(r), r.Statuses[0].LimitRemaining)
		}
		big := request("edge", desc("user", "dave"))
		big.HitsAddend = math.MaxUint32
		if r := c.ask(t, 2, big); codesOf(r) != "OVER_LIMIT[OVER_LIMIT]" {
			t.Fatalf("request hits_addend 2^32-1: %s", codesOf(r))
		}
		d.HitsAddend = wrapperspb.UInt64(math.MaxUint64)
		if r := c.ask(t, 0, request("edge", d)); codesOf(r) != "OVER_LIMIT[OVER_LIMIT]" {
			t.Fatalf("hits_addend 2^64-1: %s", codesOf(r))
		}
		if r := c.ask(t, 0, request("edge", desc("user", "dave"))); r.OverallCode != pb.RateLimitResponse_OK {
			t.Fatalf("a hit after them: %s", r.OverallCode)
		}
	})

	t.Run("shadow mode never denies and counts what it would have", func(t *testing.T) {
		for i := range 5 {
			if r := c.ask(t, i, request("edge", desc("shadow", "erin"))); codesOf(r) != "OK[OK]" {
				t.Fatalf("request %d: %s", i, codesOf(r))
			}
		}
		pick := func(f func(*metrics) *prometheus.CounterVec) int { return c.metric(f, "edge.shadow") }
		got := [4]int{pick(func(m *metrics) *prometheus.CounterVec { return m.hits }), pick(func(m *metrics) *prometheus.CounterVec { return m.within }),
			pick(func(m *metrics) *prometheus.CounterVec { return m.over }), pick(func(m *metrics) *prometheus.CounterVec { return m.shadow })}
		if got != [4]int{5, 2, 3, 3} {
			t.Fatalf("hits, within, over, shadow = %v, want [5 2 3 3]", got)
		}
	})

	t.Run("a share_threshold wildcard is one counter for every value", func(t *testing.T) {
		var got []string
		for i, p := range []string{"/api/a", "/api/b", "/api/c"} {
			got = append(got, codesOf(c.ask(t, i, request("edge", desc("path", p)))))
		}
		if want := "OK[OK] OK[OK] OVER_LIMIT[OVER_LIMIT]"; strings.Join(got, " ") != want {
			t.Fatalf("answers %s, want %s", strings.Join(got, " "), want)
		}
	})

	t.Run("descriptors are counted apart, any over denies", func(t *testing.T) {
		var got []string
		for i := range 3 {
			r := c.ask(t, i, request("edge", desc("user", "frank"), desc("ten", "frank"), desc("nothing", "x")))
			got = append(got, codesOf(r)+fmt.Sprint(r.Statuses[1].LimitRemaining))
		}
		if want := "OK[OK OK OK]9 OK[OK OK OK]8 OVER_LIMIT[OVER_LIMIT OK OK]7"; strings.Join(got, " ") != want {
			t.Fatalf("answers %s, want %s", strings.Join(got, " "), want)
		}
	})

	t.Run("unlimited", func(t *testing.T) {
		r := c.ask(t, 0, request("edge", desc("free", "x")))
		if codesOf(r) != "OK[OK]" || r.Statuses[0].LimitRemaining != math.MaxUint32 || r.Statuses[0].CurrentLimit != nil {
			t.Fatalf("%s %v, want OK with remaining 2^32-1 and no limit", codesOf(r), r.Statuses[0])
		}
	})

	t.Run("replaces takes the replaced limit out of the decision", func(t *testing.T) {
		var got []string
		for i := range 2 {
			r := c.ask(t, i, request("edge", desc("generic", "gina"), desc("special", "gina")))
			got = append(got, fmt.Sprintf("%s %v", codesOf(r), r.Statuses[0].CurrentLimit != nil))
		}
		if want := "OK[OK OK] false|OVER_LIMIT[OK OVER_LIMIT] false"; strings.Join(got, "|") != want {
			t.Fatalf("answers %s, want %s", strings.Join(got, "|"), want)
		}
		if r := c.ask(t, 2, request("edge", desc("generic", "gina"))); r.Statuses[0].LimitRemaining != 4 {
			t.Fatalf("alone, generic has %d left, want 4 (the replaced checks took nothing)", r.Statuses[0].LimitRemaining)
		}
	})

	t.Run("quota mode denies only when every quota descriptor is over", func(t *testing.T) {
		c.ask(t, 0, request("edge", desc("quota", "q1")))
		c.ask(t, 0, request("edge", desc("quota", "q2")))
		if r := c.ask(t, 1, request("edge", desc("quota", "q1"), desc("quota", "q3"))); codesOf(r) != "OK[OVER_LIMIT OK]" {
			t.Fatalf("one quota over: %s, want OK[OVER_LIMIT OK]", codesOf(r))
		}
		if r := c.ask(t, 2, request("edge", desc("quota", "q1"), desc("quota", "q2"))); codesOf(r) != "OVER_LIMIT[OVER_LIMIT OVER_LIMIT]" {
			t.Fatalf("all quotas over: %s", codesOf(r))
		}
	})

	t.Run("a descriptor's own limit overrides the config", func(t *testing.T) {
		d := desc("user", "henry")
		d.Limit = &rlv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: typev3.RateLimitUnit_HOUR}
		var got []string
		for i := range 2 {
			r := c.ask(t, i, request("edge", d))
			got = append(got, codesOf(r)+r.Statuses[0].CurrentLimit.GetUnit().String())
		}
		if want := "OK[OK]HOUR OVER_LIMIT[OVER_LIMIT]HOUR"; strings.Join(got, " ") != want {
			t.Fatalf("answers %s, want %s", strings.Join(got, " "), want)
		}
		if r := c.ask(t, 2, request("edge", desc("user", "henry"))); r.Statuses[0].LimitRemaining != 1 {
			t.Fatalf("the config's counter has %d left, want 1", r.Statuses[0].LimitRemaining)
		}
	})

	t.Run("an unknown domain is OK, as in the reference", func(t *testing.T) {
		r := c.ask(t, 0, request("nowhere", desc("user", "x")))
		if codesOf(r) != "OK[OK]" || r.Statuses[0].CurrentLimit != nil {
			t.Fatalf("%s %v", codesOf(r), r.Statuses[0])
		}
	})

	t.Run("concurrent requests over three nodes: exactly 100 of 300 allowed", func(t *testing.T) {
		var mu sync.Mutex
		allowed := 0
		var wg sync.WaitGroup
		for g := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					r, err := c.try(g+i, request("edge", desc("hundred", "ivan")))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					allowed += int(pb.RateLimitResponse_OVER_LIMIT - r.OverallCode) // OK=1, OVER_LIMIT=2
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if allowed != 100 {
			t.Fatalf("%d of 300 allowed, want exactly 100", allowed)
		}
	})
}

// TestServiceBadInput: what Envoy would never send gets a clear status;
// what the reference answers, a clean answer.
func TestServiceBadInput(t *testing.T) {
	nodes := clustertest.Start(t, 3, nil)
	c := serveAll(t, nodes, mustConfig(t, serviceConfig), Options{})
	many := make([]*rlv3.RateLimitDescriptor, 10000)
	for i := range many {
		many[i] = desc("user", fmt.Sprint(i))
	}
	negative := desc("user", "x")
	negative.IsNegativeHits = true
	badUnit := desc("user", "x")
	badUnit.Limit = &rlv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1}
	zeroMult := desc("user", "x")
	zeroMult.Limit = &rlv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: typev3.RateLimitUnit_SECOND, UnitMultiplier: wrapperspb.UInt32(0)}
	cases := []struct {
		name string
		req  *pb.RateLimitRequest
		want string
	}{
		{"empty domain", request("", desc("user", "x")), "rls: domain: rate limit domain must not be empty"},
		{"no descriptors", request("edge"), "rls: descriptors: rate limit descriptor list must not be empty"},
		{"no entries", request("edge", desc()), "rls: descriptors[0].entries: a descriptor needs at least one entry"},
		{"empty key", request("edge", desc("user", "x"), desc("user", "y", "", "z")), "rls: descriptors[1].entries[1].key: empty"},
		{"10,000 descriptors", request("edge", many...), "rls: descriptors: 10000 descriptors, at most 1024 in one request"},
		{"negative hits", request("edge", negative), "rls: descriptors[0].is_negative_hits: not supported: a check never gives quota back"},
		{"override without unit", request("edge", badUnit), "rls: descriptors[0].limit.unit: UNKNOWN is not a unit"},
		{"override multiplier 0", request("edge", zeroMult), "rls: descriptors[0].limit.unit_multiplier: 0; at least 1"},
	}
	for _, tc := range cases {
		_, err := c.try(0, tc.req)
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != tc.want {
			t.Errorf("%s: %v, want InvalidArgument %q", tc.name, err, tc.want)
		}
	}
	// A 1 MiB value is an ordinary descriptor: counted, exactly.
	long := strings.Repeat("v", 1<<20)
	var got []string
	for i := range 3 {
		got = append(got, codesOf(c.ask(t, i, request("edge", desc("user", long)))))
	}
	if want := "OK[OK] OK[OK] OVER_LIMIT[OVER_LIMIT]"; strings.Join(got, " ") != want {
		t.Fatalf("1 MiB value: %s, want %s", strings.Join(got, " "), want)
	}
}
