package ratemesh_test

import (
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
