//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ratemesh/ratemesh/internal/proctest"
)

// A key far from its limit flooded through three node processes: with
// leases (the default) at least 95 % of the checks are decided without an
// RPC, counted from every node's ratemesh_checks_total; the CPU time each
// process spent per check is reported, the owner's beside the others'.
// And a key of the same flood at 100 per minute admits exactly 100.
func TestHotAllowedKeyProcesses(t *testing.T) {
	c := proctest.StartCluster(t, nodeBinary(t), 3)
	owner := c.Nodes[2]
	hot := c.KeyOwnedBy(t, "hot", owner)
	before := cpuTimes(t, c)
	allowed, checks := floodKey(t, c, hot, "100000000 per minute", 6000)
	after := cpuTimes(t, c)
	if allowed != checks {
		t.Fatalf("%d of %d admitted far below the limit", allowed, checks)
	}
	var without, with float64
	for _, p := range c.Nodes {
		m := checkMetrics(t, c, p)
		without += m["local"] + m["leased"] + m["deny_cached"]
		with += m["forwarded"]
		t.Logf("%s: checks %v; CPU %.0f µs a check", p.Name, m, 1e6*(after[p.Name]-before[p.Name])/float64(checks))
	}
	share := without / (without + with)
	t.Logf("%.0f of %.0f checks decided without an RPC: %.1f %% (owner %s)", without, without+with, 100*share, owner.Name)
	if share < 0.95 {
		t.Fatalf("%.1f %% decided without an RPC, want at least 95 %%", 100*share)
	}

	limited := c.KeyOwnedBy(t, "limited", owner)
	if got, _ := floodKey(t, c, limited, "100 per minute", 1500); got != 100 {
		t.Fatalf("%d admitted at 100 per minute, want exactly 100", got)
	}
}

// floodKey sends n /v1/check of key against limits from six clients, two
// on each node, and returns how many were admitted.
func floodKey(t *testing.T, c *proctest.Cluster, key, limits string, n int) (allowed, sent int) {
	t.Helper()
	body := fmt.Sprintf(`{"key":%q,"limits":%q,"cost":1}`, key, limits)
	var ok, all, errs atomic.Int64
	var wg sync.WaitGroup
	for w := range 6 {
		p := c.Nodes[w%len(c.Nodes)]
		wg.Go(func() {
			for all.Add(1) <= int64(n) {
				r, err := c.Do(p, http.MethodPost, "/v1/check", strings.NewReader(body), "Content-Type", "application/json")
				switch {
				case err != nil || r.Status != http.StatusOK:
					errs.Add(1)
				case bytes.Contains(r.Body, []byte(`"allowed":true`)):
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if errs.Load() != 0 {
		t.Fatalf("%d checks failed", errs.Load())
	}
	return int(ok.Load()), n
}

// checkMetrics reads ratemesh_checks_total of p by path.
func checkMetrics(t *testing.T, c *proctest.Cluster, p *proctest.Node) map[string]float64 {
	t.Helper()
	return metricByLabel(t, c, p, `ratemesh_checks_total{path="`)
}

// metricByLabel reads the metric of p whose lines start with prefix (its
// name and the first label, up to the value's opening quote), by that
// label's value.
func metricByLabel(t *testing.T, c *proctest.Cluster, p *proctest.Node, prefix string) map[string]float64 {
	t.Helper()
	r, err := c.Do(p, http.MethodGet, "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	for sc.Scan() {
		rest, found := strings.CutPrefix(sc.Text(), prefix)
		if !found {
			continue
		}
		label, value, _ := strings.Cut(rest, `"} `)
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[label] = v
		}
	}
	return out
}

// cpuTimes reads each node process's user and system CPU seconds.
func cpuTimes(t *testing.T, c *proctest.Cluster) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, p := range c.Nodes {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID()))
		if err != nil {
			t.Fatal(err)
		}
		// Fields after the command name (in parentheses): utime and
		// stime are the 12th and 13th, in clock ticks of 1/100 s.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		utime, _ := strconv.ParseFloat(fields[11], 64)
		stime, _ := strconv.ParseFloat(fields[12], 64)
		out[p.Name] = (utime + stime) / 100
	}
	return out
}
