//go:build linux

package proctest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/testkit"
)

// Node is one node; its name, ports and log survive restarts.
type Node struct {
	Name                          string
	HTTPPort, GossipPort, RPCPort int
	LogPath                       string
	IP, Netns                     string // set: the node runs in network namespace Netns at IP
	run                           *procRun
}

// GossipAddr is the address other nodes join p at.
func (p *Node) GossipAddr() string { return net.JoinHostPort(p.Host(), strconv.Itoa(p.GossipPort)) }

// Host is the IP the node binds and is reached at: its network
// namespace's, or loopback.
func (p *Node) Host() string {
	if p.IP != "" {
		return p.IP
	}
	return "127.0.0.1"
}

// PID is the process ID of p's current or last process.
func (p *Node) PID() int { return p.run.cmd.Process.Pid }

// Exited is closed once p's current process has exited.
func (p *Node) Exited() <-chan struct{} { return p.run.done }

// ExitErr is how p's last process exited (nil: status 0); valid once
// Exited is closed.
func (p *Node) ExitErr() error { return p.run.err }

// procRun is one process of a node; err is cmd.Wait's, valid once done is
// closed.
type procRun struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Cluster is the node processes of one test, sharing a secret.
type Cluster struct {
	Bin, Dir, Secret string
	RunID            string // keeps the test's rate keys apart between runs
	DataDirs         bool   // each node keeps its counters in a data dir of its own
	Nodes            []*Node

	// ExtraArgs, if set, gives more flags to each process of p.
	ExtraArgs func(p *Node) []string

	// Token, if set, is the nodes' API token (--api-token, given through
	// the environment as the secret is), which every request of c carries.
	Token string

	client     *http.Client
	portsGiven map[int]bool // never given twice: a stopped node may start again on its own
}

// StartCluster starts n nodes, each joining the first, and waits until
// every one reports all n alive.
func StartCluster(t testing.TB, bin string, n int) *Cluster {
	t.Helper()
	c := NewCluster(t, bin)
	for range n {
		c.StartNext(t)
	}
	c.WaitMembers(t, 20*time.Second, time.Now(), c.Nodes)
	return c
}

// NewCluster is a cluster of no nodes yet. Its cleanup kills whatever
// still runs and, if the test failed, prints every node's log.
func NewCluster(t testing.TB, bin string) *Cluster {
	t.Helper()
	c := &Cluster{
		Bin:        bin,
		Dir:        t.TempDir(),
		Secret:     RandomHex(16),
		RunID:      RandomHex(3),
		portsGiven: map[int]bool{},
		client:     &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
	}
	t.Cleanup(func() { c.cleanup(t) })
	return c
}

// StartNext starts node i+1 of a cluster of i, joining the first, and
// returns once its HTTP API answers (it may not have joined yet).
func (c *Cluster) StartNext(t testing.TB) *Node {
	t.Helper()
	p := c.Add(t)
	join := ""
	if len(c.Nodes) > 1 {
		join = c.Nodes[0].GossipAddr()
	}
	c.Start(t, p, join, true)
	return p
}

// Add names node i+1 of a cluster of i and picks its ports, without
// starting it.
func (c *Cluster) Add(t testing.TB) *Node {
	t.Helper()
	i := len(c.Nodes) + 1
	p := &Node{Name: fmt.Sprintf("node%d", i), LogPath: filepath.Join(c.Dir, fmt.Sprintf("node%d.log", i))}
	var err error
	if p.HTTPPort, p.GossipPort, p.RPCPort, err = c.FreePorts(); err != nil {
		t.Fatal(err)
	}
	c.Nodes = append(c.Nodes, p)
	return p
}

// RandomHex is n random bytes in hex.
func RandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *Cluster) cleanup(t testing.TB) {
	if t.Failed() {
		c.logCounters(t)
	}
	for _, p := range c.Nodes {
		if p.run == nil {
			continue
		}
		p.run.cmd.Process.Kill() // an error means it is gone already
		select {
		case <-p.run.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) still runs after SIGKILL", p.Name, p.PID())
		}
	}
	c.client.CloseIdleConnections()
	if t.Failed() {
		for _, p := range c.Nodes {
			b, err := os.ReadFile(p.LogPath)
			t.Logf("===== log of %s (%v) =====\n%s", p.Name, err, b)
		}
	}
}

// Start starts p and waits until its HTTP API answers. A start that fails
// (a port taken by someone else meanwhile) is retried, on fresh ports if
// newPorts, else on the same ones.
func (c *Cluster) Start(t testing.TB, p *Node, join string, newPorts bool) {
	t.Helper()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if newPorts {
			if p.HTTPPort, p.GossipPort, p.RPCPort, err = c.FreePorts(); err != nil {
				t.Fatal(err)
			}
		}
		if err = c.launch(p, join); err == nil {
			return
		}
		t.Logf("start %s, attempt %d: %v", p.Name, attempt, err)
	}
	t.Fatalf("could not start %s: %v", p.Name, err)
}

// launch runs one process of p, appending its output to p's log, and
// waits until it serves /healthz.
func (c *Cluster) launch(p *Node, join string) error {
	log, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child has its own descriptor
	fmt.Fprintf(log, "=== %s: start %s (http %d, gossip %d, rpc %d, join %q)\n",
		time.Now().Format("15:04:05.000"), p.Name, p.HTTPPort, p.GossipPort, p.RPCPort, join)
	cmd := exec.Command(c.Bin, "--name", p.Name, "--bind", p.Host(),
		"--http-port", strconv.Itoa(p.HTTPPort), "--gossip-port", strconv.Itoa(p.GossipPort), "--rpc-port", strconv.Itoa(p.RPCPort),
		"--join", join, "--gossip-profile", "local",
		// The nodes share two cores with a race-instrumented test: a healthy
		// owner may take far longer than the default 50 ms to answer, and a
		// spurious failover would count locally and break exact counts. A
		// dead owner refuses connections at once, so this costs nothing.
		"--forward-timeout", "1s")
	if c.DataDirs {
		cmd.Args = append(cmd.Args, "--data-dir", filepath.Join(c.Dir, p.Name+".data"))
	}
	if c.ExtraArgs != nil {
		cmd.Args = append(cmd.Args, c.ExtraArgs(p)...)
	}
	if p.Netns != "" {
		cmd.Args = append([]string{"ip", "netns", "exec", p.Netns}, cmd.Args...)
		cmd.Path, _ = exec.LookPath("ip")
	}
	// The flags alone configure the node (Environ); the secret comes
	// through the environment, as an operator should pass it, never on a
	// command line that every user of the host can read.
	cmd.Env = append(Environ(), "RATEMESH_SECRET="+c.Secret)
	if c.Token != "" {
		cmd.Env = append(cmd.Env, "RATEMESH_API_TOKEN="+c.Token)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	r := &procRun{cmd: cmd, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	p.run = r
	exited := func() bool {
		select {
		case <-r.done:
			return true
		default:
			return false
		}
	}
	serving := testkit.Poll(20*time.Second, func() bool {
		if exited() {
			return true
		}
		resp, err := c.Do(p, http.MethodGet, "/healthz", nil)
		return err == nil && resp.Status == http.StatusOK
	})
	switch {
	case exited():
		return fmt.Errorf("exited before serving (%v); see its log", r.err)
	case !serving:
		cmd.Process.Kill()
		<-r.done
		return errors.New("no /healthz after 20s; see its log")
	}
	return nil
}

// Signal sends sig to p's process and, if within > 0, waits that long for
// it to exit.
func (c *Cluster) Signal(t testing.TB, p *Node, sig syscall.Signal, within time.Duration) {
	t.Helper()
	if err := p.run.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%v to %s: %v", sig, p.Name, err)
	}
	if within > 0 {
		c.WaitExit(t, p, within)
	}
}

// WaitExit waits for p's process to exit, failing the test after within.
func (c *Cluster) WaitExit(t testing.TB, p *Node, within time.Duration) {
	t.Helper()
	select {
	case <-p.run.done:
	case <-time.After(within):
		t.Fatalf("%s still runs %v after the signal", p.Name, within)
	}
}

// logCounters logs, for a failed test, the cluster's own counters of every
// node still serving (handoffs, replicas, fallbacks, leases): what moved
// where is most of what explains a wrong count.
func (c *Cluster) logCounters(t testing.TB) {
	for _, p := range c.Nodes {
		if p.run == nil {
			continue
		}
		r, err := c.Do(p, http.MethodGet, "/metrics", nil)
		if err != nil {
			t.Logf("===== counters of %s: %v", p.Name, err)
			continue
		}
		var b strings.Builder
		for line := range strings.Lines(string(r.Body)) {
			for _, name := range []string{"handoff", "replica", "fallback", "leases", "failovers", "checks_total", "rpc_errors"} {
				if strings.HasPrefix(line, "ratemesh_"+name) {
					b.WriteString(line)
				}
			}
		}
		t.Logf("===== counters of %s =====\n%s", p.Name, b.String())
	}
}
