//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/ratemesh/ratemesh/internal/proctest"
)

// netLab is a set of network namespaces joined by a bridge, one per node,
// made by the test and removed when it ends. The test process reaches
// every node through the bridge; a partition is a pair of "prohibit"
// routes per cut pair, inside the namespaces, so the nodes lose each
// other and not the test.
type netLab struct {
	t      *testing.T
	id     string
	bridge string
	nss    []string
	ips    []string
}

// newNetLab builds n namespaces, or skips the test when this process may
// not (not root, no "ip", no namespaces).
func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	l, err := tryNetLab(t, n)
	if err != nil {
		t.Skip(err)
	}
	return l
}

// tryNetLab builds n namespaces, or says why this process may not.
func tryNetLab(t *testing.T, n int) (*netLab, error) {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil, errors.New("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("no ip command")
	}
	l := &netLab{t: t, id: proctest.RandomHex(2)}
	l.bridge = "rmbr" + l.id
	r, _ := strconv.ParseUint(l.id, 16, 16)
	subnet := fmt.Sprintf("10.%d.%d", 100+r>>8%100, r&0xff)
	t.Cleanup(l.remove)
	if err := l.run("ip", "link", "add", l.bridge, "type", "bridge"); err != nil {
		return nil, fmt.Errorf("cannot make a bridge here: %v", err)
	}
	l.must("ip", "addr", "add", subnet+".254/24", "dev", l.bridge)
	l.must("ip", "link", "set", l.bridge, "up")
	for i := range n {
		ns, host, peer := fmt.Sprintf("rm%s-%d", l.id, i), fmt.Sprintf("rmh%s%d", l.id, i), fmt.Sprintf("rmp%s%d", l.id, i)
		ip := fmt.Sprintf("%s.%d", subnet, i+1)
		l.must("ip", "netns", "add", ns)
		l.nss, l.ips = append(l.nss, ns), append(l.ips, ip)
		l.must("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
		l.must("ip", "link", "set", peer, "netns", ns)
		l.must("ip", "link", "set", host, "master", l.bridge)
		l.must("ip", "link", "set", host, "up")
		l.must("ip", "-n", ns, "addr", "add", ip+"/24", "dev", peer)
		l.must("ip", "-n", ns, "link", "set", peer, "up")
		l.must("ip", "-n", ns, "link", "set", "lo", "up")
	}
	return l, nil
}

func (l *netLab) run(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (l *netLab) must(args ...string) {
	l.t.Helper()
	if err := l.run(args...); err != nil {
		l.t.Fatal(err)
	}
}

// unsent counts the TCP connections in node i's namespace towards addr
// that were closed with data or a FIN the peer has not acknowledged: the
// kernel still retransmits what they hold, and delivers it once a cut
// heals.
func (l *netLab) unsent(i int, addr string) int {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", l.nss[i], "ss", "-Htn",
		"state", "fin-wait-1", "state", "closing", "state", "last-ack", "dst", addr).CombinedOutput()
	if err != nil {
		l.t.Fatalf("ss in %s: %v: %s", l.nss[i], err, out)
	}
	n := 0
	for line := range strings.Lines(string(out)) {
		if strings.TrimSpace(line) != "" {
			n++
		}
	}
	return n
}

// split cuts every node of a from every node of b, both ways.
func (l *netLab) split(a, b []int) { l.routes("add", a, b) }

// heal undoes split(a, b).
func (l *netLab) heal(a, b []int) { l.routes("del", a, b) }

func (l *netLab) routes(verb string, a, b []int) {
	l.t.Helper()
	for _, i := range a {
		for _, j := range b {
			l.must("ip", "-n", l.nss[i], "route", verb, "prohibit", l.ips[j]+"/32")
			l.must("ip", "-n", l.nss[j], "route", verb, "prohibit", l.ips[i]+"/32")
		}
	}
}

// remove deletes what newNetLab made; namespaces take their veths along.
func (l *netLab) remove() {
	for _, ns := range l.nss {
		l.run("ip", "netns", "del", ns)
	}
	l.run("ip", "link", "del", l.bridge)
}
