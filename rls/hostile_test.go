package rls

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
)

const hostileConfig = `
domain: edge
descriptors:` + hostileRules

// hostileRules are rules whose metrics name descriptors by the request's
// values.
const hostileRules = `
  - key: remote_address
    detailed_metric: true
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: path
    value_to_metric: true
    rate_limit: {unit: minute, requests_per_unit: 5}
`

// override returns a descriptor of kv carrying its own limit.
func override(rpu uint32, unit typev3.RateLimitUnit, mult uint32, kv ...string) *rlv3.RateLimitDescriptor {
	d := desc(kv...)
	d.Limit = &rlv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: rpu, Unit: unit, UnitMultiplier: wrapperspb.UInt32(mult)}
	return d
}

// labels are the values of the "key" label of every rls series in reg.
func labels(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "key" {
					out = append(out, l.GetValue())
				}
			}
		}
	}
	return out
}

// TestMultiByteValueLabel: a value of 200 × é (400 bytes) for a rule with
// detailed_metric, for one with value_to_metric and with an override,
// asked over gRPC, and 300 invalid bytes asked in process, are answered
// OK and counted under labels of valid UTF-8 of at most 256 bytes. The
// label was cut at byte 223, inside an é, and Prometheus panicked.
func TestMultiByteValueLabel(t *testing.T) {
	nodes := clustertest.Start(t, 1, nil)
	reg := prometheus.NewRegistry()
	svc, err := New(nodes[0], mustConfig(t, hostileConfig), Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	client := pb.NewRateLimitServiceClient(serveOne(t, svc))
	e := strings.Repeat("é", 200)
	for _, d := range []*rlv3.RateLimitDescriptor{
		desc("remote_address", e), desc("path", e), override(10, typev3.RateLimitUnit_MINUTE, 1, "remote_address", e),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := client.ShouldRateLimit(ctx, request("edge", d))
		cancel()
		if err != nil || r.OverallCode != pb.RateLimitResponse_OK {
			t.Fatalf("%v: %v %v, want OK", d.Entries[0].Key, r, err)
		}
	}
	r, err := svc.ShouldRateLimit(context.Background(), request("edge", desc("remote_address", strings.Repeat("\xff", 300))))
	if err != nil || r.OverallCode != pb.RateLimitResponse_OK {
		t.Fatalf("invalid UTF-8 in process: %v %v, want OK", r, err)
	}
	cut := 0
	for _, l := range labels(t, reg) {
		if !utf8.ValidString(l) || len(l) > maxMetricLabel {
			t.Fatalf("label %q: valid %v, %d bytes; want valid UTF-8 of at most %d", l, utf8.ValidString(l), len(l), maxMetricLabel)
		}
		if strings.Contains(l, "#") {
			cut++
		}
	}
	// 3 cut labels (the override and detailed_metric name the descriptor
	// alike), each with a hits and a within series.
	if cut != 6 {
		t.Fatalf("%d series under cut labels, want 6 (hits and within of 3 labels)", cut)
	}
}

// TestOverrideWindowCap: a descriptor's own limit may choose a window of
// at most 24 h, as /v1/check: 9 years and 25 hours are refused with
// InvalidArgument naming the field, a day is answered.
func TestOverrideWindowCap(t *testing.T) {
	nodes := clustertest.Start(t, 1, nil)
	c := serveAll(t, nodes, mustConfig(t, hostileConfig), Options{})
	for _, tc := range []struct {
		d    *rlv3.RateLimitDescriptor
		want string
	}{
		{override(1, typev3.RateLimitUnit_YEAR, 9, "remote_address", "10.66.66.66"), "rls: descriptors[0].limit: a window of 9 × YEAR is longer than 24h0m0s, the longest a request may choose"},
		{override(1, typev3.RateLimitUnit_HOUR, 25, "remote_address", "10.66.66.66"), "rls: descriptors[0].limit: a window of 25 × HOUR is longer than 24h0m0s, the longest a request may choose"},
	} {
		_, err := c.try(0, request("edge", tc.d))
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != tc.want {
			t.Errorf("error %v, want InvalidArgument %q", err, tc.want)
		}
	}
	r := c.ask(t, 0, request("edge", override(1, typev3.RateLimitUnit_DAY, 1, "remote_address", "10.66.66.66")))
	if r.OverallCode != pb.RateLimitResponse_OK || r.Statuses[0].DurationUntilReset.GetSeconds() > 86400 {
		t.Fatalf("1 per day: %v, want OK resetting within a day", r)
	}
}

// TestOverridesCannotLockOutAConfiguredRule: 300 requests with limits of
// their own (1 per 1 s, 2 s ... 300 s) for a victim's descriptor, over 3
// nodes, are each answered, and the victim's configured 5 per minute then
// answers exactly 5 OK of 7. The overrides' counters shared the victim's
// routing key, which holds 256 live counters at most: the 257th and every
// later check of the victim failed.
func TestOverridesCannotLockOutAConfiguredRule(t *testing.T) {
	nodes := clustertest.Start(t, 3, nil)
	c := serveAll(t, nodes, mustConfig(t, hostileConfig), Options{})
	victim := []string{"remote_address", "10.66.66.66"}
	for k := range 300 {
		r, err := c.try(k, request("edge", override(1, typev3.RateLimitUnit_SECOND, uint32(k+1), victim...)))
		if err != nil || r.OverallCode != pb.RateLimitResponse_OK {
			t.Fatalf("override %d: %v %v, want OK", k+1, r, err)
		}
	}
	var got []string
	for i := range 7 {
		got = append(got, c.ask(t, i, request("edge", desc(victim...))).OverallCode.String())
	}
	if want := "OK OK OK OK OK OVER_LIMIT OVER_LIMIT"; strings.Join(got, " ") != want {
		t.Fatalf("victim's 5 per minute after 300 overrides: %s, want %s", strings.Join(got, " "), want)
	}
}

// TestFullKeyTable: a node whose key table (MaxKeys 4) is full refuses a
// new descriptor with Unavailable naming the descriptor and the bound,
// and keeps answering the descriptors it has counters for exactly.
func TestFullKeyTable(t *testing.T) {
	nodes := clustertest.Start(t, 1, func(c *ratemesh.Config) { c.Store.MaxKeys = 4 })
	c := serveAll(t, nodes, mustConfig(t, hostileConfig), Options{})
	for i := range 4 {
		c.ask(t, 0, request("edge", desc("remote_address", fmt.Sprint("client-", i))))
	}
	_, err := c.try(0, request("edge", desc("remote_address", "client-0"), desc("remote_address", "new")))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "descriptors[1]: ") || !strings.Contains(err.Error(), "MaxKeys (4)") {
		t.Fatalf("a fifth key: %v, want Unavailable naming descriptors[1] and MaxKeys (4)", err)
	}
	var got []string
	for range 5 {
		got = append(got, c.ask(t, 0, request("edge", desc("remote_address", "client-1"))).OverallCode.String())
	}
	if want := "OK OK OK OK OVER_LIMIT"; strings.Join(got, " ") != want {
		t.Fatalf("an existing key, 5 per minute after 1: %s, want %s", strings.Join(got, " "), want)
	}
}
