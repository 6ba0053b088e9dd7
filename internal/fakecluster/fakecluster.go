// Package fakecluster is a one-node stand-in for a ratemesh cluster in
// unit tests of the HTTP middleware and the node's HTTP API: checks are
// decided by a local bucket.Store, at once and in the test's goroutine,
// with no gossip, RPC or goroutines to start or wait for. Tests of what
// only a real cluster shows (forwarding, membership, metrics of real
// nodes) start real nodes with internal/clustertest instead.
package fakecluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
)

// Node is a fake node: it owns every key and decides every check itself.
// It satisfies httpapi.Cluster and the node interface of the node's HTTP
// API. Safe for concurrent use; the zero value is not usable, use New.
type Node struct {
	name  string
	store *bucket.Store

	mu       sync.Mutex
	now      func() time.Time
	fail     ratemesh.FailPolicy
	checkErr error
	notReady bool
	checks   int
}

// New returns a ready node named name, deciding on the wall clock under
// the fail policy ratemesh.FailLocal.
func New(name string) *Node {
	return &Node{name: name, store: bucket.NewStore(bucket.StoreConfig{}), now: time.Now}
}

// SetClock makes now the clock checks are decided at.
func (n *Node) SetClock(now func() time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.now = now
}

// SetFailPolicy sets what FailPolicy reports.
func (n *Node) SetFailPolicy(p ratemesh.FailPolicy) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fail = p
}

// FailChecks makes every later Check fail with err; nil decides again.
func (n *Node) FailChecks(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.checkErr = err
}

// SetReady sets what Ready reports.
func (n *Node) SetReady(ready bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.notReady = !ready
}

// Checks is how many checks the node was asked, failed ones included.
func (n *Node) Checks() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.checks
}

// Check decides req in the node's store, validating it as
// ratemesh.Node.Check does.
func (n *Node) Check(ctx context.Context, req ratemesh.Request) (ratemesh.Result, error) {
	n.mu.Lock()
	n.checks++
	now, err := n.now, n.checkErr
	n.mu.Unlock()
	switch {
	case err != nil:
		return ratemesh.Result{}, err
	case ctx.Err() != nil:
		return ratemesh.Result{}, ctx.Err()
	case req.Key == "":
		return ratemesh.Result{}, errors.New("fakecluster: Request.Key is empty")
	case req.Cost < 0:
		return ratemesh.Result{}, fmt.Errorf("fakecluster: Request.Cost is %d, want >= 0", req.Cost)
	}
	sts, ok, err := n.store.Check(now(), req.Key, req.Counters, req.Cost, req.StatusBuf[:0])
	if err != nil {
		return ratemesh.Result{}, err
	}
	return ratemesh.Result{Allowed: ok, Statuses: sts, Node: n.name}, nil
}

// FailPolicy is the fail policy SetFailPolicy set.
func (n *Node) FailPolicy() ratemesh.FailPolicy {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fail
}

// Reset forgets every counter of key.
func (n *Node) Reset(_ context.Context, key string) error {
	n.store.Reset(key)
	return nil
}

// Members is the node alone, alive.
func (n *Node) Members() []ratemesh.Member {
	return []ratemesh.Member{n.self()}
}

// Owner is the node itself, for any key.
func (n *Node) Owner(string) (ratemesh.Member, bool) { return n.self(), true }

// Name is the name New was given.
func (n *Node) Name() string { return n.name }

// Ready is true unless SetReady(false) was called.
func (n *Node) Ready() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.notReady
}

// self is the node as a member.
func (n *Node) self() ratemesh.Member {
	return ratemesh.Member{Name: n.name, RPCAddr: "fake:" + n.name, State: ratemesh.StateAlive, Self: true}
}
