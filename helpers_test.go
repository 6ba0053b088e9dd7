package ratemesh_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/clustertest"
)

// The helpers below keep this package's tests' names for the shared
// scaffolding in internal/clustertest; see there for what each does.

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool, why ...*string) {
	t.Helper()
	clustertest.Eventually(t, within, what, cond, why...)
}

// startNode starts one node with the test preset (clustertest.Config).
func startNode(t testing.TB, name string, mod func(*ratemesh.Config)) *ratemesh.Node {
	t.Helper()
	return clustertest.StartNode(t, name, mod)
}

// startCluster starts size nodes n0, n1, … joined through the first and
// waits until every node's ring holds all of them.
func startCluster(t testing.TB, size int, mod func(*ratemesh.Config)) []*ratemesh.Node {
	t.Helper()
	return clustertest.Start(t, size, mod)
}

// waitConverged waits until every node sees exactly the given nodes alive
// and all agree on the owners of sample keys.
func waitConverged(t testing.TB, nodes []*ratemesh.Node) {
	t.Helper()
	clustertest.WaitConverged(t, nodes)
}

// ownersAgree reports whether all nodes name the same owner for keys
// sample keys.
func ownersAgree(nodes []*ratemesh.Node, keys int) bool {
	return clustertest.OwnersAgree(nodes, keys)
}

// counters makes one counter in scope per limit in limits.
func counters(t testing.TB, scope, limits string) []bucket.Counter {
	t.Helper()
	return clustertest.Counters(t, scope, limits)
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
