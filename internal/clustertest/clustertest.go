// Package clustertest starts real ratemesh nodes for tests: each node
// listens on 127.0.0.1 with kernel-chosen ports, is closed when the test
// ends, and a cluster is joined through its first node and waited on until
// every node agrees on the members and on the owners of keys.
//
// Leak checks stay with each package's TestMain; this package keeps no
// state between calls.
package clustertest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// Config returns the preset of a test node named name: ratemesh.LocalConfig
// with a ForwardTimeout of one second and, when the environment variable
// RATEMESH_TEST_LOG holds a slog level (e.g. "debug"), a text logger to
// stderr at that level.
//
// On a loaded 2-core machine under -race a healthy peer can take tens of
// milliseconds to answer; tests of exact counts must not fail over
// spuriously. Failover tests set their own timeout.
func Config(name string) ratemesh.Config {
	cfg := ratemesh.LocalConfig()
	cfg.Name = name
	cfg.ForwardTimeout = time.Second
	if lv := os.Getenv("RATEMESH_TEST_LOG"); lv != "" {
		var level slog.Level
		level.UnmarshalText([]byte(lv))
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	return cfg
}

// StartNode starts one node from Config(name), changed by mod unless it is
// nil, and closes it when the test ends.
func StartNode(t testing.TB, name string, mod func(*ratemesh.Config)) *ratemesh.Node {
	t.Helper()
	cfg := Config(name)
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

// Start starts size nodes named n0, n1, … as StartNode does (mod sees each
// node's config after the name is set and may change it too), joins each to
// the first, and waits until they converge (see WaitConverged).
func Start(t testing.TB, size int, mod func(*ratemesh.Config)) []*ratemesh.Node {
	t.Helper()
	nodes := make([]*ratemesh.Node, size)
	for i := range nodes {
		nodes[i] = StartNode(t, fmt.Sprintf("n%d", i), mod)
		if i > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := nodes[i].Join(ctx, nodes[0].GossipAddr())
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	WaitConverged(t, nodes)
	return nodes
}

// StartNamed starts a cluster of size nodes as Start does, named after
// the test so that the logs of parallel tests tell them apart:
// "<test>-n0", "<test>-n1", … (subtest slashes become dashes).
func StartNamed(t testing.TB, size int) []*ratemesh.Node {
	t.Helper()
	prefix := strings.ReplaceAll(t.Name(), "/", "-")
	return Start(t, size, func(c *ratemesh.Config) {
		c.Name = prefix + "-" + c.Name
	})
}

// WaitConverged waits up to 15 seconds until every node sees exactly the
// given nodes alive and all agree on the owners of sample keys
// (OwnersAgree over 200 keys). On timeout it fails the test with what each
// node sees.
func WaitConverged(t testing.TB, nodes []*ratemesh.Node) {
	t.Helper()
	var why string
	testkit.Eventually(t, 15*time.Second, fmt.Sprintf("%d nodes did not converge", len(nodes)), func() bool {
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
		return OwnersAgree(nodes, 200)
	}, &why)
}

// OwnersAgree reports whether every node names an owner, and the same one,
// for each of the keys "key-0" … "key-<keys-1>".
func OwnersAgree(nodes []*ratemesh.Node, keys int) bool {
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

// LeakOptions are the goroutines goleak should not count as leaks in tests
// that run real nodes: memberlist's transport goroutines end shortly after
// Shutdown, and a probe in flight at Shutdown waits out its timeout.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*NetTransport).tcpListen"),
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*NetTransport).udpListen"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
	}
}
