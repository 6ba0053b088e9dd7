package httpapi_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/fakecluster"
)

// counting wraps a Cluster to count its checks, as an application's
// instrumentation would: it embeds the Cluster it wraps and overrides
// Check only.
type counting struct {
	httpapi.Cluster
	checks atomic.Int64
}

func (c *counting) Check(ctx context.Context, req ratemesh.Request) (ratemesh.Result, error) {
	c.checks.Add(1)
	return c.Cluster.Check(ctx, req)
}

// A wrapped Cluster keeps the fail policy of the one it wraps: with an
// open policy, failed checks let every request through, in the middleware
// and in the RateLimiterStore. (Before, the middleware found the policy by
// a type assertion on the Cluster, which the wrapper does not pass: the
// wrapped node's open policy was silently lost and every request got 503.)
func TestWrappedClusterKeepsFailPolicy(t *testing.T) {
	n := fakecluster.New("wrapped")
	n.SetFailPolicy(ratemesh.FailOpen)
	n.FailChecks(ratemesh.ErrNotJoined)
	w := &counting{Cluster: n}
	e := server(t, w, httpapi.Config{Policy: httpapi.Policy{Default: "1 per minute"}}, "GET", "/c")
	run(t, e, repeat(3, step{method: "GET", path: "/c", peer: "192.0.2.72:1", code: 200, body: "ok"}))
	store := httpapi.NewRateLimiterStore(w, bucket.Limit{Amount: 1, Period: time.Minute})
	if ok, err := store.Allow("192.0.2.72"); !ok || err != nil {
		t.Fatalf("RateLimiterStore over the wrapper: %v %v, want allowed", ok, err)
	}
	if got := w.checks.Load(); got != 4 {
		t.Fatalf("%d checks through the wrapper, want 4", got)
	}
	// The same wrapper of a node whose policy is local refuses them.
	n.SetFailPolicy(ratemesh.FailLocal)
	e = server(t, w, httpapi.Config{Policy: httpapi.Policy{Default: "1 per minute"}}, "GET", "/c")
	run(t, e, []step{{method: "GET", path: "/c", peer: "192.0.2.72:1", code: 503, want: map[string]string{"Retry-After": "1"}}})
}
