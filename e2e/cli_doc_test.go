//go:build linux

package e2e

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/docblocks"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// TestCLIDocSessions runs the terminal sessions of docs/cli.md, command by
// command from the repository's root, on the README's local cluster
// (./scripts/cluster.sh up) after the requests the page describes: five
// GET /products of apikey:alice and three more that are denied. Each
// command must print the page's output, table cell by table cell (the
// columns' widths follow the cells), a reopening time "in 58s" standing for
// any. The top is built at most once a second, so a command is run again
// until it prints the page's output or 10 s have passed. Skipped when a
// port of the README's cluster is taken.
func TestCLIDocSessions(t *testing.T) {
	nodeBinary(t)
	skipUnlessFree(t, readmePorts...)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: the requests of docs/cli.md are not sent")
	}
	var sessions []docblocks.Session
	for _, b := range docblocks.Load(t, repoRoot, "docs/cli.md") {
		sessions = append(sessions, docblocks.Sessions(b.Text)...)
	}
	if len(sessions) != 4 {
		t.Fatalf("docs/cli.md shows %d commands in sessions, want 4 (limits, top, members, json): update this test with the page", len(sessions))
	}
	downAtEnd(t)
	runScript(t, repoRoot, "./scripts/cluster.sh up")
	statuses := runScript(t, repoRoot, `for i in 1 2 3 4 5 6 7 8; do
  curl -s -o /dev/null -w '%{http_code} ' -H 'X-API-KEY: alice' http://127.0.0.1:8081/products
done`)
	if statuses != "200 200 200 200 200 429 429 429 " {
		t.Fatalf("eight GET /products of apikey:alice answered %s, want five 200 and three 429", statuses)
	}
	for _, s := range sessions {
		var got string
		if !testkit.Poll(10*time.Second, func() bool {
			got = runScript(t, repoRoot, s.Command)
			return sameTable(got, s.Output)
		}) {
			t.Errorf("docs/cli.md:\n$ %s\nprinted\n%s\nthe page shows\n%s", s.Command, got, s.Output)
		}
	}
	runScript(t, repoRoot, "./scripts/cluster.sh down")
}

// reopens is a reopening time the page shows; the command prints any.
var (
	reopens    = regexp.MustCompile(`^in \d+s$`)
	anyReopen  = regexp.MustCompile(`^(in [0-9hms]+|now)$`)
	tableSpace = regexp.MustCompile(`\s{2,}`)
)

// sameTable says whether a command printed the page's output: the same
// lines, each the same cells (text apart by two spaces or more, trailing
// space ignored), a reopening time the page shows standing for any.
func sameTable(got, want string) bool {
	g := strings.Split(strings.TrimRight(got, "\n"), "\n")
	w := strings.Split(strings.TrimRight(want, "\n"), "\n")
	if len(g) != len(w) {
		return false
	}
	for i := range w {
		gc := tableSpace.Split(strings.TrimRight(g[i], " "), -1)
		wc := tableSpace.Split(strings.TrimRight(w[i], " "), -1)
		if len(gc) != len(wc) {
			return false
		}
		for j := range wc {
			if gc[j] != wc[j] && !(reopens.MatchString(wc[j]) && anyReopen.MatchString(gc[j])) {
				return false
			}
		}
	}
	return true
}
