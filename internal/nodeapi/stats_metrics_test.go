package nodeapi

import (
	"math"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// The forward latency quantiles interpolate inside the bucket they fall
// in, as Prometheus's histogram_quantile does.
func TestQuantileMs(t *testing.T) {
	bucket := func(upper float64, n uint64) *dto.Bucket {
		return &dto.Bucket{UpperBound: proto.Float64(upper), CumulativeCount: proto.Uint64(n)}
	}
	h := &dto.Histogram{SampleCount: proto.Uint64(100), Bucket: []*dto.Bucket{
		bucket(0.001, 40), bucket(0.002, 90), bucket(0.010, 99), bucket(math.Inf(1), 100),
	}}
	for _, tc := range []struct{ q, want float64 }{{0.2, 0.5}, {0.5, 1.2}, {0.99, 10}, {1, 10}} {
		if got := quantileMs(h, tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("q%v = %v ms, want %v", tc.q, got, tc.want)
		}
	}
	if got := quantileMs(&dto.Histogram{}, 0.5); got != 0 {
		t.Errorf("empty histogram: %v, want 0", got)
	}
}
