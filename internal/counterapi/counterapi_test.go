package counterapi_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
)

// TestOperations runs each operation on a key through each of 3 nodes:
// every answer is the owner's, whichever node was asked.
func TestOperations(t *testing.T) {
	nodes := clustertest.StartNamed(t, 3)
	c := client(t)
	s := make([]served, len(nodes))
	for i, n := range nodes {
		s[i] = serve(t, n)
	}
	owner, _ := nodes[0].Owner("counter|k")

	t.Run("incr", func(t *testing.T) {
		before := float64(time.Now().UnixNano()) / 1e9
		first := must(t, c, s[0], "incr", obj{"key": "k", "expiry": 60})
		if first.Count != 1 || first.Node != owner.Name || *first.Expiry < before+60 || *first.Expiry > float64(time.Now().UnixNano())/1e9+60 {
			t.Fatalf("first incr: %+v expiring %v; want count 1 by %s expiring 60 s after it", first, *first.Expiry, owner.Name)
		}
		for i, want := range []int64{3, 6} {
			got := must(t, c, s[i+1], "incr", obj{"key": "k", "expiry": 60, "amount": i + 2})
			if got.Count != want || *got.Expiry != *first.Expiry {
				t.Fatalf("incr of %d on %s: count %d expiring %v; want %d expiring %v", i+2, nodes[i+1].Name(), got.Count, *got.Expiry, want, *first.Expiry)
			}
		}
		for i := range s {
			if got := must(t, c, s[i], "get", obj{"key": "k"}); got.Count != 6 || *got.Expiry != *first.Expiry {
				t.Fatalf("get on %s: %+v; want count 6 expiring %v", nodes[i].Name(), got, *first.Expiry)
			}
		}
	})
	t.Run("elastic", func(t *testing.T) {
		last := 0.0
		for i := range 3 {
			before := float64(time.Now().UnixNano()) / 1e9
			got := must(t, c, s[i], "incr", obj{"key": "e", "expiry": 30, "elastic": true})
			if got.Count != int64(i+1) || *got.Expiry < before+30 || *got.Expiry <= last {
				t.Fatalf("elastic incr %d: count %d expiring %v; want %d expiring after %v and 30 s after the hit", i+1, got.Count, *got.Expiry, i+1, last)
			}
			last = *got.Expiry
		}
	})
	t.Run("clear", func(t *testing.T) {
		must(t, c, s[2], "clear", obj{"key": "k"})
		for i := range s {
			if got := must(t, c, s[i], "get", obj{"key": "k"}); got.Count != 0 {
				t.Fatalf("get on %s after clear: count %d, want 0", nodes[i].Name(), got.Count)
			}
		}
		if got := must(t, c, s[0], "incr", obj{"key": "k", "expiry": 60}); got.Count != 1 {
			t.Fatalf("incr after clear: count %d, want 1", got.Count)
		}
	})
	t.Run("moving window", func(t *testing.T) {
		acquired := 0
		for i := range 8 {
			got := must(t, c, s[i%3], "acquire", obj{"key": "m", "limit": 5, "expiry": 60})
			if *got.Acquired {
				acquired++
			}
		}
		w := must(t, c, s[1], "window", obj{"key": "m", "limit": 5, "expiry": 60})
		now := float64(time.Now().UnixNano()) / 1e9
		if acquired != 5 || w.Count != 5 || *w.Start > now || *w.Start < now-10 {
			t.Fatalf("8 acquires at 5 per 60 s: %d acquired, window %+v (start %v); want exactly 5, count 5, started within 10 s", acquired, w, *w.Start)
		}
		if got := must(t, c, s[2], "acquire", obj{"key": "m2", "limit": 5, "expiry": 60, "amount": 6}); *got.Acquired || got.Count != 0 {
			t.Fatalf("acquire of 6 at a limit of 5: %+v; want refused, count 0", got)
		}
		must(t, c, s[0], "clear", obj{"key": "m"})
		if w := must(t, c, s[2], "window", obj{"key": "m", "limit": 5, "expiry": 60}); w.Count != 0 {
			t.Fatalf("window after clear: count %d, want 0", w.Count)
		}
	})
}

// keys are the keys of the membership tests: enough that some are owned
// by each node, and move when one joins or leaves.
func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("key-%d", i)
	}
	return out
}

// step increments every key once and acquires one entry of its moving
// window (limit 10), through node s[i%len(s)] for key i, and counts what
// the window admitted.
func step(t *testing.T, c *http.Client, s []served, ks []string, admitted map[string]int) {
	t.Helper()
	for i, k := range ks {
		must(t, c, s[i%len(s)], "incr", obj{"key": k, "expiry": 600})
		if got := must(t, c, s[(i+1)%len(s)], "acquire", obj{"key": k, "limit": 10, "expiry": 600}); *got.Acquired {
			admitted[k]++
		}
	}
}

// verify checks that every key counts exactly rounds increments and its
// window exactly min(rounds, 10) entries, all of them admitted once.
func verify(t *testing.T, c *http.Client, s []served, ks []string, rounds int, admitted map[string]int) {
	t.Helper()
	for i, k := range ks {
		got := must(t, c, s[i%len(s)], "get", obj{"key": k})
		w := must(t, c, s[(i+2)%len(s)], "window", obj{"key": k, "limit": 10, "expiry": 600})
		if got.Count != int64(rounds) || w.Count != int64(min(rounds, 10)) || admitted[k] != min(rounds, 10) {
			t.Errorf("%s after %d rounds: count %d, window %d, %d admitted; want %d, %d, %d",
				k, rounds, got.Count, w.Count, admitted[k], rounds, min(rounds, 10), min(rounds, 10))
		}
	}
}

// TestThroughJoinAndLeave: counts and windows stay exact while a third node
// joins (taking some keys from the two) and one leaves (handing its keys
// off), with replicas on.
func TestThroughJoinAndLeave(t *testing.T) {
	nodes := clustertest.StartNamed(t, 2)
	c := client(t)
	s := []served{serve(t, nodes[0]), serve(t, nodes[1])}
	ks := keys(30)
	admitted := map[string]int{}
	for range 6 {
		step(t, c, s, ks, admitted)
	}
	verify(t, c, s, ks, 6, admitted)

	third := clustertest.StartNode(t, t.Name()+"-n2", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := third.Join(ctx, nodes[0].GossipAddr()); err != nil {
		t.Fatal(err)
	}
	all := append(nodes, third)
	clustertest.WaitConverged(t, all)
	moved := 0
	for _, k := range ks {
		if o, _ := third.Owner("counter|" + k); o.Name == third.Name() {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("the joining node owns none of the keys: the test would prove nothing")
	}
	s = append(s, serve(t, third))
	for range 6 {
		step(t, c, s, ks, admitted)
	}
	verify(t, c, s, ks, 12, admitted)

	// nodes[0] leaves: its keys go to the others.
	if err := nodes[0].Close(ctx); err != nil {
		t.Fatal(err)
	}
	rest := []*ratemesh.Node{nodes[1], third}
	clustertest.WaitConverged(t, rest)
	s = s[1:]
	for range 3 {
		step(t, c, s, ks, admitted)
	}
	verify(t, c, s, ks, 15, admitted)
	t.Logf("%d of %d keys moved to the joining node", moved, len(ks))
}
