package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
)

// A peer's request that reaches a node after it listens and before it has
// a view of the cluster waits for that view, and is refused as not serving
// if it cannot wait: a node restarted without seeds is still in its
// peers' rings, and they replicate to it at once. (Such a replica failed
// on the missing view.)
func TestRequestBeforeFirstViewWaits(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	startMemCluster(t, net, clock, "n0", "n1")
	var replicaErr, checkErr error
	net.listening = func(name string) {
		net.mu.Lock()
		h := net.handlers[memAddr(name)]
		net.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		replicaErr = h.Replicate(ctx, &rpc.ReplicaRequest{From: "n0", Incarnation: 3,
			Entries: []bucket.Entry{{Key: "k", Counters: []bucket.CounterState{{Counter: perMinute(t, 10)[0], Count: 1}}}}})
		var resp rpc.CheckResponse
		checkErr = h.Check(ctx, &rpc.CheckRequest{Key: "k", Counters: perMinute(t, 10), Cost: 1}, &resp)
	}
	n2 := startMemNode(t, net, clock, "n2")
	net.listening = nil
	for what, err := range map[string]error{"replica": replicaErr, "check": checkErr} {
		if !errors.Is(err, rpc.ErrNotServing) {
			t.Errorf("a %s before the first view: %v; want it refused as not serving", what, err)
		}
	}
	if n2.unjoined.Load() {
		t.Error("the started node still holds its peers' requests")
	}
}
