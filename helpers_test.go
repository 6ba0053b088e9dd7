package ratemesh_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool, why ...*string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			for _, w := range why {
				what += ": " + *w
			}
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startNode starts one node with the local preset.
func startNode(t testing.TB, name string, mod func(*ratemesh.Config)) *ratemesh.Node {
	t.Helper()
	cfg := ratemesh.LocalConfig()
	cfg.Name = name
	// On a loaded 2-core machine under -race a healthy peer can take tens
	// of milliseconds to answer; tests of exact counts must not fail over
	// spuriously. Failover tests set their own timeout.
	cfg.ForwardTimeout = time.Second
	if lv := os.Getenv("RATEMESH_TEST_LOG"); lv != "" {
		var level slog.Level
		level.UnmarshalText([]byte(lv))
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := ratemesh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Close(ctx)
	})
	return n
}

// startCluster starts size nodes joined through the first and waits until
// every node's ring holds all of them.
func startCluster(t testing.TB, size int, mod func(*ratemesh.Config)) []*ratemesh.Node {
	t.Helper()
	nodes := make([]*ratemesh.Node, size)
	for i := range nodes {
		nodes[i] = startNode(t, fmt.Sprintf("n%d", i), mod)
		if i > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := nodes[i].Join(ctx, nodes[0].GossipAddr())
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	waitConverged(t, nodes)
	return nodes
}

// waitConverged waits until every node sees exactly the given nodes alive
// and all agree on the owners of sample keys.
func waitConverged(t testing.TB, nodes []*ratemesh.Node) {
	t.Helper()
	var why string
	eventually(t, 15*time.Second, fmt.Sprintf("%d nodes did not converge", len(nodes)), func() bool {
		for _, n := range nodes {
			alive := 0
			for _, m := range n.Members() {
				if m.State == "alive" {
					alive++
				}
			}
			if alive != len(nodes) {
				why = ""
				for _, n := range nodes {
					why += fmt.Sprintf("\n%s (%s) sees %+v", n.Name(), n.GossipAddr(), n.Members())
				}
				return false
			}
		}
		why = "owners differ"
		return ownersAgree(nodes, 200)
	}, &why)
}

func ownersAgree(nodes []*ratemesh.Node, keys int) bool {
	for k := 0; k < keys; k++ {
		key := fmt.Sprintf("key-%d", k)
		first, ok := nodes[0].Owner(key)
		if !ok {
			return false
		}
		for _, n := range nodes[1:] {
			if o, ok := n.Owner(key); !ok || o.Name != first.Name {
				return false
			}
		}
	}
	return true
}

func counters(t testing.TB, scope, limits string) []bucket.Counter {
	t.Helper()
	ls, err := bucket.Parse(limits)
	if err != nil {
		t.Fatal(err)
	}
	cs := make([]bucket.Counter, len(ls))
	for i, l := range ls {
		cs[i] = bucket.Counter{Scope: scope, Limit: l}
	}
	return cs
}
