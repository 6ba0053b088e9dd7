package rls

import (
	"testing"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	"go.uber.org/goleak"

	"github.com/ratemesh/ratemesh/internal/clustertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, clustertest.LeakOptions()...)
}

// entriesOf builds descriptor entries from key, value pairs.
func entriesOf(kv ...string) []*rlv3.RateLimitDescriptor_Entry {
	out := make([]*rlv3.RateLimitDescriptor_Entry, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &rlv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return out
}
