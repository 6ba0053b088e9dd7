package ratemesh_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// loadClients makes one testkit load client per node, each checking key
// against cs; a client stops when its node has left.
func loadClients(nodes []*ratemesh.Node, key string, cs []bucket.Counter) []testkit.CheckFunc {
	clients := make([]testkit.CheckFunc, len(nodes))
	for i, n := range nodes {
		req := ratemesh.Request{Key: key, Counters: cs, Cost: 1}
		clients[i] = func(ctx context.Context) (testkit.Outcome, error) {
			res, err := n.Check(ctx, req)
			if errors.Is(err, ratemesh.ErrClosed) {
				return testkit.Outcome{}, testkit.ErrGone
			}
			return testkit.Outcome{Allowed: res.Allowed, Fallback: res.Fallback, Node: res.Node}, err
		}
	}
	return clients
}

// flooded is what flood saw: admissions, errors (the first kept) and
// answers decided by the fail policy.
type flooded struct {
	allowed, errors, fallbacks atomic.Int64
	mu                         sync.Mutex
	first                      error
}

// flood makes checks concurrent checks of req from workers goroutines,
// check i on nodes[i%len(nodes)].
func flood(nodes []*ratemesh.Node, req ratemesh.Request, checks, workers int) *flooded {
	f := &flooded{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < checks; i += workers {
				res, err := nodes[i%len(nodes)].Check(context.Background(), req)
				switch {
				case err != nil:
					if f.errors.Add(1) == 1 {
						f.mu.Lock()
						f.first = err
						f.mu.Unlock()
					}
				case res.Allowed:
					f.allowed.Add(1)
				}
				if err == nil && res.Fallback {
					f.fallbacks.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	return f
}

// forwardedKey returns a key that node from does not own.
func forwardedKey(t testing.TB, from *ratemesh.Node) string {
	for i := 0; ; i++ {
		key := fmt.Sprintf("ip:10.0.%d.%d", i/256, i%256)
		if o, _ := from.Owner(key); o.Name != from.Name() {
			return key
		}
	}
}

// logMoves logs, for each node, the metrics of counts that moved between
// nodes (leases, handoffs, replicas), to tell a lost or doubled hit's path.
func logMoves(t *testing.T, nodes []*ratemesh.Node) {
	t.Helper()
	for _, n := range nodes {
		reg := n.Registry()
		if reg == nil {
			continue
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Logf("%s: %v", n.Name(), err)
			continue
		}
		var parts []string
		for _, mf := range mfs {
			switch mf.GetName() {
			case "ratemesh_leases_total", "ratemesh_handoff_keys_total", "ratemesh_replica_keys_total", "ratemesh_rpc_errors_total":
			default:
				continue
			}
			for _, m := range mf.GetMetric() {
				var labels []string
				for _, lp := range m.GetLabel() {
					labels = append(labels, lp.GetValue())
				}
				parts = append(parts, fmt.Sprintf("%s{%s}=%v", strings.TrimPrefix(mf.GetName(), "ratemesh_"), strings.Join(labels, ","), m.GetCounter().GetValue()))
			}
		}
		t.Logf("%s: %s", n.Name(), strings.Join(parts, " "))
	}
}
