package ratemesh_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

func closeNode(t *testing.T, n *ratemesh.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("close %s: %v", n.Name(), err)
	}
}

func TestGracefulLeaveOfOwnerKeepsCount(t *testing.T) {
	testkit.SkipInShort(t, "several real nodes for a second or more")
	nodes := clustertest.Start(t, 3, nil)
	key := testkit.KeyOwnedBy(t, []string{"n0", "n1", "n2"}, "n1")
	l := testkit.StartLoad(t, loadClients(nodes, key, testkit.Counters(t, "r", "1000 per minute")))
	l.WaitAllowed(t, 500)
	closeNode(t, nodes[1])
	rest := []*ratemesh.Node{nodes[0], nodes[2]}
	clustertest.WaitConverged(t, rest)
	l.WaitChecks(t, 2000)
	l.Report(t)
	if l.Errs.Load() != 0 {
		t.Errorf("%d checks returned an error", l.Errs.Load())
	}
	// Exactly: the leaver answers every check it read before it closes,
	// and leases' slices go back to the count wherever it went.
	if got := l.Allowed.Load(); got != 1000 {
		t.Errorf("admitted %d in the window; want exactly 1000", got)
		logMoves(t, nodes)
	}
}

func TestJoinOfNewOwnerKeepsCount(t *testing.T) {
	testkit.SkipInShort(t, "several real nodes for a second or more")
	nodes := clustertest.Start(t, 3, nil)
	// A key the 4th node will own once it joins.
	key := testkit.KeyOwnedBy(t, []string{"n0", "n1", "n2", "n3"}, "n3")
	l := testkit.StartLoad(t, loadClients(nodes, key, testkit.Counters(t, "r", "1000 per minute")))
	l.WaitAllowed(t, 500)
	fourth := clustertest.StartNode(t, "n3", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := fourth.Join(ctx, nodes[0].GossipAddr()); err != nil {
		t.Fatal(err)
	}
	clustertest.WaitConverged(t, append(nodes[:3:3], fourth))
	l.WaitChecks(t, 2000)
	l.Report(t)
	if l.Errs.Load() != 0 {
		t.Errorf("%d checks returned an error", l.Errs.Load())
	}
	// Exactly: a slice of the key's quota given back while the key moves
	// to its new owner lands on the count wherever it is.
	if got := l.Allowed.Load(); got != 1000 {
		t.Errorf("admitted %d in the window; want exactly 1000", got)
		logMoves(t, append(nodes[:3:3], fourth))
	}
	if o, _ := nodes[0].Owner(key); o.Name != "n3" {
		t.Errorf("owner after join: %s, want n3", o.Name)
	}
}

func TestHandoffUnderChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("churn test skipped in -short mode")
	}
	nodes := clustertest.Start(t, 3, nil)
	cs := testkit.Counters(t, "r", "100 per minute")
	const keys = 10000
	model := make([]int64, keys)
	ctx := context.Background()
	parallel(t, keys, func(k int) error {
		model[k] = int64(k%3 + 1)
		for i := int64(0); i < model[k]; i++ {
			res, err := nodes[k%3].Check(ctx, ratemesh.Request{Key: "user:" + strconv.Itoa(k), Counters: cs, Cost: 1})
			if err != nil || !res.Allowed {
				return fmt.Errorf("key %d: %+v %v", k, res, err)
			}
		}
		return nil
	})
	live := append([]*ratemesh.Node(nil), nodes...)
	// countsExact peeks (cost 0) at every key: 100 - count must remain.
	countsExact := func(stage string) {
		t.Helper()
		testkit.Eventually(t, 20*time.Second, stage+": counts did not settle", func() bool {
			var bad atomic.Int64
			var example atomic.Value
			parallel(t, keys, func(k int) error {
				res, err := live[k%len(live)].Check(ctx, ratemesh.Request{Key: "user:" + strconv.Itoa(k), Counters: cs})
				if err != nil || res.Statuses[0].Remaining != 100-model[k] {
					if bad.Add(1) == 1 {
						example.Store(fmt.Sprintf("user:%d: want remaining %d, got %+v %v", k, 100-model[k], res, err))
					}
				}
				return nil
			})
			if bad.Load() > 0 {
				t.Logf("%s: %d of %d keys differ from the model, e.g. %v", stage, bad.Load(), keys, example.Load())
			}
			return bad.Load() == 0
		})
	}
	next := 3
	for round := 0; round < 5; round++ {
		joiner := clustertest.StartNode(t, "n"+strconv.Itoa(next), nil)
		next++
		jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := joiner.Join(jctx, live[0].GossipAddr()); err != nil {
			t.Fatal(err)
		}
		cancel()
		live = append(live, joiner)
		clustertest.WaitConverged(t, live)
		// Leave at once, while the join's handoff may still be running.
		i := round % len(live)
		leaver := live[i]
		closeNode(t, leaver)
		live = append(live[:i:i], live[i+1:]...)
		clustertest.WaitConverged(t, live)
		countsExact(fmt.Sprintf("round %d, %s left", round, leaver.Name()))
	}
}

// parallel runs f for 0..n-1 on a few goroutines and fails on the first error.
func parallel(t *testing.T, n int, f func(int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for k := w; k < n; k += 8 {
				if err := f(k); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}
