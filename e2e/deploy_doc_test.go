//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/docblocks"
	"github.com/ratemesh/ratemesh/internal/proctest"
)

// TestDeployDocSessions runs the shell blocks of docs/operations.md and
// the commands of docs/kubernetes.md that need no cluster of theirs, on
// three nodes with an API token. What needs what this machine lacks (a
// systemd that runs the unit, a Kubernetes cluster) is checked without
// running by TestDeployFilesUseRealFlags and TestKubernetesDocCommands
// (cmd/node).
func TestDeployDocSessions(t *testing.T) {
	bin := nodeBinary(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: the pages' curl commands are not run")
	}
	c := proctest.NewCluster(t, bin)
	c.Token = docToken
	for range 3 {
		c.StartNext(t)
	}
	c.WaitMembers(t, 20*time.Second, time.Now(), c.Nodes)
	t.Run("operations.md", func(t *testing.T) { operationsDoc(t, c) })
	t.Run("kubernetes.md", func(t *testing.T) { kubernetesDoc(t, c) })
}

// host is a host of docs/operations.md made of a directory: root stands
// for its /, where the page's commands install, and systemctl and
// journalctl are commands that write what they were asked to calls.
type host struct {
	root, shims, calls string
}

func newHost(t *testing.T) host {
	t.Helper()
	dir := t.TempDir()
	h := host{root: filepath.Join(dir, "root"), shims: filepath.Join(dir, "shims"), calls: filepath.Join(dir, "calls")}
	// A host of systemd has these directories; install (without -D) needs
	// them.
	for _, d := range []string{"usr/local/bin", "etc/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(h.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"systemctl", "journalctl"} {
		writeFile(t, filepath.Join(h.shims, name), fmt.Sprintf("#!/bin/sh\necho %s \"$*\" >>%s\n", name, h.calls))
		if err := os.Chmod(filepath.Join(h.shims, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// absPath matches an absolute path of the host in a command.
var absPath = regexp.MustCompile(`(^|\s)/(usr|etc)/`)

// run runs a block of the page from the repository on h: its absolute
// paths under h.root, a no-op $EDITOR, the commands installed under
// /usr/local/bin first on the path, N (the page's node, which its first
// block sets for the rest) set to addr, and TOKEN to the nodes' token.
func (h host) run(t *testing.T, block, addr string) string {
	t.Helper()
	script := absPath.ReplaceAllString(block, "${1}"+h.root+"/$2/")
	script = regexp.MustCompile(`(?m)^N=\S+`).ReplaceAllString(script, "N=http://"+addr)
	return runScript(t, repoRoot, fmt.Sprintf("export EDITOR=true N=http://%s TOKEN=%s PATH=%s:%s:$PATH\n%s",
		addr, docToken, h.shims, filepath.Join(h.root, "usr", "local", "bin"), script))
}

// operationsDoc runs docs/operations.md's blocks on a host of a directory
// (above): Install builds a binary that prints the version it was given,
// installs the unit and the env file with their modes and a fresh secret;
// Day to day, with the installed binary, finds node 1 ready, lists the
// three members alive with the token and passes the health check; the
// upgrade's loop ends once node 1, restarted as systemctl restart would,
// is ready again. systemctl and journalctl are asked of the unit the
// repository ships.
func operationsDoc(t *testing.T, c *proctest.Cluster) {
	blocks := docblocks.Load(t, repoRoot, "docs/operations.md")
	install, daily := docblocks.Under(blocks, "Install", "sh"), docblocks.Under(blocks, "Day to day", "sh")
	if len(install) != 1 || len(daily) != 2 {
		t.Fatalf("docs/operations.md: %d sh blocks under Install and %d under Day to day, want 1 and 2: update this test with the page", len(install), len(daily))
	}
	h := newHost(t)
	addr := c.Nodes[0].Host() + ":" + strconv.Itoa(c.Nodes[0].HTTPPort)
	h.run(t, install[0].Text, addr)
	checkInstalled(t, h)

	out := h.run(t, daily[0].Text, addr)
	if !strings.Contains(out, `{"status":"ready","node":"node1"}`) {
		t.Errorf("docs/operations.md, Day to day: curl $N/readyz printed no ready answer:\n%s", out)
	}
	if alive := regexp.MustCompile(`(?m)^node\d( \*)? +alive `).FindAllString(out, -1); len(alive) != 3 {
		t.Errorf("docs/operations.md, Day to day: members lists %d members alive, want 3:\n%s", len(alive), out)
	}

	c.Signal(t, c.Nodes[0], syscall.SIGTERM, 20*time.Second)
	c.Start(t, c.Nodes[0], c.Nodes[1].GossipAddr(), false)
	h.run(t, "timeout 30 bash -c '"+strings.ReplaceAll(daily[1].Text, "'", `'\''`)+"'", addr)
	if n, err := c.Members(c.Nodes[0]); err != nil || len(n) != 3 {
		t.Errorf("docs/operations.md: node 1 is ready after its restart with members %v (%v), want 3", n, err)
	}
	checkCalls(t, h)
}

// checkInstalled checks what the Install block left on the host.
func checkInstalled(t *testing.T, h host) {
	t.Helper()
	for path, mode := range map[string]os.FileMode{
		"usr/local/bin/ratemesh-node":         0o755,
		"etc/ratemesh/ratemesh.env":           0o640,
		"etc/systemd/system/ratemesh.service": 0o644,
	} {
		if fi, err := os.Stat(filepath.Join(h.root, path)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("docs/operations.md, Install: /%s: %v %v, want mode %v", path, fi.Mode().Perm(), err, mode)
		}
	}
	env, err := os.ReadFile(filepath.Join(h.root, "etc", "ratemesh", "ratemesh.env"))
	if err != nil || !regexp.MustCompile(`(?m)^RATEMESH_SECRET=[0-9a-f]{64}$`).Match(env) {
		t.Errorf("docs/operations.md, Install: the env file has no fresh secret (%v):\n%s", err, env)
	}
	describe, err := exec.Command("git", "-C", repoRoot, "describe", "--tags", "--always").Output()
	if err != nil {
		t.Fatal(err)
	}
	version, err := exec.Command(filepath.Join(h.root, "usr", "local", "bin", "ratemesh-node"), "--version").Output()
	if err != nil || !strings.Contains(string(version), strings.TrimSpace(string(describe))) {
		t.Errorf("docs/operations.md, Install: --version of the installed binary printed %q (%v), want %s", version, err, describe)
	}
}

// checkCalls checks that the pages asked systemctl and journalctl of the
// unit the repository ships, and of nothing else.
func checkCalls(t *testing.T, h host) {
	t.Helper()
	b, err := os.ReadFile(h.calls)
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.TrimSuffix(filepath.Base(mustGlob(t, "deploy/systemd/*.service")), ".service")
	for _, call := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !slices.Contains(strings.Fields(call), unit) && call != "systemctl daemon-reload" {
			t.Errorf("docs/operations.md: %q asks of another unit than %s", call, unit)
		}
	}
}

// mustGlob is the one file below the repository that pattern matches.
func mustGlob(t *testing.T, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(repoRoot, pattern))
	if err != nil || len(m) != 1 {
		t.Fatalf("%s: %v %v, want one file", pattern, m, err)
	}
	return m[0]
}

// kubernetesDoc runs the commands of docs/kubernetes.md's "Check it" that
// run in a pod or against the Service, here against node 1: the image's
// members, with what the pod's environment gives it (RATEMESH_BIND
// 0.0.0.0, the HTTP port, the API token from the Secret), lists every
// member alive; the page's curl is allowed with 4 left.
func kubernetesDoc(t *testing.T, c *proctest.Cluster) {
	check := docblocks.Under(docblocks.Load(t, repoRoot, "docs/kubernetes.md"), "Deploy", "sh")
	if len(check) != 2 {
		t.Fatalf("docs/kubernetes.md: %d sh blocks under Deploy, want 2 (create and apply, check it): update this test with the page", len(check))
	}
	var members, curl string
	for _, line := range docblocks.Commands(check[1].Text) {
		if _, after, ok := strings.Cut(line, " -- "); ok && strings.HasPrefix(line, "kubectl exec ") {
			members = after
		}
		if strings.HasPrefix(line, "curl ") {
			curl = line
		}
	}
	if members == "" || curl == "" {
		t.Fatalf("docs/kubernetes.md, Check it: no kubectl exec or curl:\n%s", check[1].Text)
	}
	p := c.Nodes[0]
	pod := fmt.Sprintf("export RATEMESH_BIND=0.0.0.0 RATEMESH_HTTP_PORT=%d RATEMESH_API_TOKEN=%s PATH=%s:$PATH\n",
		p.HTTPPort, docToken, filepath.Dir(c.Bin))
	out := runScript(t, repoRoot, pod+members)
	if alive := regexp.MustCompile(`(?m)^node\d( \*)? +alive `).FindAllString(out, -1); len(alive) != 3 {
		t.Errorf("docs/kubernetes.md: %s in the pod lists %d members alive, want 3:\n%s", members, len(alive), out)
	}
	addr := p.Host() + ":" + strconv.Itoa(p.HTTPPort)
	out = runScript(t, repoRoot, fmt.Sprintf("TOKEN=%s\n%s", docToken, strings.ReplaceAll(curl, "localhost:8081", addr)))
	var a struct {
		Allowed bool
		Limits  []struct{ Remaining int }
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil || !a.Allowed || len(a.Limits) != 1 || a.Limits[0].Remaining != 4 {
		t.Errorf("docs/kubernetes.md: %s printed %s (%v), want allowed with 4 left", curl, out, err)
	}
}
