package cluster

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A node started under a name already in the cluster is refused at Join,
// and neither its join nor its going away takes the real node out of any
// ring. The real node is watched for a while after the impostor left,
// since gossip carries a leave to the others within a second or two.
func TestDuplicateNameRefused(t *testing.T) {
	nodes := startRealCluster(t, 2, time.Second)
	var lost atomic.Int64
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if !nodes[0].Ring().Has("n1") {
				lost.Add(1)
			}
		}
	}()

	dup := startReal(t, realConfig(t, "n1"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := dup.Join(ctx, nodes[0].GossipAddr())
	cancel()
	if err == nil || !strings.Contains(err.Error(), `"n1"`) {
		t.Errorf("joining under a taken name: %v; want an error naming n1", err)
	}
	if err := dup.Close(context.Background()); err != nil {
		t.Logf("closing the impostor: %v", err)
	}
	// Long enough for a leave broadcast to reach n0 by gossip.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && lost.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	<-watched
	if n := lost.Load(); n != 0 {
		t.Errorf("n0's ring lost the real n1 in %d of its samples", n)
	}
	for _, m := range nodes[0].Members() {
		if m.Name == "n1" && (m.State != Alive || m.RPCAddr != nodes[1].RPCAddr()) {
			t.Errorf("n0 sees n1 as %v at %s; want alive at %s", m.State, m.RPCAddr, nodes[1].RPCAddr())
		}
	}
}
