package rls

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ratemesh/ratemesh/internal/clustertest"
)

// fuzzConfig has a rule of every kind a request can reach: detailed and
// per-value metrics, a shared wildcard, replaces, quota, shadow,
// unlimited and nested descriptors.
const fuzzConfig = serviceConfig + hostileRules + `
  - key: outer
    descriptors:
      - key: inner
        value_to_metric: true
        detailed_metric: true
        rate_limit: {unit: second, requests_per_unit: 2}
`

// fuzzKeys are the keys a fuzzed entry picks from (or its own).
var fuzzKeys = []string{"remote_address", "path", "free", "shadow", "user", "generic", "special", "quota", "outer", "inner"}

// FuzzShouldRateLimit sends requests built from random descriptors,
// values (multi-byte, invalid UTF-8, long), limits of their own and
// hits_addend to a service over a real node, in process and through POST
// /json. It fails on any panic, on an error that is not a status of
// InvalidArgument or Unavailable, and on an HTTP code other than 200,
// 429, 400 or 503.
func FuzzShouldRateLimit(f *testing.F) {
	nodes := clustertest.Start(f, 1, nil)
	svc, err := New(nodes[0], mustConfig(f, fuzzConfig), Options{Registerer: prometheus.NewRegistry(), MaxDescriptors: 16, MaxEntries: 4})
	if err != nil {
		f.Fatal(err)
	}
	json := svc.JSONHandler()
	f.Add("edge", "remote_address", strings.Repeat("é", 200), uint64(1), uint8(0), uint32(0), uint8(2), uint32(1), uint8(1))
	f.Add("edge", "path", "\xff\xfe", uint64(0), uint8(1), uint32(5), uint8(6), uint32(9), uint8(3))
	f.Add("edge", "path", "/api/€", uint64(1<<63), uint8(2), uint32(1), uint8(4), uint32(0), uint8(16))
	f.Add("", "outer", "", uint64(3), uint8(3), uint32(0), uint8(9), uint32(1<<31), uint8(17))
	f.Fuzz(func(t *testing.T, domain, key, value string, hits uint64, shape uint8, rpu uint32, unit uint8, mult uint32, n uint8) {
		req := fuzzRequest(domain, key, value, hits, shape, rpu, unit, mult, n)
		if _, err := svc.ShouldRateLimit(context.Background(), req); err != nil {
			if c := status.Code(err); c != codes.InvalidArgument && c != codes.Unavailable {
				t.Fatalf("error %v, want InvalidArgument or Unavailable", err)
			}
		}
		fuzzWeigh(t, svc, req, value)
		body, err := protojson.Marshal(req)
		if err != nil { // invalid UTF-8: the JSON carries the raw bytes
			body = []byte(`{"domain":` + strconv.Quote(domain) + `,"descriptors":[{"entries":[{"key":"` + key + `","value":"` + value + `"}]}]}`)
		}
		rec := httptest.NewRecorder()
		json.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/json", strings.NewReader(string(body))))
		switch rec.Code {
		case http.StatusOK, http.StatusTooManyRequests, http.StatusBadRequest, http.StatusServiceUnavailable:
		default:
			t.Fatalf("/json %d %s", rec.Code, rec.Body.String())
		}
	})
}

// fuzzRequest builds a request of n descriptors (some over the bounds)
// from the fuzzed fields; shape picks, per descriptor, the key, a nested
// entry, a limit of its own and hits of its own.
func fuzzRequest(domain, key, value string, hits uint64, shape uint8, rpu uint32, unit uint8, mult uint32, n uint8) *pb.RateLimitRequest {
	if shape&1 == 0 {
		domain = "edge"
	}
	req := &pb.RateLimitRequest{Domain: domain, HitsAddend: uint32(hits)}
	for i := range int(n % 20) {
		k := key
		if shape&2 == 0 {
			k = fuzzKeys[(int(shape)+i)%len(fuzzKeys)]
		}
		d := &rlv3.RateLimitDescriptor{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: k, Value: value + strconv.Itoa(i%3)}}}
		if k == "outer" || shape&4 != 0 {
			d.Entries = append(d.Entries, &rlv3.RateLimitDescriptor_Entry{Key: "inner", Value: value})
		}
		if shape&8 != 0 {
			d.Limit = &rlv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: rpu, Unit: typev3.RateLimitUnit(unit % 9)}
			if shape&16 != 0 {
				d.Limit.UnitMultiplier = wrapperspb.UInt32(mult)
			}
		}
		if shape&32 != 0 {
			d.HitsAddend = wrapperspb.UInt64(hits >> (i % 64))
		}
		req.Descriptors = append(req.Descriptors, d)
	}
	return req
}

// fuzzWeigh weighs req from its wire form, which must give the weight of
// the decoded request when it is within the caps, and weighs raw as a
// request's wire form; neither may panic.
func fuzzWeigh(t *testing.T, svc *Service, req *pb.RateLimitRequest, raw string) {
	svc.Weigh([]byte(raw), &pb.RateLimitRequest{})
	b, err := proto.Marshal(req)
	if err != nil {
		return // invalid UTF-8
	}
	if w, err := svc.Weigh(b, &pb.RateLimitRequest{}); err == nil && w != weightOf(req) {
		t.Fatalf("Weigh from the wire %d, decoded %d", w, weightOf(req))
	}
}
