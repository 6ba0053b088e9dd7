package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// Real-socket tests of what only a real network shows: crashes. Nodes run
// real memberlist and the TCP transport on 127.0.0.1 with kernel-chosen
// ports. The fault hooks (kill, cutRPC) live here, in test files only.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*NetTransport).tcpListen"),
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*NetTransport).udpListen"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
	)
}

// realConfig is a node on 127.0.0.1 with local gossip timings whose fail
// policy decides on its own table (the root's FailLocal).
func realConfig(t testing.TB, name string) Config {
	t.Helper()
	store := bucket.NewStore(bucket.StoreConfig{})
	metrics, err := NewMetrics(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("RATEMESH_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return Config{
		Name: name, BindAddr: "127.0.0.1", LocalTimings: true, DeadNodeReclaimTime: time.Second,
		ForwardTimeout: time.Second, DialTimeout: time.Second, ProbeInterval: 250 * time.Millisecond,
		Store: store, Logger: log, Metrics: metrics, Clock: time.Now,
		Fallback: func(now time.Time, req *rpc.CheckRequest, resp *rpc.CheckResponse) error {
			var err error
			resp.Statuses, resp.Allowed, err = store.Check(now, req.Key, req.Counters, req.Cost, resp.Statuses[:0])
			return err
		},
		FallbackName: "local",
	}
}

// startReal starts a node from cfg and closes it when the test ends. In
// -short mode the test is skipped: real sockets and gossip take seconds
// per test, and the in-memory transport's tests cover the same logic in
// milliseconds; the full suite runs both.
func startReal(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	testkit.SkipInShort(t, "real sockets and gossip")
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

// startRealCluster starts size nodes n0, n1, … with forward timeout fwd,
// joined through n0, and waits until all see each other.
func startRealCluster(t testing.TB, size int, fwd time.Duration) []*Cluster {
	t.Helper()
	return startRealClusterWith(t, size, func(cfg *Config) { cfg.ForwardTimeout = fwd })
}

// startRealClusterWith is startRealCluster with each Config changed by mod.
func startRealClusterWith(t testing.TB, size int, mod func(*Config)) []*Cluster {
	t.Helper()
	nodes := make([]*Cluster, size)
	for i := range nodes {
		cfg := realConfig(t, fmt.Sprintf("n%d", i))
		mod(&cfg)
		nodes[i] = startReal(t, cfg)
		if i > 0 {
			join(t, nodes[i], nodes[0])
		}
	}
	waitRing(t, nodes)
	return nodes
}

func join(t testing.TB, c, via *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Join(ctx, via.GossipAddr()); err != nil {
		t.Fatal(err)
	}
}

// waitRing waits until every node's ring holds exactly nodes.
func waitRing(t testing.TB, nodes []*Cluster) {
	t.Helper()
	testkit.Eventually(t, 15*time.Second, fmt.Sprintf("%d nodes did not converge", len(nodes)), func() bool {
		for _, n := range nodes {
			r := n.Ring()
			if r.Len() != len(nodes) {
				return false
			}
			for _, m := range nodes {
				if !r.Has(m.Name()) {
					return false
				}
			}
		}
		return true
	})
}

// kill stops c as a crash would: no handoff, no leave message. Its ports
// close; peers learn of it only by failing to reach it.
func kill(c *Cluster) {
	c.leaving.Store(true)
	c.stopped.Store(true)
	c.cancel()
	if m, ok := c.gossip.(*membership); ok {
		m.ml.Shutdown()
	}
	c.transport.Close()
	c.peers.closeAll()
	c.wg.Wait()
}

// cutRPC closes c's RPC server while its gossip goes on: peers see it alive
// but cannot reach it, the case the fail policy is for.
func cutRPC(c *Cluster) { c.transport.Close() }

// checker makes a testkit client of c checking key against cs.
func checker(c *Cluster, key string, cs []bucket.Counter) testkit.CheckFunc {
	return func(ctx context.Context) (testkit.Outcome, error) {
		req := rpc.CheckRequest{Key: key, Counters: cs, Cost: 1}
		var resp rpc.CheckResponse
		fallback, err := c.Check(ctx, &req, &resp)
		return testkit.Outcome{Allowed: resp.Allowed, Fallback: fallback, Node: resp.Node}, err
	}
}
