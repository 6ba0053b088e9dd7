package ratemesh_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// A node given seeds decides nothing before it has joined them: it is
// not ready, a check with a short context fails with ErrNotJoined, and
// checks that wait are decided by the key's owner once the node has
// joined. Cold started under a flood, the cluster admits exactly the limit.
func TestNoDecisionsBeforeJoin(t *testing.T) {
	seedPort := freePort(t)
	// 20 checks reach the owner at once when the join is done; on a busy
	// machine under -race the owner's first answers can take seconds, and
	// a failover would count on the late node.
	patient := func(c *ratemesh.Config) { c.ForwardTimeout = 10 * time.Second }
	late := clustertest.StartNode(t, "late", func(c *ratemesh.Config) {
		patient(c)
		c.Seeds = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(seedPort))}
	})
	if late.Ready() {
		t.Fatal("a node that has not joined its seeds is ready")
	}
	key := testkit.KeyOwnedBy(t, []string{"first", "late"}, "first")
	req := ratemesh.Request{Key: key, Counters: testkit.Counters(t, "r", "5 per minute"), Cost: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err := late.Check(ctx, req)
	cancel()
	if !errors.Is(err, ratemesh.ErrNotJoined) {
		t.Fatalf("check before the join: %v, want ErrNotJoined", err)
	}

	var allowed, decidedLate atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := late.Check(ctx, req)
			if err != nil {
				t.Errorf("waiting check: %v", err)
				return
			}
			if res.Allowed {
				allowed.Add(1)
			}
			if res.Node == "late" {
				decidedLate.Add(1)
			}
			if res.Fallback {
				t.Errorf("a waiting check was decided by the fail policy: %+v", res)
			}
		})
	}
	first := clustertest.StartNode(t, "first", func(c *ratemesh.Config) { patient(c); c.GossipPort = seedPort })
	for range 3 {
		if res, err := first.Check(context.Background(), req); err != nil || !res.Allowed {
			t.Fatalf("check on the owner: %+v %v", res, err)
		}
	}
	wg.Wait()
	if allowed.Load()+3 != 5 || decidedLate.Load() != 0 {
		t.Fatalf("%d allowed on the owner and %d of 20 through the late node (%d decided by it); want exactly 5 in all, none decided by it",
			3, allowed.Load(), decidedLate.Load())
	}
	testkit.Eventually(t, 5*time.Second, "the joined node to be ready", late.Ready)
}

// A node whose seeds never answer stays unready after its join timeout
// and refuses checks: it does not fall back to deciding alone.
func TestJoinTimeoutStaysUnready(t *testing.T) {
	n := clustertest.StartNode(t, "lonely", func(c *ratemesh.Config) {
		c.Seeds = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))}
		c.JoinTimeout = 200 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitJoined(ctx); err == nil || !errors.Is(err, ratemesh.ErrNotJoined) || errors.Is(err, context.Canceled) {
		t.Fatalf("WaitJoined = %v, want the join's failure wrapped in ErrNotJoined", err)
	}
	_, err := n.Check(context.Background(), ratemesh.Request{Key: "k", Counters: testkit.Counters(t, "r", "5 per minute"), Cost: 1})
	if !errors.Is(err, ratemesh.ErrNotJoined) || n.Ready() {
		t.Fatalf("after the join timeout: check %v, ready %v; want ErrNotJoined and not ready", err, n.Ready())
	}
}
