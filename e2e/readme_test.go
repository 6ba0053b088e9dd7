//go:build linux

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/docblocks"
)

// repoRoot is the repository, from this package.
const repoRoot = ".."

// readmePorts are the ports of the README's cluster: node K's HTTP, gossip
// and RPC ports are 8081, 7946 and 9091 plus K-1.
var readmePorts = []int{8081, 8082, 8083, 7946, 7947, 7948, 9091, 9092, 9093}

// TestReadmeTour follows README.md as a new user does, top to bottom: it
// runs each sh block of the page in order with bash from the repository's
// root (all but `go test ./...`, which runs this test), on a PATH where jq
// fails (the scripts need only Go and curl). The tour's demo shows its own
// keys in the top denied (cluster.sh gives the admin token), and the
// by-hand loop prints what its comment says: 8081 200, 8082 200, 8083 200,
// 8081 200, 8082 200, 8083 429. It is skipped when a port of the README's
// cluster is taken (a cluster already up, say), since the README's
// commands use those ports.
func TestReadmeTour(t *testing.T) {
	nodeBinary(t) // skipped in -short mode, as every process test
	skipUnlessFree(t, readmePorts...)
	blocks := shBlocks(t, "README.md")
	if len(blocks) != 4 {
		t.Fatalf("README.md has %d sh blocks, want 4 (two commands, the tour, the by-hand loop, down)", len(blocks))
	}
	run := func(script string) string { return runScript(t, repoRoot, script) }
	downAtEnd(t)

	// Two commands: the first starts the cluster, the second is go test.
	first := strings.Split(strings.TrimSpace(blocks[0]), "\n")
	if len(first) != 2 || !strings.HasPrefix(first[0], "./scripts/cluster.sh up ") || !strings.HasPrefix(first[1], "go test ./... ") {
		t.Fatalf("README.md's first block is not cluster.sh up and go test:\n%s", blocks[0])
	}
	run(first[0])

	tour := run(blocks[1])
	topRow := regexp.MustCompile(`(?m)^apikey:demo-\d+-\d+-products +\d+ +5 per 1 minute +GET /products `)
	if !topRow.MatchString(tour) {
		t.Errorf("the tour's top denied keys show no key of its own:\n%s", tour)
	}
	for _, want := range []string{"node 2 killed (SIGKILL)", "node 2 restarted and rejoined"} {
		if !strings.Contains(tour, want) {
			t.Errorf("the tour does not say %q:\n%s", want, tour)
		}
	}

	loop := blocks[2]
	comment := regexp.MustCompile(`(?m)^# (\d+ \d+(?:, \d+ \d+)*)$`).FindStringSubmatch(loop)
	if comment == nil {
		t.Fatalf("the by-hand loop has no comment of what it prints:\n%s", loop)
	}
	want := strings.ReplaceAll(comment[1], ", ", "\n") + "\n"
	if got := run(loop); got != want {
		t.Errorf("the by-hand loop printed\n%s\nthe README says\n%s", got, want)
	}

	if got := run(blocks[3]); !strings.Contains(got, "cluster down") {
		t.Errorf("cluster.sh down printed %q", got)
	}
}

// shBlocks lists the text of each sh block of page.
func shBlocks(t *testing.T, page string) []string {
	t.Helper()
	var out []string
	for _, b := range docblocks.Load(t, repoRoot, page) {
		if b.Lang == "sh" {
			out = append(out, b.Text)
		}
	}
	return out
}

// downAtEnd stops the README's cluster (./scripts/cluster.sh down) when
// the test ends, if a step that failed left it up.
func downAtEnd(t *testing.T) {
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(repoRoot, "run", "cluster", "size")); err == nil {
			exec.Command("bash", filepath.Join(repoRoot, "scripts", "cluster.sh"), "down").Run()
		}
	})
}

// skipUnlessFree skips the test when a port of a page's commands is taken
// on 127.0.0.1 (by a cluster a user runs, say).
func skipUnlessFree(t *testing.T, ports ...int) {
	t.Helper()
	for _, p := range ports {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), 200*time.Millisecond); err == nil {
			c.Close()
			t.Skipf("port %d is taken (a cluster of ./scripts/cluster.sh up?): the page's commands need it", p)
		}
	}
}

// runScript runs script with bash -euo pipefail in dir, in at most 3
// minutes, on a PATH where jq fails, and returns what it printed on
// stdout and stderr. Processes it leaves in the background are waited
// for at most 30 s past its end.
func runScript(t *testing.T, dir, script string) string {
	t.Helper()
	noJQ := t.TempDir()
	if err := os.WriteFile(filepath.Join(noJQ, "jq"), []byte("#!/bin/sh\necho \"jq: not installed\" >&2\nexit 127\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+noJQ+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.WaitDelay = 30 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s\n%v:\n%s", script, err, out.String())
	}
	return out.String()
}
