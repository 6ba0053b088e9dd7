//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/internal/proctest"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/ring"
)

// A SIGTERM while a node is still joining stops it as asked: exit 0, and
// a log that says the join was abandoned, not that it failed and the node
// awaits a restart (it exited 1 with an error before).
func TestSIGTERMDuringJoin(t *testing.T) {
	bin := nodeBinary(t)
	c := proctest.NewCluster(t, bin)
	p := c.Add(t)
	// A seed that refuses: the join retries until --join-timeout, and the
	// signal finds the node in the middle of it.
	c.Start(t, p, "127.0.0.1:1", false)
	c.Signal(t, p, syscall.SIGTERM, 10*time.Second)
	if err := p.ExitErr(); err != nil {
		t.Fatalf("exit after SIGTERM during the join: %v; want 0", err)
	}
	log, err := os.ReadFile(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"join abandoned: the node is stopping", "signal received before the node was ready"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	for _, bad := range []string{"level=ERROR", "until restarted"} {
		if strings.Contains(string(log), bad) {
			t.Errorf("log has %q: a stop that was asked for is not a failure", bad)
		}
	}
}

// A second SIGTERM during the drain (an impatient operator, a supervisor
// that repeats its signal) neither kills the node nor cuts its handoff
// short: the owner's count reaches the next owner whole, and the rest of
// the window is exact.
func TestSIGTERMTwice(t *testing.T) {
	bin := nodeBinary(t)
	c := proctest.StartCluster(t, bin, 3)
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	key := c.KeyOwnedBy(t, "twice", n3)
	for i := range 7 {
		if a := c.Check(t, []*proctest.Node{n1, n2}[i%2], key, limits, 1); !a.Allowed || a.Node != n3.Name {
			t.Fatalf("check %d: %+v; want allowed by %s", i+1, a, n3.Name)
		}
	}
	c.Signal(t, n3, syscall.SIGTERM, 0)
	c.Signal(t, n3, syscall.SIGTERM, 15*time.Second)
	if err := n3.ExitErr(); err != nil {
		t.Fatalf("exit after two SIGTERMs: %v; want 0", err)
	}
	remainingExactlyAfter(t, c, key, 7, "after the leave", n1, n2)
}

// The next owner stops answering (SIGSTOP) while the owner drains. A
// merge sent to it may still be applied when it wakes up, so the drain
// does not send the counts elsewhere meanwhile: it waits until
// --shutdown-timeout, says what it did not hand off and exits 1. The
// stopped node applies the merge once it runs again, and the rest of the
// window is exact: nothing lost, nothing counted twice. (Before, the
// leaver kept the counts after the timeout and handed them to the third
// node, which passed them on: counted twice, 6 of 30 allowed.)
func TestDrainPastASilentPeer(t *testing.T) {
	bin := nodeBinary(t)
	c := proctest.NewCluster(t, bin)
	c.ExtraArgs = func(*proctest.Node) []string { return []string{"--shutdown-timeout", "3s", "--log-level", "debug"} }
	for range 3 {
		c.StartNext(t)
	}
	c.WaitMembers(t, 20*time.Second, time.Now(), c.Nodes)
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	// n3 owns the key, and n2 would own it after n3.
	after := ring.New([]ring.Member{{Name: n1.Name}, {Name: n2.Name}}, ring.Config{})
	key := ""
	for i := 0; key == ""; i++ {
		k := c.KeyOwnedBy(t, fmt.Sprintf("silent%d", i), n3)
		if o, _ := after.Owner(nodeapi.CheckKeyPrefix + k); o.Name == n2.Name {
			key = k
		}
	}
	for i := range 7 {
		if a := c.Check(t, n1, key, limits, 1); !a.Allowed || a.Node != n3.Name {
			t.Fatalf("check %d: %+v; want allowed by %s", i+1, a, n3.Name)
		}
	}
	c.Signal(t, n2, syscall.SIGSTOP, 0)
	start := time.Now()
	c.Signal(t, n3, syscall.SIGTERM, 15*time.Second)
	t.Logf("the drain took %v", time.Since(start).Round(time.Millisecond))
	// Cut short (the merge was sent and not answered): exit 1, and the
	// log says so. A merge that could not even be sent (the stopped node
	// never finished the handshake) goes to the third node instead, and
	// the drain ends at once with 0.
	var exit *exec.ExitError
	switch err := n3.ExitErr(); {
	case err == nil:
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		if log, err := os.ReadFile(n3.LogPath); err != nil || !strings.Contains(string(log), "handoff not answered in time") {
			t.Errorf("the leaver's log does not say what it did not hand off (%v)", err)
		}
	default:
		t.Fatalf("exit after the drain: %v; want 0, or 1 when cut short", err)
	}
	c.Signal(t, n2, syscall.SIGCONT, 0)
	remainingExactlyAfter(t, c, key, 7, "after the drain", n1, n2)
}

// limits is the limit of the keys the stop tests spend: 20, so that 30
// checks after a stop show every hit lost or counted twice.
const limits = "20 per hour"

// remainingExactlyAfter waits until the cluster is the nodes given, then
// checks key through them, alternating, 30 times: exactly what spent
// left of its 20 must be admitted.
func remainingExactlyAfter(t *testing.T, c *proctest.Cluster, key string, spent int, when string, nodes ...*proctest.Node) {
	t.Helper()
	c.WaitMembers(t, 30*time.Second, time.Now(), nodes)
	allowed := 0
	for i := range 30 {
		if c.Check(t, nodes[i%len(nodes)], key, limits, 1).Allowed {
			allowed++
		}
	}
	if allowed != 20-spent {
		t.Fatalf("%s: %d of 30 allowed; want exactly %d (20 less the %d spent before)", when, allowed, 20-spent, spent)
	}
}

// A SIGKILL in the middle of the drain (a supervisor that does not wait),
// at three points of it: the count is on the next owner whichever step
// the drain had reached — handed off, or only in the replica the next
// owner keeps of the leaver — and never in both, so the rest of the
// window is exact.
func TestSIGKILLMidDrain(t *testing.T) {
	bin := nodeBinary(t)
	for _, at := range []string{"", "signal received; leaving the cluster", "handed off"} {
		name := at
		if name == "" {
			name = "at once"
		}
		t.Run(name, func(t *testing.T) {
			c := startDebugCluster(t, bin)
			n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
			key := c.KeyOwnedBy(t, "midkill", n3)
			for i := range 7 {
				if a := c.Check(t, n1, key, limits, 1); !a.Allowed || a.Node != n3.Name {
					t.Fatalf("check %d: %+v; want allowed by %s", i+1, a, n3.Name)
				}
			}
			waitReplicasLanded(t, c, n3, n1, n2)
			c.Signal(t, n3, syscall.SIGTERM, 0)
			if at != "" {
				testkit.Eventually(t, 10*time.Second, "the leaver logs "+at, func() bool {
					log, err := os.ReadFile(n3.LogPath)
					return err == nil && strings.Contains(string(log), at)
				})
			}
			c.Signal(t, n3, syscall.SIGKILL, 10*time.Second)
			remainingExactlyAfter(t, c, key, 7, "after the kill", n1, n2)
		})
	}
}

// startDebugCluster starts 3 node processes with debug logs, which a
// failed test prints, and waits until each sees all 3.
func startDebugCluster(t *testing.T, bin string) *proctest.Cluster {
	t.Helper()
	c := proctest.NewCluster(t, bin)
	c.ExtraArgs = func(*proctest.Node) []string { return []string{"--log-level", "debug"} }
	for range 3 {
		c.StartNext(t)
	}
	c.WaitMembers(t, 20*time.Second, time.Now(), c.Nodes)
	return c
}

// waitReplicasLanded waits until every replica owner sent has arrived at
// the others, and 20 ms pass without another (replicas go every 5 ms):
// a crash now loses nothing to the replica's lag.
func waitReplicasLanded(t *testing.T, c *proctest.Cluster, owner *proctest.Node, others ...*proctest.Node) {
	t.Helper()
	waitReplicasLandedSince(t, c, 0, owner, others...)
}

// replicaPrefix is the replica counters' metric, up to its label's value.
const replicaPrefix = `ratemesh_replica_keys_total{result="`

// replicasReceived is how many replicas the nodes have received.
func replicasReceived(t *testing.T, c *proctest.Cluster, nodes ...*proctest.Node) float64 {
	var received float64
	for _, p := range nodes {
		received += metricByLabel(t, c, p, replicaPrefix)["received"]
	}
	return received
}

// waitReplicasLandedSince is waitReplicasLanded for an owner that
// (re)started after the others had received base replicas.
func waitReplicasLandedSince(t *testing.T, c *proctest.Cluster, base float64, owner *proctest.Node, others ...*proctest.Node) {
	t.Helper()
	var last string
	var since time.Time
	testkit.Eventually(t, 10*time.Second, "replicas sent = replicas received, unchanged for 20 ms", func() bool {
		sent := metricByLabel(t, c, owner, replicaPrefix)["sent"]
		received := replicasReceived(t, c, others...) - base
		now := fmt.Sprintf("%v/%v", sent, received)
		if now != last || sent != received || sent == 0 {
			last, since = now, time.Now()
			return false
		}
		return time.Since(since) >= 20*time.Millisecond
	})
}
