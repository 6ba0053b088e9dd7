//go:build linux

// The integration test runs what users run, the README's flow: the
// ratemesh-node binary, three processes on loopback ports, real gossip and
// RPC between them, real signals. Its harness, internal/proctest, is the
// one of the e2e package, where every other test of node processes lives;
// like it, the test is Linux-only.

package ratemesh_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/internal/proctest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

func TestIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	began := time.Now()
	bin, err := proctest.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built the node in %v", time.Since(began).Round(time.Millisecond))
	c := proctest.StartCluster(t, bin, 3)
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]

	// Each step leaves the cluster as the next expects it, so the first
	// failure ends the run. SIGTERM comes last: it needs three nodes for
	// "the others report two".
	steps := []struct {
		name string
		f    func(t *testing.T)
	}{
		{"LimitsHoldAcrossNodes", func(t *testing.T) { productsExact(t, c, "a", 50, c.Nodes) }},
		{"CheckAPIAgrees", func(t *testing.T) { checkAPIAgrees(t, c) }},
		{"KillUnderLoad", func(t *testing.T) { killUnderLoad(t, c, n3, []*proctest.Node{n1, n2}) }},
		{"RestartRejoins", func(t *testing.T) {
			c.Start(t, n3, n1.GossipAddr(), false)
			c.WaitMembers(t, 15*time.Second, time.Now(), c.Nodes)
			productsExact(t, c, "e", 30, c.Nodes)
		}},
		{"TermLeavesGracefully", func(t *testing.T) { termLeaves(t, c, n1, []*proctest.Node{n2, n3}) }},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.f) {
			return
		}
	}
	t.Logf("whole integration run: %v", time.Since(began).Round(time.Millisecond))
}

// productsExact sends n GET /products with one fresh API key, round-robin
// over nodes, one at a time: the demo's 5 per minute admits exactly the
// first five wherever they land, and every answer carries its headers.
func productsExact(t *testing.T, c *proctest.Cluster, tag string, n int, nodes []*proctest.Node) {
	key := "it-" + tag + "-" + c.RunID
	var allowed []int
	for i := 0; i < n; i++ {
		p := nodes[i%len(nodes)]
		r, err := c.Do(p, http.MethodGet, "/products", nil, "X-API-KEY", key)
		switch {
		case err != nil:
			t.Fatalf("request %d to %s: %v", i, p.Name, err)
		case r.Status == http.StatusOK:
			allowed = append(allowed, i)
			if got, want := r.Header.Get("X-RateLimit-Remaining"), strconv.Itoa(4-i); got != want {
				t.Errorf("request %d to %s: X-RateLimit-Remaining %q, want %q", i, p.Name, got, want)
			}
		case r.Status == http.StatusTooManyRequests:
			if r.Header.Get("Retry-After") == "" || !strings.Contains(string(r.Body), "5 per 1 minute") {
				t.Errorf("request %d to %s: 429 without Retry-After or limit: %v %s", i, p.Name, r.Header, r.Body)
			}
		default:
			t.Fatalf("request %d to %s: status %d: %s", i, p.Name, r.Status, r.Body)
		}
	}
	if !slices.Equal(allowed, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("key %s: requests %v of %d admitted, want exactly the first 5", key, allowed, n)
	}
}

// checkAPIAgrees spends a /v1/check quota from every node in turn: the
// remaining count falls by one per call whoever is asked, one owner decides
// them all, and every node names that owner.
func checkAPIAgrees(t *testing.T, c *proctest.Cluster) {
	key := "it-b-" + c.RunID
	check := func(p *proctest.Node, cost int) proctest.Answer { return c.Check(t, p, key, "7 per minute", cost) }
	owner := ""
	for i := 0; i < 10; i++ {
		p := c.Nodes[i%3]
		a := check(p, 1)
		wantRemaining := int64(max(0, 6-i))
		if a.Allowed != (i < 7) || a.Limits[0].Remaining != wantRemaining || (i >= 7) != (a.Limits[0].RetryAfter > 0) {
			t.Errorf("check %d on %s: %+v, want allowed %v with remaining %d", i, p.Name, a, i < 7, wantRemaining)
		}
		if owner == "" {
			owner = a.Node
		}
		if a.Node != owner {
			t.Errorf("check %d on %s decided by %s, earlier ones by %s", i, p.Name, a.Node, owner)
		}
	}
	for _, p := range c.Nodes {
		if a := check(p, 0); a.Limits[0].Remaining != 0 || a.Node != owner {
			t.Errorf("peek on %s: %+v, want remaining 0 decided by %s", p.Name, a, owner)
		}
		if o, err := c.Owner(p, nodeapi.CheckKeyPrefix+key); o != owner {
			t.Errorf("%s names %q (%v) the owner of %s; the checks were decided by %s", p.Name, o, err, key, owner)
		}
	}
}

// killUnderLoad SIGKILLs victim while clients hit the survivors with fresh
// keys (a third of them owned by the victim): every answer must be a 200,
// the survivors must drop the victim within memberlist's failure detection,
// and limits must be exact afterwards.
func killUnderLoad(t *testing.T, c *proctest.Cluster, victim *proctest.Node, survivors []*proctest.Node) {
	var (
		sent, bad atomic.Int64
		failures  = make(chan string, 10) // the first few, for the report
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := survivors[(g+i)%len(survivors)]
				r, err := c.Do(p, http.MethodGet, "/products", nil, "X-API-KEY", fmt.Sprintf("it-c-%s-%d-%d", c.RunID, g, i))
				sent.Add(1)
				if err == nil && r.Status == http.StatusOK {
					continue
				}
				bad.Add(1)
				select {
				case failures <- fmt.Sprintf("%s at %s: status %d, err %v, body %s", p.Name, time.Now().Format("15:04:05.000"), r.Status, err, r.Body):
				default:
				}
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	testkit.Eventually(t, 10*time.Second, "load", func() bool { return sent.Load() >= 40 })
	killedAt := time.Now()
	c.Signal(t, victim, syscall.SIGKILL, 5*time.Second)
	atKill := sent.Load()
	took := c.WaitMembers(t, 10*time.Second, killedAt, survivors)
	// Keep the load on a little past convergence, so that requests routed
	// by the new ring are checked too.
	converged := sent.Load()
	testkit.Eventually(t, 10*time.Second, "load after convergence", func() bool { return sent.Load() >= converged+40 })
	stopLoad()
	t.Logf("survivors dropped %s %v after SIGKILL; %d requests, %d after the kill", victim.Name, took.Round(time.Millisecond), sent.Load(), sent.Load()-atKill)
	if bad.Load() != 0 {
		close(failures)
		var first []string
		for f := range failures {
			first = append(first, f)
		}
		t.Fatalf("%d of %d requests to the survivors failed; first ones:\n%s", bad.Load(), sent.Load(), strings.Join(first, "\n"))
	}
	productsExact(t, c, "c", 30, survivors)
}

// termLeaves SIGTERMs leaver: it hands its counters off, leaves and exits
// 0, and the others learn it from its leave, not from failure detection:
// no survivor ever suspects it (failure detection suspects a member before
// it drops it), which holds however slow the machine. A key the leaver
// owned and that was spent stays spent.
func termLeaves(t *testing.T, c *proctest.Cluster, leaver *proctest.Node, rest []*proctest.Node) {
	key := ""
	for i := 0; key == ""; i++ {
		k := fmt.Sprintf("it-d-%s-%d", c.RunID, i)
		o, err := c.Owner(rest[0], "apikey:"+k)
		if err != nil || i == 1000 {
			t.Fatalf("no key owned by %s after %d tries: %v", leaver.Name, i, err)
		}
		if o == leaver.Name {
			key = k
		}
	}
	for i := 0; i < 5; i++ {
		if r, err := c.Do(rest[i%len(rest)], http.MethodGet, "/products", nil, "X-API-KEY", key); err != nil || r.Status != http.StatusOK {
			t.Fatalf("request %d of key %s: %v %d %s", i, key, err, r.Status, r.Body)
		}
	}
	sentAt := time.Now()
	c.Signal(t, leaver, syscall.SIGTERM, 0)
	var suspects []string
	testkit.Eventually(t, 30*time.Second, "the others drop "+leaver.Name, func() bool {
		gone := true
		for _, p := range rest {
			names, err := c.Members(p)
			gone = gone && err == nil
			for _, n := range names {
				if n == leaver.Name+"(suspect)" {
					suspects = append(suspects, p.Name)
				}
				if n == leaver.Name || strings.HasPrefix(n, leaver.Name+"(") {
					gone = false
				}
			}
		}
		return gone
	})
	c.WaitMembers(t, 10*time.Second, time.Now(), rest)
	took := time.Since(sentAt)
	if len(suspects) > 0 {
		t.Fatalf("%s suspected %s while it left: they dropped it by failure detection, not by its leave", strings.Join(suspects, ", "), leaver.Name)
	}
	c.WaitExit(t, leaver, 10*time.Second)
	if err := leaver.ExitErr(); err != nil {
		t.Fatalf("%s exited with %v after SIGTERM, want status 0", leaver.Name, err)
	}
	t.Logf("%s left: the others saw it %v after SIGTERM; it had exited 0 by %v", leaver.Name, took.Round(time.Millisecond), time.Since(sentAt).Round(time.Millisecond))
	for _, p := range rest {
		if r, err := c.Do(p, http.MethodGet, "/products", nil, "X-API-KEY", key); err != nil || r.Status != http.StatusTooManyRequests {
			t.Errorf("key %s, spent while %s owned it: %s answers %d %s (%v), want 429", key, leaver.Name, p.Name, r.Status, r.Body, err)
		}
	}
	productsExact(t, c, "d", 30, rest)
}
