package cluster

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/logevery"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

// 10,000 junk UDP packets to a node's gossip port (a message type that
// does not exist) make one ERROR line per class and logevery interval the
// sending took, not one per packet (before: one per packet, 3.2 MB of log
// for 20,000). The node and its peer still see each other, and a check
// through the node is answered.
func TestGossipJunkLoggedAtARate(t *testing.T) {
	var buf testlog.Buffer
	nodes := startRealClusterWith(t, 2, func(cfg *Config) {
		if cfg.Name == "n0" {
			cfg.Logger = slog.New(slog.NewTextHandler(&buf, nil))
		}
	})
	conn, err := net.Dial("udp", nodes[0].GossipAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	junk := []byte{0xff, 'j', 'u', 'n', 'k'}
	for range 10_000 {
		if _, err := conn.Write(junk); err != nil {
			t.Fatal(err)
		}
	}
	// memberlist handles packets in order: once a ping that does not
	// decode is logged, every junk packet before it the kernel kept has
	// been handled. The marker is sent again at each poll, as the kernel
	// may drop it.
	testkit.Eventually(t, 10*time.Second, "the marker packet was not logged", func() bool {
		conn.Write([]byte{0, 0xc1})
		return strings.Contains(buf.String(), "Failed to decode ping")
	})
	lines := strings.Count(buf.String(), "msg type (255) not supported")
	if bound := 1 + int(time.Since(start)/logevery.DefaultInterval); lines < 1 || lines > bound {
		t.Fatalf("%d lines for 10,000 junk packets, want 1 to %d:\n%.2000s", lines, bound, buf.String())
	}
	waitRing(t, nodes)
	key := testkit.KeyOwnedBy(t, []string{"n0", "n1"}, "n1")
	if out, err := checker(nodes[0], key, testkit.Counters(t, "s", "5 per minute"))(t.Context()); err != nil || !out.Allowed || out.Node != "n1" {
		t.Fatalf("check through n0 after the junk: %+v %v, want allowed by n1", out, err)
	}
}
