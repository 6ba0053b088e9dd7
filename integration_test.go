//go:build linux

// The integration test runs what users run: the ratemesh-node binary, three
// processes on loopback ports, real gossip and RPC between them, real
// signals. It is Linux-only because the children are tied to the test
// process with a parent-death signal: even a test binary killed by -timeout
// leaves no node behind holding its ports.

package ratemesh_test

import (
	"encoding/json"
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
)

func TestIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	began := time.Now()
	bin := buildNodeBinary(t)
	t.Logf("built the node in %v", time.Since(began).Round(time.Millisecond))
	c := startProcCluster(t, bin, 3)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]

	// Each step leaves the cluster as the next expects it, so the first
	// failure ends the run. SIGTERM comes last: it needs three nodes for
	// "the others report two".
	steps := []struct {
		name string
		f    func(t *testing.T)
	}{
		{"LimitsHoldAcrossNodes", func(t *testing.T) { productsExact(t, c, "a", 50, c.nodes) }},
		{"CheckAPIAgrees", func(t *testing.T) { checkAPIAgrees(t, c) }},
		{"KillUnderLoad", func(t *testing.T) { killUnderLoad(t, c, n3, []*nodeProc{n1, n2}) }},
		{"RestartRejoins", func(t *testing.T) {
			c.start(t, n3, n1.gossipAddr(), false)
			c.waitMembers(t, 15*time.Second, time.Now(), c.nodes)
			productsExact(t, c, "e", 30, c.nodes)
		}},
		{"TermLeavesGracefully", func(t *testing.T) { termLeaves(t, c, n1, []*nodeProc{n2, n3}) }},
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
func productsExact(t *testing.T, c *procCluster, tag string, n int, nodes []*nodeProc) {
	key := "it-" + tag + "-" + c.runID
	var allowed []int
	for i := 0; i < n; i++ {
		p := nodes[i%len(nodes)]
		r, err := c.do(p, http.MethodGet, "/products", nil, "X-API-KEY", key)
		switch {
		case err != nil:
			t.Fatalf("request %d to %s: %v", i, p.name, err)
		case r.status == http.StatusOK:
			allowed = append(allowed, i)
			if got, want := r.header.Get("X-RateLimit-Remaining"), strconv.Itoa(4-i); got != want {
				t.Errorf("request %d to %s: X-RateLimit-Remaining %q, want %q", i, p.name, got, want)
			}
		case r.status == http.StatusTooManyRequests:
			if r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "5 per 1 minute") {
				t.Errorf("request %d to %s: 429 without Retry-After or limit: %v %s", i, p.name, r.header, r.body)
			}
		default:
			t.Fatalf("request %d to %s: status %d: %s", i, p.name, r.status, r.body)
		}
	}
	if !slices.Equal(allowed, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("key %s: requests %v of %d admitted, want exactly the first 5", key, allowed, n)
	}
}

// apiAnswer is what the tests read of a /v1/check answer.
type apiAnswer struct {
	Allowed bool
	Limits  []struct {
		Remaining  int64
		RetryAfter int64 `json:"retry_after"`
	}
	Node     string
	Fallback bool
}

// apiCheck sends one /v1/check of key against limits (one limit) to p; it
// fails the test unless the owner (no fallback) answers 200.
func (c *procCluster) apiCheck(t *testing.T, p *nodeProc, key, limits string, cost int) apiAnswer {
	t.Helper()
	a := c.apiCheckAny(t, p, key, limits, cost)
	if a.Fallback {
		t.Fatalf("/v1/check on %s: decided by the fail policy: %+v", p.name, a)
	}
	return a
}

// apiCheckAny is apiCheck that accepts a decision of the fail policy.
func (c *procCluster) apiCheckAny(t *testing.T, p *nodeProc, key, limits string, cost int) apiAnswer {
	t.Helper()
	body := fmt.Sprintf(`{"key":%q,"limits":%q,"cost":%d}`, key, limits, cost)
	r, err := c.do(p, http.MethodPost, "/v1/check", strings.NewReader(body), "Content-Type", "application/json")
	var a apiAnswer
	if err != nil || r.status != http.StatusOK || json.Unmarshal(r.body, &a) != nil || len(a.Limits) != 1 {
		t.Fatalf("/v1/check on %s: %v %d %s", p.name, err, r.status, r.body)
	}
	return a
}

// checkAPIAgrees spends a /v1/check quota from every node in turn: the
// remaining count falls by one per call whoever is asked, one owner decides
// them all, and every node names that owner.
func checkAPIAgrees(t *testing.T, c *procCluster) {
	key := "it-b-" + c.runID
	check := func(p *nodeProc, cost int) apiAnswer { return c.apiCheck(t, p, key, "7 per minute", cost) }
	owner := ""
	for i := 0; i < 10; i++ {
		p := c.nodes[i%3]
		a := check(p, 1)
		wantRemaining := int64(max(0, 6-i))
		if a.Allowed != (i < 7) || a.Limits[0].Remaining != wantRemaining || (i >= 7) != (a.Limits[0].RetryAfter > 0) {
			t.Errorf("check %d on %s: %+v, want allowed %v with remaining %d", i, p.name, a, i < 7, wantRemaining)
		}
		if owner == "" {
			owner = a.Node
		}
		if a.Node != owner {
			t.Errorf("check %d on %s decided by %s, earlier ones by %s", i, p.name, a.Node, owner)
		}
	}
	for _, p := range c.nodes {
		if a := check(p, 0); a.Limits[0].Remaining != 0 || a.Node != owner {
			t.Errorf("peek on %s: %+v, want remaining 0 decided by %s", p.name, a, owner)
		}
		if o, err := c.owner(p, nodeapi.CheckKeyPrefix+key); o != owner {
			t.Errorf("%s names %q (%v) the owner of %s; the checks were decided by %s", p.name, o, err, key, owner)
		}
	}
}

// killUnderLoad SIGKILLs victim while clients hit the survivors with fresh
// keys (a third of them owned by the victim): every answer must be a 200,
// the survivors must drop the victim within memberlist's failure detection,
// and limits must be exact afterwards.
func killUnderLoad(t *testing.T, c *procCluster, victim *nodeProc, survivors []*nodeProc) {
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
				r, err := c.do(p, http.MethodGet, "/products", nil, "X-API-KEY", fmt.Sprintf("it-c-%s-%d-%d", c.runID, g, i))
				sent.Add(1)
				if err == nil && r.status == http.StatusOK {
					continue
				}
				bad.Add(1)
				select {
				case failures <- fmt.Sprintf("%s at %s: status %d, err %v, body %s", p.name, time.Now().Format("15:04:05.000"), r.status, err, r.body):
				default:
				}
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	waitUntil(t, 10*time.Second, "load", func() bool { return sent.Load() >= 40 })
	killedAt := time.Now()
	c.signal(t, victim, syscall.SIGKILL, 5*time.Second)
	atKill := sent.Load()
	took := c.waitMembers(t, 10*time.Second, killedAt, survivors)
	// Keep the load on a little past convergence, so that requests routed
	// by the new ring are checked too.
	converged := sent.Load()
	waitUntil(t, 10*time.Second, "load after convergence", func() bool { return sent.Load() >= converged+40 })
	stopLoad()
	t.Logf("survivors dropped %s %v after SIGKILL; %d requests, %d after the kill", victim.name, took.Round(time.Millisecond), sent.Load(), sent.Load()-atKill)
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
// 0, and the others see it gone within 2 s, not after failure detection. A
// key the leaver owned and that was spent stays spent.
func termLeaves(t *testing.T, c *procCluster, leaver *nodeProc, rest []*nodeProc) {
	key := ""
	for i := 0; key == ""; i++ {
		k := fmt.Sprintf("it-d-%s-%d", c.runID, i)
		o, err := c.owner(rest[0], "apikey:"+k)
		if err != nil || i == 1000 {
			t.Fatalf("no key owned by %s after %d tries: %v", leaver.name, i, err)
		}
		if o == leaver.name {
			key = k
		}
	}
	for i := 0; i < 5; i++ {
		if r, err := c.do(rest[i%len(rest)], http.MethodGet, "/products", nil, "X-API-KEY", key); err != nil || r.status != http.StatusOK {
			t.Fatalf("request %d of key %s: %v %d %s", i, key, err, r.status, r.body)
		}
	}
	sentAt := time.Now()
	c.signal(t, leaver, syscall.SIGTERM, 0)
	took := c.waitMembers(t, 2*time.Second, sentAt, rest)
	c.waitExit(t, leaver, 10*time.Second)
	if err := leaver.run.err; err != nil {
		t.Fatalf("%s exited with %v after SIGTERM, want status 0", leaver.name, err)
	}
	t.Logf("%s left: the others saw it %v after SIGTERM; it had exited 0 by %v", leaver.name, took.Round(time.Millisecond), time.Since(sentAt).Round(time.Millisecond))
	for _, p := range rest {
		if r, err := c.do(p, http.MethodGet, "/products", nil, "X-API-KEY", key); err != nil || r.status != http.StatusTooManyRequests {
			t.Errorf("key %s, spent while %s owned it: %s answers %d %s (%v), want 429", key, leaver.name, p.name, r.status, r.body, err)
		}
	}
	productsExact(t, c, "d", 30, rest)
}

// waitUntil polls cond until it holds, failing the test after within.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
