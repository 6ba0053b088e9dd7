//go:build linux

// The integration test's harness: it builds ratemesh-node, runs its
// processes on free loopback ports, signals them and reads their HTTP API.

package ratemesh_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/nodeapi"
)

// buildNodeBinary builds cmd/node into a temporary directory. It is built
// without the race detector whatever the test's flags: the nodes are the
// system under test here, not the test's own goroutines.
func buildNodeBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ratemesh-node")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/node").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/node: %v\n%s", err, out)
	}
	return bin
}

// nodeProc is one node; its name, ports and log survive restarts.
type nodeProc struct {
	name                          string
	httpPort, gossipPort, rpcPort int
	logPath                       string
	run                           *procRun // the current or last process
	ip, netns                     string   // set: the node runs in network namespace netns at ip
}

func (p *nodeProc) gossipAddr() string { return net.JoinHostPort(p.host(), strconv.Itoa(p.gossipPort)) }

// host is the IP the node binds and is reached at: its network
// namespace's, or loopback.
func (p *nodeProc) host() string {
	if p.ip != "" {
		return p.ip
	}
	return "127.0.0.1"
}

// procRun is one process of a node; err is cmd.Wait's, valid once done is
// closed.
type procRun struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// procCluster is the node processes of one test, sharing a secret.
type procCluster struct {
	bin, dir, secret string
	runID            string // keeps the test's rate keys apart between runs
	dataDirs         bool   // each node keeps its counters in a data dir of its own
	client           *http.Client
	nodes            []*nodeProc
	portsGiven       map[int]bool // never given twice: a stopped node may start again on its own

	// extraArgs, if set, gives more flags to each process of p.
	extraArgs func(p *nodeProc) []string
}

// startProcCluster starts n nodes, each joining the first, and waits until
// every one reports all n alive. Its cleanup kills whatever still runs and,
// if the test failed, prints every node's log.
func startProcCluster(t *testing.T, bin string, n int) *procCluster {
	t.Helper()
	c := newProcCluster(t, bin)
	for range n {
		c.startNext(t)
	}
	c.waitMembers(t, 20*time.Second, time.Now(), c.nodes)
	return c
}

// newProcCluster is a cluster of no nodes yet.
func newProcCluster(t *testing.T, bin string) *procCluster {
	t.Helper()
	c := &procCluster{
		bin:        bin,
		dir:        t.TempDir(),
		secret:     randomHex(16),
		runID:      randomHex(3),
		portsGiven: map[int]bool{},
		client:     &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
	}
	t.Cleanup(func() { c.cleanup(t) })
	return c
}

// startNext starts node i+1 of a cluster of i, joining the first, and
// returns once its HTTP API answers (it may not have joined yet).
func (c *procCluster) startNext(t *testing.T) *nodeProc {
	t.Helper()
	p := c.add(t)
	join := ""
	if len(c.nodes) > 1 {
		join = c.nodes[0].gossipAddr()
	}
	c.start(t, p, join, true)
	return p
}

// add names node i+1 of a cluster of i and picks its ports, without
// starting it.
func (c *procCluster) add(t *testing.T) *nodeProc {
	t.Helper()
	i := len(c.nodes) + 1
	p := &nodeProc{name: fmt.Sprintf("node%d", i), logPath: filepath.Join(c.dir, fmt.Sprintf("node%d.log", i))}
	var err error
	if p.httpPort, p.gossipPort, p.rpcPort, err = c.freePorts(); err != nil {
		t.Fatal(err)
	}
	c.nodes = append(c.nodes, p)
	return p
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *procCluster) cleanup(t *testing.T) {
	for _, p := range c.nodes {
		if p.run == nil {
			continue
		}
		p.run.cmd.Process.Kill() // an error means it is gone already
		select {
		case <-p.run.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) still runs after SIGKILL", p.name, p.run.cmd.Process.Pid)
		}
	}
	c.client.CloseIdleConnections()
	if t.Failed() {
		for _, p := range c.nodes {
			b, err := os.ReadFile(p.logPath)
			t.Logf("===== log of %s (%v) =====\n%s", p.name, err, b)
		}
	}
}

// start starts p and waits until its HTTP API answers. A start that fails
// (a port taken by someone else meanwhile) is retried, on fresh ports if
// newPorts, else on the same ones.
func (c *procCluster) start(t *testing.T, p *nodeProc, join string, newPorts bool) {
	t.Helper()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if newPorts {
			if p.httpPort, p.gossipPort, p.rpcPort, err = c.freePorts(); err != nil {
				t.Fatal(err)
			}
		}
		if err = c.launch(p, join); err == nil {
			return
		}
		t.Logf("start %s, attempt %d: %v", p.name, attempt, err)
	}
	t.Fatalf("could not start %s: %v", p.name, err)
}

// launch runs one process of p, appending its output to p's log.
func (c *procCluster) launch(p *nodeProc, join string) error {
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child has its own descriptor
	fmt.Fprintf(log, "=== %s: start %s (http %d, gossip %d, rpc %d, join %q)\n",
		time.Now().Format("15:04:05.000"), p.name, p.httpPort, p.gossipPort, p.rpcPort, join)
	cmd := exec.Command(c.bin, "--name", p.name, "--bind", p.host(),
		"--http-port", strconv.Itoa(p.httpPort), "--gossip-port", strconv.Itoa(p.gossipPort), "--rpc-port", strconv.Itoa(p.rpcPort),
		"--join", join, "--secret", c.secret, "--gossip-profile", "local",
		// The nodes share two cores with a race-instrumented test: a healthy
		// owner may take far longer than the default 50 ms to answer, and a
		// spurious failover would count locally and break exact counts. A
		// dead owner refuses connections at once, so this costs nothing.
		"--forward-timeout", "1s")
	if c.dataDirs {
		cmd.Args = append(cmd.Args, "--data-dir", filepath.Join(c.dir, p.name+".data"))
	}
	if c.extraArgs != nil {
		cmd.Args = append(cmd.Args, c.extraArgs(p)...)
	}
	if p.netns != "" {
		cmd.Args = append([]string{"ip", "netns", "exec", p.netns}, cmd.Args...)
		cmd.Path, _ = exec.LookPath("ip")
	}
	// The flags alone configure the node, whatever the shell exports (a
	// RATEMESH_POLICY would change the limits under test).
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RATEMESH_") {
			cmd.Env = append(cmd.Env, kv)
		}
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
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-r.done:
			return fmt.Errorf("exited before serving (%v); see its log", r.err)
		default:
		}
		if resp, err := c.do(p, http.MethodGet, "/healthz", nil); err == nil && resp.status == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-r.done
			return errors.New("no /healthz after 20s; see its log")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signal sends sig to p's process and, if within > 0, waits that long for
// it to exit.
func (c *procCluster) signal(t *testing.T, p *nodeProc, sig syscall.Signal, within time.Duration) {
	t.Helper()
	if err := p.run.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%v to %s: %v", sig, p.name, err)
	}
	if within > 0 {
		c.waitExit(t, p, within)
	}
}

func (c *procCluster) waitExit(t *testing.T, p *nodeProc, within time.Duration) {
	t.Helper()
	select {
	case <-p.run.done:
	case <-time.After(within):
		t.Fatalf("%s still runs %v after the signal", p.name, within)
	}
}

// waitMembers polls until each of nodes reports exactly nodes, all alive,
// failing the test at since+within. It returns the time since since.
func (c *procCluster) waitMembers(t *testing.T, within time.Duration, since time.Time, nodes []*nodeProc) time.Duration {
	t.Helper()
	var want []string
	for _, p := range nodes {
		want = append(want, p.name)
	}
	slices.Sort(want)
	var seen []string
	agreed := func() bool {
		seen = seen[:0]
		ok := true
		for _, p := range nodes {
			got, err := c.members(p)
			seen = append(seen, fmt.Sprintf("%s sees %v (err %v)", p.name, got, err))
			ok = ok && err == nil && slices.Equal(got, want)
		}
		return ok
	}
	for !agreed() {
		if time.Since(since) > within {
			t.Fatalf("members are not %v %v after %v:\n%s", want, within, time.Since(since).Round(time.Millisecond), strings.Join(seen, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(since)
}

// members lists the names p reports, sorted, a member in any state but
// alive as name(state).
func (c *procCluster) members(p *nodeProc) ([]string, error) {
	var body struct {
		Members []struct{ Name, State string }
	}
	if err := c.getJSON(p, "/v1/cluster/members", &body); err != nil {
		return nil, err
	}
	var names []string
	for _, m := range body.Members {
		if m.State != "alive" {
			m.Name += "(" + m.State + ")"
		}
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names, nil
}

// checkKeyOwnedBy returns a /v1/check key (prefix, then a number) whose
// routing key the cluster's first node places on owner.
func (c *procCluster) checkKeyOwnedBy(t *testing.T, prefix string, owner *nodeProc) string {
	t.Helper()
	for i := range 1000 {
		k := fmt.Sprintf("%s-%s-%d", prefix, c.runID, i)
		o, err := c.owner(c.nodes[0], nodeapi.CheckKeyPrefix+k)
		if err != nil {
			t.Fatal(err)
		}
		if o == owner.name {
			return k
		}
	}
	t.Fatalf("no key owned by %s in 1000", owner.name)
	return ""
}

// owner is the member p places routing key key on.
func (c *procCluster) owner(p *nodeProc, key string) (string, error) {
	var body struct{ Owner struct{ Name string } }
	err := c.getJSON(p, "/v1/cluster/owner?key="+key, &body)
	return body.Owner.Name, err
}

func (c *procCluster) getJSON(p *nodeProc, path string, v any) error {
	r, err := c.do(p, http.MethodGet, path, nil)
	if err == nil && r.status != http.StatusOK {
		err = fmt.Errorf("status %d: %s", r.status, r.body)
	}
	if err == nil {
		err = json.Unmarshal(r.body, v)
	}
	return err
}

// httpReply is an HTTP answer, read in full.
type httpReply struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request to p; header holds name, value pairs.
func (c *procCluster) do(p *nodeProc, method, path string, body io.Reader, header ...string) (httpReply, error) {
	req, err := http.NewRequest(method, "http://"+net.JoinHostPort(p.host(), strconv.Itoa(p.httpPort))+path, body)
	if err != nil {
		return httpReply{}, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return httpReply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return httpReply{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// freePorts is the package's freePorts, never returning a port it gave to
// a node of c before: a node that is stopped and starts again on its own
// ports must find them free of its neighbours.
func (c *procCluster) freePorts() (httpPort, gossipPort, rpcPort int, err error) {
	for range 20 {
		if httpPort, gossipPort, rpcPort, err = freePorts(); err != nil {
			return 0, 0, 0, err
		}
		if !c.portsGiven[httpPort] && !c.portsGiven[gossipPort] && !c.portsGiven[rpcPort] {
			c.portsGiven[httpPort], c.portsGiven[gossipPort], c.portsGiven[rpcPort] = true, true, true
			return httpPort, gossipPort, rpcPort, nil
		}
	}
	return 0, 0, 0, errors.New("no ports free that no node of the test has had")
}

// freePorts picks an HTTP, a gossip and an RPC port that are free now, the
// gossip one for both TCP and UDP. All are held while choosing, so they
// differ; another process may still take one before the node binds it,
// which start retries.
func freePorts() (httpPort, gossipPort, rpcPort int, err error) {
	var held []io.Closer
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	tcp := func() (int, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		held = append(held, ln)
		return ln.Addr().(*net.TCPAddr).Port, nil
	}
	if httpPort, err = tcp(); err != nil {
		return
	}
	if rpcPort, err = tcp(); err != nil {
		return
	}
	for range 20 {
		if gossipPort, err = tcp(); err != nil {
			return
		}
		if udp, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(gossipPort))); err == nil {
			held = append(held, udp)
			return httpPort, gossipPort, rpcPort, nil
		}
	}
	return 0, 0, 0, errors.New("no port free for both TCP and UDP")
}
