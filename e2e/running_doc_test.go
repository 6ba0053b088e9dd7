//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/docblocks"
	"github.com/ratemesh/ratemesh/internal/proctest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// runningBlock is the one block of language lang under heading title of
// docs/running.md.
func runningBlock(t *testing.T, title, lang string) string {
	t.Helper()
	b := docblocks.Under(docblocks.Load(t, repoRoot, "docs/running.md"), title, lang)
	if len(b) != 1 {
		t.Fatalf("docs/running.md: %d %s blocks under %q, want 1: update this test with the page", len(b), lang, title)
	}
	return b[0].Text
}

// pageDir is a directory of its own for a page's commands, with
// ./bin/ratemesh-node the binary of the run.
func pageDir(t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(dir, "bin", "ratemesh-node")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// addrMark parts the outputs of the commands TestRunningTwoNodes adds.
const addrMark = "@@running.md address file"

// TestRunningTwoNodes runs the block "Two nodes by hand" of
// docs/running.md in a directory of its own with ./bin/ratemesh-node the
// binary of the run: both nodes start, b joins a through the address
// file, members lists both alive, and both leave on SIGTERM (the script
// ends when they have: they hold its output open). Before the nodes are
// stopped, the section "Address file" is run on a's file: it holds what
// the page shows (the pid apart), and the page's command prints a's HTTP
// address.
func TestRunningTwoNodes(t *testing.T) {
	bin := nodeBinary(t)
	skipUnlessFree(t, 8081, 8082, 7946, 7947, 9091, 9092)
	block := runningBlock(t, "Two nodes by hand", "sh")
	lines := strings.Split(strings.TrimRight(block, "\n"), "\n")
	stop := lines[len(lines)-1]
	if !strings.HasPrefix(stop, "kill ") {
		t.Fatalf("docs/running.md: the two nodes by hand end with %q, not kill", stop)
	}
	script := strings.Join(lines[:len(lines)-1], "\n") + fmt.Sprintf("\necho %q\ncat run/a.json\necho %q\n%s\n%s\n",
		addrMark, addrMark, runningBlock(t, "Address file", "sh"), stop)
	dir := pageDir(t, bin)
	parts := strings.Split(runScript(t, dir, script), addrMark+"\n")
	if len(parts) != 3 {
		t.Fatalf("the outputs of the two nodes by hand are not in three parts: %q", parts)
	}
	members := regexp.MustCompile(`(?m)^(a|b)( \*)? +alive `).FindAllStringSubmatch(parts[0], -1)
	if len(members) != 2 || members[0][1] != "a" || members[1][1] != "b" || members[1][2] != " *" {
		t.Errorf("members at b: want a and b (itself) alive:\n%s", parts[0])
	}
	if diff := addrFileDiff(parts[1], runningBlock(t, "Address file", "json")); diff != "" {
		t.Errorf("docs/running.md, Address file: %s", diff)
	}
	if parts[2] != "127.0.0.1:8081\n" {
		t.Errorf("docs/running.md, Address file: the command printed %q, want a's HTTP address", parts[2])
	}
	for _, name := range []string{"a", "b"} {
		log, err := os.ReadFile(filepath.Join(dir, "run", name+".log"))
		if err != nil || !strings.Contains(string(log), "left the cluster") {
			t.Errorf("node %s did not leave on SIGTERM (%v):\n%s", name, err, log)
		}
	}
}

// addrFileDiff says how an address file differs from the page's, the
// process IDs apart ("" when it does not).
func addrFileDiff(got, want string) string {
	var g, w map[string]any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		return fmt.Sprintf("the page's file is not JSON: %v", err)
	}
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		return fmt.Sprintf("the file is not JSON (%v): %s", err, got)
	}
	if _, ok := g["pid"].(float64); !ok {
		return fmt.Sprintf("the file has no pid: %s", got)
	}
	g["pid"] = w["pid"]
	if !reflect.DeepEqual(g, w) {
		return fmt.Sprintf("the file holds\n%s\nthe page shows\n%s", got, want)
	}
	return ""
}

// TestRunningDocBlocks runs the other blocks of docs/running.md: the build
// and --help of the top, run from the repository; then, in a directory of
// its own, the command of "Several nodes in one process" with the page's
// policy file (RATEMESH_POLICY) and RATEMESH_RELOAD_INTERVAL=0, so that
// only a signal reloads it. Its address file must name n-0 to n-2 on the
// page's ports (8081 to 8083 for HTTP), every node must list the three
// alive and apply the policy; the policy file is then replaced with GET
// /products at 7 a minute and the block of "Reloading" run, whose pidof is
// one that names this process, twice, as pidof names every node process of
// a host (the machine's own would name every ratemesh-node on it): every
// node must apply the new limit. On SIGTERM
// the process exits 0 and removes its address file. Skipped when a port of
// the README's cluster is taken.
func TestRunningDocBlocks(t *testing.T) {
	bin := nodeBinary(t)
	skipUnlessFree(t, readmePorts...)
	top := runningBlock(t, "Running `ratemesh-node`", "sh")
	if help := runScript(t, repoRoot, top); !strings.HasPrefix(help, "Usage: ratemesh-node") {
		t.Errorf("docs/running.md: %s printed no usage:\n%s", top, help)
	}

	dir := pageDir(t, bin)
	policy := runningBlock(t, "Policy file", "yaml")
	writeFile(t, filepath.Join(dir, "run", "policy.yaml"), policy)
	nodes := startPageCommand(t, dir, runningBlock(t, "Several nodes in one process", "sh"),
		"RATEMESH_POLICY=run/policy.yaml", "RATEMESH_RELOAD_INTERVAL=0", "RATEMESH_SECRET="+proctest.RandomHex(16))
	var file struct {
		PID   int
		Nodes []struct{ Name, HTTP, Gossip, RPC string }
	}
	addrFile := filepath.Join(dir, "run", "n.json")
	testkit.Eventually(t, 20*time.Second, "no address file run/n.json", func() bool {
		b, err := os.ReadFile(addrFile)
		return err == nil && json.Unmarshal(b, &file) == nil
	})
	for i, n := range file.Nodes {
		if n.Name != fmt.Sprintf("n-%d", i) || n.HTTP != fmt.Sprintf("127.0.0.1:%d", 8081+i) ||
			n.Gossip != fmt.Sprintf("127.0.0.1:%d", 7946+i) || n.RPC != fmt.Sprintf("127.0.0.1:%d", 9091+i) {
			t.Errorf("docs/running.md, --nodes 3: node %d is %+v, want n-%d on the page's ports plus %d", i, n, i, i)
		}
	}
	if len(file.Nodes) != 3 {
		t.Fatalf("docs/running.md, --nodes 3: the address file lists %d nodes", len(file.Nodes))
	}
	nodeShows(t, dir, file.Nodes[0].HTTP, "3 alive", "members", `(?m)^(n-\d( \*)? +alive .*\n){3}`)
	for _, n := range file.Nodes {
		nodeShows(t, dir, n.HTTP, "the policy file's GET /products", "limits", `(?m)^GET /products +5 per 1 minute +moving-window `)
	}

	changed := strings.Replace(policy, `limits: "5 per minute"`, `limits: "7 per minute"`, 1)
	writeFile(t, filepath.Join(dir, "run", "policy.yaml.new"), changed)
	if err := os.Rename(filepath.Join(dir, "run", "policy.yaml.new"), filepath.Join(dir, "run", "policy.yaml")); err != nil {
		t.Fatal(err)
	}
	shim := filepath.Join(dir, "shim")
	// As on a host of several node processes, pidof names more than one:
	// the test's process, twice.
	writeFile(t, filepath.Join(shim, "pidof"), fmt.Sprintf("#!/bin/sh\necho %d %d\n", file.PID, file.PID))
	if err := os.Chmod(filepath.Join(shim, "pidof"), 0o755); err != nil {
		t.Fatal(err)
	}
	runScript(t, dir, fmt.Sprintf("PATH=%s:$PATH\n%s", shim, runningBlock(t, "Reloading", "sh")))
	for _, n := range file.Nodes {
		nodeShows(t, dir, n.HTTP, "the reloaded GET /products", "limits", `(?m)^GET /products +7 per 1 minute +moving-window `)
	}

	if err := syscall.Kill(file.PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-nodes.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the nodes still run 30 s after SIGTERM")
	}
	if nodes.err != nil {
		t.Errorf("the nodes exited with %v, want 0", nodes.err)
	}
	if _, err := os.Stat(addrFile); !os.IsNotExist(err) {
		t.Errorf("run/n.json is still there after the nodes stopped (%v)", err)
	}
}

// nodeShows runs the node binary's command (members, limits) against the
// node at addr until its output matches pattern, failing the test after
// 10 s.
func nodeShows(t *testing.T, dir, addr, what, command, pattern string) {
	t.Helper()
	re := regexp.MustCompile(pattern)
	var out string
	testkit.Eventually(t, 10*time.Second, fmt.Sprintf("%s at %s does not show %s", command, addr, what), func() bool {
		out = runScript(t, dir, fmt.Sprintf("./bin/ratemesh-node %s --addr %s", command, addr))
		return re.MatchString(out)
	}, &out)
}

// writeFile writes content to path, making its directory.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pageCommand is a page's command running in the background; err is how
// it exited, once done is closed.
type pageCommand struct {
	done chan struct{}
	err  error
}

// startPageCommand starts a page's command with bash in dir, with env and
// none of the test's own RATEMESH_ variables, its output to dir/command.log.
// It runs in a process group of its own, killed when the test ends.
func startPageCommand(t *testing.T, dir, command string, env ...string) *pageCommand {
	t.Helper()
	log, err := os.Create(filepath.Join(dir, "command.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command("bash", "-c", command)
	cmd.Dir = dir
	cmd.Env = append(proctest.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pageCommand{done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("===== output of %s =====\n%s", command, b)
		}
	})
	return p
}
