package ratemesh_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// withDataDirs gives each node of a test cluster its own data dir in base.
func withDataDirs(base string) func(*ratemesh.Config) {
	return func(c *ratemesh.Config) {
		c.DataDir = filepath.Join(base, c.Name)
		c.SnapshotInterval = time.Hour // only Close writes: the test decides when
	}
}

// remaining peeks at a key's count: a check of cost 0 spends nothing.
func remaining(t *testing.T, n *ratemesh.Node, req ratemesh.Request) int64 {
	t.Helper()
	req.Cost = 0
	res, err := n.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return res.Statuses[0].Remaining
}

// A whole cluster stopped and started again with data dirs keeps its
// counts: 3 of 5 spent on each of 20 keys before, exactly 2 more after.
func TestFullRestartKeepsCounts(t *testing.T) {
	testkit.SkipInShort(t, "several real nodes for a second or more")
	base := t.TempDir()
	cs := testkit.Counters(t, "r", "5 per hour")
	reqs := make([]ratemesh.Request, 20)
	for i := range reqs {
		reqs[i] = ratemesh.Request{Key: fmt.Sprintf("user:%d", i), Counters: cs, Cost: 1}
	}
	first := clustertest.Start(t, 3, withDataDirs(base))
	for i, req := range reqs {
		for range 3 {
			if res, err := first[i%3].Check(context.Background(), req); err != nil || !res.Allowed {
				t.Fatalf("before the restart: %+v %v", res, err)
			}
		}
	}
	for _, n := range first {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := n.Close(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}

	again := clustertest.Start(t, 3, withDataDirs(base))
	testkit.Eventually(t, 15*time.Second, "every key's 3 hits back on its owner", func() bool {
		for i, req := range reqs {
			if remaining(t, again[i%3], req) != 2 {
				return false
			}
		}
		return true
	})
	allowed := 0
	for i, req := range reqs {
		for range 5 {
			res, err := again[(i+1)%3].Check(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Allowed {
				allowed++
			}
		}
	}
	if allowed != 2*len(reqs) {
		t.Fatalf("after the restart: %d of %d allowed, want exactly %d", allowed, 5*len(reqs), 2*len(reqs))
	}
}

// A corrupt data file is ignored whole (the node starts empty and says
// why); a data dir that cannot be written is refused at New.
func TestBadDataDir(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "n0")
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "counters.rmc"), []byte("ratemesh counters\n\x00\x01garbage"), 0o600)
	n := clustertest.StartNode(t, "n0", withDataDirs(base))
	req := ratemesh.Request{Key: "k", Counters: testkit.Counters(t, "r", "5 per hour"), Cost: 1}
	if got := remaining(t, n, req); got != 5 {
		t.Fatalf("after a corrupt file: remaining %d, want 5", got)
	}
	file := filepath.Join(base, "a-file")
	os.WriteFile(file, nil, 0o600)
	cfg := clustertest.Config("n1")
	cfg.DataDir = filepath.Join(file, "sub")
	if _, err := ratemesh.New(cfg); err == nil || !strings.Contains(err.Error(), "data dir") {
		t.Fatalf("New with a data dir under a file: %v, want an error naming the data dir", err)
	}
}
