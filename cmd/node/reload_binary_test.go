package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/proctest"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

// TestBinaryReloadAndHealthcheck runs the built binary: SIGHUP sent to the
// process applies a changed --policy, "ratemesh-node healthcheck" probes
// it, and SIGTERM still makes it leave and exit 0.
func TestBinaryReloadAndHealthcheck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := buildNode(t, dir)
	policy := writePolicy(t, productsPolicy("1 per minute"))
	addrs := filepath.Join(dir, "addrs.json")
	var logs testlog.Buffer
	cmd := exec.Command(bin, "--http-port", "0", "--gossip-port", "0", "--rpc-port", "0", "--gossip-profile", "local",
		"--policy", policy, "--reload-interval", "0s", "--addr-file", addrs, "--headers", "none")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no RATEMESH_* from the test's environment
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited, waited := waitOrKill(t, cmd)
	n := waitAddrFile(t, addrs).Nodes[0]
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	if got := admitted(t, c, n.HTTP, 2); got != 1 {
		t.Fatalf("1 per minute: %d of 2 admitted", got)
	}
	replaceFile(t, policy, productsPolicy("3 per minute"))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, &logs, "msg=reloaded flag=--policy", 1)
	if got := admitted(t, c, n.HTTP, 4); got != 3 {
		t.Fatalf("3 per minute after SIGHUP: %d of 4 admitted", got)
	}
	if out, err := exec.Command(bin, "healthcheck", "--url", "http://"+n.HTTP+"/healthz").CombinedOutput(); err != nil {
		t.Fatalf("healthcheck: %v %s", err, out)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		*waited = true
		if err != nil || !strings.Contains(logs.String(), `msg="left the cluster"`) {
			t.Fatalf("after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit 15 s after SIGTERM:\n%s", logs.String())
	}
}

// buildNode builds the node's binary into dir, as the process tests do.
func buildNode(t *testing.T, dir string) string {
	t.Helper()
	bin, err := proctest.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// waitOrKill waits for the started cmd in the background; the process is
// killed when the test ends unless *waited was set by a reader of exited.
func waitOrKill(t *testing.T, cmd *exec.Cmd) (exited <-chan error, waited *bool) {
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait() }()
	waited = new(bool)
	t.Cleanup(func() {
		if !*waited {
			cmd.Process.Kill()
			<-ch
		}
	})
	return ch, waited
}

// waitAddrFile waits for the address file at path and reads it.
func waitAddrFile(t *testing.T, path string) addrDoc {
	t.Helper()
	testkit.Eventually(t, 15*time.Second, "the address file", func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
	return readAddrFile(t, path)
}
