//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/docblocks"
	"github.com/ratemesh/ratemesh/internal/proctest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// TestDashboardDocStats compares the GET /v1/stats answer docs/dashboard.md
// shows with a real one. Three nodes run docs/running.md's policy file,
// whose limits the page's example shows; through the first, apikey:alice
// is denied three times on GET /products and GET /flash-sale's dry-run
// limit would have denied twice. Once the answer (read with the admin
// token, so that keys show as they are) lists both, every field the page
// shows must be there with a value of the same type, the strings equal
// but for node names and addresses, and every field the answer has must be
// on the page, but for those the page calls optional and the policies'
// own. (The page's command that makes the screenshot is a go test command,
// which TestDocGoTestCommands checks.)
func TestDashboardDocStats(t *testing.T) {
	bin := nodeBinary(t)
	stats := docblocks.Under(docblocks.Load(t, repoRoot, "docs/dashboard.md"), "`GET /v1/stats`", "json")
	if len(stats) != 1 {
		t.Fatalf("docs/dashboard.md: %d json blocks under GET /v1/stats, want 1", len(stats))
	}
	var want any
	if err := json.Unmarshal([]byte(stats[0].Text), &want); err != nil {
		t.Fatalf("docs/dashboard.md: the /v1/stats answer is not JSON: %v", err)
	}

	c := policyCluster(t, bin, 3)
	for range 8 {
		c.Do(c.Nodes[0], http.MethodGet, "/products", nil, "X-API-KEY", "alice")
	}
	for range 5 {
		c.Do(c.Nodes[0], http.MethodGet, "/flash-sale", nil, "X-API-KEY", "alice")
	}
	var got map[string]any
	testkit.Eventually(t, 10*time.Second, "/v1/stats lists neither alice's denials nor the shadow route's", func() bool {
		r, err := c.Do(c.Nodes[0], http.MethodGet, "/v1/stats", nil, "Authorization", "Bearer "+docAdminToken)
		got = nil
		return err == nil && json.Unmarshal(r.Body, &got) == nil &&
			strings.Contains(fmt.Sprint(got["top_denied"]), "apikey:alice") && strings.Contains(fmt.Sprint(got["nodes"]), "GET /flash-sale")
	})
	for _, d := range statsDiff("", got, want, true) {
		t.Errorf("docs/dashboard.md, GET /v1/stats: %s", d)
	}
}

// policyCluster starts n nodes with docs/running.md's policy file and the
// admin token docAdminToken.
func policyCluster(t *testing.T, bin string, n int) *proctest.Cluster {
	t.Helper()
	policy := docblocks.Under(docblocks.Load(t, repoRoot, "docs/running.md"), "Policy file", "yaml")
	if len(policy) != 1 {
		t.Fatalf("docs/running.md: %d yaml blocks under Policy file, want 1", len(policy))
	}
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(policy[0].Text), 0o644); err != nil {
		t.Fatal(err)
	}
	c := proctest.NewCluster(t, bin)
	c.ExtraArgs = func(*proctest.Node) []string { return []string{"--policy", file, "--admin-token", docAdminToken} }
	for range n {
		c.StartNext(t)
	}
	c.WaitMembers(t, 20*time.Second, time.Now(), c.Nodes)
	return c
}

var (
	// runValues are the fields whose strings differ from run to run.
	runValues = map[string]bool{"node": true, "name": true, "rpc_addr": true, "http_addr": true}
	// optionalStats are the fields the page says an answer may lack: a
	// member's error and warnings, and the replication figures of a node
	// without replicas (or without one of the two).
	optionalStats = map[string]bool{"error": true, "warnings": true, "replication": true, "sent": true, "received": true}
)

// statsDiff lists where got differs from the page's want at path: a field
// missing or of another type, a field the page does not show and, if
// values, a string that differs. A list the page shows may be empty (or
// null) in got; its elements past the page's are compared with the page's
// last without their strings. Under "policies" the fields are the policy
// file's: only the page's are required, of the page's own elements.
func statsDiff(path string, got, want any, values bool) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %T, the page shows an object", path, got)}
		}
		var out []string
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				if !optionalStats[k] && (values || !strings.HasPrefix(path, ".policies")) {
					out = append(out, fmt.Sprintf("%s.%s: missing", path, k))
				}
				continue
			}
			out = append(out, statsDiff(path+"."+k, gv, wv, values)...)
		}
		for k := range g {
			if _, ok := w[k]; !ok && !optionalStats[k] && !strings.HasPrefix(path, ".policies") {
				out = append(out, fmt.Sprintf("%s.%s: not on the page (%v)", path, k, g[k]))
			}
		}
		slices.Sort(out)
		return out
	case []any:
		g, ok := got.([]any)
		if !ok && got != nil {
			return []string{fmt.Sprintf("%s: %T, the page shows a list", path, got)}
		}
		var out []string
		for i, gv := range g {
			out = append(out, statsDiff(fmt.Sprintf("%s[%d]", path, i), gv, w[min(i, len(w)-1)], values && i < len(w))...)
		}
		return out
	case string:
		_, field, _ := cutLast(path, ".")
		if g, ok := got.(string); !ok || (values && g != w && !runValues[field]) {
			return []string{fmt.Sprintf("%s: %v, the page shows %q", path, got, w)}
		}
	default:
		if fmt.Sprintf("%T", got) != fmt.Sprintf("%T", want) {
			return []string{fmt.Sprintf("%s: %v, the page shows %v", path, got, want)}
		}
	}
	return nil
}

// cutLast is strings.Cut at the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
